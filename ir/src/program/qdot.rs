//! The data layout of the integer dot-product kernels (`qconv_dot`,
//! `qdw_dot`, `qgemm_dot`), decided once here for kernel selection and
//! both renderers.
//!
//! Vector dot-product instructions multiply unsigned 8-bit activations by
//! signed 8-bit weights (x86 VNNI's `vpdpbusd`) or 16-bit pairs
//! (`pmaddwd`) and sum `dot` products into each 32-bit lane. So the
//! kernels read activations made unsigned (`x + 128` for int8) and fold
//! the difference into the bias at generation time: with `u = x + shift`
//! and `z = x_zp + shift`, `sum (x - x_zp) w = sum u w - z sum w`. Padding
//! reads as `z` and contributes nothing, as the zero point must.
//!
//! Convolutions compute on a grid: the padded input split by stride phase
//! (`s_h x s_w` planes, each `rows x width`), so that tap `(kh, kw)` of
//! output `(oh, ow)` is element `oh * width + ow + off` of one phase plane
//! and every tap is one constant offset along the flat grid. The grid has
//! `width >= out_w` columns per output row; the extra ones are computed
//! and dropped.

use super::geometry::{Axis, Window};
use crate::dtype::DType;
use crate::tensor::Tensor;

/// What every activation is offset by to be unsigned: 128 for int8 (the
/// top bit flipped), 0 for uint8.
pub fn unsigned_shift(x: DType) -> i32 {
    if x == DType::I8 { 128 } else { 0 }
}

/// The value padding reads as: the zero point as an unsigned activation.
pub fn pad_value(x: DType, x_zp: i32) -> i32 {
    x_zp + unsigned_shift(x)
}

/// One kernel tap on the grid: its phase plane and its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tap {
    pub phase: usize,
    pub off: usize,
}

/// The grid of a 1-D or 2-D convolution (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Row and column axes (a pointwise window is one row of all
    /// positions, as [`Window::rows_cols`] has it).
    pub h: Axis,
    pub w: Axis,
    /// Rows of every phase plane that the padded input fills.
    pub rows: usize,
    /// Elements of every phase plane: its rows, and enough more that every
    /// computed position reads inside the plane.
    pub plane: usize,
    /// Elements per phase-plane row: the grid's row length.
    pub width: usize,
    /// Grid positions of the output: `out_h * width`.
    pub len: usize,
    /// Positions the kernel computes: `len` rounded up to whole vectors.
    pub computed: usize,
    /// Every tap in weight order (`kh` major).
    pub taps: Vec<Tap>,
}

impl Grid {
    /// The grid of `win` for vectors of `lanes` positions, with `slack`
    /// more elements readable past the last tap of the last position
    /// (sliding-window loads read ahead).
    pub fn new(win: &Window, lanes: usize, slack: usize) -> Option<Grid> {
        let (h, w) = win.rows_cols()?;
        let (sh, sw) = (h.stride.max(1), w.stride.max(1));
        let hp = h.input + h.pad + h.pad_end;
        let wp = w.input + w.pad + w.pad_end;
        let width = wp.div_ceil(sw).max(w.output).max(1);
        let len = h.output * width;
        let computed = len.div_ceil(lanes.max(1)) * lanes.max(1);
        let mut taps = Vec::with_capacity(h.k * w.k);
        for kh in 0..h.k {
            for kw in 0..w.k {
                let (dh, dw) = (kh * h.dil, kw * w.dil);
                taps.push(Tap {
                    phase: (dh % sh) * sw + dw % sw,
                    off: (dh / sh) * width + dw / sw,
                });
            }
        }
        let reach = computed + taps.iter().map(|t| t.off).max().unwrap_or(0) + slack;
        let rows = hp.div_ceil(sh);
        Some(Grid {
            h,
            w,
            rows,
            plane: (rows * width).max(reach),
            width,
            len,
            computed,
            taps,
        })
    }

    pub fn phases(&self) -> usize {
        self.h.stride.max(1) * self.w.stride.max(1)
    }

    /// Elements per phase plane.
    pub fn plane(&self) -> usize {
        self.plane
    }

    /// Every output column is a grid column: results go straight to the
    /// output (no dropped columns to compact away).
    pub fn dense(&self) -> bool {
        self.width == self.w.output
    }

    /// The phase planes are the input planes themselves (stride 1, no
    /// padding): element `i` of channel `c` is the input's, and past the
    /// plane's `h.input * w.input` elements reads the padding value.
    pub fn is_input(&self) -> bool {
        let no_pad = |a: &Axis| a.pad == 0 && a.pad_end == 0 && a.stride == 1;
        no_pad(&self.h) && no_pad(&self.w) && self.width == self.w.input
    }

    /// Rows `[lo, hi)` of phase-row `ph` that hold input rows: row `r`
    /// holds input row `r * s_h + ph - pad`.
    pub fn src_rows(&self, ph: usize) -> (usize, usize) {
        span(
            self.rows,
            |r| (r * self.h.stride.max(1) + ph) as i64 - self.h.pad as i64,
            self.h.input,
        )
    }

    /// Columns `[lo, hi)` of phase-column `pw` that hold input columns:
    /// column `j` holds input column `j * s_w + pw - pad`.
    pub fn src_cols(&self, pw: usize) -> (usize, usize) {
        span(
            self.width,
            |j| (j * self.w.stride.max(1) + pw) as i64 - self.w.pad as i64,
            self.w.input,
        )
    }
}

/// `[lo, hi)` of the `i < n` whose `pos(i)` lies in `[0, len)` (a
/// contiguous range, `pos` being increasing).
fn span(n: usize, pos: impl Fn(usize) -> i64, len: usize) -> (usize, usize) {
    let ok: Vec<usize> = (0..n)
        .filter(|&i| (0..len as i64).contains(&pos(i)))
        .collect();
    match (ok.first(), ok.last()) {
        (Some(&a), Some(&b)) => (a, b + 1),
        _ => (0, 0),
    }
}

/// A word of `dot` reduction elements as the instruction reads it: bytes
/// (dot 4) or 16-bit halves (dot 2), little-endian.
pub fn word(vals: &[i64], dot: usize) -> i32 {
    let mut w: u32 = 0;
    for (t, &v) in vals.iter().enumerate().take(dot) {
        w |= if dot == 4 {
            (v as u8 as u32) << (8 * t)
        } else {
            (v as u16 as u32) << (16 * t)
        };
    }
    w as i32
}

/// True when every weight minus its zero point fits the signed element of
/// a `dot` word (8 bits for 4, 16 bits for 2).
pub fn weights_fit(w: &Tensor, w_zp: i32, dot: usize) -> bool {
    let (lo, hi) = if dot == 4 {
        (i8::MIN as i64, i8::MAX as i64)
    } else {
        (i16::MIN as i64, i16::MAX as i64)
    };
    w.to_i64()
        .iter()
        .all(|&v| (lo..=hi).contains(&(v - w_zp as i64)))
}

/// Every requantization shift is at most zero (multipliers below one):
/// the vector requantization of the dot kernels relies on it.
pub fn shifts_fit(shift: &Tensor) -> bool {
    shift.to_i64().iter().all(|&s| s <= 0)
}

/// Reduction groups per output channel of a convolution: input channels
/// in groups of `dot` at each tap, or (im2col) the flattened (channel,
/// tap) reduction in groups of `dot`.
pub fn conv_groups(cg: usize, taps: usize, dot: usize, im2col: bool) -> usize {
    if im2col {
        (cg * taps).div_ceil(dot)
    } else {
        cg.div_ceil(dot) * taps
    }
}

/// The reduction element `t` of group `gi` as (input channel, tap), or
/// `None` past the end.
pub fn conv_element(
    gi: usize,
    t: usize,
    cg: usize,
    taps: usize,
    dot: usize,
    im2col: bool,
) -> Option<(usize, usize)> {
    if im2col {
        let e = gi * dot + t;
        (e < cg * taps).then(|| (e / taps, e % taps))
    } else {
        let ci = (gi / taps) * dot + t;
        (ci < cg).then_some((ci, gi % taps))
    }
}

/// Packed convolution weights: per output channel (in order) its words,
/// one per reduction group; output channel `m` starts at `m * groups`, so
/// a tile of consecutive channels reads `[group][channel]` from
/// [`conv_tile_words`].
pub fn conv_words(
    w: &Tensor,
    w_zp: i32,
    cg: usize,
    taps: usize,
    dot: usize,
    im2col: bool,
) -> Vec<Vec<i32>> {
    let wv = w.to_i64();
    let m = w.dims()[0];
    let ng = conv_groups(cg, taps, dot, im2col);
    (0..m)
        .map(|o| {
            (0..ng)
                .map(|gi| {
                    let vals: Vec<i64> = (0..dot)
                        .map(|t| match conv_element(gi, t, cg, taps, dot, im2col) {
                            Some((ci, tap)) => wv[(o * cg + ci) * taps + tap] - w_zp as i64,
                            None => 0,
                        })
                        .collect();
                    word(&vals, dot)
                })
                .collect()
        })
        .collect()
}

/// The words of output channels `[lo, hi)` interleaved as a tile reads
/// them: `[group][channel]`.
pub fn conv_tile_words(words: &[Vec<i32>], lo: usize, hi: usize) -> Vec<i32> {
    let ng = words.first().map_or(0, |w| w.len());
    let mut v = Vec::with_capacity(ng * (hi - lo));
    for gi in 0..ng {
        for row in &words[lo..hi] {
            v.push(row[gi]);
        }
    }
    v
}

/// The bias with the input zero point folded in: `bias[m] - z * sum_k (w
/// - w_zp)` over output channel `m`'s `k` weights, wrapped to 32 bits.
pub fn folded_bias(
    bias: Option<&Tensor>,
    w: &Tensor,
    w_zp: i32,
    x: DType,
    x_zp: i32,
    per_channel: usize,
) -> Vec<i32> {
    let wv = w.to_i64();
    let n = wv.len() / per_channel.max(1);
    let bv = bias.map(|b| b.to_i64());
    let z = pad_value(x, x_zp) as i64;
    (0..n)
        .map(|o| {
            let s: i64 = wv[o * per_channel..(o + 1) * per_channel]
                .iter()
                .map(|&v| v - w_zp as i64)
                .sum();
            let b = bv.as_ref().map_or(0, |b| b[o]);
            b.wrapping_sub(z.wrapping_mul(s)) as i32
        })
        .collect()
}

/// A group of up to `dot` depthwise taps at consecutive offsets of one
/// phase plane: lane `j` of a vector at grid position `q` reads elements
/// `q + j + off + t`, `t < dot`, and multiplies them by `taps[t]`'s weight
/// (zero where `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slide {
    pub phase: usize,
    pub off: usize,
    pub taps: Vec<Option<usize>>,
}

/// The sliding groups of a depthwise grid: per phase, taps by offset,
/// each group starting at the smallest offset not yet covered.
pub fn slides(g: &Grid, dot: usize) -> Vec<Slide> {
    let mut out = Vec::new();
    for ph in 0..g.phases() {
        let mut taps: Vec<(usize, usize)> = g
            .taps
            .iter()
            .enumerate()
            .filter(|(_, t)| t.phase == ph)
            .map(|(i, t)| (t.off, i))
            .collect();
        taps.sort_unstable();
        let mut k = 0;
        while k < taps.len() {
            let off = taps[k].0;
            let mut s = vec![None; dot];
            while k < taps.len() && taps[k].0 < off + dot {
                s[taps[k].0 - off] = Some(taps[k].1);
                k += 1;
            }
            out.push(Slide {
                phase: ph,
                off,
                taps: s,
            });
        }
    }
    out
}

/// Depthwise words: per channel, one word per slide.
pub fn dw_words(w: &Tensor, w_zp: i32, slides: &[Slide], dot: usize) -> Vec<Vec<i32>> {
    let wv = w.to_i64();
    let c = w.dims()[0];
    let taps = wv.len() / c.max(1);
    (0..c)
        .map(|ch| {
            slides
                .iter()
                .map(|s| {
                    let vals: Vec<i64> = s
                        .taps
                        .iter()
                        .map(|t| t.map_or(0, |i| wv[ch * taps + i] - w_zp as i64))
                        .collect();
                    word(&vals, dot)
                })
                .collect()
        })
        .collect()
}

/// Matrix-product words for output columns: `[column][group]` with the
/// reduction over `k` in groups of `dot` (zero past `k`), `b` being `[K,
/// N]` or (`trans_b`) `[N, K]`.
pub fn gemm_words(b: &Tensor, w_zp: i32, trans_b: bool, dot: usize) -> Vec<Vec<i32>> {
    let bv = b.to_i64();
    let (k, n) = if trans_b {
        (b.dims()[1], b.dims()[0])
    } else {
        (b.dims()[0], b.dims()[1])
    };
    let ng = k.div_ceil(dot);
    (0..n)
        .map(|j| {
            (0..ng)
                .map(|gi| {
                    let vals: Vec<i64> = (0..dot)
                        .map(|t| {
                            let p = gi * dot + t;
                            if p >= k {
                                0
                            } else if trans_b {
                                bv[j * k + p] - w_zp as i64
                            } else {
                                bv[p * n + j] - w_zp as i64
                            }
                        })
                        .collect();
                    word(&vals, dot)
                })
                .collect()
        })
        .collect()
}

/// The folded bias of a matrix product (per output column).
pub fn gemm_bias(
    bias: Option<&Tensor>,
    b: &Tensor,
    w_zp: i32,
    trans_b: bool,
    x: DType,
    x_zp: i32,
) -> Vec<i32> {
    let bv = b.to_i64();
    let (k, n) = if trans_b {
        (b.dims()[1], b.dims()[0])
    } else {
        (b.dims()[0], b.dims()[1])
    };
    let cols: Vec<i64> = (0..n)
        .flat_map(|j| {
            let bv = &bv;
            (0..k).map(move |p| {
                if trans_b {
                    bv[j * k + p]
                } else {
                    bv[p * n + j]
                }
            })
        })
        .collect();
    let t = Tensor::from_i64(DType::I64, vec![n, k], cols).expect("shape");
    folded_bias(bias, &t, w_zp, x, x_zp, k)
}

/// Bytes of one activation element in a dot copy: a byte for quads, a
/// 16-bit value for pairs.
pub fn elem_bytes(dot: usize) -> usize {
    if dot == 4 { 1 } else { 2 }
}

/// The stack buffers of a `qconv_dot` step, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvScratch {
    /// Padded phase planes of one group's input channels (0 when the
    /// copy reads the input itself).
    pub planes: usize,
    /// The dot copy of one group: `dot` elements interleaved per position.
    pub copy: usize,
    /// One tile's accumulators.
    pub acc: usize,
    /// One channel block's results on the grid, before the dropped
    /// columns are compacted away (0 for a dense grid).
    pub out: usize,
}

impl ConvScratch {
    pub fn total(&self) -> usize {
        self.planes + self.copy + self.acc + self.out
    }
}

/// The scratch of `qconv_dot` with these parameters on `grid`.
pub fn conv_scratch(
    grid: &Grid,
    cg: usize,
    dot: usize,
    im2col: bool,
    channels: usize,
    vectors: usize,
    lanes: usize,
) -> ConvScratch {
    let e = elem_bytes(dot);
    let planes = if grid.is_input() && !im2col {
        0
    } else {
        cg * grid.phases() * grid.plane()
    };
    let copy = if im2col {
        conv_groups(cg, grid.taps.len(), dot, true) * grid.computed * dot * e
    } else {
        cg.div_ceil(dot) * grid.phases() * grid.plane() * dot * e
    };
    ConvScratch {
        planes,
        copy,
        acc: channels * vectors * lanes * 4,
        out: if grid.dense() {
            0
        } else {
            channels * grid.computed
        },
    }
}

/// Bytes of `qdw_dot`'s scratch: one channel's phase planes (as bytes,
/// and widened to 16 bits for pairs), a tile's accumulators and one
/// channel's results on the grid.
pub fn dw_scratch(grid: &Grid, dot: usize, vectors: usize, lanes: usize) -> usize {
    let planes = grid.phases() * grid.plane() * (1 + if dot == 2 { 2 } else { 0 });
    let out = if grid.dense() { 0 } else { grid.computed };
    planes + vectors * lanes * 4 + out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::TensorType;
    use crate::op::ConvAttrs;

    fn window(c: usize, hw: [usize; 2], k: [usize; 2], s: usize, pad: usize) -> Window {
        let mut a = ConvAttrs::new(2);
        a.strides = vec![s, s];
        a.pads = vec![pad; 4];
        let out: Vec<usize> = (0..2).map(|d| (hw[d] + 2 * pad - k[d]) / s + 1).collect();
        Window::conv(
            &a,
            &TensorType::new(DType::I8, vec![1, c, hw[0], hw[1]]),
            &TensorType::new(DType::I8, vec![8, c, k[0], k[1]]),
            &TensorType::new(DType::I8, vec![1, 8, out[0], out[1]]),
        )
    }

    #[test]
    fn stride_two_taps_land_in_their_phase_planes() {
        // 3x3 stride 2 pad 1 on 8x8: padded 10x10, phases 5 columns wide.
        let g = Grid::new(&window(4, [8, 8], [3, 3], 2, 1), 4, 0).unwrap();
        assert_eq!((g.width, g.len, g.phases()), (5, 20, 4));
        assert_eq!(g.taps[0], Tap { phase: 0, off: 0 });
        assert_eq!(g.taps[1], Tap { phase: 1, off: 0 });
        assert_eq!(g.taps[2], Tap { phase: 0, off: 1 });
        assert_eq!(g.taps[4], Tap { phase: 3, off: 0 });
        assert_eq!(g.taps[8], Tap { phase: 0, off: 6 });
        // Phase row 0 of row-phase 0 is padding; rows 1.. hold input rows 1, 3, ...
        assert_eq!(g.src_rows(0), (1, 5));
        assert_eq!(g.src_rows(1), (0, 4));
        assert!(g.plane() >= g.computed + 6);
    }

    #[test]
    fn slides_group_consecutive_offsets() {
        let g = Grid::new(&window(1, [6, 6], [3, 3], 1, 1), 4, 64).unwrap();
        let s = slides(&g, 4);
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].off, 8);
        assert_eq!(s[1].taps, vec![Some(3), Some(4), Some(5), None]);
    }

    #[test]
    fn folding_the_zero_point_keeps_the_dot_product() {
        // (x - zp) . w == (x + 128) . w - (zp + 128) sum w.
        let w = Tensor::from_i64(DType::I8, vec![1, 3], vec![3, -2, 5]).unwrap();
        let b = Tensor::from_i64(DType::I32, vec![1], vec![7]).unwrap();
        let fb = folded_bias(Some(&b), &w, 0, DType::I8, -3, 3)[0] as i64;
        let x = [10i64, -128, 127];
        let want: i64 = 7 + x
            .iter()
            .zip([3, -2, 5])
            .map(|(a, w)| (a + 3) * w)
            .sum::<i64>();
        let got: i64 = fb
            + x.iter()
                .zip([3, -2, 5])
                .map(|(a, w)| (a + 128) * w)
                .sum::<i64>();
        assert_eq!(got, want);
        assert_eq!(word(&[1, -1, 2, -128], 4), 0x80_02_ff_01u32 as i32);
    }
}
