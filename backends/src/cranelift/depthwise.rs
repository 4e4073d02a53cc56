//! Depthwise f32 convolution (one input channel per output channel) and
//! 2-D pooling through one window kernel, in the forms the step's kernel
//! names:
//!
//! - `dw_rows` / `pool_rows`: f32x4 vectors along each output row, the
//!   channel's taps broadcast once per channel. Stride 2 loads two vectors
//!   and keeps the even lanes (one `shufps`). Border columns, where a
//!   window leaves the input, are computed one position at a time with only
//!   their valid taps, unless the plane is first copied into a zero-padded
//!   stack buffer.
//! - `dw_channels_last`: a block of channels is copied into a zero-padded
//!   channels-last buffer on the stack, and the kernel runs f32x4 along
//!   channels with no border cases at all.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Value, types};
use nnc_ir::Tensor;
use nnc_ir::program::{Axis, DepthwiseChannelsLast};

use super::Args;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use crate::error::Result;

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// `[a0, a2, b0, b2]`: the even lanes of the eight floats `a ++ b`.
fn even_lanes(kb: &mut Kb, a: Value, b: Value) -> Value {
    shuffle4(kb, a, b, [0, 2, 4, 6])
}

/// What a window kernel computes at each output position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Win {
    /// Depthwise convolution: bias plus the channel's weighted taps.
    Dw,
    /// Max pooling (NaN wins).
    Max,
    /// Average pooling; with `include_pad` the divisor counts padded taps
    /// inside `[-pad, input + pad_end)` per axis.
    Avg {
        include_pad: bool,
        pad_end_h: usize,
        pad_end_w: usize,
    },
}

/// Taps of one axis that count towards an average's divisor at output `o`.
fn count(a: &Axis, o: usize, include_pad: bool, pad_end: usize) -> usize {
    (0..a.k)
        .filter(|&t| {
            let p = (o * a.stride + t * a.dil) as i64 - a.pad as i64;
            if include_pad {
                p >= -(a.pad as i64) && p < (a.input + pad_end) as i64
            } else {
                (0..a.input as i64).contains(&p)
            }
        })
        .count()
}

/// Per-channel values the row kernels use.
struct Chan<'a> {
    /// Tap weights as scalars, and broadcast when kept in registers.
    ws: &'a [Value],
    wsplat: &'a [Option<Value>],
    wc: Value,
    bias: Value,
}

/// A two-source lane shuffle of f32x4 values (`lanes` index `a ++ b`).
pub(super) fn shuffle4(kb: &mut Kb, a: Value, b: Value, lanes: [u8; 4]) -> Value {
    let a8 = kb.b.ins().bitcast(types::I8X16, little(), a);
    let b8 = kb.b.ins().bitcast(types::I8X16, little(), b);
    let mask: Vec<u8> = lanes
        .iter()
        .flat_map(|&l| (0..4u8).map(move |byte| l * 4 + byte))
        .collect();
    let imm = kb.b.func.dfg.immediates.push(ConstantData::from(mask));
    let s = kb.b.ins().shuffle(a8, b8, imm);
    kb.b.ins().bitcast(F32X4, little(), s)
}

/// Transposes a 4x4 block held as four row vectors (eight shuffles, each
/// a single unpack instruction on x64).
pub(super) fn transpose4(kb: &mut Kb, r: [Value; 4]) -> [Value; 4] {
    let t0 = shuffle4(kb, r[0], r[1], [0, 4, 1, 5]);
    let t1 = shuffle4(kb, r[2], r[3], [0, 4, 1, 5]);
    let t2 = shuffle4(kb, r[0], r[1], [2, 6, 3, 7]);
    let t3 = shuffle4(kb, r[2], r[3], [2, 6, 3, 7]);
    [
        shuffle4(kb, t0, t1, [0, 1, 4, 5]),
        shuffle4(kb, t0, t1, [2, 3, 6, 7]),
        shuffle4(kb, t2, t3, [0, 1, 4, 5]),
        shuffle4(kb, t2, t3, [2, 3, 6, 7]),
    ]
}

/// How a row-vector window kernel runs: what it computes, the output
/// columns per interior block (a multiple of four), whether each plane is
/// read from a zero-padded copy, and the epilogue of a convolution.
pub struct RowsSpec<'a> {
    pub op: Win,
    pub width: usize,
    pub pad_copy: bool,
    pub epi: Option<&'a Epi<'a>>,
}

/// Vectors along output rows (NCHW in place) of `n * c` planes: depthwise
/// convolution (`wt`, `bt`) or pooling.
#[allow(clippy::too_many_arguments)]
pub fn rows(
    kb: &mut Kb,
    spec: &RowsSpec,
    (n, c): (usize, usize),
    h: Axis,
    w: Axis,
    wt: Option<&Tensor>,
    bt: Option<&Tensor>,
    args: &Args,
) -> Result<()> {
    let op = spec.op;
    let taps = h.k * w.k;
    let plane_in = (h.input * w.input * 4) as i64;
    let plane_out = (h.output * w.output * 4) as i64;
    let (orig_h, orig_w) = (h, w);
    let tabs = match wt {
        Some(wt) => {
            let wv: Vec<f32> = wt.to_f64().iter().map(|&v| v as f32).collect();
            let bv: Vec<f32> = match bt {
                Some(b) => b.to_f64().iter().map(|&v| v as f32).collect(),
                None => vec![0.0; c],
            };
            Some((kb.table_f32(&wv)?, kb.table_f32(&bv)?))
        }
        None => None,
    };
    let xb = args.x(kb, 0)?;
    let yb = args.outs[0];
    let keep = taps <= 9;
    // Depthwise convolution reads each plane from a zero-padded copy on the
    // stack when it fits: every output is then interior (no scalar border
    // positions) and the copy is one contiguous pass per row. The copy has
    // a vector of slack so stride-2 pair loads stay inside it.
    let (ph, pw) = (h.reach(), w.reach() + 4);
    let pad_copy = spec.pad_copy;
    let (hh, ww, buf) = if pad_copy {
        let buf = zeroed_stack(kb, ph * pw * 4)?;
        let hh = Axis {
            input: ph,
            pad: 0,
            ..h
        };
        let ww = Axis {
            input: pw,
            pad: 0,
            ..w
        };
        (hh, ww, Some(buf))
    } else {
        (h, w, None)
    };
    let (h, w) = (hh, ww);
    kb.for_range(0, (n * c) as i64, 1, |kb, pl| {
        let xsrc = kb.at(xb, pl, plane_in);
        let yc = kb.at(yb, pl, plane_out);
        let xc = match buf {
            Some(buf) => {
                copy_padded(kb, xsrc, buf, &orig_h, &orig_w, pw)?;
                buf
            }
            None => xsrc,
        };
        // The channel's taps as scalars (for border columns) and, for small
        // kernels, broadcast once into registers.
        let (ws, wsplat, wc, bias) = match tabs {
            Some((wp, bp)) => {
                let ch = kb.b.ins().urem_imm_s(pl, c as i64);
                let wc = kb.at(wp, ch, (taps * 4) as i64);
                let ba = kb.at(bp, ch, 4);
                let bias = kb.load(types::F32, ba, 0);
                let ws: Vec<Value> = (0..taps)
                    .map(|t| kb.load(types::F32, wc, (t * 4) as i64))
                    .collect();
                let wsplat: Vec<Option<Value>> =
                    ws.iter().map(|&s| keep.then(|| kb.splat(s))).collect();
                (ws, wsplat, wc, bias)
            }
            None => (vec![], vec![], xc, xc),
        };
        let ch = Chan {
            ws: &ws,
            wsplat: &wsplat,
            wc,
            bias,
        };
        let (rlo, rhi) = h.interior();
        let row = |kb: &mut Kb, oh: Value, konst: Option<usize>| -> Result<()> {
            let r0 = kb.b.ins().imul_imm_s(oh, h.stride as i64);
            let r0 = kb.b.ins().iadd_imm_s(r0, -(h.pad as i64));
            let xrow = kb.at(xc, r0, (w.input * 4) as i64);
            let yrow = kb.at(yc, oh, (w.output * 4) as i64);
            let kh_ok: Vec<bool> = (0..h.k)
                .map(|k| konst.is_none_or(|o| h.valid(o, k)))
                .collect();
            let hcnt = match (op, konst) {
                (
                    Win::Avg {
                        include_pad,
                        pad_end_h,
                        ..
                    },
                    Some(o),
                ) => count(&h, o, include_pad, pad_end_h),
                _ => h.k,
            };
            row_cols(kb, spec, h, w, xrow, yrow, &ch, &kh_ok, hcnt)
        };
        split_rows(kb, (rlo, rhi), h.output, row)
    })
}

/// Runs `row` for every output row `0..n`: the interior `[lo, hi)` as one
/// loop (`None`: every tap valid), the border rows one by one with their
/// constant index, so each gets code with only its valid taps.
pub fn split_rows(
    kb: &mut Kb,
    (lo, hi): (usize, usize),
    n: usize,
    row: impl Fn(&mut Kb, Value, Option<usize>) -> Result<()>,
) -> Result<()> {
    let border = |kb: &mut Kb, range: std::ops::Range<usize>| -> Result<()> {
        for oh in range {
            let v = kb.ci(oh as i64);
            row(kb, v, Some(oh))?;
        }
        Ok(())
    };
    if lo >= hi {
        return border(kb, 0..n);
    }
    border(kb, 0..lo)?;
    kb.for_range(lo as i64, hi as i64, 1, |kb, oh| row(kb, oh, None))?;
    border(kb, hi..n)
}

/// A zero-filled stack buffer of `bytes` (rounded up to whole vectors).
pub(super) fn zeroed_stack(kb: &mut Kb, bytes: usize) -> Result<Value> {
    let n = bytes.div_ceil(16);
    let buf = kb.stack(n * 16);
    let zero = kb.cf(F32X4, 0.0);
    kb.for_range(0, n as i64, 1, |kb, i| {
        let a = kb.at(buf, i, 16);
        kb.store(zero, a, 0);
        Ok(())
    })?;
    Ok(buf)
}

/// Copies one input plane into the interior of a zero-bordered buffer
/// whose rows are `pw` floats long.
pub(super) fn copy_padded(
    kb: &mut Kb,
    src: Value,
    buf: Value,
    h: &Axis,
    w: &Axis,
    pw: usize,
) -> Result<()> {
    let n = w.input as i64;
    kb.for_range(0, h.input as i64, 1, |kb, ih| {
        let s = kb.at(src, ih, n * 4);
        let d = kb.at(buf, ih, (pw * 4) as i64);
        let d = kb.off(d, ((h.pad * pw + w.pad) * 4) as i64);
        let n4 = n / 4 * 4;
        kb.for_range(0, n4 / 4, 1, |kb, i| {
            let sa = kb.at(s, i, 16);
            let v = kb.load(F32X4, sa, 0);
            let da = kb.at(d, i, 16);
            kb.store(v, da, 0);
            Ok(())
        })?;
        for i in n4..n {
            let v = kb.load(types::F32, s, i * 4);
            kb.store(v, d, i * 4);
        }
        Ok(())
    })
}

/// Combines one tap into the accumulator.
pub(super) fn combine(kb: &mut Kb, op: Win, xv: Value, wv: Option<Value>, acc: Value) -> Value {
    match op {
        Win::Dw => kb.mul_add(xv, wv.expect("depthwise weights"), acc),
        Win::Max => {
            if kb.ty(acc) == F32X4 {
                // (v > acc || v != v) ? v : acc, lane-wise: NaN sticks, as
                // in the scalar form, in four instructions instead of
                // Cranelift's eight-instruction IEEE fmax.
                let gt = kb.b.ins().fcmp(FloatCC::GreaterThan, xv, acc);
                let nan = kb.b.ins().fcmp(FloatCC::Unordered, xv, xv);
                let m = kb.b.ins().bor(gt, nan);
                let m = kb.b.ins().bitcast(F32X4, little(), m);
                kb.b.ins().bitselect(m, xv, acc)
            } else {
                super::reduce::nan_sticky(kb, FloatCC::GreaterThan, xv, acc)
            }
        }
        Win::Avg { .. } => kb.b.ins().fadd(acc, xv),
    }
}

#[allow(clippy::too_many_arguments)]
fn row_cols(
    kb: &mut Kb,
    spec: &RowsSpec,
    h: Axis,
    w: Axis,
    xrow: Value,
    yrow: Value,
    ch: &Chan,
    kh_ok: &[bool],
    hcnt: usize,
) -> Result<()> {
    let op = spec.op;
    let row_vecs = (spec.width / 4).max(1);
    let (clo, chi) = w.interior();
    let s = w.stride as i64;
    let init = |kb: &mut Kb, ty| match op {
        Win::Dw => {
            if ty == F32X4 {
                kb.splat(ch.bias)
            } else {
                ch.bias
            }
        }
        Win::Max => kb.cf(ty, f64::NEG_INFINITY),
        Win::Avg { .. } => kb.cf(ty, 0.0),
    };
    let finish = |kb: &mut Kb, acc: Value, div: usize, addr: Value, off: i64| -> Result<Value> {
        let mut r = acc;
        if let Win::Avg { .. } = op {
            let ty = kb.ty(acc);
            let d = kb.cf(ty, div.max(1) as f64);
            r = kb.b.ins().fdiv(r, d);
            if div == 0 {
                r = kb.cf(ty, 0.0);
            }
        }
        if let Some(e) = spec.epi {
            r = e.apply(kb, r, addr, off)?;
        }
        Ok(r)
    };
    // One output position, valid taps only.
    let scalar_at = |kb: &mut Kb, ow: usize| -> Result<()> {
        let mut acc = init(kb, types::F32);
        for kh in 0..h.k {
            if !kh_ok[kh] {
                continue;
            }
            for kw in 0..w.k {
                if !w.valid(ow, kw) {
                    continue;
                }
                let off = (kh * h.dil * w.input) as i64 + ow as i64 * s + (kw * w.dil) as i64
                    - w.pad as i64;
                let xv = kb.load(types::F32, xrow, off * 4);
                let wv = ch.ws.get(kh * w.k + kw).copied();
                acc = combine(kb, op, xv, wv, acc);
            }
        }
        let wcnt = match op {
            Win::Avg {
                include_pad,
                pad_end_w,
                ..
            } => count(&w, ow, include_pad, pad_end_w),
            _ => w.k,
        };
        let r = finish(kb, acc, hcnt * wcnt, yrow, ow as i64 * 4)?;
        kb.store(r, yrow, ow as i64 * 4);
        Ok(())
    };
    // `nv` vectors of positions from `ow` (every tap valid).
    let vectors = |kb: &mut Kb, ow: Value, nv: usize| -> Result<()> {
        let xo = kb.b.ins().imul_imm_s(ow, s * 4);
        let xcol = kb.b.ins().iadd(xrow, xo);
        let ycol = kb.at(yrow, ow, 4);
        let first = init(kb, F32X4);
        let mut acc = vec![first; nv];
        for kh in 0..h.k {
            if !kh_ok[kh] {
                continue;
            }
            for kw in 0..w.k {
                let t = kh * w.k + kw;
                let wvec = match op {
                    Win::Dw => Some(match ch.wsplat[t] {
                        Some(v) => v,
                        None => {
                            let l = kb.load(types::F32, ch.wc, (t * 4) as i64);
                            kb.splat(l)
                        }
                    }),
                    _ => None,
                };
                for (v, a) in acc.iter_mut().enumerate() {
                    let off =
                        (kh * h.dil * w.input) as i64 + (4 * v) as i64 * s + (kw * w.dil) as i64
                            - w.pad as i64;
                    let xv = if s == 1 {
                        kb.load(F32X4, xcol, off * 4)
                    } else {
                        let lo = kb.load(F32X4, xcol, off * 4);
                        let hi = kb.load(F32X4, xcol, off * 4 + 16);
                        even_lanes(kb, lo, hi)
                    };
                    *a = combine(kb, op, xv, wvec, *a);
                }
            }
        }
        for (v, a) in acc.into_iter().enumerate() {
            let r = finish(kb, a, hcnt * w.k, ycol, (16 * v) as i64)?;
            kb.store(r, ycol, (16 * v) as i64);
        }
        Ok(())
    };
    if clo >= chi {
        for ow in 0..w.output {
            scalar_at(kb, ow)?;
        }
        return Ok(());
    }
    for ow in 0..clo {
        scalar_at(kb, ow)?;
    }
    // A stride-2 vector reads eight inputs; the last one must stay inside
    // the row, so the vector region may end before the interior does.
    let fits = |ow: usize| -> bool {
        let last = (ow + 4 * row_vecs - 1) * w.stride
            + (w.k - 1) * w.dil
            + if w.stride == 2 { 1 } else { 0 };
        (last as i64 - w.pad as i64) < w.input as i64
    };
    let block = 4 * row_vecs;
    let mut full = (chi - clo) / block;
    while full > 0 && !fits(clo + (full - 1) * block) {
        full -= 1;
    }
    kb.for_range(0, full as i64, 1, |kb, i| {
        let ow = kb.b.ins().imul_imm_s(i, block as i64);
        let ow = kb.b.ins().iadd_imm_s(ow, clo as i64);
        vectors(kb, ow, row_vecs)
    })?;
    let mut at = clo + full * block;
    let fits1 = |ow: usize| -> bool {
        let last = (ow + 3) * w.stride + (w.k - 1) * w.dil + if w.stride == 2 { 1 } else { 0 };
        (last as i64 - w.pad as i64) < w.input as i64
    };
    while at + 4 <= chi && fits1(at) {
        let v = kb.ci(at as i64);
        vectors(kb, v, 1)?;
        at += 4;
    }
    for ow in at..w.output {
        scalar_at(kb, ow)?;
    }
    Ok(())
}

/// Small planes: channels-last, zero-padded, a block of `k.block`
/// channels at a time, `k.positions` output positions per tile.
#[allow(clippy::too_many_arguments)]
pub fn channels_last(
    kb: &mut Kb,
    k: &DepthwiseChannelsLast,
    (n, c): (usize, usize),
    h: Axis,
    w: Axis,
    wt: &Tensor,
    bt: Option<&Tensor>,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let hwc_block = k.block.max(1);
    let taps = h.k * w.k;
    let (ph, pw) = (h.reach(), w.reach());
    let nblk = c.div_ceil(hwc_block);
    let cpad = nblk * hwc_block;
    // Packed weights [block][tap][16] and bias [block][16], zero padded.
    let wv = wt.to_f64();
    let mut packed = vec![0f32; nblk * taps * hwc_block];
    for ch in 0..c {
        let (b, j) = (ch / hwc_block, ch % hwc_block);
        for t in 0..taps {
            packed[(b * taps + t) * hwc_block + j] = wv[ch * taps + t] as f32;
        }
    }
    let mut pbias = vec![0f32; cpad];
    if let Some(b) = bt {
        for (i, v) in b.to_f64().iter().enumerate() {
            pbias[i] = *v as f32;
        }
    }
    let wp = kb.table_f32(&packed)?;
    let bp = kb.table_f32(&pbias)?;
    let xb = args.x(kb, 0)?;
    let yb = args.outs[0];
    // Zeroed once: the border stays zero; interior lanes are rewritten per
    // block (lanes of channels past the end are never stored).
    let buf = zeroed_stack(kb, ph * pw * hwc_block * 4)?;
    let plane_in = (h.input * w.input) as i64;
    let plane_out = (h.output * w.output) as i64;
    // One block of `cn` channels: x and y at its first channel, its packed
    // weights and bias. Full blocks run in a loop, the remainder once.
    let block =
        |kb: &mut Kb, xc0: Value, yc0: Value, wb: Value, bb: Value, cn: usize| -> Result<()> {
            // Transpose the block in: buf[ih + pad][iw + pad][j] = x[j][ih][iw],
            // 4x4 tiles (four channels by four columns) through shuffles,
            // single elements at the edges.
            let groups = cn / 4;
            let w4 = w.input / 4 * 4;
            let pos = (hwc_block * 4) as i64;
            let base = ((h.pad * pw + w.pad) * hwc_block) as i64 * 4;
            kb.for_range(0, h.input as i64, 1, |kb, ih| {
                let br = kb.at(buf, ih, (pw * hwc_block * 4) as i64);
                let xr = kb.at(xc0, ih, (w.input * 4) as i64);
                for g in 0..groups {
                    let plane = |q: usize| ((4 * g + q) as i64) * plane_in * 4;
                    for iw in (0..w4).step_by(4) {
                        let v: Vec<Value> = (0..4)
                            .map(|q| kb.load(F32X4, xr, plane(q) + iw as i64 * 4))
                            .collect();
                        let t = transpose4(kb, [v[0], v[1], v[2], v[3]]);
                        for (k, tv) in t.into_iter().enumerate() {
                            kb.store(tv, br, base + (iw + k) as i64 * pos + (16 * g) as i64);
                        }
                    }
                    for iw in w4..w.input {
                        for q in 0..4 {
                            let e = kb.load(types::F32, xr, plane(q) + iw as i64 * 4);
                            kb.store(e, br, base + iw as i64 * pos + ((4 * g + q) * 4) as i64);
                        }
                    }
                }
                for j in groups * 4..cn {
                    for iw in 0..w.input {
                        let e = kb.load(types::F32, xr, j as i64 * plane_in * 4 + iw as i64 * 4);
                        kb.store(e, br, base + iw as i64 * pos + (j * 4) as i64);
                    }
                }
                Ok(())
            })?;
            hwc_compute(kb, k, epi, h, w, buf, pw, wb, bb, yc0, cn, plane_out)
        };
    let full = c / hwc_block;
    let rem = c % hwc_block;
    kb.for_range(0, n as i64, 1, |kb, img| {
        let xi = kb.at(xb, img, c as i64 * plane_in * 4);
        let yi = kb.at(yb, img, c as i64 * plane_out * 4);
        kb.for_range(0, full as i64, 1, |kb, blk| {
            let xc0 = kb.at(xi, blk, hwc_block as i64 * plane_in * 4);
            let yc0 = kb.at(yi, blk, hwc_block as i64 * plane_out * 4);
            let wb = kb.at(wp, blk, (taps * hwc_block * 4) as i64);
            let bb = kb.at(bp, blk, (hwc_block * 4) as i64);
            block(kb, xc0, yc0, wb, bb, hwc_block)
        })?;
        if rem > 0 {
            let c0 = full * hwc_block;
            let xc0 = kb.off(xi, c0 as i64 * plane_in * 4);
            let yc0 = kb.off(yi, c0 as i64 * plane_out * 4);
            let wb = kb.off(wp, (full * taps * hwc_block * 4) as i64);
            let bb = kb.off(bp, (c0 * 4) as i64);
            block(kb, xc0, yc0, wb, bb, rem)?;
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn hwc_compute(
    kb: &mut Kb,
    k: &DepthwiseChannelsLast,
    epi: &Epi,
    h: Axis,
    w: Axis,
    buf: Value,
    pw: usize,
    wb: Value,
    bb: Value,
    yc: Value,
    cn: usize,
    plane_out: i64,
) -> Result<()> {
    let hwc_block = k.block.max(1);
    let hwc_p = k.positions.max(1);
    let nv = cn.div_ceil(4);
    let row_bytes = (pw * hwc_block * 4) as i64;
    let pos_bytes = (hwc_block * 4) as i64;
    let tile = |kb: &mut Kb, oh: Value, ow: Value, np: usize| -> Result<()> {
        let r = kb.b.ins().imul_imm_s(oh, h.stride as i64 * row_bytes);
        let cpos = kb.b.ins().imul_imm_s(ow, w.stride as i64 * pos_bytes);
        let base = kb.b.ins().iadd(buf, r);
        let base = kb.b.ins().iadd(base, cpos);
        let mut acc: Vec<Value> = Vec::with_capacity(np * nv);
        for _ in 0..np {
            for v in 0..nv {
                acc.push(kb.load(F32X4, bb, (v * 16) as i64));
            }
        }
        for kh in 0..h.k {
            for kw in 0..w.k {
                let t = kh * w.k + kw;
                let wvs: Vec<Value> = (0..nv)
                    .map(|v| kb.load(F32X4, wb, ((t * hwc_block + 4 * v) * 4) as i64))
                    .collect();
                for p in 0..np {
                    let off = (kh * h.dil) as i64 * row_bytes
                        + ((p * w.stride + kw * w.dil) as i64) * pos_bytes;
                    for v in 0..nv {
                        let xv = kb.load(F32X4, base, off + (v * 16) as i64);
                        let i = p * nv + v;
                        acc[i] = kb.mul_add(xv, wvs[v], acc[i]);
                    }
                }
            }
        }
        // Scatter: lane l of vector v is channel 4v + l.
        let orow = kb.b.ins().imul_imm_s(oh, w.output as i64);
        let opos = kb.b.ins().iadd(orow, ow);
        let ya = kb.at(yc, opos, 4);
        for p in 0..np {
            for v in 0..nv {
                let mut r = acc[p * nv + v];
                if epi.has_residual() {
                    for l in 0..4 {
                        let ch = 4 * v + l;
                        if ch >= cn {
                            break;
                        }
                        let off = ch as i64 * plane_out * 4 + (p * 4) as i64;
                        let e = kb.b.ins().extractlane(r, l as u8);
                        let e = epi.apply(kb, e, ya, off)?;
                        kb.store(e, ya, off);
                    }
                    continue;
                }
                r = epi.apply(kb, r, ya, 0)?;
                let bits = kb.b.ins().bitcast(types::I32X4, little(), r);
                for l in 0..4 {
                    let ch = 4 * v + l;
                    if ch >= cn {
                        break;
                    }
                    let e = kb.b.ins().extractlane(bits, l as u8);
                    kb.store(e, ya, ch as i64 * plane_out * 4 + (p * 4) as i64);
                }
            }
        }
        Ok(())
    };
    kb.for_range(0, h.output as i64, 1, |kb, oh| {
        let full = w.output / hwc_p;
        kb.for_range(0, full as i64, 1, |kb, i| {
            let ow = kb.b.ins().imul_imm_s(i, hwc_p as i64);
            tile(kb, oh, ow, hwc_p)
        })?;
        for ow in full * hwc_p..w.output {
            let v = kb.ci(ow as i64);
            tile(kb, oh, v, 1)?;
        }
        Ok(())
    })
}
