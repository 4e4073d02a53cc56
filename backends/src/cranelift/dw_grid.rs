//! `dw_grid` in Cranelift: depthwise f32 convolution on a wide grid, as
//! the C kernel `c::depthwise::grid` does it. Per channel the plane is
//! copied into a zero-padded stack buffer, and the output is computed on
//! a grid of `output rows x padded row` points (layout from
//! [`Window::grid`]): with equal row and column strides, tap `(kh, kw)` of
//! grid point `q` reads element `q * stride + kh * dil_h * row + kw *
//! dil_w` of the buffer, one fixed offset for every point, so the sweep is
//! plain f32x4 vectors with the taps unrolled and no border cases. The
//! grid columns past the output width are discarded when the valid ones
//! are copied out through the epilogue. Per output the order is the C
//! kernel's: bias, then the taps row-major, each one fused multiply-add.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::program::Window;
use nnc_ir::{DType, TensorType};

use super::Args;
use super::depthwise::{copy_padded, zeroed_stack};
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use super::row_tiles::lanes4;
use crate::error::{BackendError, Result};

/// Grid vectors per iteration of the sweep (their accumulators, the
/// broadcast taps and one input vector fit the sixteen xmm registers).
const BLOCK: usize = 4;
/// Taps whose broadcast weights stay in registers for a whole channel.
const KEEP_TAPS: usize = 9;

/// Renders `dw_grid` for a depthwise convolution step with inputs `ins`
/// (x, w, optional bias) and output `y`.
pub fn grid(
    kb: &mut Kb,
    win: &Window,
    ins: &[&TensorType],
    y: &TensorType,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let err = |what: &str| Err(BackendError::Other(format!("dw_grid: {what}")));
    if y.dtype != DType::F32 || ins.iter().any(|t| t.dtype != DType::F32) {
        return err("computes f32 only");
    }
    if !win.is_depthwise() {
        return err("needs a depthwise convolution");
    }
    if epi.accumulate {
        return err("cannot add into a partial sum");
    }
    let (Some((h, w)), Some((_, q_len, wp))) = (win.rows_cols(), win.grid()) else {
        return err("needs a 1-D or 2-D window with equal row and column strides");
    };
    let s = w.stride;
    let nv = q_len.div_ceil(4);
    // The padded plane, long enough for the last vector's farthest tap
    // (and the second load of a stride-2 pair).
    let rows_len = (h.pad + h.input + h.pad_end) * wp;
    let reach = (4 * nv - 1) * s + h.span() * wp + w.span() + 1 + usize::from(s == 2);
    let xp = zeroed_stack(kb, rows_len.max(reach) * 4)?;
    let yw = kb.stack(nv * 16);
    let taps: Vec<i64> = (0..h.k)
        .flat_map(|kh| (0..w.k).map(move |kw| (kh * h.dil * wp + kw * w.dil) as i64))
        .collect();
    let nt = taps.len();
    let c = win.channels;
    let xb = args.x(kb, 0)?;
    let wb = args.x(kb, 1)?;
    let bb = epi.bias().map(|i| args.x(kb, i)).transpose()?;
    let yb = args.outs[0];
    let plane_in = (h.input * w.input * 4) as i64;
    let plane_out = (h.output * w.output * 4) as i64;
    kb.for_range(0, (win.batch * c) as i64, 1, |kb, pl| {
        let src = kb.at(xb, pl, plane_in);
        // Only the interior is rewritten: the padding stays zero.
        copy_padded(kb, src, xp, &h, &w, wp)?;
        let ch = kb.b.ins().urem_imm_s(pl, c as i64);
        let wc = kb.at(wb, ch, nt as i64 * 4);
        let kept: Vec<Option<Value>> = (0..nt)
            .map(|t| {
                (nt <= KEEP_TAPS).then(|| {
                    let e = kb.load(types::F32, wc, t as i64 * 4);
                    kb.splat(e)
                })
            })
            .collect();
        let init = match bb {
            Some(b) => {
                let a = kb.at(b, ch, 4);
                let e = kb.load(types::F32, a, 0);
                kb.splat(e)
            }
            None => kb.cf(F32X4, 0.0),
        };
        // `n` grid vectors from grid point `q0`.
        let sweep = |kb: &mut Kb, q0: Value, n: usize| -> Result<()> {
            let xo = kb.b.ins().imul_imm_s(q0, (s * 4) as i64);
            let xq = kb.b.ins().iadd(xp, xo);
            let yq = kb.at(yw, q0, 4);
            let mut acc = vec![init; n];
            for (t, &off) in taps.iter().enumerate() {
                let wv = match kept[t] {
                    Some(v) => v,
                    None => {
                        let e = kb.load(types::F32, wc, t as i64 * 4);
                        kb.splat(e)
                    }
                };
                for (v, a) in acc.iter_mut().enumerate() {
                    let xv = lanes4(kb, xq, (4 * v * s) as i64 + off, s, true);
                    *a = kb.mul_add(wv, xv, *a);
                }
            }
            for (v, a) in acc.into_iter().enumerate() {
                kb.store(a, yq, (16 * v) as i64);
            }
            Ok(())
        };
        let full = nv / BLOCK;
        kb.for_range(0, full as i64, 1, |kb, i| {
            let q0 = kb.b.ins().imul_imm_s(i, (4 * BLOCK) as i64);
            sweep(kb, q0, BLOCK)
        })?;
        if nv % BLOCK > 0 {
            let q0 = kb.ci((4 * BLOCK * full) as i64);
            sweep(kb, q0, nv % BLOCK)?;
        }
        // The valid columns of each grid row, through the epilogue.
        let yc = kb.at(yb, pl, plane_out);
        let ow = w.output;
        kb.for_range(0, h.output as i64, 1, |kb, oh| {
            let from = kb.at(yw, oh, (wp * 4) as i64);
            let to = kb.at(yc, oh, (ow * 4) as i64);
            kb.for_range(0, (ow / 4) as i64, 1, |kb, i| {
                let o = kb.b.ins().imul_imm_s(i, 16);
                let fa = kb.b.ins().iadd(from, o);
                let ta = kb.b.ins().iadd(to, o);
                let v = kb.load(F32X4, fa, 0);
                let v = epi.apply(kb, v, ta, 0)?;
                kb.store(v, ta, 0);
                Ok(())
            })?;
            for j in ow / 4 * 4..ow {
                let v = kb.load(types::F32, from, j as i64 * 4);
                let v = epi.apply(kb, v, to, j as i64 * 4)?;
                kb.store(v, to, j as i64 * 4);
            }
            Ok(())
        })
    })
}
