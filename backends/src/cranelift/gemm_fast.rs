//! Gemm (and 2-D MatMul) with a constant right-hand side: `B` is packed at
//! generation time as `[column block][k][4V]` with `alpha` folded in, and
//! `beta * C` as a packed bias, so each output row is a sweep over `k` that
//! broadcasts one element of `A` and multiply-adds V vectors of columns.
//! Batch-1 fully connected layers (the common case) are bandwidth bound on
//! the weights; the packing makes that a single contiguous stream.

use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value, types};
use nnc_ir::program::MatMulPacked;
use nnc_ir::{Op, TensorType};

use super::Args;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use crate::error::{BackendError, Result};

/// The packed kernel of a Gemm or 2-D MatMul whose `B` (and C, if any) are
/// constants, with the step's column block and unroll.
pub fn packed(
    kb: &mut Kb,
    k: &MatMulPacked,
    op: &Op,
    at: &TensorType,
    y: &TensorType,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let Some(b) = args.weight(kb, 1) else {
        return Err(BackendError::Other(
            "matmul_packed needs a constant right-hand side".into(),
        ));
    };
    let (m, n) = (y.dims[0], y.dims[1]);
    let bv = b.to_f64();
    match op {
        Op::Gemm(g) => {
            let kk = if g.trans_a { at.dims[0] } else { at.dims[1] };
            // C as a per-column bias: constant and the same for every row.
            let bias: Vec<f32> = match args.weight(kb, 2) {
                None => vec![0.0; n],
                Some(c) => {
                    let (_, col) = crate::tables::gemm_c_strides(c.dims(), m, n);
                    let cv = c.to_f64();
                    (0..n)
                        .map(|j| (g.beta as f64 * cv[j * col]) as f32)
                        .collect()
                }
            };
            let bkj = |p: usize, j: usize| -> f64 {
                if g.trans_b {
                    bv[j * kk + p]
                } else {
                    bv[p * n + j]
                }
            };
            let (sa_row, sa_k) = if g.trans_a { (1, m) } else { (kk, 1) };
            rows(
                kb,
                k,
                epi,
                (m, n, kk),
                (sa_row, sa_k),
                &bias,
                |p, j| g.alpha as f64 * bkj(p, j),
                args,
            )
        }
        _ => {
            let kk = at.dims[1];
            rows(
                kb,
                k,
                epi,
                (m, n, kk),
                (kk, 1),
                &vec![0.0; n],
                |p, j| bv[p * n + j],
                args,
            )
        }
    }
}

/// `y[i, :] = epilogue(bias + sum_k a[i, k] * B[k, :])` for every row `i`.
#[allow(clippy::too_many_arguments)]
fn rows(
    kb: &mut Kb,
    kp: &MatMulPacked,
    epi: &Epi,
    (m, n, k): (usize, usize, usize),
    (sa_row, sa_k): (usize, usize),
    bias: &[f32],
    bkj: impl Fn(usize, usize) -> f64,
    args: &Args,
) -> Result<()> {
    let vecs = (kp.cols / 4).max(1);
    let unroll = kp.unroll.max(1);
    let cb = 4 * vecs;
    let full = n / cb;
    let rem = n % cb;
    let rem_v = rem.div_ceil(4);
    // Packed B: full blocks of 4V columns, then the remainder block
    // rounded up to whole vectors; bias likewise.
    let mut packed = Vec::with_capacity((full * cb + rem_v * 4) * k);
    let mut pbias = Vec::with_capacity(full * cb + rem_v * 4);
    let mut blocks: Vec<(usize, usize)> = (0..full).map(|b| (b * cb, cb)).collect();
    if rem > 0 {
        blocks.push((full * cb, rem_v * 4));
    }
    for &(j0, width) in &blocks {
        for kk in 0..k {
            for j in j0..j0 + width {
                packed.push(if j < n { bkj(kk, j) as f32 } else { 0.0 });
            }
        }
        for j in j0..j0 + width {
            pbias.push(if j < n { bias[j] } else { 0.0 });
        }
    }
    let bp = kb.table_f32(&packed)?;
    let cp = kb.table_f32(&pbias)?;
    let ab = args.x(kb, 0)?;
    let yb = args.outs[0];
    kb.for_range(0, m as i64, 1, |kb, i| {
        let arow = kb.at(ab, i, (sa_row * 4) as i64);
        let yrow = kb.at(yb, i, (n * 4) as i64);
        kb.for_range(0, full as i64, 1, |kb, blk| {
            let bblk = kb.at(bp, blk, (k * cb * 4) as i64);
            let cblk = kb.at(cp, blk, (cb * 4) as i64);
            let yblk = kb.at(yrow, blk, (cb * 4) as i64);
            block(kb, epi, unroll, k, sa_k, arow, bblk, cblk, yblk, vecs, cb)
        })?;
        if rem > 0 {
            let bblk = kb.off(bp, (full * k * cb * 4) as i64);
            let cblk = kb.off(cp, (full * cb * 4) as i64);
            let yblk = kb.off(yrow, (full * cb * 4) as i64);
            block(kb, epi, unroll, k, sa_k, arow, bblk, cblk, yblk, rem_v, rem)?;
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn block(
    kb: &mut Kb,
    epi: &Epi,
    unroll: usize,
    k: usize,
    sa_k: usize,
    arow: Value,
    bblk: Value,
    cblk: Value,
    yblk: Value,
    nv: usize,
    cols: usize,
) -> Result<()> {
    let row_bytes = (nv * 16) as i64;
    let accs: Vec<_> = (0..nv)
        .map(|v| {
            let c = if epi.accumulate {
                // A later slice of a partial sum starts from the output.
                if 4 * v + 4 <= cols {
                    kb.load(F32X4, yblk, (v * 16) as i64)
                } else {
                    let mut acc = kb.cf(F32X4, 0.0);
                    for l in 0..(cols - 4 * v) {
                        let e = kb.load(types::F32, yblk, ((4 * v + l) * 4) as i64);
                        acc = kb.b.ins().insertlane(acc, e, l as u8);
                    }
                    acc
                }
            } else {
                kb.load(F32X4, cblk, (v * 16) as i64)
            };
            kb.var(F32X4, c)
        })
        .collect();
    let ap = kb.var(types::I64, arow);
    let bp = kb.var(types::I64, bblk);
    let step = |kb: &mut Kb, unroll: usize| -> Result<()> {
        let a = kb.get(ap);
        let b = kb.get(bp);
        let mut acc: Vec<Value> = accs.iter().map(|&v| kb.get(v)).collect();
        for u in 0..unroll {
            let s = kb.load(types::F32, a, (u * sa_k * 4) as i64);
            let s = kb.splat(s);
            for (v, av) in acc.iter_mut().enumerate() {
                let w = kb.load(F32X4, b, u as i64 * row_bytes + (v * 16) as i64);
                *av = kb.mul_add(s, w, *av);
            }
        }
        for (&var, v) in accs.iter().zip(acc) {
            kb.set(var, v);
        }
        let a2 = kb.b.ins().iadd_imm_s(a, (unroll * sa_k * 4) as i64);
        kb.set(ap, a2);
        let b2 = kb.b.ins().iadd_imm_s(b, unroll as i64 * row_bytes);
        kb.set(bp, b2);
        Ok(())
    };
    let main = k / unroll;
    kb.for_range(0, main as i64, 1, |kb, _| step(kb, unroll))?;
    if !k.is_multiple_of(unroll) {
        step(kb, k % unroll)?;
    }
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    for (v, &var) in accs.iter().enumerate() {
        let r = kb.get(var);
        if 4 * v + 4 <= cols {
            let r = epi.apply(kb, r, yblk, (v * 16) as i64)?;
            kb.store(r, yblk, (v * 16) as i64);
        } else if epi.has_residual() {
            for l in 0..(cols - 4 * v) {
                let off = ((4 * v + l) * 4) as i64;
                let e = kb.b.ins().extractlane(r, l as u8);
                let e = epi.apply(kb, e, yblk, off)?;
                kb.store(e, yblk, off);
            }
        } else {
            let r = epi.apply(kb, r, yblk, (v * 16) as i64)?;
            let bits = kb.b.ins().bitcast(types::I32X4, little, r);
            for l in 0..(cols - 4 * v) {
                let e = kb.b.ins().extractlane(bits, l as u8);
                kb.store(e, yblk, ((4 * v + l) * 4) as i64);
            }
        }
    }
    Ok(())
}
