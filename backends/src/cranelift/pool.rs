//! Pooling: the direct kernel of any spatial rank (per-axis tap tables),
//! the 2-D row kernel through the window kernel shared with depthwise
//! convolution, and global pooling with a given number of partial results.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::Variable;
use nnc_ir::op::{PoolAttrs, PoolKind};
use nnc_ir::program::{GlobalPool, PoolRows, Window};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::depthwise::{RowsSpec, Win, rows};
use super::kb::{F32X4, Kb};
use super::scalar::{cl, from_i64, to_i64};
use crate::error::Result;

/// 2-D f32 pooling with vectors along each output row: the window kernel
/// shared with depthwise convolution, `k.width` columns per block.
pub fn rows_kernel(
    kb: &mut Kb,
    k: &PoolRows,
    a: &PoolAttrs,
    x: &TensorType,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let win = Window::pool(a, x, y);
    let [h, w] = win.axes[..] else {
        return Err(crate::error::BackendError::Other(
            "pool_rows needs a 2-D window".into(),
        ));
    };
    let op = match a.kind {
        PoolKind::Max => Win::Max,
        PoolKind::Avg => Win::Avg {
            include_pad: a.count_include_pad,
            pad_end_h: h.pad_end,
            pad_end_w: w.pad_end,
        },
    };
    let spec = RowsSpec {
        op,
        width: k.width,
        pad_copy: false,
        epi: None,
    };
    rows(kb, &spec, (x.dims[0], x.dims[1]), h, w, None, None, args)
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
                    // Rounded to nearest, ties away from zero (TFLite).
                    let q = super::integer::round_div(kb, v, safe);
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

/// Global average / max pooling over each plane with `k.partials`
/// partial results (1: one serial accumulator).
pub fn global_pool(
    kb: &mut Kb,
    k: &GlobalPool,
    kind: PoolKind,
    x: &TensorType,
    args: &Args,
) -> Result<()> {
    if k.partials > 1 {
        return global_pool_f32(kb, k.partials / 4, kind, x, args);
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

/// Global pooling of f32 planes: `nv` f32x4 vectors of partial results per
/// plane, folded into one and then across its lanes at the end (max
/// ignores NaN, as the scalar form).
fn global_pool_f32(
    kb: &mut Kb,
    nv: usize,
    kind: PoolKind,
    x: &TensorType,
    args: &Args,
) -> Result<()> {
    let inner = x.dims[2..].iter().product::<usize>() as i64;
    let planes = (x.dims[0] * x.dims[1]) as i64;
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    let ty = types::F32;
    let nv = nv.max(1);
    let chunk = 4 * nv as i64;
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
        let accs: Vec<_> = (0..nv).map(|_| kb.var(F32X4, iv)).collect();
        let n = inner / chunk;
        kb.for_range(0, n, 1, |kb, i| {
            let p = kb.at(xp, i, chunk * 4);
            for (k, &a) in accs.iter().enumerate() {
                let v = kb.load(F32X4, p, 16 * k as i64);
                let s = kb.get(a);
                let r = step(kb, s, v);
                kb.set(a, r);
            }
            Ok(())
        })?;
        // Fold the vectors into the first, then its lanes left to right.
        let mut v = kb.get(accs[0]);
        for &a in &accs[1..] {
            let s = kb.get(a);
            v = step(kb, v, s);
        }
        let mut acc = kb.b.ins().extractlane(v, 0);
        for l in 1..4u8 {
            let e = kb.b.ins().extractlane(v, l);
            acc = step(kb, acc, e);
        }
        let tail = kb.var(ty, acc);
        kb.for_range(n * chunk, inner, 1, |kb, i| {
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
