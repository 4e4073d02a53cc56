//! Register-blocked 2-D f32 convolution. The accumulator tile is P output
//! positions (along the row) by V vectors of four output channels, all in
//! registers; each kernel tap loads V weight vectors (packed at generation
//! time as `[block][ci][kh][kw][4V]`) and broadcasts P input values, so a
//! tap costs V + P loads for P·V fused multiply-adds. Taps are unrolled with
//! constant offsets; the reduction over input channels is the only loop
//! inside the tile.
//!
//! Padding never reaches the inner loops: rows and columns whose windows
//! are cut by the border get their own copies of the tile code with only
//! the valid taps, decided at generation time; interior rows and column
//! blocks run in loops with every tap, or (with `pad_copy`) the input is
//! first copied into a zero-padded stack buffer. Pointwise convolutions
//! see the whole plane as one row. Depthwise convolutions are in
//! [`super::depthwise`].

use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value, types};
use nnc_ir::Tensor;
use nnc_ir::program::{Axis, ConvBlocked, Window};

use super::Args;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use crate::error::Result;

/// Where a tile's positions start along the row.
#[derive(Clone, Copy)]
enum Col {
    /// A runtime column (inside the interior: every tap valid).
    Loop(Value),
    /// A constant column.
    At(usize),
}

/// Everything the tile code needs.
struct Tile<'a> {
    /// Positions per tile and vectors of four channels per full block.
    tp: usize,
    tv: usize,
    iw: usize,
    plane_in: i64,
    plane_out: i64,
    kh: usize,
    kw: usize,
    h: Axis,
    w: Axis,
    cg: usize,
    unroll: usize,
    epi: &'a Epi<'a>,
}

/// The register-blocked kernel of a convolution (1-D or 2-D, any groups;
/// weights and bias constant), with the step's tile shape.
#[allow(clippy::too_many_arguments)]
pub fn blocked(
    kb: &mut Kb,
    k: &ConvBlocked,
    win: &Window,
    wt: &Tensor,
    bt: Option<&Tensor>,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let (c, m) = (win.channels, win.out_channels);
    let (cg, mg) = (win.cg(), win.mg());
    let Some((h0, w0)) = win.rows_cols() else {
        return Err(crate::error::BackendError::Other(
            "conv_blocked needs a 1-D or 2-D window".into(),
        ));
    };
    // A padded copy is read through axes without padding.
    let (h, wa) = if k.pad_copy {
        (h0.unpadded(), w0.unpadded())
    } else {
        (h0, w0)
    };
    let t = Tile {
        tp: k.positions.max(1),
        tv: (k.channels / 4).max(1),
        iw: wa.input,
        plane_in: (h.input * wa.input * 4) as i64,
        plane_out: (h.output * wa.output * 4) as i64,
        kh: h.k,
        kw: wa.k,
        h,
        w: wa,
        cg,
        unroll: k.unroll.clamp(1, cg.max(1)),
        epi,
    };
    let cb = 4 * t.tv;
    let full = mg / cb;
    let rem = mg % cb;
    let taps = t.kh * t.kw;
    let wv = wt.to_f64();
    let bv = bt.map(|b| b.to_f64());
    // Packed weights per group: full blocks of 4V channels, then the
    // remainder block rounded up to whole vectors (zero padded).
    let rem_v = rem.div_ceil(4);
    let per_group = full * cg * taps * cb + rem_v * 4 * cg * taps;
    let mut packed = Vec::with_capacity(per_group * win.groups);
    let mut pbias = Vec::new();
    for g in 0..win.groups {
        let mut blocks: Vec<(usize, usize)> = (0..full).map(|b| (b * cb, cb)).collect();
        if rem > 0 {
            blocks.push((full * cb, rem_v * 4));
        }
        for (co0, width) in blocks {
            for ci in 0..cg {
                for tap in 0..taps {
                    for j in 0..width {
                        let co = co0 + j;
                        packed.push(if co < mg {
                            wv[((g * mg + co) * cg + ci) * taps + tap] as f32
                        } else {
                            0.0
                        });
                    }
                }
            }
            for j in 0..width {
                let co = co0 + j;
                pbias.push(match (&bv, co < mg) {
                    (Some(b), true) => b[g * mg + co] as f32,
                    _ => 0.0,
                });
            }
        }
    }
    let wp = kb.table_f32(&packed)?;
    let bp = kb.table_f32(&pbias)?;
    let xsrc = args.x(kb, 0)?;
    let yb = args.outs[0];
    let batch = win.batch as i64;
    let x_img_src = (c * h0.input * w0.input * 4) as i64;
    let x_img = c as i64 * t.plane_in;
    let y_img = m as i64 * t.plane_out;
    let w_group = (per_group * 4) as i64;
    let b_group = ((full * cb + rem_v * 4) * 4) as i64;
    let copy = if k.pad_copy {
        Some(super::depthwise::zeroed_stack(
            kb,
            c * h.input * wa.input * 4,
        )?)
    } else {
        None
    };
    kb.for_range(0, batch, 1, |kb, n| {
        let xi = match copy {
            Some(buf) => {
                let src = kb.at(xsrc, n, x_img_src);
                for ch in 0..c {
                    let s = kb.off(src, (ch * h0.input * w0.input * 4) as i64);
                    let d = kb.off(buf, ch as i64 * t.plane_in);
                    super::depthwise::copy_padded(kb, s, d, &h0, &w0, wa.input)?;
                }
                buf
            }
            None => kb.at(xsrc, n, x_img),
        };
        let yi = kb.at(yb, n, y_img);
        kb.for_range(0, win.groups as i64, 1, |kb, g| {
            let xg = kb.at(xi, g, cg as i64 * t.plane_in);
            let yg = kb.at(yi, g, mg as i64 * t.plane_out);
            let wg = kb.at(wp, g, w_group);
            let bg = kb.at(bp, g, b_group);
            // Full blocks in a loop, the remainder block once.
            kb.for_range(0, full as i64, 1, |kb, blk| {
                let wblk = kb.at(wg, blk, (cg * taps * cb * 4) as i64);
                let bblk = kb.at(bg, blk, (cb * 4) as i64);
                let yblk = kb.at(yg, blk, cb as i64 * t.plane_out);
                plane(kb, &t, xg, yblk, wblk, bblk, t.tv, cb)
            })?;
            if rem > 0 {
                let wblk = kb.off(wg, (full * cg * taps * cb * 4) as i64);
                let bblk = kb.off(bg, (full * cb * 4) as i64);
                let yblk = kb.off(yg, full as i64 * cb as i64 * t.plane_out);
                plane(kb, &t, xg, yblk, wblk, bblk, rem_v, rem)?;
            }
            Ok(())
        })
    })
}

/// One block of output channels over the whole output plane.
#[allow(clippy::too_many_arguments)]
fn plane(
    kb: &mut Kb,
    t: &Tile,
    xg: Value,
    yblk: Value,
    wblk: Value,
    bblk: Value,
    nv: usize,
    lanes: usize,
) -> Result<()> {
    let (rlo, rhi) = t.h.interior();
    let row = |kb: &mut Kb, oh: Value, konst: Option<usize>| -> Result<()> {
        // x at (row origin, column 0) and y at (row, column 0).
        let r0 = kb.b.ins().imul_imm_s(oh, t.h.stride as i64);
        let r0 = kb.b.ins().iadd_imm_s(r0, -(t.h.pad as i64));
        let xrow = kb.at(xg, r0, (t.iw * 4) as i64);
        let yrow = kb.at(yblk, oh, (t.w.output * 4) as i64);
        let kh_ok: Vec<bool> = (0..t.kh)
            .map(|k| konst.is_none_or(|o| t.h.valid(o, k)))
            .collect();
        columns(kb, t, xrow, yrow, wblk, bblk, nv, lanes, &kh_ok)
    };
    super::depthwise::split_rows(kb, (rlo, rhi), t.h.output, row)
}

/// One output row: border columns one by one, interior columns in tiles of
/// `tp` positions, then the interior's tail.
#[allow(clippy::too_many_arguments)]
fn columns(
    kb: &mut Kb,
    t: &Tile,
    xrow: Value,
    yrow: Value,
    wblk: Value,
    bblk: Value,
    nv: usize,
    lanes: usize,
    kh_ok: &[bool],
) -> Result<()> {
    let (clo, chi) = t.w.interior();
    let at = |kb: &mut Kb, col: Col, np: usize| {
        tile(kb, t, xrow, yrow, wblk, bblk, nv, lanes, kh_ok, col, np)
    };
    // Constant columns, `tp` at a time.
    let consts = |kb: &mut Kb, cols: std::ops::Range<usize>| -> Result<()> {
        for group in cols.collect::<Vec<_>>().chunks(t.tp) {
            at(kb, Col::At(group[0]), group.len())?;
        }
        Ok(())
    };
    if clo >= chi {
        return consts(kb, 0..t.w.output);
    }
    consts(kb, 0..clo)?;
    let full = (chi - clo) / t.tp;
    kb.for_range(0, full as i64, 1, |kb, i| {
        let ow = kb.b.ins().imul_imm_s(i, t.tp as i64);
        let ow = kb.b.ins().iadd_imm_s(ow, clo as i64);
        at(kb, Col::Loop(ow), t.tp)
    })?;
    consts(kb, clo + full * t.tp..chi)?;
    consts(kb, chi..t.w.output)
}

/// The tile: `np` positions from `col`, `nv` channel vectors (`lanes`
/// of them real), accumulated over every input channel and valid tap.
#[allow(clippy::too_many_arguments)]
fn tile(
    kb: &mut Kb,
    t: &Tile,
    xrow: Value,
    yrow: Value,
    wblk: Value,
    bblk: Value,
    nv: usize,
    lanes: usize,
    kh_ok: &[bool],
    col: Col,
    np: usize,
) -> Result<()> {
    let stride_w = t.w.stride as i64;
    // Column bases: x at the first position's window origin, y at the
    // first position.
    let (xcol, ycol, first) = match col {
        Col::Loop(ow) => {
            let xo = kb.b.ins().imul_imm_s(ow, stride_w * 4);
            let xc = kb.b.ins().iadd(xrow, xo);
            let yc = kb.at(yrow, ow, 4);
            (xc, yc, None)
        }
        Col::At(ow) => {
            let xc = kb.off(xrow, ow as i64 * stride_w * 4);
            let yc = kb.off(yrow, ow as i64 * 4);
            (xc, yc, Some(ow))
        }
    };
    // Valid (position, tap) pairs, known now.
    let ok = |p: usize, kh: usize, kw: usize| -> bool {
        kh_ok[kh] && first.is_none_or(|o| t.w.valid(o + p, kw))
    };
    let cb = (nv * 4) as i64;
    let mut accs = Vec::with_capacity(np * nv);
    for p in 0..np {
        for v in 0..nv {
            let b = if t.epi.accumulate {
                // A later slice of a partial sum starts from the output:
                // lane l of vector v is channel 4v + l.
                let mut acc = kb.cf(F32X4, 0.0);
                for l in 0..4 {
                    let ch = 4 * v + l;
                    if ch >= lanes {
                        break;
                    }
                    let e = kb.load(types::F32, ycol, ch as i64 * t.plane_out + p as i64 * 4);
                    acc = kb.b.ins().insertlane(acc, e, l as u8);
                }
                acc
            } else {
                kb.load(F32X4, bblk, (v * 16) as i64)
            };
            accs.push(kb.var(F32X4, b));
        }
    }
    let x0 = kb.var(types::I64, xcol);
    let w0 = kb.var(types::I64, wblk);
    let taps = (t.kh * t.kw) as i64;
    // Input channels per loop iteration: short tap lists are unrolled
    // across channels so the loop overhead is paid less often.
    let unroll = t.unroll;
    let body = |kb: &mut Kb, n: usize| -> Result<()> {
        let xp = kb.get(x0);
        let wp = kb.get(w0);
        let mut acc: Vec<Value> = accs.iter().map(|&a| kb.get(a)).collect();
        for u in 0..n as i64 {
            for kh in 0..t.kh {
                if !kh_ok[kh] {
                    continue;
                }
                for kw in 0..t.kw {
                    if !(0..np).any(|p| ok(p, kh, kw)) {
                        continue;
                    }
                    let tap = u * taps + (kh * t.kw + kw) as i64;
                    let wvs: Vec<Value> = (0..nv)
                        .map(|v| kb.load(F32X4, wp, (tap * cb + 4 * v as i64) * 4))
                        .collect();
                    for p in 0..np {
                        if !ok(p, kh, kw) {
                            continue;
                        }
                        let off = (kh * t.h.dil * t.iw) as i64
                            + p as i64 * stride_w
                            + (kw * t.w.dil) as i64
                            - t.w.pad as i64;
                        let xs = kb.load(types::F32, xp, u * t.plane_in + off * 4);
                        let xs = kb.splat(xs);
                        for v in 0..nv {
                            let i = p * nv + v;
                            acc[i] = kb.mul_add(xs, wvs[v], acc[i]);
                        }
                    }
                }
            }
        }
        for (a, v) in accs.iter().zip(acc) {
            kb.set(*a, v);
        }
        let xn = kb.b.ins().iadd_imm_s(xp, n as i64 * t.plane_in);
        kb.set(x0, xn);
        let wn = kb.b.ins().iadd_imm_s(wp, n as i64 * taps * cb * 4);
        kb.set(w0, wn);
        Ok(())
    };
    kb.for_range(0, (t.cg / unroll) as i64, 1, |kb, _| body(kb, unroll))?;
    if !t.cg.is_multiple_of(unroll) {
        body(kb, t.cg % unroll)?;
    }
    // Epilogue, then scatter: lane l of vector v is channel 4v + l. A
    // residual add reads each lane's own address.
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    for p in 0..np {
        for v in 0..nv {
            let mut r = kb.get(accs[p * nv + v]);
            if t.epi.has_residual() {
                for l in 0..4 {
                    let ch = 4 * v + l;
                    if ch >= lanes {
                        break;
                    }
                    let off = ch as i64 * t.plane_out + p as i64 * 4;
                    let e = kb.b.ins().extractlane(r, l as u8);
                    let e = t.epi.apply(kb, e, ycol, off)?;
                    kb.store(e, ycol, off);
                }
                continue;
            }
            r = t.epi.apply(kb, r, ycol, 0)?;
            let bits = kb.b.ins().bitcast(types::I32X4, little, r);
            for l in 0..4 {
                let ch = 4 * v + l;
                if ch >= lanes {
                    break;
                }
                let e = kb.b.ins().extractlane(bits, l as u8);
                kb.store(e, ycol, ch as i64 * t.plane_out + p as i64 * 4);
            }
        }
    }
    Ok(())
}
