//! The stride-phase layout of `dw_phases`, shared by kernel selection and
//! both renderers: a channel's plane, padded, is stored as `stride_h x
//! stride_w` planes, padded position `(i, j)` in plane `(i % s_h, j %
//! s_w)` at `(i / s_h, j / s_w)`. Output `(oh, ow)` reads padded
//! `(oh * s_h + kh * d_h, ow * s_w + kw * d_w)` for tap `(kh, kw)`, which
//! lands at `tap(kh, kw) + oh * row + ow`: every tap of a strided window is
//! one fixed offset, and a run of outputs along a row reads a contiguous
//! run of its phase plane.

use super::geometry::{Axis, Window};

/// The phase planes of a 1-D or 2-D window (a 1-D window is one row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    pub h: Axis,
    pub w: Axis,
    /// Rows per phase plane.
    pub rows: usize,
    /// Floats per phase-plane row.
    pub row: usize,
}

impl Phases {
    /// The layout of a window's planes (`None` past two spatial axes or
    /// with an empty output).
    pub fn of(win: &Window) -> Option<Phases> {
        let (h, w) = win.hw()?;
        if h.output == 0 || w.output == 0 || h.stride == 0 || w.stride == 0 {
            return None;
        }
        Some(Phases {
            h,
            w,
            rows: h.reach().div_ceil(h.stride),
            row: w.reach().div_ceil(w.stride),
        })
    }

    /// Floats per phase plane.
    pub fn plane(&self) -> usize {
        self.rows * self.row
    }

    /// Floats of all phase planes of one channel.
    pub fn floats(&self) -> usize {
        self.h.stride * self.w.stride * self.plane()
    }

    /// Where padded position `(i, j)` is stored.
    pub fn slot(&self, i: usize, j: usize) -> usize {
        let (sh, sw) = (self.h.stride, self.w.stride);
        ((i % sh) * sw + j % sw) * self.plane() + (i / sh) * self.row + j / sw
    }

    /// The offset tap `(kh, kw)` of output `(0, 0)` reads; output `(oh, ow)`
    /// reads `tap + oh * row + ow`.
    pub fn tap(&self, kh: usize, kw: usize) -> usize {
        self.slot(kh * self.h.dil, kw * self.w.dil)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tap_of_every_output_is_its_padded_position() {
        let ax = |input, k, stride, dil, pad, pad_end| {
            let span = (k - 1) * dil;
            let output = (input + pad + pad_end - span - 1) / stride + 1;
            Axis {
                input,
                output,
                k,
                stride,
                dil,
                pad,
                pad_end,
            }
        };
        for (h, w) in [
            (ax(9, 3, 2, 1, 1, 1), ax(11, 3, 2, 1, 1, 0)),
            (ax(7, 3, 1, 2, 2, 2), ax(8, 5, 3, 1, 2, 2)),
        ] {
            let win = Window {
                batch: 1,
                channels: 1,
                out_channels: 1,
                groups: 1,
                axes: vec![h, w],
            };
            let p = Phases::of(&win).unwrap();
            let mut seen = std::collections::HashSet::new();
            for i in 0..h.reach() {
                for j in 0..w.reach() {
                    assert!(p.slot(i, j) < p.floats());
                    assert!(seen.insert(p.slot(i, j)), "two positions share a slot");
                }
            }
            for (oh, ow, kh, kw) in (0..h.output).flat_map(|oh| {
                (0..w.output).flat_map(move |ow| {
                    (0..h.k).flat_map(move |kh| (0..w.k).map(move |kw| (oh, ow, kh, kw)))
                })
            }) {
                let want = p.slot(oh * h.stride + kh * h.dil, ow * w.stride + kw * w.dil);
                assert_eq!(p.tap(kh, kw) + oh * p.row + ow, want);
            }
        }
    }
}
