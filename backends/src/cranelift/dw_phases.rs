//! `dw_phases` in Cranelift: depthwise f32 convolution and max pooling of
//! any stride on stride-phase planes, as the C kernel
//! `c::dw_phases::render` does it (layout in
//! [`nnc_ir::program::Phases`]). Per channel the padded plane is copied
//! once into a stack buffer de-interleaved by stride phase; every tap of
//! every output is then one fixed offset, so each output row is swept
//! with plain f32x4 loads (no strided lanes, no border cases), all taps of
//! a vector accumulated in registers, and stored through the epilogue.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::program::{Phases, Window};

use super::Args;
use super::depthwise::{Win, combine};
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use crate::error::{BackendError, Result};

/// Output vectors per iteration of the row sweep (their accumulators, the
/// kept taps and one input vector fit the sixteen xmm registers).
const BLOCK: usize = 3;
/// Taps whose broadcast weights stay in registers for a whole channel.
const KEEP_TAPS: usize = 9;

/// Renders `dw_phases` for `win` with `op` (`Win::Dw` or `Win::Max`).
pub fn render(kb: &mut Kb, win: &Window, op: Win, epi: &Epi, args: &Args) -> Result<()> {
    let err = |what: &str| Err(BackendError::Other(format!("dw_phases: {what}")));
    if epi.accumulate {
        return err("cannot add into a partial sum");
    }
    if !matches!(op, Win::Dw | Win::Max) {
        return err("computes depthwise convolutions and max pooling");
    }
    let Some(p) = Phases::of(win) else {
        return err("needs a 1-D or 2-D window");
    };
    let (hx, wx) = (p.h, p.w);
    let (sh, sw) = (hx.stride, wx.stride);
    let (ho, wo) = (hx.output, wx.output);
    let plane = p.plane();
    let taps: Vec<i64> = (0..hx.k)
        .flat_map(|kh| (0..wx.k).map(move |kw| (kh, kw)))
        .map(|(kh, kw)| (p.tap(kh, kw) * 4) as i64)
        .collect();
    let nt = taps.len();
    let fill = if op == Win::Max {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    // The padding is the same for every channel: fill once.
    let n16 = (p.floats() * 4).div_ceil(16);
    let xp = kb.stack(n16 * 16);
    let fv = kb.cf(F32X4, fill);
    kb.for_range(0, n16 as i64, 1, |kb, i| {
        let a = kb.at(xp, i, 16);
        kb.store(fv, a, 0);
        Ok(())
    })?;
    let c = win.channels;
    let xb = args.x(kb, 0)?;
    let wb = if op == Win::Dw {
        Some(args.x(kb, 1)?)
    } else {
        None
    };
    let bb = epi.bias().map(|i| args.x(kb, i)).transpose()?;
    let yb = args.outs[0];
    let plane_in = (hx.input * wx.input * 4) as i64;
    let plane_out = (ho * wo * 4) as i64;
    kb.for_range(0, (win.batch * c) as i64, 1, |kb, pl| {
        let src = kb.at(xb, pl, plane_in);
        // Input row r is padded row r + pad_h, in row phase (r + pad_h) % s_h.
        kb.for_range(0, hx.input as i64, 1, |kb, r| {
            let ri = kb.b.ins().iadd_imm_s(r, hx.pad as i64);
            let ph = kb.b.ins().urem_imm_s(ri, sh as i64);
            let pr = kb.b.ins().udiv_imm_s(ri, sh as i64);
            let d = kb.at(xp, ph, (sw * plane * 4) as i64);
            let d = kb.at(d, pr, (p.row * 4) as i64);
            let s = kb.at(src, r, (wx.input * 4) as i64);
            for jc in 0..sw {
                let k0 = (jc + sw - wx.pad % sw) % sw;
                if k0 >= wx.input {
                    continue;
                }
                let cnt = (wx.input - k0).div_ceil(sw);
                let dst = kb.off(d, ((jc * plane + (k0 + wx.pad) / sw) * 4) as i64);
                let from = kb.off(s, (k0 * 4) as i64);
                if sw == 1 {
                    kb.for_range(0, (cnt / 4) as i64, 1, |kb, i| {
                        let sa = kb.at(from, i, 16);
                        let v = kb.load(F32X4, sa, 0);
                        let da = kb.at(dst, i, 16);
                        kb.store(v, da, 0);
                        Ok(())
                    })?;
                    for q in cnt / 4 * 4..cnt {
                        let v = kb.load(types::F32, from, (q * 4) as i64);
                        kb.store(v, dst, (q * 4) as i64);
                    }
                } else {
                    kb.for_range(0, cnt as i64, 1, |kb, q| {
                        let sa = kb.at(from, q, (sw * 4) as i64);
                        let v = kb.load(types::F32, sa, 0);
                        let da = kb.at(dst, q, 4);
                        kb.store(v, da, 0);
                        Ok(())
                    })?;
                }
            }
            Ok(())
        })?;
        let ch = kb.b.ins().urem_imm_s(pl, c as i64);
        let wc = wb.map(|wb| kb.at(wb, ch, nt as i64 * 4));
        let mut kept: Vec<Option<(Value, Value)>> = vec![None; nt];
        if let Some(wc) = wc
            && nt <= KEEP_TAPS
        {
            for (t, k) in kept.iter_mut().enumerate() {
                let e = kb.load(types::F32, wc, t as i64 * 4);
                let v = kb.splat(e);
                *k = Some((e, v));
            }
        }
        let (init_s, init_v) = match (op, bb) {
            (Win::Dw, Some(b)) => {
                let a = kb.at(b, ch, 4);
                let e = kb.load(types::F32, a, 0);
                (e, kb.splat(e))
            }
            _ => {
                let v = if op == Win::Max {
                    f64::NEG_INFINITY
                } else {
                    0.0
                };
                (kb.cf(types::F32, v), kb.cf(F32X4, v))
            }
        };
        // The weight of tap `t` as a scalar or a vector.
        let weight = |kb: &mut Kb, t: usize, vector: bool| -> Option<Value> {
            let wc = wc?;
            Some(match kept[t] {
                Some((e, v)) => {
                    if vector {
                        v
                    } else {
                        e
                    }
                }
                None => {
                    let e = kb.load(types::F32, wc, t as i64 * 4);
                    if vector { kb.splat(e) } else { e }
                }
            })
        };
        let yc = kb.at(yb, pl, plane_out);
        kb.for_range(0, ho as i64, 1, |kb, oh| {
            let xr = kb.at(xp, oh, (p.row * 4) as i64);
            let yr = kb.at(yc, oh, (wo * 4) as i64);
            // `n` output vectors from byte offset `o` of the row.
            let sweep = |kb: &mut Kb, o: Value, n: usize| -> Result<()> {
                let xq = kb.b.ins().iadd(xr, o);
                let yq = kb.b.ins().iadd(yr, o);
                let mut acc = vec![init_v; n];
                for (t, &off) in taps.iter().enumerate() {
                    let wv = weight(kb, t, true);
                    for (v, a) in acc.iter_mut().enumerate() {
                        let xv = kb.load(F32X4, xq, off + 16 * v as i64);
                        *a = combine(kb, op, xv, wv, *a);
                    }
                }
                for (v, a) in acc.into_iter().enumerate() {
                    let r = epi.apply(kb, a, yq, 16 * v as i64)?;
                    kb.store(r, yq, 16 * v as i64);
                }
                Ok(())
            };
            let nv = wo / 4;
            let full = nv / BLOCK;
            kb.for_range(0, full as i64, 1, |kb, i| {
                let o = kb.b.ins().imul_imm_s(i, (16 * BLOCK) as i64);
                sweep(kb, o, BLOCK)
            })?;
            if nv % BLOCK > 0 {
                let o = kb.ci((16 * BLOCK * full) as i64);
                sweep(kb, o, nv % BLOCK)?;
            }
            for ow in nv * 4..wo {
                let mut a = init_s;
                for (t, &off) in taps.iter().enumerate() {
                    let wv = weight(kb, t, false);
                    let xv = kb.load(types::F32, xr, off + 4 * ow as i64);
                    a = combine(kb, op, xv, wv, a);
                }
                let r = epi.apply(kb, a, yr, 4 * ow as i64)?;
                kb.store(r, yr, 4 * ow as i64);
            }
            Ok(())
        })
    })
}
