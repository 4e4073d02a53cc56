//! The general forms of the compute ops: convolution and transposed
//! convolution of any spatial rank (groups, dilation, padding through
//! per-tap valid ranges, fused bias and activation), Gemm, batched MatMul,
//! pooling, Softmax and LRN. Innermost loops over contiguous f32 run four
//! lanes at a time. The register-blocked kernels for the common 2-D f32
//! cases are in `conv_fast` and `gemm_fast`; these cover everything else.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::Variable;
use nnc_ir::op::{
    ConvAttrs, ConvTransposeAttrs, GemmAttrs, LrnAttrs, PoolAttrs, PoolKind, SoftmaxAttrs, UnaryOp,
};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::depthwise::{Axis, Win, rows};
use super::kb::{F32X4, Kb};
use super::scalar::{self, cl, from_i64, to_i64};
use crate::error::Result;
use crate::tables::{matmul_batches, scatter_range, tap_range};

/// Applies a fused activation in place over `n` contiguous elements.
pub fn act_inplace(
    kb: &mut Kb,
    act: &Option<UnaryOp>,
    ptr: Value,
    n: usize,
    d: DType,
) -> Result<()> {
    let Some(u) = act else { return Ok(()) };
    let n = n as i64;
    let mut done = 0;
    if d == DType::F32 && scalar::unary_vectorizes(u) {
        done = n / 4 * 4;
        kb.for_range(0, done, 4, |kb, i| {
            let a = kb.at(ptr, i, 4);
            let v = kb.load(F32X4, a, 0);
            let r = scalar::unary_float(kb, u, v)?;
            kb.store(r, a, 0);
            Ok(())
        })?;
    }
    kb.for_range(done, n, 1, |kb, i| {
        let a = kb.at(ptr, i, d.size() as i64);
        let v = kb.load(cl(d), a, 0);
        let r = scalar::unary(kb, u, v, d)?;
        kb.store(r, a, 0);
        Ok(())
    })
}

/// `dst[i * dstep] += w * src[i * sstep]` for `i` in `[lo, hi)` (dynamic
/// bounds), four lanes at a time when both are contiguous f32.
#[allow(clippy::too_many_arguments)]
fn axpy_dyn(
    kb: &mut Kb,
    d: DType,
    w: Value,
    dst: Value,
    dstep: i64,
    src: Value,
    sstep: i64,
    lo: Value,
    hi: Value,
) -> Result<()> {
    let es = d.size() as i64;
    let mut start = lo;
    if d == DType::F32 && dstep == 1 && sstep == 1 {
        let wv = kb.splat(w);
        let n = kb.b.ins().isub(hi, lo);
        let n4 = kb.b.ins().band_imm_s(n, -4);
        start = kb.b.ins().iadd(lo, n4);
        let zero = kb.ci(0);
        let quads = kb.b.ins().ushr_imm_s(n4, 2);
        kb.for_dyn(zero, quads, |kb, q| {
            let i = kb.b.ins().ishl_imm_s(q, 2);
            let i = kb.b.ins().iadd(i, lo);
            let ya = kb.at(dst, i, es);
            let xa = kb.at(src, i, es);
            let yv = kb.load(F32X4, ya, 0);
            let xv = kb.load(F32X4, xa, 0);
            let r = kb.mul_add(wv, xv, yv);
            kb.store(r, ya, 0);
            Ok(())
        })?;
    }
    kb.for_dyn(start, hi, |kb, i| {
        let ya = kb.at(dst, i, es * dstep);
        let xa = kb.at(src, i, es * sstep);
        let yv = kb.load(cl(d), ya, 0);
        let xv = kb.load(cl(d), xa, 0);
        let r = kb.mul_add(w, xv, yv);
        kb.store(r, ya, 0);
        Ok(())
    })
}

/// Fills `n` elements with the bias value or zero.
fn fill(kb: &mut Kb, ptr: Value, n: usize, v: Value, d: DType) -> Result<()> {
    let n = n as i64;
    let mut done = 0;
    if d == DType::F32 {
        let s = kb.splat(v);
        done = n / 4 * 4;
        kb.for_range(0, done, 4, |kb, i| {
            let a = kb.at(ptr, i, 4);
            kb.store(s, a, 0);
            Ok(())
        })?;
    }
    kb.for_range(done, n, 1, |kb, i| {
        let a = kb.at(ptr, i, d.size() as i64);
        kb.store(v, a, 0);
        Ok(())
    })
}

/// Per-axis tap tables: for each kernel tap, the valid range of the
/// iterated positions, as an i64 table `[lo0, hi0, lo1, hi1, ...]`.
fn range_table(kb: &mut Kb, ranges: &[(usize, usize)]) -> Result<Value> {
    let v: Vec<i64> = ranges
        .iter()
        .flat_map(|&(l, h)| [l as i64, h as i64])
        .collect();
    kb.table_i64(&v)
}

/// Convolution (`Gather`: each output reads a window of the input) or
/// transposed convolution (`Scatter`: each input adds a window to the
/// output).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Gather,
    Scatter,
}

/// The geometry shared by both directions.
struct Geo<'a> {
    dir: Dir,
    strides: &'a [usize],
    dilations: &'a [usize],
    pads: &'a [usize],
    k_sp: &'a [usize],
    ist: Vec<usize>,
    ost: Vec<usize>,
    kst: Vec<usize>,
    /// Per spatial axis: `[lo, hi)` of the iterated positions of every tap.
    tabs: Vec<Value>,
    d: DType,
}

/// Direct convolution of any spatial rank. Per output channel: fill with
/// the bias, accumulate every (input channel, tap) over that tap's valid
/// output range, apply the activation.
pub fn conv(
    kb: &mut Kb,
    a: &ConvAttrs,
    x: &TensorType,
    w: &TensorType,
    bias: bool,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let cg = x.dims[1] / a.group;
    conv_general(
        kb,
        Dir::Gather,
        (&a.strides, &a.dilations, &a.pads),
        a.group,
        x,
        w,
        bias,
        y,
        args,
        // Weights [M, C/group, K...]: row of (o, ic).
        &|kb: &mut Kb, o, _oc, _ci, ic| {
            let r = kb.b.ins().imul_imm_s(o, cg as i64);
            kb.b.ins().iadd(r, ic)
        },
    )?;
    if let Some(u) = &a.act {
        let osz: usize = y.dims[2..].iter().product();
        let yb = args.outs[0];
        let rows = (y.dims[0] * y.dims[1]) as i64;
        kb.for_range(0, rows, 1, |kb, r| {
            let yo = kb.at(yb, r, (osz * y.dtype.size()) as i64);
            act_inplace(kb, &Some(*u), yo, osz, y.dtype)
        })?;
    }
    Ok(())
}

/// Transposed convolution in scatter form.
pub fn conv_transpose(
    kb: &mut Kb,
    a: &ConvTransposeAttrs,
    x: &TensorType,
    w: &TensorType,
    bias: bool,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let mg = y.dims[1] / a.group;
    conv_general(
        kb,
        Dir::Scatter,
        (&a.strides, &a.dilations, &a.pads),
        a.group,
        x,
        w,
        bias,
        y,
        args,
        // Weights [C, M/group, K...]: row of (ci, oc).
        &|kb: &mut Kb, _o, oc, ci, _ic| {
            let r = kb.b.ins().imul_imm_s(ci, mg as i64);
            kb.b.ins().iadd(r, oc)
        },
    )
}

/// The loops both directions share: image, output channel (filled with its
/// bias), input channel of its group, then every tap.
#[allow(clippy::too_many_arguments)]
fn conv_general(
    kb: &mut Kb,
    dir: Dir,
    (strides_, dilations, pads): (&[usize], &[usize], &[usize]),
    group: usize,
    x: &TensorType,
    w: &TensorType,
    bias: bool,
    y: &TensorType,
    args: &Args,
    wrow: &dyn Fn(&mut Kb, Value, Value, Value, Value) -> Value,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let n = x.rank() - 2;
    let (batch, c, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let (cg, mg) = (c / group, m / group);
    let (in_sp, out_sp, k_sp) = (&x.dims[2..], &y.dims[2..], &w.dims[2..]);
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let xb = args.x(kb, 0)?;
    let wb = args.x(kb, 1)?;
    let bb = if bias { Some(args.x(kb, 2)?) } else { None };
    let yb = args.outs[0];
    let mut tabs = Vec::with_capacity(n);
    for dd in 0..n {
        let r: Vec<(usize, usize)> = (0..k_sp[dd])
            .map(|k| {
                let f = match dir {
                    Dir::Gather => tap_range,
                    Dir::Scatter => scatter_range,
                };
                f(
                    k,
                    strides_[dd],
                    dilations[dd],
                    pads[dd],
                    in_sp[dd],
                    out_sp[dd],
                )
            })
            .collect();
        tabs.push(range_table(kb, &r)?);
    }
    let geo = Geo {
        dir,
        strides: strides_,
        dilations,
        pads,
        k_sp,
        ist: strides(in_sp),
        ost: strides(out_sp),
        kst: strides(k_sp),
        tabs,
        d,
    };
    kb.for_range(0, batch as i64, 1, |kb, nb| {
        kb.for_range(0, m as i64, 1, |kb, o| {
            let g = kb.b.ins().udiv_imm_s(o, mg as i64);
            let oc = kb.b.ins().urem_imm_s(o, mg as i64);
            let nm = kb.b.ins().imul_imm_s(nb, m as i64);
            let row = kb.b.ins().iadd(nm, o);
            let yo = kb.at(yb, row, osz as i64 * es);
            let init = match bb {
                Some(b) => {
                    let ba = kb.at(b, o, es);
                    kb.load(cl(d), ba, 0)
                }
                None => kb.cf(cl(d), 0.0),
            };
            fill(kb, yo, osz, init, d)?;
            kb.for_range(0, cg as i64, 1, |kb, ic| {
                let gc = kb.b.ins().imul_imm_s(g, cg as i64);
                let ci = kb.b.ins().iadd(gc, ic);
                let nc = kb.b.ins().imul_imm_s(nb, c as i64);
                let xr = kb.b.ins().iadd(nc, ci);
                let xi = kb.at(xb, xr, isz as i64 * es);
                let wr = wrow(kb, o, oc, ci, ic);
                let wk = kb.at(wb, wr, ksz as i64 * es);
                taps(kb, &geo, 0, wk, xi, yo, &mut vec![])
            })
        })
    })
}

/// Loops over the kernel taps of axis `dd` and beyond, moving the window
/// origin of the side that is offset by the tap (input for gather, output
/// for scatter), then over the positions each tap reaches.
fn taps(
    kb: &mut Kb,
    g: &Geo,
    dd: usize,
    wk: Value,
    xi: Value,
    yo: Value,
    ks: &mut Vec<Value>,
) -> Result<()> {
    let es = g.d.size() as i64;
    let n = g.k_sp.len();
    if dd == n {
        let wv = kb.load(cl(g.d), wk, 0);
        let ks = ks.clone();
        return positions(kb, g, 0, &ks, xi, yo, wv);
    }
    kb.for_range(0, g.k_sp[dd] as i64, 1, |kb, k| {
        let w2 = kb.at(wk, k, g.kst[dd] as i64 * es);
        // Offset of this tap: (k * dil - pad) along the offset side.
        let kd = kb.b.ins().imul_imm_s(k, g.dilations[dd] as i64);
        let kd = kb.b.ins().iadd_imm_s(kd, -(g.pads[dd] as i64));
        let (x2, y2) = match g.dir {
            Dir::Gather => (kb.at(xi, kd, g.ist[dd] as i64 * es), yo),
            Dir::Scatter => (xi, kb.at(yo, kd, g.ost[dd] as i64 * es)),
        };
        ks.push(k);
        let r = taps(kb, g, dd + 1, w2, x2, y2, ks);
        ks.pop();
        r
    })
}

/// Positions `[lo, hi)` of a tap along axis `dd` (from the tables); the
/// innermost axis is one strided multiply-add sweep.
fn positions(
    kb: &mut Kb,
    g: &Geo,
    dd: usize,
    ks: &[Value],
    xi: Value,
    yo: Value,
    wv: Value,
) -> Result<()> {
    let es = g.d.size() as i64;
    let ta = kb.at(g.tabs[dd], ks[dd], 16);
    let lo = kb.load(types::I64, ta, 0);
    let hi = kb.load(types::I64, ta, 8);
    let s = g.strides[dd] as i64;
    // Per step of the iterated position: the gathered side moves by the
    // stride, the other by one.
    let (xstep, ystep) = match g.dir {
        Dir::Gather => (s * g.ist[dd] as i64, g.ost[dd] as i64),
        Dir::Scatter => (g.ist[dd] as i64, s * g.ost[dd] as i64),
    };
    if dd + 1 == g.k_sp.len() {
        return axpy_dyn(kb, g.d, wv, yo, ystep, xi, xstep, lo, hi);
    }
    kb.for_dyn(lo, hi, |kb, i| {
        let y2 = kb.at(yo, i, ystep * es);
        let x2 = kb.at(xi, i, xstep * es);
        positions(kb, g, dd + 1, ks, x2, y2, wv)
    })
}

/// `y[j] += av * b[j]` for `j` in `0..n` (constant), vectorized for f32.
fn axpy_const(kb: &mut Kb, d: DType, av: Value, y: Value, b: Value, n: usize) -> Result<()> {
    let n = n as i64;
    let es = d.size() as i64;
    let mut done = 0;
    if d == DType::F32 {
        let wv = kb.splat(av);
        done = n / 4 * 4;
        kb.for_range(0, done, 4, |kb, j| {
            let ya = kb.at(y, j, 4);
            let ba = kb.at(b, j, 4);
            let yv = kb.load(F32X4, ya, 0);
            let bv = kb.load(F32X4, ba, 0);
            let r = kb.mul_add(wv, bv, yv);
            kb.store(r, ya, 0);
            Ok(())
        })?;
    }
    kb.for_range(done, n, 1, |kb, j| {
        let ya = kb.at(y, j, es);
        let ba = kb.at(b, j, es);
        let yv = kb.load(cl(d), ya, 0);
        let bv = kb.load(cl(d), ba, 0);
        let p = kb.b.ins().fmul(av, bv);
        let r = kb.b.ins().fadd(yv, p);
        kb.store(r, ya, 0);
        Ok(())
    })
}

/// Gemm: `Y = alpha * A' B' + beta * C`, then the fused activation.
pub fn gemm(
    kb: &mut Kb,
    g: &GemmAttrs,
    at: &TensorType,
    ct: Option<&TensorType>,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let ty = cl(d);
    let (m, nn) = (y.dims[0], y.dims[1]);
    let k = if g.trans_a { at.dims[0] } else { at.dims[1] };
    let (ab, bb, yb) = (args.x(kb, 0)?, args.x(kb, 1)?, args.outs[0]);
    let alpha = kb.cf(ty, g.alpha as f64);
    if let Some(ct) = ct {
        let cb = args.x(kb, 2)?;
        let (cs_row, cs_col) = crate::tables::gemm_c_strides(&ct.dims, m, nn);
        let (cs_row, cs_col) = (cs_row as i64, cs_col as i64);
        let beta = kb.cf(ty, g.beta as f64);
        kb.for_range(0, m as i64, 1, |kb, i| {
            let cr = kb.at(cb, i, cs_row * es);
            let yr = kb.at(yb, i, nn as i64 * es);
            kb.for_range(0, nn as i64, 1, |kb, j| {
                let ca = kb.at(cr, j, cs_col * es);
                let cv = kb.load(ty, ca, 0);
                let v = kb.b.ins().fmul(beta, cv);
                let ya = kb.at(yr, j, es);
                kb.store(v, ya, 0);
                Ok(())
            })
        })?;
    } else {
        let z = kb.cf(ty, 0.0);
        fill(kb, yb, m * nn, z, d)?;
    }
    let (sa_i, sa_p) = if g.trans_a {
        (1, m as i64)
    } else {
        (k as i64, 1)
    };
    kb.for_range(0, m as i64, 1, |kb, i| {
        let yr = kb.at(yb, i, nn as i64 * es);
        let ar = kb.at(ab, i, sa_i * es);
        if g.trans_b {
            // B is [N, K]: dot products along contiguous rows.
            kb.for_range(0, nn as i64, 1, |kb, j| {
                let br = kb.at(bb, j, k as i64 * es);
                let dot = dot(kb, d, ar, sa_p, br, 1, k)?;
                let ya = kb.at(yr, j, es);
                let yv = kb.load(ty, ya, 0);
                let r = kb.b.ins().fmul(alpha, dot);
                let r = kb.b.ins().fadd(yv, r);
                kb.store(r, ya, 0);
                Ok(())
            })?;
        } else {
            kb.for_range(0, k as i64, 1, |kb, p| {
                let aa = kb.at(ar, p, sa_p * es);
                let av = kb.load(ty, aa, 0);
                let av = kb.b.ins().fmul(alpha, av);
                let br = kb.at(bb, p, nn as i64 * es);
                axpy_const(kb, d, av, yr, br, nn)
            })?;
        }
        act_inplace(kb, &g.act, yr, nn, d)
    })
}

/// `sum_p a[p * sa] * b[p * sb]` over `k` terms.
fn dot(kb: &mut Kb, d: DType, a: Value, sa: i64, b: Value, sb: i64, k: usize) -> Result<Value> {
    let es = d.size() as i64;
    let ty = cl(d);
    let k = k as i64;
    if d == DType::F32 && sa == 1 && sb == 1 && k >= 8 {
        let z = kb.cf(F32X4, 0.0);
        let acc = kb.var(F32X4, z);
        let k4 = k / 4 * 4;
        kb.for_range(0, k4, 4, |kb, p| {
            let aa = kb.at(a, p, 4);
            let ba = kb.at(b, p, 4);
            let av = kb.load(F32X4, aa, 0);
            let bv = kb.load(F32X4, ba, 0);
            let s = kb.get(acc);
            let r = kb.mul_add(av, bv, s);
            kb.set(acc, r);
            Ok(())
        })?;
        let v = kb.get(acc);
        let mut s = kb.b.ins().extractlane(v, 0);
        for l in 1..4u8 {
            let e = kb.b.ins().extractlane(v, l);
            s = kb.b.ins().fadd(s, e);
        }
        let sv = kb.var(ty, s);
        kb.for_range(k4, k, 1, |kb, p| {
            let aa = kb.at(a, p, 4);
            let ba = kb.at(b, p, 4);
            let av = kb.load(ty, aa, 0);
            let bv = kb.load(ty, ba, 0);
            let s = kb.get(sv);
            let r = kb.mul_add(av, bv, s);
            kb.set(sv, r);
            Ok(())
        })?;
        return Ok(kb.get(sv));
    }
    let z = kb.cf(ty, 0.0);
    let acc = kb.var(ty, z);
    kb.for_range(0, k, 1, |kb, p| {
        let aa = kb.at(a, p, sa * es);
        let ba = kb.at(b, p, sb * es);
        let av = kb.load(ty, aa, 0);
        let bv = kb.load(ty, ba, 0);
        let s = kb.get(acc);
        let pr = kb.b.ins().fmul(av, bv);
        let r = kb.b.ins().fadd(s, pr);
        kb.set(acc, r);
        Ok(())
    })?;
    Ok(kb.get(acc))
}

/// MatMul with numpy batching; integer products wrap in 64 bits.
pub fn matmul(
    kb: &mut Kb,
    at: &TensorType,
    bt: &TensorType,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let ty = cl(d);
    let mb = matmul_batches(at, bt);
    let (m, k, n) = (mb.m, mb.k, mb.n);
    let nb = mb.a_off.len();
    let aoff: Vec<i64> = mb.a_off.iter().map(|&o| o as i64 * es).collect();
    let boff: Vec<i64> = mb.b_off.iter().map(|&o| o as i64 * es).collect();
    let (ab, bb, yb) = (args.x(kb, 0)?, args.x(kb, 1)?, args.outs[0]);
    if y.is_empty() {
        return Ok(());
    }
    let at_ = kb.table_i64(&aoff)?;
    let bt_ = kb.table_i64(&boff)?;
    kb.for_range(0, nb as i64, 1, |kb, bi| {
        let ta = kb.at(at_, bi, 8);
        let tb = kb.at(bt_, bi, 8);
        let oa = kb.load(types::I64, ta, 0);
        let ob = kb.load(types::I64, tb, 0);
        let a = kb.b.ins().iadd(ab, oa);
        let b = kb.b.ins().iadd(bb, ob);
        let yo = kb.at(yb, bi, (m * n) as i64 * es);
        kb.for_range(0, m as i64, 1, |kb, i| {
            let yr = kb.at(yo, i, n as i64 * es);
            let ar = kb.at(a, i, k as i64 * es);
            if d.is_float() {
                let z = kb.cf(ty, 0.0);
                fill(kb, yr, n, z, d)?;
                kb.for_range(0, k as i64, 1, |kb, p| {
                    let aa = kb.at(ar, p, es);
                    let av = kb.load(ty, aa, 0);
                    let br = kb.at(b, p, n as i64 * es);
                    axpy_const(kb, d, av, yr, br, n)
                })
            } else {
                kb.for_range(0, n as i64, 1, |kb, j| {
                    let z = kb.ci(0);
                    let acc = kb.var(types::I64, z);
                    kb.for_range(0, k as i64, 1, |kb, p| {
                        let aa = kb.at(ar, p, es);
                        let av = kb.load(ty, aa, 0);
                        let av = to_i64(kb, av, d);
                        let bp = kb.b.ins().imul_imm_s(p, n as i64);
                        let bj = kb.b.ins().iadd(bp, j);
                        let ba = kb.at(b, bj, es);
                        let bv = kb.load(ty, ba, 0);
                        let bv = to_i64(kb, bv, d);
                        let pr = kb.b.ins().imul(av, bv);
                        let s = kb.get(acc);
                        let s = kb.b.ins().iadd(s, pr);
                        kb.set(acc, s);
                        Ok(())
                    })?;
                    let s = kb.get(acc);
                    let s = from_i64(kb, s, d);
                    let ya = kb.at(yr, j, es);
                    kb.store(s, ya, 0);
                    Ok(())
                })
            }
        })
    })
}

/// f32 pooling through the fast forms: a window covering each whole
/// (unpadded) plane is a global pool; 2-D windows on wide planes run the
/// row-vector window kernel shared with depthwise convolution.
fn pool_fast(
    kb: &mut Kb,
    a: &PoolAttrs,
    x: &TensorType,
    y: &TensorType,
    args: &Args,
) -> Result<bool> {
    if y.dtype != DType::F32 {
        return Ok(false);
    }
    let n = a.kernel.len();
    let whole = a.kernel[..] == x.dims[2..]
        && a.pads.iter().all(|&p| p == 0)
        && y.dims[2..].iter().all(|&d| d == 1)
        && a.dilations.iter().all(|&d| d == 1);
    if whole {
        global_pool(kb, a.kind, x, args)?;
        return Ok(true);
    }
    if n != 2 {
        return Ok(false);
    }
    let axis = |d: usize| Axis {
        input: x.dims[2 + d],
        output: y.dims[2 + d],
        k: a.kernel[d],
        stride: a.strides[d],
        dil: a.dilations[d],
        pad: a.pads[d],
    };
    let (h, w) = (axis(0), axis(1));
    if w.output < 4 || w.stride > 2 || h.border() > 16 || w.border() > 16 {
        return Ok(false);
    }
    let op = match a.kind {
        PoolKind::Max => Win::Max,
        PoolKind::Avg => Win::Avg {
            include_pad: a.count_include_pad,
            pad_end_h: a.pads[2],
            pad_end_w: a.pads[3],
        },
    };
    rows(kb, op, &None, x, h, w, None, None, args)?;
    Ok(true)
}

/// Per axis: the valid kernel taps `[klo, khi)` of every output position
/// and the counts the average divides by.
fn pool_tables(
    a: &PoolAttrs,
    in_sp: &[usize],
    out_sp: &[usize],
) -> (Vec<Vec<(i64, i64)>>, Vec<Vec<i64>>) {
    let n = a.kernel.len();
    let mut ranges = Vec::with_capacity(n);
    let mut full = Vec::with_capacity(n);
    for d in 0..n {
        let (s, dil, pad, k) = (
            a.strides[d] as i64,
            a.dilations[d] as i64,
            a.pads[d] as i64,
            a.kernel[d] as i64,
        );
        let inl = in_sp[d] as i64;
        let mut r = Vec::with_capacity(out_sp[d]);
        let mut f = Vec::with_capacity(out_sp[d]);
        for o in 0..out_sp[d] as i64 {
            let valid: Vec<i64> = (0..k)
                .filter(|kk| (0..inl).contains(&(o * s + kk * dil - pad)))
                .collect();
            r.push(match (valid.first(), valid.last()) {
                (Some(&l), Some(&h)) => (l, h + 1),
                _ => (0, 0),
            });
            let hi = inl + a.pads[n + d] as i64;
            f.push(
                (0..k)
                    .filter(|kk| (-pad..hi).contains(&(o * s + kk * dil - pad)))
                    .count() as i64,
            );
        }
        ranges.push(r);
        full.push(f);
    }
    (ranges, full)
}

/// Max / average pooling over any spatial rank.
pub fn pool(kb: &mut Kb, a: &PoolAttrs, x: &TensorType, y: &TensorType, args: &Args) -> Result<()> {
    if pool_fast(kb, a, x, y, args)? {
        return Ok(());
    }
    let d = y.dtype;
    let es = d.size() as i64;
    let n = a.kernel.len();
    let (in_sp, out_sp) = (&x.dims[2..], &y.dims[2..]);
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let (ist, ost) = (strides(in_sp), strides(out_sp));
    let planes = x.dims[0] * x.dims[1];
    let (ranges, full) = pool_tables(a, in_sp, out_sp);
    let mut rt = Vec::with_capacity(n);
    let mut ft = Vec::with_capacity(n);
    for dd in 0..n {
        let v: Vec<i64> = ranges[dd].iter().flat_map(|&(l, h)| [l, h]).collect();
        rt.push(kb.table_i64(&v)?);
        ft.push(kb.table_i64(&full[dd])?);
    }
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    if y.is_empty() {
        return Ok(());
    }
    let float = d.is_float();
    let acc_ty = if float { cl(d) } else { types::I64 };
    kb.for_range(0, planes as i64, 1, |kb, pl| {
        let xp = kb.at(xb, pl, isz as i64 * es);
        let yp = kb.at(yb, pl, osz as i64 * es);
        pool_out(
            kb,
            a,
            d,
            acc_ty,
            &ist,
            &ost,
            out_sp,
            &rt,
            &ft,
            0,
            xp,
            yp,
            &mut vec![],
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn pool_out(
    kb: &mut Kb,
    a: &PoolAttrs,
    d: DType,
    acc_ty: Type,
    ist: &[usize],
    ost: &[usize],
    out_sp: &[usize],
    rt: &[Value],
    ft: &[Value],
    dd: usize,
    xp: Value,
    yp: Value,
    os: &mut Vec<Value>,
) -> Result<()> {
    let n = a.kernel.len();
    let es = d.size() as i64;
    if dd == n {
        let init = match (a.kind, d.is_float()) {
            (PoolKind::Max, true) => kb.cf(acc_ty, f64::NEG_INFINITY),
            (PoolKind::Max, false) => kb.ci(d.int_range().expect("int").0),
            (PoolKind::Avg, true) => kb.cf(acc_ty, 0.0),
            (PoolKind::Avg, false) => kb.ci(0),
        };
        let acc = kb.var(acc_ty, init);
        // Window origin: o * stride - pad per axis.
        let mut base = xp;
        for (k, &o) in os.iter().enumerate() {
            let p = kb.b.ins().imul_imm_s(o, a.strides[k] as i64);
            let p = kb.b.ins().iadd_imm_s(p, -(a.pads[k] as i64));
            base = kb.at(base, p, ist[k] as i64 * es);
        }
        let os2 = os.clone();
        pool_window(kb, a, d, ist, rt, 0, &os2, base, acc)?;
        let v = kb.get(acc);
        let r = match a.kind {
            PoolKind::Max if d.is_float() => v,
            PoolKind::Max => from_i64(kb, v, d),
            PoolKind::Avg => {
                // Divisor: product of per-axis counts.
                let mut cnt = kb.ci(1);
                for (k, &o) in os2.iter().enumerate() {
                    let c = if a.count_include_pad {
                        let fa = kb.at(ft[k], o, 8);
                        kb.load(types::I64, fa, 0)
                    } else {
                        let ra = kb.at(rt[k], o, 16);
                        let lo = kb.load(types::I64, ra, 0);
                        let hi = kb.load(types::I64, ra, 8);
                        kb.b.ins().isub(hi, lo)
                    };
                    cnt = kb.b.ins().imul(cnt, c);
                }
                if d.is_float() {
                    let c = kb.b.ins().fcvt_from_sint(acc_ty, cnt);
                    let q = kb.b.ins().fdiv(v, c);
                    let z = kb.cf(acc_ty, 0.0);
                    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, cnt, 0);
                    kb.b.ins().select(zero, z, q)
                } else {
                    let one = kb.ci(1);
                    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, cnt, 0);
                    let safe = kb.b.ins().select(zero, one, cnt);
                    let q = kb.b.ins().sdiv(v, safe);
                    let z = kb.ci(0);
                    let q = kb.b.ins().select(zero, z, q);
                    from_i64(kb, q, d)
                }
            }
        };
        kb.store(r, yp, 0);
        return Ok(());
    }
    kb.for_range(0, out_sp[dd] as i64, 1, |kb, o| {
        let y2 = kb.at(yp, o, ost[dd] as i64 * es);
        os.push(o);
        let r = pool_out(
            kb,
            a,
            d,
            acc_ty,
            ist,
            ost,
            out_sp,
            rt,
            ft,
            dd + 1,
            xp,
            y2,
            os,
        );
        os.pop();
        r
    })
}

#[allow(clippy::too_many_arguments)]
fn pool_window(
    kb: &mut Kb,
    a: &PoolAttrs,
    d: DType,
    ist: &[usize],
    rt: &[Value],
    dd: usize,
    os: &[Value],
    base: Value,
    acc: Variable,
) -> Result<()> {
    let n = a.kernel.len();
    let es = d.size() as i64;
    let ra = kb.at(rt[dd], os[dd], 16);
    let lo = kb.load(types::I64, ra, 0);
    let hi = kb.load(types::I64, ra, 8);
    kb.for_dyn(lo, hi, |kb, k| {
        let p = kb.at(base, k, a.dilations[dd] as i64 * ist[dd] as i64 * es);
        if dd + 1 < n {
            return pool_window(kb, a, d, ist, rt, dd + 1, os, p, acc);
        }
        let v = kb.load(cl(d), p, 0);
        let s = kb.get(acc);
        let r = match (a.kind, d.is_float()) {
            (PoolKind::Max, true) => super::reduce::nan_sticky(kb, FloatCC::GreaterThan, v, s),
            (PoolKind::Max, false) => {
                let v = to_i64(kb, v, d);
                kb.b.ins().smax(s, v)
            }
            (PoolKind::Avg, true) => kb.b.ins().fadd(s, v),
            (PoolKind::Avg, false) => {
                let v = to_i64(kb, v, d);
                kb.b.ins().iadd(s, v)
            }
        };
        kb.set(acc, r);
        Ok(())
    })
}

/// Global average / max pooling over each plane.
pub fn global_pool(kb: &mut Kb, kind: PoolKind, x: &TensorType, args: &Args) -> Result<()> {
    if x.dtype == DType::F32 && x.dims[2..].iter().product::<usize>() >= 8 {
        return global_pool_f32(kb, kind, x, args);
    }
    let d = x.dtype;
    let ty = cl(d);
    let es = d.size() as i64;
    let inner: usize = x.dims[2..].iter().product();
    let planes = x.dims[0] * x.dims[1];
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    kb.for_range(0, planes as i64, 1, |kb, pl| {
        let xp = kb.at(xb, pl, inner as i64 * es);
        let init = match kind {
            PoolKind::Avg => kb.cf(ty, 0.0),
            PoolKind::Max => kb.cf(ty, f64::NEG_INFINITY),
        };
        let acc = kb.var(ty, init);
        kb.for_range(0, inner as i64, 1, |kb, p| {
            let a = kb.at(xp, p, es);
            let v = kb.load(ty, a, 0);
            let s = kb.get(acc);
            let r = match kind {
                PoolKind::Avg => kb.b.ins().fadd(s, v),
                PoolKind::Max => kb.fselect(FloatCC::GreaterThan, v, s, v, s),
            };
            kb.set(acc, r);
            Ok(())
        })?;
        let mut r = kb.get(acc);
        if kind == PoolKind::Avg {
            let c = kb.cf(ty, inner as f64);
            r = kb.b.ins().fdiv(r, c);
        }
        let ya = kb.at(yb, pl, es);
        kb.store(r, ya, 0);
        Ok(())
    })
}

/// Global pooling of f32 planes: two f32x4 partial results per plane,
/// combined across lanes at the end (max ignores NaN, as the scalar form).
fn global_pool_f32(kb: &mut Kb, kind: PoolKind, x: &TensorType, args: &Args) -> Result<()> {
    let inner = x.dims[2..].iter().product::<usize>() as i64;
    let planes = (x.dims[0] * x.dims[1]) as i64;
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    let ty = types::F32;
    let step = |kb: &mut Kb, a: Value, v: Value| -> Value {
        match kind {
            PoolKind::Avg => kb.b.ins().fadd(a, v),
            PoolKind::Max => kb.fselect(FloatCC::GreaterThan, v, a, v, a),
        }
    };
    kb.for_range(0, planes, 1, |kb, pl| {
        let xp = kb.at(xb, pl, inner * 4);
        let init = match kind {
            PoolKind::Avg => 0.0,
            PoolKind::Max => f64::NEG_INFINITY,
        };
        let iv = kb.cf(F32X4, init);
        let a0 = kb.var(F32X4, iv);
        let a1 = kb.var(F32X4, iv);
        let n8 = inner / 8;
        kb.for_range(0, n8, 1, |kb, i| {
            let p = kb.at(xp, i, 32);
            let v0 = kb.load(F32X4, p, 0);
            let v1 = kb.load(F32X4, p, 16);
            let s0 = kb.get(a0);
            let s1 = kb.get(a1);
            let r0 = step(kb, s0, v0);
            let r1 = step(kb, s1, v1);
            kb.set(a0, r0);
            kb.set(a1, r1);
            Ok(())
        })?;
        let s0 = kb.get(a0);
        let s1 = kb.get(a1);
        let v = step(kb, s0, s1);
        let mut acc = kb.b.ins().extractlane(v, 0);
        for l in 1..4u8 {
            let e = kb.b.ins().extractlane(v, l);
            acc = step(kb, acc, e);
        }
        let tail = kb.var(ty, acc);
        kb.for_range(n8 * 8, inner, 1, |kb, i| {
            let p = kb.at(xp, i, 4);
            let e = kb.load(ty, p, 0);
            let a = kb.get(tail);
            let r = step(kb, a, e);
            kb.set(tail, r);
            Ok(())
        })?;
        let mut r = kb.get(tail);
        if kind == PoolKind::Avg {
            let c = kb.cf(ty, inner as f64);
            r = kb.b.ins().fdiv(r, c);
        }
        let ya = kb.at(yb, pl, 4);
        kb.store(r, ya, 0);
        Ok(())
    })
}

/// Softmax / LogSoftmax along one axis (safe in place).
pub fn softmax(kb: &mut Kb, a: &SoftmaxAttrs, x: &TensorType, args: &Args) -> Result<()> {
    let d = x.dtype;
    let ty = cl(d);
    let es = d.size() as i64;
    let n = x.dims[a.axis] as i64;
    let inner: usize = x.dims[a.axis + 1..].iter().product();
    let outer: usize = x.dims[..a.axis].iter().product();
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    if x.is_empty() {
        return Ok(());
    }
    let st = inner as i64 * es;
    kb.for_range(0, outer as i64, 1, |kb, o| {
        kb.for_range(0, inner as i64, 1, |kb, i| {
            let ob = kb.b.ins().imul_imm_s(o, n * inner as i64);
            let base = kb.b.ins().iadd(ob, i);
            let xr = kb.at(xb, base, es);
            let yr = kb.at(yb, base, es);
            let ninf = kb.cf(ty, f64::NEG_INFINITY);
            let mx = kb.var(ty, ninf);
            kb.for_range(0, n, 1, |kb, k| {
                let p = kb.at(xr, k, st);
                let v = kb.load(ty, p, 0);
                let m = kb.get(mx);
                let r = kb.fselect(FloatCC::GreaterThan, v, m, v, m);
                kb.set(mx, r);
                Ok(())
            })?;
            let m = kb.get(mx);
            let z = kb.cf(ty, 0.0);
            let sum = kb.var(ty, z);
            kb.for_range(0, n, 1, |kb, k| {
                let p = kb.at(xr, k, st);
                let v = kb.load(ty, p, 0);
                let v = kb.b.ins().fsub(v, m);
                let e = kb.libm1("exp", v)?;
                if !a.log {
                    let q = kb.at(yr, k, st);
                    kb.store(e, q, 0);
                }
                let s = kb.get(sum);
                let s = kb.b.ins().fadd(s, e);
                kb.set(sum, s);
                Ok(())
            })?;
            let s = kb.get(sum);
            if a.log {
                let ls = kb.libm1("log", s)?;
                kb.for_range(0, n, 1, |kb, k| {
                    let p = kb.at(xr, k, st);
                    let v = kb.load(ty, p, 0);
                    let v = kb.b.ins().fsub(v, m);
                    let v = kb.b.ins().fsub(v, ls);
                    let q = kb.at(yr, k, st);
                    kb.store(v, q, 0);
                    Ok(())
                })
            } else {
                kb.for_range(0, n, 1, |kb, k| {
                    let q = kb.at(yr, k, st);
                    let v = kb.load(ty, q, 0);
                    let v = kb.b.ins().fdiv(v, s);
                    kb.store(v, q, 0);
                    Ok(())
                })
            }
        })
    })
}

/// Local response normalization across channels.
pub fn lrn(kb: &mut Kb, a: &LrnAttrs, x: &TensorType, args: &Args) -> Result<()> {
    let d = x.dtype;
    let ty = cl(d);
    let es = d.size() as i64;
    let c = x.dims[1] as i64;
    let inner = x.dims[2..].iter().product::<usize>() as i64;
    let lo = ((a.size - 1) / 2) as i64;
    let hi = a.size as i64 - 1 - lo;
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    let bias = kb.cf(ty, a.bias as f64);
    let alpha = kb.cf(ty, a.alpha as f64 / a.size as f64);
    let beta = kb.cf(ty, a.beta as f64);
    kb.for_range(0, x.dims[0] as i64, 1, |kb, nb| {
        kb.for_range(0, c, 1, |kb, ch| {
            let c0 = kb.b.ins().iadd_imm_s(ch, -lo);
            let zero = kb.ci(0);
            let c0 = kb.b.ins().smax(c0, zero);
            let c1 = kb.b.ins().iadd_imm_s(ch, hi + 1);
            let cm = kb.ci(c);
            let c1 = kb.b.ins().smin(c1, cm);
            let nc = kb.b.ins().imul_imm_s(nb, c);
            let plane = kb.b.ins().iadd(nc, ch);
            let xpl = kb.at(xb, plane, inner * es);
            let ypl = kb.at(yb, plane, inner * es);
            let nbase = kb.at(xb, nc, inner * es);
            kb.for_range(0, inner, 1, |kb, i| {
                let z = kb.cf(ty, 0.0);
                let sq = kb.var(ty, z);
                let col = kb.at(nbase, i, es);
                kb.for_dyn(c0, c1, |kb, k| {
                    let p = kb.at(col, k, inner * es);
                    let v = kb.load(ty, p, 0);
                    let v2 = kb.b.ins().fmul(v, v);
                    let s = kb.get(sq);
                    let s = kb.b.ins().fadd(s, v2);
                    kb.set(sq, s);
                    Ok(())
                })?;
                let s = kb.get(sq);
                let t = kb.b.ins().fmul(alpha, s);
                let t = kb.b.ins().fadd(bias, t);
                let pw = kb.libm2("pow", t, beta)?;
                let xa = kb.at(xpl, i, es);
                let xv = kb.load(ty, xa, 0);
                let r = kb.b.ins().fdiv(xv, pw);
                let ya = kb.at(ypl, i, es);
                kb.store(r, ya, 0);
                Ok(())
            })
        })
    })
}
