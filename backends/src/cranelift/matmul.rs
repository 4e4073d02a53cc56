//! Gemm and batched MatMul with plain loops (the packed kernel for a
//! constant right-hand side is in [`super::gemm_fast`]); the epilogue runs
//! over each finished output row.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::op::GemmAttrs;
use nnc_ir::{DType, TensorType};

use super::Args;
use super::conv::fill;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use super::scalar::{cl, from_i64, to_i64};
use crate::error::Result;
use crate::tables::matmul_batches;

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

/// Gemm: `Y = alpha * A' B' + beta * C` (a later slice of a partial sum
/// adds to Y instead), then the epilogue.
pub fn gemm(
    kb: &mut Kb,
    g: &GemmAttrs,
    at: &TensorType,
    ct: Option<&TensorType>,
    y: &TensorType,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let ty = cl(d);
    let (m, nn) = (y.dims[0], y.dims[1]);
    let k = if g.trans_a { at.dims[0] } else { at.dims[1] };
    let (ab, bb, yb) = (args.x(kb, 0)?, args.x(kb, 1)?, args.outs[0]);
    let alpha = kb.cf(ty, g.alpha as f64);
    if epi.accumulate {
        // The partial sum is already in Y.
    } else if let Some(ct) = ct {
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
        epi.in_place(kb, yr, nn)
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
    epi: &Epi,
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
                if !epi.accumulate {
                    let z = kb.cf(ty, 0.0);
                    fill(kb, yr, n, z, d)?;
                }
                kb.for_range(0, k as i64, 1, |kb, p| {
                    let aa = kb.at(ar, p, es);
                    let av = kb.load(ty, aa, 0);
                    let br = kb.at(b, p, n as i64 * es);
                    axpy_const(kb, d, av, yr, br, n)
                })?;
                epi.in_place(kb, yr, n)
            } else {
                kb.for_range(0, n as i64, 1, |kb, j| {
                    let z = if epi.accumulate {
                        let ya = kb.at(yr, j, es);
                        let v = kb.load(ty, ya, 0);
                        to_i64(kb, v, d)
                    } else {
                        kb.ci(0)
                    };
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
                })?;
                epi.in_place(kb, yr, n)
            }
        })
    })
}
