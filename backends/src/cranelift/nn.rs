//! The normalizations: Softmax / LogSoftmax along one axis and local
//! response normalization across channels.

use cranelift_codegen::ir::InstBuilder;
use cranelift_codegen::ir::condcodes::FloatCC;
use nnc_ir::TensorType;
use nnc_ir::op::{LrnAttrs, SoftmaxAttrs};

use super::Args;
use super::kb::Kb;
use super::scalar::cl;
use crate::error::Result;

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
