//! `conv_row_tiles` in Cranelift: 1-D and 2-D convolution (any groups,
//! f32 or f64, weights and bias read at run time) tiled over output
//! columns, as the C kernel `c::conv::row_tiles` does it. A tile is
//! `width` columns by `channels` output channels of one output row; per
//! input channel, kernel row and tap, each weight is broadcast over the
//! tile's columns, read as f32x4 vectors along the row (f64, and the last
//! `width % 4` columns, as scalars). Per output the order is the C
//! kernel's: bias (or the partial sum already in the output), then input
//! channels, kernel rows and taps, each one fused multiply-add.
//!
//! Interior columns (every tap inside the input) run in tiles; the last
//! one is shifted left to end at the interior's end, except in a later
//! slice of a partial sum, where recomputing the overlap would add it
//! twice: there the remaining columns form one narrower tile. Border
//! columns are computed one at a time with only their valid taps, in a
//! loop per run of columns that share those taps (so code size does not
//! grow with the padding); an interior narrower than a tile is computed
//! the same way. Each row reads only its valid kernel rows (bounds from a
//! table when some rows are cut by the padding).
//!
//! With `pad_copy` each image is first copied into a zero-padded stack
//! buffer whose columns are de-interleaved by stride phase, so every tap
//! of a strided tile is a contiguous load and nothing is a border column.
//! Without it, stride-2 taps are two vector loads and an even-lane shuffle
//! (where the second load stays inside the row) and larger strides are
//! gathered lane by lane.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::program::{Axis, ConvRowTiles, Window};
use nnc_ir::{DType, TensorType};

use super::Args;
use super::depthwise::{shuffle4, zeroed_stack};
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use super::scalar::cl;
use crate::error::{BackendError, Result};

/// The convolution as the tiles read it.
struct Geo {
    /// Rows and columns of the input as stored (unpadded with a copy).
    h: Axis,
    w: Axis,
    /// Stride phases the stored columns are de-interleaved into.
    phases: usize,
    /// Elements per phase of a stored row, per stored row, per channel.
    wph: usize,
    row: usize,
    plane: usize,
    cg: usize,
    /// Output channels per tile.
    ob: usize,
    /// Taps per (output, input) channel pair.
    ksz: usize,
    out_plane: usize,
    d: DType,
    /// Element size in bytes.
    es: i64,
}

impl Geo {
    /// Elements between adjacent output columns in a stored row.
    fn cstep(&self) -> usize {
        if self.phases > 1 { 1 } else { self.w.stride }
    }

    /// Where tap `kw` of output column `ow` is in its stored row, minus
    /// `ow * cstep`: phase `kw * dil % s`, `kw * dil / s` elements in, for
    /// a de-interleaved copy; `kw * dil - pad` for plain rows.
    fn tap(&self, kw: usize) -> i64 {
        let dk = kw * self.w.dil;
        if self.phases > 1 {
            ((dk % self.phases) * self.wph + dk / self.phases) as i64
        } else {
            dk as i64 - self.w.pad as i64
        }
    }
}

/// Which kernel rows an output row reads.
#[derive(Clone, Copy)]
enum Kh {
    /// All of them (no row is cut by the padding).
    All,
    /// `[lo, hi)`, computed per row.
    Range(Value, Value),
}

/// One output row of one channel block.
struct Row {
    /// x at the group's first input channel, w at the block's first
    /// output channel, y at (block, row, column 0), bias at the block.
    xg: Value,
    wblk: Value,
    yrow: Value,
    bias: Option<Value>,
    /// `oh * stride - pad`: the input row of kernel row 0.
    r0: Value,
    kh: Kh,
}

/// Renders `conv_row_tiles` for a convolution step with inputs `ins`
/// (x, w, optional bias) and output `y`.
pub fn row_tiles(
    kb: &mut Kb,
    k: &ConvRowTiles,
    win: &Window,
    ins: &[&TensorType],
    y: &TensorType,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let err = |what: String| Err(BackendError::Other(format!("conv_row_tiles: {what}")));
    let d = y.dtype;
    if !matches!(d, DType::F32 | DType::F64) || ins.iter().any(|t| t.dtype != d) {
        return err(format!(
            "computes f32 or f64 with every operand alike, not {y}"
        ));
    }
    let Some((h0, w0)) = win.rows_cols() else {
        return err("needs a 1-D or 2-D window".into());
    };
    let (cg, mg) = (win.cg(), win.mg());
    if k.channels == 0 || !mg.is_multiple_of(k.channels) || k.width == 0 {
        return err(format!(
            "c={} w={} do not tile {mg} channels",
            k.channels, k.width
        ));
    }
    let (h, w, phases) = if k.pad_copy {
        (h0.unpadded(), w0.unpadded(), w0.stride.max(1))
    } else {
        (h0, w0, 1)
    };
    let wph = w.input.div_ceil(phases);
    let g = Geo {
        h,
        w,
        phases,
        wph,
        row: phases * wph,
        plane: h.input * phases * wph,
        cg,
        ob: k.channels,
        ksz: h.k * w.k,
        out_plane: h.output * w.output,
        d,
        es: d.size() as i64,
    };
    let es = g.es;
    let xsrc = args.x(kb, 0)?;
    let wb = args.x(kb, 1)?;
    let bb = epi.bias().map(|i| args.x(kb, i)).transpose()?;
    let yb = args.outs[0];
    let copy = if k.pad_copy {
        Some(zeroed_stack(kb, win.channels * g.plane * es as usize)?)
    } else {
        None
    };
    // Valid kernel rows per output row, when padding cuts some.
    let kh_table = if h.border() > 0 {
        let v: Vec<i64> = (0..h.output)
            .flat_map(|o| {
                let (lo, hi) = h.valid_taps(o);
                [lo as i64, hi as i64]
            })
            .collect();
        Some(kb.table_i64(&v)?)
    } else {
        None
    };
    let x_img = (win.channels * h0.input * w0.input) as i64 * es;
    let y_img = (win.out_channels * g.out_plane) as i64 * es;
    kb.for_range(0, win.batch as i64, 1, |kb, n| {
        let xi = kb.at(xsrc, n, x_img);
        let xi = match copy {
            Some(buf) => {
                copy_in(kb, &g, xi, buf, (&h0, &w0), win.channels)?;
                buf
            }
            None => xi,
        };
        let yi = kb.at(yb, n, y_img);
        kb.for_range(0, win.groups as i64, 1, |kb, grp| {
            let xg = kb.at(xi, grp, (cg * g.plane) as i64 * es);
            kb.for_range(0, (mg / g.ob) as i64, 1, |kb, blk| {
                // o0, the block's first output channel.
                let o0 = kb.b.ins().imul_imm_s(grp, mg as i64);
                let b0 = kb.b.ins().imul_imm_s(blk, g.ob as i64);
                let o0 = kb.b.ins().iadd(o0, b0);
                let wblk = kb.at(wb, o0, (cg * g.ksz) as i64 * es);
                let yblk = kb.at(yi, o0, g.out_plane as i64 * es);
                let bias = bb.map(|b| kb.at(b, o0, es));
                kb.for_range(0, h.output as i64, 1, |kb, oh| {
                    let r0 = kb.b.ins().imul_imm_s(oh, h.stride as i64);
                    let r0 = kb.b.ins().iadd_imm_s(r0, -(h.pad as i64));
                    let kh = match kh_table {
                        Some(t) => {
                            let a = kb.at(t, oh, 16);
                            let lo = kb.load(types::I64, a, 0);
                            let hi = kb.load(types::I64, a, 8);
                            Kh::Range(lo, hi)
                        }
                        None => Kh::All,
                    };
                    let yrow = kb.at(yblk, oh, w.output as i64 * es);
                    let r = Row {
                        xg,
                        wblk,
                        yrow,
                        bias,
                        r0,
                        kh,
                    };
                    columns(kb, &g, k.width, epi, &r)
                })
            })
        })
    })
}

/// One output row: interior tiles, then the border columns.
fn columns(kb: &mut Kb, g: &Geo, vw: usize, epi: &Epi, r: &Row) -> Result<()> {
    let (lo, hi) = g.w.interior();
    let all = vec![true; g.w.k];
    if hi - lo < vw {
        return column_runs(kb, g, epi, r, 0, g.w.output);
    }
    let full = (hi - lo) / vw;
    let last = lo + (full - 1) * vw;
    kb.for_range(0, full as i64, 1, |kb, t| {
        let ow = kb.b.ins().imul_imm_s(t, vw as i64);
        let ow = kb.b.ins().iadd_imm_s(ow, lo as i64);
        tile(kb, g, epi, r, ow, last, vw, &all)
    })?;
    let rem = (hi - lo) % vw;
    if rem > 0 {
        let (start, width) = if epi.accumulate {
            (lo + full * vw, rem)
        } else {
            (hi - vw, vw)
        };
        let ow = kb.ci(start as i64);
        tile(kb, g, epi, r, ow, start, width, &all)?;
    }
    column_runs(kb, g, epi, r, 0, lo)?;
    column_runs(kb, g, epi, r, hi, g.w.output)
}

/// Columns `[from, to)` one at a time, in a loop per run of columns with
/// the same valid taps, each reading only those.
fn column_runs(kb: &mut Kb, g: &Geo, epi: &Epi, r: &Row, from: usize, to: usize) -> Result<()> {
    let mut at = from;
    while at < to {
        let taps = g.w.valid_taps(at);
        let end = (at..to).find(|&o| g.w.valid_taps(o) != taps).unwrap_or(to);
        let ok: Vec<bool> = (0..g.w.k).map(|t| (taps.0..taps.1).contains(&t)).collect();
        kb.for_range(at as i64, end as i64, 1, |kb, ow| {
            tile(kb, g, epi, r, ow, end - 1, 1, &ok)
        })?;
        at = end;
    }
    Ok(())
}

/// The tile of `width` columns from column `ow` (at most `ow_max`) of
/// the row's `g.ob` channels, reading the taps `kw_ok` allows.
#[allow(clippy::too_many_arguments)]
fn tile(
    kb: &mut Kb,
    g: &Geo,
    epi: &Epi,
    r: &Row,
    ow: Value,
    ow_max: usize,
    width: usize,
    kw_ok: &[bool],
) -> Result<()> {
    let es = g.es;
    let ty = cl(g.d);
    // Accumulator slots along the row: (first column, lanes).
    let quads = if g.d == DType::F32 { width / 4 } else { 0 };
    let slots: Vec<(usize, usize)> = (0..quads)
        .map(|q| (4 * q, 4))
        .chain((4 * quads..width).map(|j| (j, 1)))
        .collect();
    let ns = slots.len();
    let yt = kb.at(r.yrow, ow, es);
    let plane_out = g.out_plane as i64 * es;
    let mut accs = Vec::with_capacity(g.ob * ns);
    for b in 0..g.ob {
        let bias = match (epi.accumulate, r.bias) {
            (false, Some(bp)) => Some(kb.load(ty, bp, b as i64 * es)),
            _ => None,
        };
        for &(j0, lanes) in &slots {
            let vt = if lanes == 4 { F32X4 } else { ty };
            let init = if epi.accumulate {
                kb.load(vt, yt, b as i64 * plane_out + j0 as i64 * es)
            } else {
                match bias {
                    Some(s) if lanes == 4 => kb.splat(s),
                    Some(s) => s,
                    None => kb.cf(vt, 0.0),
                }
            };
            accs.push(kb.var(vt, init));
        }
    }
    if kw_ok.iter().any(|&v| v) {
        let cstep = g.cstep();
        let xcol = kb.b.ins().imul_imm_s(ow, cstep as i64 * es);
        kb.for_range(0, g.cg as i64, 1, |kb, ic| {
            let xc = kb.at(r.xg, ic, g.plane as i64 * es);
            let xc = kb.b.ins().iadd(xc, xcol);
            let wc = kb.at(r.wblk, ic, g.ksz as i64 * es);
            let body = |kb: &mut Kb, kh: Value| -> Result<()> {
                let ih = kb.b.ins().imul_imm_s(kh, g.h.dil as i64);
                let ih = kb.b.ins().iadd(ih, r.r0);
                let xr = kb.at(xc, ih, g.row as i64 * es);
                let wr = kb.at(wc, kh, g.w.k as i64 * es);
                let mut acc: Vec<Value> = accs.iter().map(|&a| kb.get(a)).collect();
                for kw in (0..g.w.k).filter(|&t| kw_ok[t]) {
                    let t = g.tap(kw);
                    let xs: Vec<Value> = slots
                        .iter()
                        .map(|&(j0, lanes)| {
                            let off = (j0 * cstep) as i64 + t;
                            if lanes == 4 {
                                // The pair of a stride-2 gather reads up
                                // to element off + 7 of the row.
                                let pair = ((ow_max * cstep) as i64 + off + 8) <= g.row as i64;
                                lanes4(kb, xr, off, cstep, pair)
                            } else {
                                kb.load(ty, xr, off * es)
                            }
                        })
                        .collect();
                    for b in 0..g.ob {
                        let ws = kb.load(ty, wr, ((b * g.cg * g.ksz + kw) as i64) * es);
                        let wv = (quads > 0).then(|| kb.splat(ws));
                        for (i, &(_, lanes)) in slots.iter().enumerate() {
                            let w = match wv {
                                Some(v) if lanes == 4 => v,
                                _ => ws,
                            };
                            let a = b * ns + i;
                            acc[a] = kb.mul_add(w, xs[i], acc[a]);
                        }
                    }
                }
                for (a, v) in accs.iter().zip(acc) {
                    kb.set(*a, v);
                }
                Ok(())
            };
            match r.kh {
                Kh::All => kb.for_range(0, g.h.k as i64, 1, body),
                Kh::Range(lo, hi) => kb.for_dyn(lo, hi, body),
            }
        })?;
    }
    for b in 0..g.ob {
        let yb = kb.off(yt, b as i64 * plane_out);
        for (i, &(j0, _)) in slots.iter().enumerate() {
            let v = kb.get(accs[b * ns + i]);
            let off = j0 as i64 * es;
            let v = epi.apply(kb, v, yb, off)?;
            kb.store(v, yb, off);
        }
    }
    Ok(())
}

/// Four f32 lanes at elements `off + l * step` from `base`: one load when
/// contiguous; for stride two, when `pair` says element `off + 7` may be
/// read, two loads and an even-lane shuffle; else lane by lane.
pub(super) fn lanes4(kb: &mut Kb, base: Value, off: i64, step: usize, pair: bool) -> Value {
    match step {
        1 => kb.load(F32X4, base, off * 4),
        2 if pair => {
            let a = kb.load(F32X4, base, off * 4);
            let b = kb.load(F32X4, base, off * 4 + 16);
            shuffle4(kb, a, b, [0, 2, 4, 6])
        }
        _ => {
            let e = kb.load(types::F32, base, off * 4);
            let mut v = kb.splat(e);
            for l in 1..4u8 {
                let e = kb.load(types::F32, base, (off + l as i64 * step as i64) * 4);
                v = kb.b.ins().insertlane(v, e, l);
            }
            v
        }
    }
}

/// Copies one image (`c` channels at `src`) into the zeroed stack buffer:
/// rows offset by the top padding, columns by the left padding and, with
/// phases, column `col` stored at `(col % s) * wph + col / s`.
fn copy_in(
    kb: &mut Kb,
    g: &Geo,
    src: Value,
    buf: Value,
    (h0, w0): (&Axis, &Axis),
    c: usize,
) -> Result<()> {
    let es = g.es;
    let (ih, iw, s) = (h0.input, w0.input, g.phases);
    let int = if es == 8 { types::I64 } else { types::I32 };
    kb.for_range(0, c as i64, 1, |kb, ch| {
        let sc = kb.at(src, ch, (ih * iw) as i64 * es);
        let dc = kb.at(buf, ch, g.plane as i64 * es);
        let dc = kb.off(dc, (h0.pad * g.row) as i64 * es);
        kb.for_range(0, ih as i64, 1, |kb, r| {
            let sr = kb.at(sc, r, iw as i64 * es);
            let dr = kb.at(dc, r, g.row as i64 * es);
            if s == 1 {
                let dr = kb.off(dr, w0.pad as i64 * es);
                return copy_run(kb, sr, dr, iw * es as usize, int);
            }
            for p in 0..s {
                // Source columns k with (k + pad) % s == p.
                let k0 = (p + s - w0.pad % s) % s;
                if k0 >= iw {
                    continue;
                }
                let cnt = (iw - k0).div_ceil(s);
                let from = kb.off(sr, k0 as i64 * es);
                let to = kb.off(dr, (p * g.wph + (k0 + w0.pad) / s) as i64 * es);
                kb.for_range(0, cnt as i64, 1, |kb, i| {
                    let a = kb.at(from, i, s as i64 * es);
                    let v = kb.load(int, a, 0);
                    let a = kb.at(to, i, es);
                    kb.store(v, a, 0);
                    Ok(())
                })?;
            }
            Ok(())
        })
    })
}

/// Copies `bytes` (a multiple of the element size of `int`) from `src`
/// to `dst`: 16 bytes at a time, then element by element.
fn copy_run(kb: &mut Kb, src: Value, dst: Value, bytes: usize, int: types::Type) -> Result<()> {
    let chunks = bytes / 16;
    kb.for_range(0, chunks as i64, 1, |kb, i| {
        let s = kb.at(src, i, 16);
        let v = kb.load(types::I8X16, s, 0);
        let d = kb.at(dst, i, 16);
        kb.store(v, d, 0);
        Ok(())
    })?;
    let es = int.bytes() as usize;
    for off in (chunks * 16..bytes).step_by(es) {
        let v = kb.load(int, src, off as i64);
        kb.store(v, dst, off as i64);
    }
    Ok(())
}
