//! Gemm (and 2-D MatMul) with a constant right-hand side: `B` is packed at
//! generation time as `[column block][k][4V]` with `alpha` folded in, and
//! `beta * C` as a packed bias, so each output row is a sweep over `k` that
//! broadcasts one element of `A` and multiply-adds V vectors of columns.
//! Batch-1 fully connected layers (the common case) are bandwidth bound on
//! the weights; the packing makes that a single contiguous stream.

use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value, types};
use nnc_ir::op::{GemmAttrs, UnaryOp};
use nnc_ir::{DType, TensorType};

use super::Args;
use super::kb::{F32X4, Kb};
use super::scalar;
use crate::error::Result;

/// Column vectors per block: eight accumulators keep two FMA ports busy
/// through the four-cycle latency with loads to spare.
const VECS: usize = 8;

/// Emits the packed kernel for a Gemm when it fits; false otherwise.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    kb: &mut Kb,
    g: &GemmAttrs,
    at: &TensorType,
    _bt: &TensorType,
    ct: Option<&TensorType>,
    y: &TensorType,
    args: &Args,
) -> Result<bool> {
    if y.dtype != DType::F32 || g.act.as_ref().is_some_and(|u| !scalar::unary_vectorizes(u)) {
        return Ok(false);
    }
    let Some(b) = args.weight(kb, 1) else {
        return Ok(false);
    };
    let (m, n) = (y.dims[0], y.dims[1]);
    let k = if g.trans_a { at.dims[0] } else { at.dims[1] };
    // C as a per-column bias: constant and the same for every row.
    let bias: Vec<f32> = match ct {
        None => vec![0.0; n],
        Some(ct) => {
            let Some(c) = args.weight(kb, 2) else {
                return Ok(false);
            };
            let (row, col) = crate::tables::gemm_c_strides(&ct.dims, m, n);
            if m > 1 && row != 0 {
                return Ok(false);
            }
            let cv = c.to_f64();
            (0..n)
                .map(|j| (g.beta as f64 * cv[j * col]) as f32)
                .collect()
        }
    };
    let bv = b.to_f64();
    let bkj = |kk: usize, j: usize| -> f64 {
        if g.trans_b {
            bv[j * k + kk]
        } else {
            bv[kk * n + j]
        }
    };
    let (sa_row, sa_k) = if g.trans_a { (1, m) } else { (k, 1) };
    rows(
        kb,
        &g.act,
        m,
        n,
        k,
        sa_row,
        sa_k,
        &bias,
        |kk, j| g.alpha as f64 * bkj(kk, j),
        args,
    )?;
    Ok(true)
}

/// MatMul `[M, K] x [K, N]` with a constant `B`: the same kernel.
pub fn matmul(
    kb: &mut Kb,
    at: &TensorType,
    bt: &TensorType,
    y: &TensorType,
    args: &Args,
) -> Result<bool> {
    if y.dtype != DType::F32 || at.rank() != 2 || bt.rank() != 2 {
        return Ok(false);
    }
    let Some(b) = args.weight(kb, 1) else {
        return Ok(false);
    };
    let (m, k, n) = (at.dims[0], at.dims[1], bt.dims[1]);
    let bv = b.to_f64();
    rows(
        kb,
        &None,
        m,
        n,
        k,
        k,
        1,
        &vec![0.0; n],
        |kk, j| bv[kk * n + j],
        args,
    )?;
    Ok(true)
}

/// `y[i, :] = act(bias + sum_k a[i, k] * B[k, :])` for every row `i`.
#[allow(clippy::too_many_arguments)]
fn rows(
    kb: &mut Kb,
    act: &Option<UnaryOp>,
    m: usize,
    n: usize,
    k: usize,
    sa_row: usize,
    sa_k: usize,
    bias: &[f32],
    bkj: impl Fn(usize, usize) -> f64,
    args: &Args,
) -> Result<()> {
    let cb = 4 * VECS;
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
            block(kb, act, k, sa_k, arow, bblk, cblk, yblk, VECS, cb)
        })?;
        if rem > 0 {
            let bblk = kb.off(bp, (full * k * cb * 4) as i64);
            let cblk = kb.off(cp, (full * cb * 4) as i64);
            let yblk = kb.off(yrow, (full * cb * 4) as i64);
            block(kb, act, k, sa_k, arow, bblk, cblk, yblk, rem_v, rem)?;
        }
        Ok(())
    })
}

/// Steps of `k` per loop iteration.
const UNROLL: usize = 4;

#[allow(clippy::too_many_arguments)]
fn block(
    kb: &mut Kb,
    act: &Option<UnaryOp>,
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
            let c = kb.load(F32X4, cblk, (v * 16) as i64);
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
    let main = k / UNROLL;
    kb.for_range(0, main as i64, 1, |kb, _| step(kb, UNROLL))?;
    if !k.is_multiple_of(UNROLL) {
        step(kb, k % UNROLL)?;
    }
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    for (v, &var) in accs.iter().enumerate() {
        let mut r = kb.get(var);
        if let Some(u) = act {
            r = scalar::unary_float(kb, u, r)?;
        }
        if 4 * v + 4 <= cols {
            kb.store(r, yblk, (v * 16) as i64);
        } else {
            let bits = kb.b.ins().bitcast(types::I32X4, little, r);
            for l in 0..(cols - 4 * v) {
                let e = kb.b.ins().extractlane(bits, l as u8);
                kb.store(e, yblk, ((4 * v + l) * 4) as i64);
            }
        }
    }
    Ok(())
}
