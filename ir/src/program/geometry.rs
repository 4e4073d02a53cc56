//! Window geometry: the one description of a sliding window that every
//! convolution and pooling kernel, both backends and the kernel selection
//! share. Shapes are static, so every border case (which taps of which
//! output fall outside the input) is decided from this at generation time.

use crate::dtype::TensorType;
use crate::op::{ConvAttrs, PoolAttrs};

/// One spatial axis of a window: `output` positions, each reading `k` taps
/// at `o * stride + t * dil - pad` of an `input`-long axis padded by `pad`
/// before and `pad_end` after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Axis {
    pub input: usize,
    pub output: usize,
    pub k: usize,
    pub stride: usize,
    pub dil: usize,
    pub pad: usize,
    pub pad_end: usize,
}

impl Axis {
    /// An axis of length `n` with a one-tap window (the missing axis of a
    /// 1-D window seen as 2-D).
    pub fn unit(n: usize) -> Axis {
        Axis {
            input: n,
            output: n,
            k: 1,
            stride: 1,
            dil: 1,
            pad: 0,
            pad_end: 0,
        }
    }

    /// The input position tap `t` of output `o` reads (negative or past the
    /// end when it falls in the padding).
    pub fn pos(&self, o: usize, t: usize) -> i64 {
        (o * self.stride + t * self.dil) as i64 - self.pad as i64
    }

    /// True when tap `t` of output `o` reads inside the input.
    pub fn valid(&self, o: usize, t: usize) -> bool {
        (0..self.input as i64).contains(&self.pos(o, t))
    }

    /// Extent of the dilated window minus one.
    pub fn span(&self) -> usize {
        self.k.saturating_sub(1) * self.dil
    }

    /// `[lo, hi)`: the outputs whose every tap is inside the input. Always
    /// `lo <= hi <= output`, so `[0, lo)`, `[lo, hi)` and `[hi, output)`
    /// partition the outputs; an empty interior has `lo == hi` and every
    /// output is a border output.
    pub fn interior(&self) -> (usize, usize) {
        let lo = self.pad.div_ceil(self.stride.max(1)).min(self.output);
        let last = self.input as i64 - 1 + self.pad as i64 - self.span() as i64;
        let hi = if last < 0 {
            0
        } else {
            (last as usize / self.stride.max(1) + 1).min(self.output)
        };
        (lo, hi.max(lo))
    }

    /// Outputs outside the interior.
    pub fn border(&self) -> usize {
        let (lo, hi) = self.interior();
        self.output - (hi - lo)
    }

    /// `[lo, hi)`: the outputs for which tap `t` reads inside the input.
    pub fn tap_range(&self, t: usize) -> (usize, usize) {
        let off = (t * self.dil) as i64 - self.pad as i64;
        let s = self.stride.max(1) as i64;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let top = self.input as i64 - 1 - off;
        let hi = if top < 0 { 0 } else { top / s + 1 };
        let lo = lo.clamp(0, self.output as i64) as usize;
        let hi = hi.clamp(0, self.output as i64) as usize;
        (lo, hi.max(lo))
    }

    /// `[lo, hi)`: the taps of output `o` that read inside the input.
    pub fn valid_taps(&self, o: usize) -> (usize, usize) {
        let valid: Vec<usize> = (0..self.k).filter(|&t| self.valid(o, t)).collect();
        match (valid.first(), valid.last()) {
            (Some(&l), Some(&h)) => (l, h + 1),
            _ => (0, 0),
        }
    }

    /// Taps of output `o` inside `[-pad, input + pad_end)`: the divisor of
    /// an average that counts padding.
    pub fn padded_taps(&self, o: usize) -> usize {
        let hi = (self.input + self.pad_end) as i64;
        (0..self.k)
            .filter(|&t| (-(self.pad as i64)..hi).contains(&self.pos(o, t)))
            .count()
    }

    /// Length of a zero-padded copy of the axis that every tap of every
    /// output reads inside of (the padding before the input included).
    pub fn reach(&self) -> usize {
        if self.output == 0 {
            return self.input + self.pad;
        }
        let reach = (self.output - 1) * self.stride + self.span() + 1;
        reach.max(self.input + self.pad)
    }

    /// The axis read from a zero-padded copy of `pad + input + pad_end`
    /// positions: same outputs, no padding.
    pub fn unpadded(&self) -> Axis {
        Axis {
            input: self.input + self.pad + self.pad_end,
            pad: 0,
            pad_end: 0,
            ..*self
        }
    }
}

/// The geometry of a convolution or pooling step: batch, channels, groups
/// and one [`Axis`] per spatial dim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Output channels (equal to `channels` for pooling).
    pub out_channels: usize,
    pub groups: usize,
    pub axes: Vec<Axis>,
}

impl Window {
    /// The window of a convolution `x * w -> y`.
    pub fn conv(a: &ConvAttrs, x: &TensorType, w: &TensorType, y: &TensorType) -> Window {
        let n = x.rank().saturating_sub(2);
        let axes = (0..n)
            .map(|d| Axis {
                input: x.dims[2 + d],
                output: y.dims[2 + d],
                k: w.dims[2 + d],
                stride: a.strides[d],
                dil: a.dilations[d],
                pad: a.pads[d],
                pad_end: a.pads[n + d],
            })
            .collect();
        Window {
            batch: x.dims[0],
            channels: x.dims[1],
            out_channels: y.dims[1],
            groups: a.group,
            axes,
        }
    }

    /// The window of a pooling `x -> y`.
    pub fn pool(a: &PoolAttrs, x: &TensorType, y: &TensorType) -> Window {
        let n = a.kernel.len();
        let axes = (0..n)
            .map(|d| Axis {
                input: x.dims[2 + d],
                output: y.dims[2 + d],
                k: a.kernel[d],
                stride: a.strides[d],
                dil: a.dilations[d],
                pad: a.pads[d],
                pad_end: a.pads[n + d],
            })
            .collect();
        Window {
            batch: x.dims[0],
            channels: x.dims[1],
            out_channels: y.dims[1],
            groups: x.dims[1],
            axes,
        }
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.channels / self.groups.max(1)
    }

    /// Output channels per group.
    pub fn mg(&self) -> usize {
        self.out_channels / self.groups.max(1)
    }

    /// One input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.cg() == 1 && self.mg() == 1
    }

    /// A 1x1 window with stride 1 and no padding: a matrix product over the
    /// spatial positions.
    pub fn is_pointwise(&self) -> bool {
        self.axes
            .iter()
            .all(|a| a.k == 1 && a.stride == 1 && a.pad == 0 && a.pad_end == 0)
    }

    /// Positions per input plane.
    pub fn in_plane(&self) -> usize {
        self.axes.iter().map(|a| a.input).product()
    }

    /// Positions per output plane.
    pub fn out_plane(&self) -> usize {
        self.axes.iter().map(|a| a.output).product()
    }

    /// Taps per window.
    pub fn taps(&self) -> usize {
        self.axes.iter().map(|a| a.k).product()
    }

    /// The (row, column) axes of a 1-D or 2-D window; a 1-D window has a
    /// unit row axis.
    pub fn hw(&self) -> Option<(Axis, Axis)> {
        match self.axes[..] {
            [h, w] => Some((h, w)),
            [w] => Some((Axis::unit(1), w)),
            _ => None,
        }
    }

    /// The (row, column) axes the blocked kernels iterate: a pointwise
    /// window is one long row of all the positions.
    pub fn rows_cols(&self) -> Option<(Axis, Axis)> {
        if self.is_pointwise() && !self.axes.is_empty() {
            let n = self.in_plane();
            return Some((Axis::unit(1), Axis::unit(n)));
        }
        self.hw()
    }

    /// Padding in some axis, before or after.
    pub fn padded(&self) -> bool {
        self.axes.iter().any(|a| a.pad > 0 || a.pad_end > 0)
    }

    /// The layout of the wide-grid depthwise kernel, for a 1-D or 2-D
    /// window with equal row and column strides: the floats of the
    /// zero-padded plane, the grid outputs (`output rows x padded row`),
    /// and the padded row length.
    pub fn grid(&self) -> Option<(usize, usize, usize)> {
        let (h, c) = self.rows_cols()?;
        // The grid steps by the column stride along its flat index, which
        // is the row stride too only when both are equal (or there is one
        // row of outputs).
        if (h.stride != c.stride && h.output > 1) || self.axes.len() > 2 {
            return None;
        }
        let wp = c.pad + c.input + c.pad_end;
        let q_len = h.output * wp;
        if q_len == 0 {
            return None;
        }
        let need = c.stride * (q_len - 1) + h.span() * wp + c.span() + 1;
        let rows = (h.pad + h.input + h.pad_end) * wp;
        Some((need.max(rows), q_len, wp))
    }
}

/// Drops unit dims and merges adjacent dims that are contiguous in every
/// access (`strides[a][d]` is access `a`'s stride along dim `d`), so a loop
/// nest over `dims` becomes as few loops as possible. Returns the new dims
/// and strides.
pub fn merge_dims(dims: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let keep: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] != 1).collect();
    let mut dims: Vec<usize> = keep.iter().map(|&i| dims[i]).collect();
    let mut st: Vec<Vec<i64>> = strides
        .iter()
        .map(|s| keep.iter().map(|&i| s[i]).collect())
        .collect();
    let mut i = 0;
    while i + 1 < dims.len() {
        let n = dims[i + 1] as i64;
        if st.iter().all(|a| a[i] == a[i + 1] * n) {
            dims[i] *= dims[i + 1];
            dims.remove(i + 1);
            for a in st.iter_mut() {
                a[i] = a[i + 1];
                a.remove(i + 1);
            }
        } else {
            i += 1;
        }
    }
    (dims, st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, k: usize, stride: usize, pad: usize, pad_end: usize) -> Axis {
        let output = (input + pad + pad_end - k) / stride + 1;
        Axis {
            input,
            output,
            k,
            stride,
            dil: 1,
            pad,
            pad_end,
        }
    }

    /// Brute force: the outputs every tap of which is valid.
    fn interior_by_search(a: &Axis) -> Vec<usize> {
        (0..a.output)
            .filter(|&o| (0..a.k).all(|t| a.valid(o, t)))
            .collect()
    }

    #[test]
    fn interior_matches_brute_force_and_partitions() {
        for input in 1..12 {
            for k in 1..6 {
                for stride in 1..4 {
                    for pad in 0..4 {
                        for pad_end in 0..4 {
                            if input + pad + pad_end < k {
                                continue;
                            }
                            let a = axis(input, k, stride, pad, pad_end);
                            let (lo, hi) = a.interior();
                            assert!(lo <= hi && hi <= a.output, "{a:?}");
                            let want = interior_by_search(&a);
                            let got: Vec<usize> = (lo..hi).collect();
                            assert_eq!(got, want, "{a:?}");
                            assert_eq!(a.border(), a.output - want.len());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_interior_is_an_empty_range_at_the_front() {
        // Two outputs of a 5-tap window over two inputs: all border.
        let a = axis(2, 5, 1, 2, 2);
        assert_eq!(a.output, 2);
        let (lo, hi) = a.interior();
        assert_eq!(lo, hi);
        assert_eq!(a.border(), a.output);
    }

    #[test]
    fn tap_ranges_and_valid_taps_agree() {
        let a = axis(7, 3, 2, 1, 1);
        for t in 0..a.k {
            let (lo, hi) = a.tap_range(t);
            for o in 0..a.output {
                assert_eq!((lo..hi).contains(&o), a.valid(o, t));
            }
        }
        for o in 0..a.output {
            let (lo, hi) = a.valid_taps(o);
            for t in 0..a.k {
                assert_eq!((lo..hi).contains(&t), a.valid(o, t));
            }
        }
    }

    #[test]
    fn reach_covers_every_tap() {
        let a = axis(9, 3, 2, 1, 0);
        let r = a.reach();
        for o in 0..a.output {
            for t in 0..a.k {
                assert!(o * a.stride + t * a.dil < r);
            }
        }
    }
}
