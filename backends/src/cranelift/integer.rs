//! Integer kernels in Cranelift: quantized convolution and matrix product
//! with an int32 accumulator and the requantizing store, quantized softmax,
//! integer pooling, and the fixed-point operations of
//! [`nnc_ir::op::qmath`] as IR (every value an i64 holding an int32, so
//! the arithmetic is the interpreter's operation for operation).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::op::{QConvAttrs, QGemmAttrs, QSoftmaxAttrs};
use nnc_ir::program::{Epilogue, Step};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::kb::Kb;
use super::scalar::{from_i64, load_at, store_at, to_i64};
use crate::error::Result;

const I64: types::Type = types::I64;

/// `v` wrapped to 32 bits and sign-extended back.
pub fn wrap32(kb: &mut Kb, v: Value) -> Value {
    let n = kb.b.ins().ireduce(types::I32, v);
    kb.b.ins().sextend(I64, n)
}

/// `clamp(v, lo, hi)`.
pub fn sat(kb: &mut Kb, v: Value, lo: i64, hi: i64) -> Value {
    let l = kb.cint(I64, lo);
    let h = kb.cint(I64, hi);
    let v = kb.b.ins().smax(v, l);
    kb.b.ins().smin(v, h)
}

/// Single-rounding requantization (`qmath::requantize`): `acc * mult *
/// 2^(shift - 31)` rounded once, saturated to 32 bits. `shift` may be a
/// value (per-channel) and is clamped to the valid range.
pub fn rq(kb: &mut Kb, acc: Value, mult: Value, shift: Value) -> Value {
    let shift = sat(kb, shift, -31, 30);
    let c31 = kb.cint(I64, 31);
    let total = kb.b.ins().isub(c31, shift);
    let one = kb.cint(I64, 1);
    let tm1 = kb.b.ins().iadd_imm_s(total, -1);
    let round = kb.b.ins().ishl(one, tm1);
    let p = kb.b.ins().imul(acc, mult);
    let p = kb.b.ins().iadd(p, round);
    let r = kb.b.ins().sshr(p, total);
    sat(kb, r, i32::MIN as i64, i32::MAX as i64)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul` (`qmath::srdhm`).
pub fn srdhm(kb: &mut Kb, a: Value, b: Value) -> Value {
    let ab = kb.b.ins().imul(a, b);
    let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, ab, 0);
    let pos_nudge = kb.cint(I64, 1 << 30);
    let neg_nudge = kb.cint(I64, 1 - (1 << 30));
    let nudge = kb.b.ins().select(neg, neg_nudge, pos_nudge);
    let s = kb.b.ins().iadd(ab, nudge);
    // Division by 2^31 truncating toward zero.
    let sign = kb.b.ins().sshr_imm_s(s, 63);
    let bias = kb.b.ins().band_imm_s(sign, (1i64 << 31) - 1);
    let t = kb.b.ins().iadd(s, bias);
    let q = kb.b.ins().sshr_imm_s(t, 31);
    // The one overflowing case: MIN * MIN.
    let min = i32::MIN as i64;
    let am = kb.b.ins().icmp_imm_s(IntCC::Equal, a, min);
    let bm = kb.b.ins().icmp_imm_s(IntCC::Equal, b, min);
    let both = kb.b.ins().band(am, bm);
    let max = kb.cint(I64, i32::MAX as i64);
    kb.b.ins().select(both, max, q)
}

/// gemmlowp's `RoundingDivideByPOT` (`qmath::rounding_divide_by_pot`),
/// `exponent` a value clamped to `0..=31`.
pub fn rdpot(kb: &mut Kb, x: Value, exponent: Value) -> Value {
    let e = sat(kb, exponent, 0, 31);
    let one = kb.cint(I64, 1);
    let m = kb.b.ins().ishl(one, e);
    let mask = kb.b.ins().iadd_imm_s(m, -1);
    let rem = kb.b.ins().band(x, mask);
    let half = kb.b.ins().sshr_imm_s(mask, 1);
    let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
    let neg = kb.b.ins().uextend(I64, neg);
    let th = kb.b.ins().iadd(half, neg);
    let q = kb.b.ins().sshr(x, e);
    let up = kb.b.ins().icmp(IntCC::SignedGreaterThan, rem, th);
    let up = kb.b.ins().uextend(I64, up);
    kb.b.ins().iadd(q, up)
}

/// gemmlowp's saturating left shift by a constant (`qmath::saturating_shl`).
fn satshl(kb: &mut Kb, x: Value, exponent: i32) -> Value {
    // Beyond gemmlowp's threshold the result saturates: exactly the clamp
    // of the unbounded shift, since |x| <= 2^31.
    let s = kb.b.ins().ishl_imm_s(x, exponent as i64);
    sat(kb, s, i32::MIN as i64, i32::MAX as i64)
}

/// TFLite's `GetReciprocal` for `integer_digits = 12`: the Q0.31
/// reciprocal of `x` and the bits it is above one.
fn reciprocal(kb: &mut Kb, x: Value) -> (Value, Value) {
    let x32 = kb.b.ins().ireduce(types::I32, x);
    let lz = kb.b.ins().clz(x32);
    let shifted = kb.b.ins().ishl(x32, lz);
    let lz64 = kb.b.ins().uextend(I64, lz);
    let c12 = kb.cint(I64, 12);
    let bits = kb.b.ins().isub(c12, lz64);
    let top = kb.cint(types::I32, i32::MIN as i64);
    let a32 = kb.b.ins().isub(shifted, top);
    let a = kb.b.ins().sextend(I64, a32);
    // one_over_one_plus_x_for_x_in_0_1(a)
    let sum = kb.b.ins().iadd_imm_s(a, i32::MAX as i64);
    let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, sum, 0);
    let p1 = kb.cint(I64, 1);
    let m1 = kb.cint(I64, -1);
    let r = kb.b.ins().select(neg, m1, p1);
    let s2 = kb.b.ins().iadd(sum, r);
    // Division by 2 truncating toward zero.
    let sign = kb.b.ins().sshr_imm_s(s2, 63);
    let bias = kb.b.ins().band_imm_s(sign, 1);
    let t = kb.b.ins().iadd(s2, bias);
    let half = kb.b.ins().sshr_imm_s(t, 1);
    let c = kb.cint(I64, -1010580540);
    let hm = srdhm(kb, half, c);
    let x0 = kb.b.ins().iadd_imm_s(hm, 1515870810);
    let mut xv = wrap32(kb, x0);
    for _ in 0..3 {
        let hx = srdhm(kb, half, xv);
        let one = kb.cint(I64, 1 << 29);
        let om = kb.b.ins().isub(one, hx);
        let om = wrap32(kb, om);
        let p = srdhm(kb, xv, om);
        let p = satshl(kb, p, 2);
        let n = kb.b.ins().iadd(xv, p);
        xv = wrap32(kb, n);
    }
    (satshl(kb, xv, 1), bits)
}

/// The requantizing store of an integer kernel's accumulator `acc` (an i64
/// holding an int32) for output channel `ch` (a pointer-sized value):
/// requantization and clamp, each item in order, narrowed to `y`.
pub(super) struct Store {
    items: Vec<Item>,
    y: DType,
}

enum Item {
    Rq {
        mult: Value,
        shift: Value,
        per_channel: bool,
        zp: i64,
    },
    Clamp(i64, i64),
}

impl Store {
    pub(super) fn new(kb: &mut Kb, st: &Step, a: &Args) -> Result<Store> {
        let mut items = Vec::new();
        for e in &st.epilogue {
            match e {
                Epilogue::Requantize {
                    mult,
                    shift,
                    zero_point,
                } => items.push(Item::Rq {
                    mult: a.x(kb, *mult)?,
                    shift: a.x(kb, *shift)?,
                    per_channel: st.inputs[*mult].ty.len() > 1,
                    zp: *zero_point as i64,
                }),
                Epilogue::Clamp { lo, hi } => items.push(Item::Clamp(*lo as i64, *hi as i64)),
                Epilogue::Bias { .. } => {}
                Epilogue::Act(_) | Epilogue::Residual { .. } => {
                    return Err(super::unsupported(
                        st,
                        "an activation or residual in an integer epilogue".into(),
                    ));
                }
            }
        }
        Ok(Store {
            items,
            y: st.outputs[0].ty.dtype,
        })
    }

    pub(super) fn apply(&self, kb: &mut Kb, acc: Value, ch: Value) -> Value {
        let mut v = acc;
        let mut clamped = false;
        for it in &self.items {
            match it {
                Item::Rq {
                    mult,
                    shift,
                    per_channel,
                    zp,
                } => {
                    let idx = if *per_channel { ch } else { kb.ci(0) };
                    let m = load_at(kb, DType::I32, *mult, idx);
                    let s = load_at(kb, DType::I32, *shift, idx);
                    let m = kb.b.ins().sextend(I64, m);
                    let s = kb.b.ins().sextend(I64, s);
                    let r = rq(kb, v, m, s);
                    v = kb.b.ins().iadd_imm_s(r, *zp);
                    clamped = false;
                }
                Item::Clamp(lo, hi) => {
                    v = sat(kb, v, *lo, *hi);
                    clamped = true;
                }
            }
        }
        if !clamped {
            let (lo, hi) = self
                .y
                .int_range()
                .unwrap_or((i32::MIN as i64, i32::MAX as i64));
            v = sat(kb, v, lo, hi);
        }
        from_i64(kb, v, self.y)
    }
}

/// `x - zp` widened to i64.
fn q_load(kb: &mut Kb, d: DType, base: Value, idx: Value, zp: i32) -> Value {
    let v = load_at(kb, d, base, idx);
    let v = to_i64(kb, v, d);
    if zp == 0 {
        v
    } else {
        kb.b.ins().iadd_imm_s(v, -(zp as i64))
    }
}

/// The bias (or zero) of output channel `ch` as the accumulator's start.
fn init(kb: &mut Kb, st: &Step, a: &Args, ch: Value) -> Result<Value> {
    match st.bias() {
        Some(k) => {
            let b = a.x(kb, k)?;
            let v = load_at(kb, DType::I32, b, ch);
            Ok(kb.b.ins().sextend(I64, v))
        }
        None => Ok(kb.cint(I64, 0)),
    }
}

/// Quantized convolution of any spatial rank, output-stationary: per
/// output element the taps inside the input (generation-time tables of the
/// valid tap range per output coordinate) accumulate `(x - x_zp)(w - w_zp)`
/// from the bias; one requantizing store.
pub fn qconv_direct(
    kb: &mut Kb,
    st: &Step,
    q: &QConvAttrs,
    x: &TensorType,
    wt: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let c = &q.conv;
    let n = x.rank() - 2;
    let (batch, ci, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let (cg, mg) = (ci / c.group, m / c.group);
    let in_sp = &x.dims[2..];
    let out_sp = &y.dims[2..];
    let k_sp = &wt.dims[2..];
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let (ist, ost, kst) = (strides(in_sp), strides(out_sp), strides(k_sp));
    // Per axis and output coordinate: the first and one past the last tap
    // that lands inside the input.
    let mut tabs = Vec::with_capacity(n);
    for d in 0..n {
        let mut v = Vec::with_capacity(2 * out_sp[d]);
        for o in 0..out_sp[d] {
            let ok = |k: usize| {
                let p = (o * c.strides[d] + k * c.dilations[d]) as i64 - c.pads[d] as i64;
                p >= 0 && p < in_sp[d] as i64
            };
            let lo = (0..k_sp[d]).find(|&k| ok(k)).unwrap_or(k_sp[d]);
            let hi = (0..k_sp[d]).rev().find(|&k| ok(k)).map_or(lo, |k| k + 1);
            v.push(lo as i64);
            v.push(hi.max(lo) as i64);
        }
        tabs.push(kb.table_i64(&v)?);
    }
    let (xb, wb, yb) = (a.x(kb, 0)?, a.x(kb, 1)?, a.outs[0]);
    let store = Store::new(kb, st, a)?;
    let (xd, wd, yd) = (x.dtype, wt.dtype, y.dtype);
    let (xz, wz) = (q.q.x_zp, q.q.w_zp);
    let cx = Conv {
        n,
        ist: &ist,
        ost: &ost,
        kst: &kst,
        out_sp,
        strides: &c.strides,
        dil: &c.dilations,
        pads: &c.pads,
        tabs: &tabs,
    };
    kb.for_range(0, batch as i64, 1, |kb, nb| {
        kb.for_range(0, m as i64, 1, |kb, o| {
            let g = kb.b.ins().udiv_imm_u(o, mg as i64);
            let xoff = kb.b.ins().imul_imm_s(nb, ci as i64);
            let gc = kb.b.ins().imul_imm_s(g, cg as i64);
            let xplane0 = kb.b.ins().iadd(xoff, gc);
            let yplane = kb.b.ins().imul_imm_s(nb, m as i64);
            let yplane = kb.b.ins().iadd(yplane, o);
            let ybase = kb.at(yb, yplane, (osz * yd.size()) as i64);
            let wrow = kb.b.ins().imul_imm_s(o, cg as i64);
            cx.positions(kb, 0, &mut vec![], &mut |kb, os| {
                let acc0 = init(kb, st, a, o)?;
                let acc = kb.var(I64, acc0);
                kb.for_range(0, cg as i64, 1, |kb, ic| {
                    let xp = kb.b.ins().iadd(xplane0, ic);
                    let xbase = kb.at(xb, xp, (isz * xd.size()) as i64);
                    let wr = kb.b.ins().iadd(wrow, ic);
                    let wbase = kb.at(wb, wr, (ksz * wd.size()) as i64);
                    cx.taps(kb, 0, os, &mut vec![], &mut |kb, xi, wi| {
                        let xv = q_load(kb, xd, xbase, xi, xz);
                        let wv = q_load(kb, wd, wbase, wi, wz);
                        let p = kb.b.ins().imul(xv, wv);
                        let s = kb.get(acc);
                        let s = kb.b.ins().iadd(s, p);
                        kb.set(acc, s);
                        Ok(())
                    })
                })?;
                // The int32 accumulator (64-bit sums wrapped once: the same
                // value modulo 2^32).
                let v = kb.get(acc);
                let v = wrap32(kb, v);
                let r = store.apply(kb, v, o);
                let mut yi = kb.ci(0);
                for (d, &od) in os.iter().enumerate() {
                    let t = kb.b.ins().imul_imm_s(od, cx.ost[d] as i64);
                    yi = kb.b.ins().iadd(yi, t);
                }
                store_at(kb, yd, ybase, yi, r);
                Ok(())
            })
        })
    })
}

/// The loop structure of [`qconv_direct`].
struct Conv<'a> {
    n: usize,
    ist: &'a [usize],
    ost: &'a [usize],
    kst: &'a [usize],
    out_sp: &'a [usize],
    strides: &'a [usize],
    dil: &'a [usize],
    pads: &'a [usize],
    tabs: &'a [Value],
}

type PosFn<'f> = dyn FnMut(&mut Kb, &[Value]) -> Result<()> + 'f;
type TapFn<'f> = dyn FnMut(&mut Kb, Value, Value) -> Result<()> + 'f;

impl Conv<'_> {
    /// Calls `f` for every output position (its coordinates).
    fn positions(
        &self,
        kb: &mut Kb,
        d: usize,
        os: &mut Vec<Value>,
        f: &mut PosFn<'_>,
    ) -> Result<()> {
        if d == self.n {
            return f(kb, os);
        }
        kb.for_range(0, self.out_sp[d] as i64, 1, |kb, o| {
            os.push(o);
            let r = self.positions(kb, d + 1, os, f);
            os.pop();
            r
        })
    }

    /// Calls `f(x index, w index)` for every tap of output position `os`
    /// that lands inside the input.
    fn taps(
        &self,
        kb: &mut Kb,
        d: usize,
        os: &[Value],
        ks: &mut Vec<Value>,
        f: &mut TapFn<'_>,
    ) -> Result<()> {
        if d == self.n {
            let mut xi = kb.ci(0);
            let mut wi = kb.ci(0);
            for e in 0..self.n {
                let p = kb.b.ins().imul_imm_s(os[e], self.strides[e] as i64);
                let kd = kb.b.ins().imul_imm_s(ks[e], self.dil[e] as i64);
                let p = kb.b.ins().iadd(p, kd);
                let p = kb.b.ins().iadd_imm_s(p, -(self.pads[e] as i64));
                let p = kb.b.ins().imul_imm_s(p, self.ist[e] as i64);
                xi = kb.b.ins().iadd(xi, p);
                let k = kb.b.ins().imul_imm_s(ks[e], self.kst[e] as i64);
                wi = kb.b.ins().iadd(wi, k);
            }
            return f(kb, xi, wi);
        }
        let ta = kb.at(self.tabs[d], os[d], 16);
        let lo = kb.load(I64, ta, 0);
        let hi = kb.load(I64, ta, 8);
        kb.for_dyn(lo, hi, |kb, k| {
            ks.push(k);
            let r = self.taps(kb, d + 1, os, ks, f);
            ks.pop();
            r
        })
    }
}

/// Quantized matrix product, one int32 dot product per output.
pub fn qgemm_direct(
    kb: &mut Kb,
    st: &Step,
    q: &QGemmAttrs,
    at: &TensorType,
    bt: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let (m, n) = (y.dims[0], y.dims[1]);
    let k = at.dims[1];
    let (ab, bb, yb) = (a.x(kb, 0)?, a.x(kb, 1)?, a.outs[0]);
    let store = Store::new(kb, st, a)?;
    let (ad, bd, yd) = (at.dtype, bt.dtype, y.dtype);
    let (xz, wz) = (q.q.x_zp, q.q.w_zp);
    kb.for_range(0, m as i64, 1, |kb, i| {
        let arow = kb.at(ab, i, (k * ad.size()) as i64);
        kb.for_range(0, n as i64, 1, |kb, j| {
            let acc0 = init(kb, st, a, j)?;
            let acc = kb.var(I64, acc0);
            kb.for_range(0, k as i64, 1, |kb, p| {
                let av = q_load(kb, ad, arow, p, xz);
                let bi = if q.trans_b {
                    let r = kb.b.ins().imul_imm_s(j, k as i64);
                    kb.b.ins().iadd(r, p)
                } else {
                    let r = kb.b.ins().imul_imm_s(p, n as i64);
                    kb.b.ins().iadd(r, j)
                };
                let bv = q_load(kb, bd, bb, bi, wz);
                let pr = kb.b.ins().imul(av, bv);
                let s = kb.get(acc);
                let s = kb.b.ins().iadd(s, pr);
                kb.set(acc, s);
                Ok(())
            })?;
            let v = kb.get(acc);
            let v = wrap32(kb, v);
            let r = store.apply(kb, v, j);
            let yi = kb.b.ins().imul_imm_s(i, n as i64);
            let yi = kb.b.ins().iadd(yi, j);
            store_at(kb, yd, yb, yi, r);
            Ok(())
        })
    })
}

/// Quantized softmax along one axis from a generation-time exponential
/// table (see the C kernel); safe in place.
pub fn qsoftmax(kb: &mut Kb, q: &QSoftmaxAttrs, x: &TensorType, a: &Args) -> Result<()> {
    let table = nnc_ir::op::qmath::softmax_exp_table(q.mult, q.shift, q.diff_min);
    let t: Vec<i64> = table.iter().map(|&v| v as i64).collect();
    let tb = kb.table_i64(&t)?;
    let (lo, hi) = q.out.int_range().expect("i8 or u8");
    let d = x.dtype;
    let n = x.dims[q.axis] as i64;
    let inner = x.dims[q.axis + 1..].iter().product::<usize>() as i64;
    let outer = x.dims[..q.axis].iter().product::<usize>() as i64;
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    kb.for_range(0, outer, 1, |kb, o| {
        kb.for_range(0, inner, 1, |kb, i| {
            let base = kb.b.ins().imul_imm_s(o, n * inner);
            let base = kb.b.ins().iadd(base, i);
            let elem = |kb: &mut Kb, k: Value| -> Value {
                let off = kb.b.ins().imul_imm_s(k, inner);
                let idx = kb.b.ins().iadd(base, off);
                let v = load_at(kb, d, xb, idx);
                to_i64(kb, v, d)
            };
            let z = kb.ci(0);
            let first = elem(kb, z);
            let mx = kb.var(I64, first);
            kb.for_range(1, n, 1, |kb, k| {
                let v = elem(kb, k);
                let cur = kb.get(mx);
                let r = kb.b.ins().smax(cur, v);
                kb.set(mx, r);
                Ok(())
            })?;
            let mxv = kb.get(mx);
            let exp = |kb: &mut Kb, k: Value| -> Value {
                let v = elem(kb, k);
                let dd = kb.b.ins().isub(mxv, v);
                let ta = kb.at(tb, dd, 8);
                kb.load(I64, ta, 0)
            };
            let zero = kb.cint(I64, 0);
            let sum = kb.var(I64, zero);
            kb.for_range(0, n, 1, |kb, k| {
                let e = exp(kb, k);
                let c12 = kb.cint(I64, 12);
                let r = rdpot(kb, e, c12);
                let s = kb.get(sum);
                let s = kb.b.ins().iadd(s, r);
                let s = wrap32(kb, s);
                kb.set(sum, s);
                Ok(())
            })?;
            let sv = kb.get(sum);
            let (scale, bits) = reciprocal(kb, sv);
            let sh = kb.b.ins().iadd_imm_s(bits, 23);
            kb.for_range(0, n, 1, |kb, k| {
                let e = exp(kb, k);
                let p = srdhm(kb, scale, e);
                let r = match q.y {
                    None => {
                        let r = rdpot(kb, p, sh);
                        kb.b.ins().iadd_imm_s(r, lo)
                    }
                    // qmath::softmax_scaled: one rounding to the output
                    // scale; 0 for t > 63 (the shift amount is masked
                    // to 6 bits, so select it away).
                    Some(y) => {
                        let t = kb.b.ins().iadd_imm_s(bits, 62 - y.shift as i64);
                        let qv = kb.b.ins().imul_imm_s(p, y.mult as i64);
                        let one = kb.cint(I64, 1);
                        let tm1 = kb.b.ins().iadd_imm_s(t, -1);
                        let half = kb.b.ins().ishl(one, tm1);
                        let sum = kb.b.ins().iadd(qv, half);
                        let v = kb.b.ins().sshr(sum, t);
                        let zero = kb.cint(I64, 0);
                        let big = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, t, 63);
                        let v = kb.b.ins().select(big, zero, v);
                        kb.b.ins().iadd_imm_s(v, y.zp as i64)
                    }
                };
                let r = sat(kb, r, lo, hi);
                let r = from_i64(kb, r, q.out);
                let off = kb.b.ins().imul_imm_s(k, inner);
                let idx = kb.b.ins().iadd(base, off);
                store_at(kb, q.out, yb, idx, r);
                Ok(())
            })
        })
    })
}

/// Global average or max pooling of integer planes: a 64-bit sum rounded
/// as TFLite rounds its average, or the running maximum.
pub fn global_pool_int(
    kb: &mut Kb,
    kind: nnc_ir::op::PoolKind,
    x: &TensorType,
    a: &Args,
) -> Result<()> {
    let d = x.dtype;
    let inner = x.dims[2..].iter().product::<usize>() as i64;
    let planes = (x.dims[0] * x.dims[1]) as i64;
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    kb.for_range(0, planes, 1, |kb, pl| {
        let xp = kb.at(xb, pl, inner * d.size() as i64);
        let init = match kind {
            nnc_ir::op::PoolKind::Avg => 0,
            nnc_ir::op::PoolKind::Max => d.int_range().map_or(i64::MIN, |r| r.0),
        };
        let iv = kb.cint(I64, init);
        let acc = kb.var(I64, iv);
        kb.for_range(0, inner, 1, |kb, p| {
            let v = load_at(kb, d, xp, p);
            let v = to_i64(kb, v, d);
            let s = kb.get(acc);
            let r = match kind {
                nnc_ir::op::PoolKind::Avg => kb.b.ins().iadd(s, v),
                nnc_ir::op::PoolKind::Max => kb.b.ins().smax(s, v),
            };
            kb.set(acc, r);
            Ok(())
        })?;
        let mut r = kb.get(acc);
        if kind == nnc_ir::op::PoolKind::Avg {
            let cnt = kb.cint(I64, inner.max(1));
            r = round_div(kb, r, cnt);
        }
        let r = from_i64(kb, r, d);
        store_at(kb, d, yb, pl, r);
        Ok(())
    })
}

/// `sum / count` rounded to nearest, ties away from zero (`count > 0`).
pub fn round_div(kb: &mut Kb, sum: Value, count: Value) -> Value {
    let half = kb.b.ins().sshr_imm_s(count, 1);
    let up = kb.b.ins().iadd(sum, half);
    let down = kb.b.ins().isub(sum, half);
    let pos = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, sum, 0);
    let v = kb.b.ins().select(pos, up, down);
    kb.b.ins().sdiv(v, count)
}
