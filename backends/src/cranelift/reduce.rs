//! Reductions over a set of axes (with the accumulator type of the step's
//! kernel: f64 on hosts, f32 where double is emulated) and ArgMax /
//! ArgMin along one axis.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::Variable;
use nnc_ir::op::{ArgReduceAttrs, ReduceAttrs, ReduceKind};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::kb::Kb;
use super::scalar::{cl, f2i_range, from_i64, to_float, to_i64};
use crate::error::Result;

pub fn reduce(
    kb: &mut Kb,
    a: &ReduceAttrs,
    acc_dtype: DType,
    x: &TensorType,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    let d = x.dtype;
    let es = d.size() as i64;
    let xs = strides(&x.dims);
    let kept: Vec<usize> = (0..x.rank()).filter(|dd| !a.axes.contains(dd)).collect();
    let count: usize = a.axes.iter().map(|&dd| x.dims[dd]).product();
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    // Output index: kept dims in order (keepdims only adds unit dims).
    let mut kept_out = vec![0i64; kept.len()];
    let mut acc = 1i64;
    for (i, &dd) in kept.iter().enumerate().rev() {
        kept_out[i] = acc;
        acc *= x.dims[dd] as i64;
    }
    let ctx = Ctx {
        a,
        d,
        es,
        xs: &xs,
        x,
        count,
        acc: acc_dtype,
    };
    outer(kb, &ctx, &kept, &kept_out, 0, xb, yb, y.dtype)
}

struct Ctx<'a> {
    a: &'a ReduceAttrs,
    d: DType,
    es: i64,
    xs: &'a [usize],
    x: &'a TensorType,
    count: usize,
    /// Accumulator type (f32 or f64).
    acc: DType,
}

#[allow(clippy::too_many_arguments)]
fn outer(
    kb: &mut Kb,
    c: &Ctx,
    kept: &[usize],
    kept_out: &[i64],
    i: usize,
    xp: Value,
    yp: Value,
    yd: DType,
) -> Result<()> {
    if i < kept.len() {
        let dd = kept[i];
        return kb.for_range(0, c.x.dims[dd] as i64, 1, |kb, k| {
            let x2 = kb.at(xp, k, c.xs[dd] as i64 * c.es);
            let y2 = kb.at(yp, k, kept_out[i] * yd.size() as i64);
            outer(kb, c, kept, kept_out, i + 1, x2, y2, yd)
        });
    }
    let f = cl(c.acc);
    let mx = if c.a.kind == ReduceKind::LogSumExp {
        let ninf = kb.cf(f, f64::NEG_INFINITY);
        let mx = kb.var(f, ninf);
        inner(kb, c, 0, xp, &mut |kb, v| {
            let m = kb.get(mx);
            let r = kb.fselect(FloatCC::GreaterThan, v, m, v, m);
            kb.set(mx, r);
            Ok(())
        })?;
        let m = kb.get(mx);
        // An infinite max would make every term NaN; use 0 instead.
        let a = kb.b.ins().fabs(m);
        let inf = kb.cf(f, f64::INFINITY);
        let is_inf = kb.b.ins().fcmp(FloatCC::Equal, a, inf);
        let z = kb.cf(f, 0.0);
        Some(kb.b.ins().select(is_inf, z, m))
    } else {
        None
    };
    let init = match c.a.kind {
        ReduceKind::Prod => 1.0,
        ReduceKind::Max => f64::NEG_INFINITY,
        ReduceKind::Min => f64::INFINITY,
        _ => 0.0,
    };
    let iv = kb.cf(f, init);
    let acc = kb.var(f, iv);
    let kind = c.a.kind;
    inner(kb, c, 0, xp, &mut |kb, v| {
        let s = kb.get(acc);
        let r = match kind {
            ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => kb.b.ins().fadd(s, v),
            ReduceKind::Prod => kb.b.ins().fmul(s, v),
            ReduceKind::Max => nan_sticky(kb, FloatCC::GreaterThan, v, s),
            ReduceKind::Min => nan_sticky(kb, FloatCC::LessThan, v, s),
            ReduceKind::L1 => {
                let a = kb.b.ins().fabs(v);
                kb.b.ins().fadd(s, a)
            }
            ReduceKind::L2 | ReduceKind::SumSquare => {
                let q = kb.b.ins().fmul(v, v);
                kb.b.ins().fadd(s, q)
            }
            ReduceKind::LogSumExp => {
                let m = mx.expect("max computed");
                let t = kb.b.ins().fsub(v, m);
                let e = kb.libm1("exp", t)?;
                kb.b.ins().fadd(s, e)
            }
        };
        kb.set(acc, r);
        Ok(())
    })?;
    let s = kb.get(acc);
    let float = yd.is_float();
    let fin = match kind {
        ReduceKind::Mean => {
            let n = kb.cf(f, c.count as f64);
            let q = kb.b.ins().fdiv(s, n);
            if float {
                q
            } else {
                // Integer means truncate toward zero.
                kb.b.ins().trunc(q)
            }
        }
        ReduceKind::L2 => kb.b.ins().sqrt(s),
        ReduceKind::LogSum => kb.libm1("log", s)?,
        ReduceKind::LogSumExp => {
            let l = kb.libm1("log", s)?;
            kb.b.ins().fadd(mx.expect("max computed"), l)
        }
        _ => s,
    };
    let out = if float {
        to_float(kb, fin, c.acc, cl(yd))
    } else {
        let fin = to_float(kb, fin, c.acc, types::F64);
        let i = f2i_range(kb, fin, i64::MIN, i64::MAX);
        from_i64(kb, i, yd)
    };
    kb.store(out, yp, 0);
    Ok(())
}

/// `(v cc acc || v != v) ? v : acc`: the first NaN wins and stays.
pub fn nan_sticky(kb: &mut Kb, cc: FloatCC, v: Value, acc: Value) -> Value {
    let better = kb.b.ins().fcmp(cc, v, acc);
    let nan = kb.b.ins().fcmp(FloatCC::Unordered, v, v);
    let take = kb.b.ins().bor(better, nan);
    kb.b.ins().select(take, v, acc)
}

fn inner(
    kb: &mut Kb,
    c: &Ctx,
    i: usize,
    xp: Value,
    f: &mut dyn FnMut(&mut Kb, Value) -> Result<()>,
) -> Result<()> {
    if i == c.a.axes.len() {
        let v = kb.load(cl(c.d), xp, 0);
        let v = to_float(kb, v, c.d, cl(c.acc));
        return f(kb, v);
    }
    let dd = c.a.axes[i];
    kb.for_range(0, c.x.dims[dd] as i64, 1, |kb, r| {
        let x2 = kb.at(xp, r, c.xs[dd] as i64 * c.es);
        inner(kb, c, i + 1, x2, f)
    })
}

/// ArgMax / ArgMin along one axis, producing int64 indices.
pub fn arg_reduce(kb: &mut Kb, a: &ArgReduceAttrs, x: &TensorType, args: &Args) -> Result<()> {
    if x.is_empty() {
        return Ok(());
    }
    let d = x.dtype;
    let ty = cl(d);
    let es = d.size() as i64;
    let n = x.dims[a.axis] as i64;
    let outer: usize = x.dims[..a.axis].iter().product();
    let inner = x.dims[a.axis + 1..].iter().product::<usize>() as i64;
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    kb.for_range(0, outer as i64, 1, |kb, o| {
        kb.for_range(0, inner, 1, |kb, i| {
            let ob = kb.b.ins().imul_imm_s(o, n * inner);
            let base = kb.b.ins().iadd(ob, i);
            let xr = kb.at(xb, base, es);
            let first = kb.load(ty, xr, 0);
            let best: Variable = kb.var(ty, first);
            let z = kb.ci(0);
            let at = kb.var(types::I64, z);
            kb.for_range(1, n, 1, |kb, k| {
                let p = kb.at(xr, k, inner * es);
                let v = kb.load(ty, p, 0);
                let b = kb.get(best);
                let better = if d.is_float() {
                    let cc = match (a.max, a.select_last) {
                        (true, false) => FloatCC::GreaterThan,
                        (true, true) => FloatCC::GreaterThanOrEqual,
                        (false, false) => FloatCC::LessThan,
                        (false, true) => FloatCC::LessThanOrEqual,
                    };
                    kb.b.ins().fcmp(cc, v, b)
                } else {
                    let (vi, bi) = (to_i64(kb, v, d), to_i64(kb, b, d));
                    let cc = match (a.max, a.select_last) {
                        (true, false) => IntCC::SignedGreaterThan,
                        (true, true) => IntCC::SignedGreaterThanOrEqual,
                        (false, false) => IntCC::SignedLessThan,
                        (false, true) => IntCC::SignedLessThanOrEqual,
                    };
                    kb.b.ins().icmp(cc, vi, bi)
                };
                let nb = kb.b.ins().select(better, v, b);
                kb.set(best, nb);
                let cur = kb.get(at);
                let na = kb.b.ins().select(better, k, cur);
                kb.set(at, na);
                Ok(())
            })?;
            let r = kb.get(at);
            let oi = kb.b.ins().imul_imm_s(o, inner);
            let oi = kb.b.ins().iadd(oi, i);
            let ya = kb.at(yb, oi, 8);
            kb.store(r, ya, 0);
            Ok(())
        })
    })
}
