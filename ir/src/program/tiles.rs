//! Layouts of the integer kernels for microcontrollers (`conv_im2col`,
//! `matmul_panels`, `dw_pairs`) that kernel selection (their stack
//! scratch) and both renderers share, so a size checked at lowering is the
//! size every backend allocates.

use super::geometry::{Axis, Window};
use super::{Kernel, Step};
use crate::op::qmath::{MAX_SHIFT, MIN_SHIFT};
use crate::op::{Op, QConvAttrs, QGemmAttrs};
use crate::tensor::Tensor;

/// Bytes a word load may read past the last tap of a `dw_pairs` row: the
/// last group of four taps reads a whole word, and the second output of a
/// shared pair reads the word after it.
pub const BAND_SLACK: usize = 8;

/// The reduction length of an integer matrix kernel rounded up to whole
/// groups of four (weights are padded with zeros to it).
pub fn padded_depth(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// Bytes of the im2col buffer of `cols` columns of reduction length `k`:
/// 16-bit values, [`padded_depth`] per column.
pub fn im2col_bytes(k: usize, cols: usize) -> usize {
    padded_depth(k) * cols * 2
}

/// Bytes of stack scratch the C rendering of step `st` declares (what
/// TensorFlow Lite Micro would allocate as a kernel's scratch buffer): the
/// im2col columns of `conv_im2col` and `matmul_panels`, the padded band
/// of `dw_pairs`; 0 for every other kernel on a microcontroller.
pub fn scratch_bytes(st: &Step) -> usize {
    let conv = |a: &QConvAttrs| {
        (st.inputs.len() >= 2 && st.inputs[0].ty.rank() >= 3).then(|| {
            Window::conv(
                &a.conv,
                &st.inputs[0].ty,
                &st.inputs[1].ty,
                &st.outputs[0].ty,
            )
        })
    };
    match (&st.kernel, &st.op) {
        (Kernel::ConvIm2col(k), Op::QConv(a)) => {
            conv(a).map_or(0, |w| im2col_bytes(w.cg() * w.taps(), k.cols))
        }
        (Kernel::MatMulPanels(k), Op::QGemm(_)) => st
            .inputs
            .first()
            .and_then(|x| x.ty.dims.last())
            .map_or(0, |&d| panels_bytes(d, k.cols)),
        (Kernel::DepthwisePairs(k), Op::QConv(a)) => {
            conv(a).and_then(|w| DwBand::of(&w)).map_or(0, |b| {
                b.bytes(k.rows.clamp(1, b.rows.output.max(1))) * st.inputs[0].ty.dtype.size()
            })
        }
        _ => 0,
    }
}

/// `matmul_panels` with one row per tile (`cols = 1`, a Gemm with one
/// row: every fully connected layer at batch 1) reads that row in place,
/// sign- or zero-extending its words in registers, instead of widening it
/// into a column buffer: no scratch, and its weight panels are packed in
/// natural byte order ([`MatConsts::natural`]) to match the pairs
/// `SXTB16` makes of the row's words.
pub fn panels_in_place(cols: usize) -> bool {
    cols == 1
}

/// Bytes of stack scratch of `matmul_panels` over rows of length `k`.
pub fn panels_bytes(k: usize, cols: usize) -> usize {
    if panels_in_place(cols) {
        0
    } else {
        im2col_bytes(k, cols)
    }
}

/// A depthwise window as `dw_pairs` reads it: a band of padded input rows
/// along `rows`, each row contiguous along `cols`. A 2-D window over
/// planes one column wide is read as 1-D along its rows, which are then
/// contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwBand {
    pub rows: Axis,
    pub cols: Axis,
}

impl DwBand {
    /// The band view of a 1-D or 2-D window (`None` for other ranks).
    pub fn of(w: &Window) -> Option<DwBand> {
        let (h, c) = w.hw()?;
        let trivial = |a: &Axis| a.input == 1 && a.output == 1 && a.k == 1 && a.pad == 0;
        if trivial(&c) && c.pad_end == 0 && !trivial(&h) {
            return Some(DwBand {
                rows: Axis::unit(1),
                cols: h,
            });
        }
        Some(DwBand { rows: h, cols: c })
    }

    /// Bytes of one padded row: the left padding, the input, and the right
    /// padding the taps reach.
    pub fn width(&self) -> usize {
        self.cols.reach().max(self.cols.pad + self.cols.input)
    }

    /// Padded input rows that `out_rows` consecutive output rows read.
    pub fn band_rows(&self, out_rows: usize) -> usize {
        let r = &self.rows;
        (out_rows.max(1) - 1) * r.stride + r.span() + 1
    }

    /// Bytes of the band buffer for `out_rows` output rows (rounded up to
    /// whole words, with [`BAND_SLACK`] after the last row).
    pub fn bytes(&self, out_rows: usize) -> usize {
        (self.band_rows(out_rows) * self.width() + BAND_SLACK).div_ceil(4) * 4
    }
}

/// Per output channel: the bias with the input zero point folded in
/// (`bias - x_zp * sum(w - w_zp)`, so the kernels multiply raw inputs and
/// read padding as `x_zp`), and the requantization multiplier and shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelRq {
    pub bias: i32,
    pub mult: i32,
    pub shift: i32,
}

/// How an integer kernel requantizes: always TFLite's single rounding
/// (`qmath::requantize`) exactly, in the cheapest form its constants allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RqForm {
    /// Every shift is -2 or less (`rs = -1 - shift >= 1`): the result is
    /// `((hi + round) >> rs)` with `hi` the high word of the 64-bit
    /// `acc * mult`, and `round = 2^(rs - 1) + y_zp * 2^rs` carrying the
    /// output zero point. Exact: the discarded low word is below the
    /// rounding position, and `|hi| <= 2^30` leaves room for `round`
    /// (checked per channel: `|round| < 2^30`). One multiply, an add and a
    /// shift, all 32-bit after the multiply.
    High { round: Vec<i32>, rs: Vec<i32> },
    /// The reference formula (64-bit rounding and shift), then `y_zp`.
    General,
}

impl RqForm {
    /// The form for these channels and output zero point.
    pub fn of(ch: &[ChannelRq], y_zp: i32) -> RqForm {
        let mut round = Vec::with_capacity(ch.len());
        let mut rs = Vec::with_capacity(ch.len());
        for c in ch {
            let shift = c.shift.clamp(MIN_SHIFT, MAX_SHIFT);
            let r = -1 - shift;
            if !(1..=30).contains(&r) {
                return RqForm::General;
            }
            let v = (1i64 << (r - 1)) + y_zp as i64 * (1i64 << r);
            if v.abs() >= 1 << 30 {
                return RqForm::General;
            }
            round.push(v as i32);
            rs.push(r);
        }
        RqForm::High { round, rs }
    }

    /// The output value (before the clamp) of accumulator `acc` in
    /// channel `c`, as the kernels compute it.
    pub fn apply(&self, acc: i32, c: usize, ch: &ChannelRq, y_zp: i32) -> i64 {
        match self {
            RqForm::High { round, rs } => {
                let hi = ((acc as i64 * ch.mult as i64) >> 32) as i32;
                ((hi + round[c]) >> rs[c]) as i64
            }
            RqForm::General => {
                y_zp as i64 + crate::op::qmath::requantize(acc, ch.mult, ch.shift) as i64
            }
        }
    }
}

/// The constants of an integer matrix kernel (`conv_im2col`,
/// `matmul_panels`), prepared once at generation time: `groups` groups of
/// `rows` output channels, each reducing over `k` weights.
#[derive(Clone, Debug)]
pub struct MatConsts {
    pub groups: usize,
    pub rows: usize,
    pub k: usize,
    /// Rows per weight panel (the register tile's rows).
    pub tile: usize,
    /// The weights `w - w_zp` (int8) as little-endian words, see
    /// [`MatConsts::word`].
    pub panels: Vec<u32>,
    /// One per output channel of every group.
    pub ch: Vec<ChannelRq>,
    /// The bytes of a panel word hold steps `4g..4g+4` in natural order
    /// (see [`MatConsts::natural`]) rather than `4g, 4g+2, 4g+1, 4g+3`.
    pub natural: bool,
}

impl MatConsts {
    /// Packs weights read through `w(channel, j)` (`channel` over all
    /// groups, `j < k`). In each group, rows are taken `tile` at a time (a
    /// panel; the last may be shorter) and within a panel, for every group
    /// of four reduction steps `4g..4g+4`, each row in turn contributes one
    /// word holding the weights of steps `4g, 4g+2, 4g+1, 4g+3` in its
    /// bytes 0 to 3: sign-extending bytes 0 and 2 (`SXTB16`) gives the
    /// 16-bit pair of steps `4g, 4g+1`, bytes 1 and 3 the pair `4g+2,
    /// 4g+3`, in the order the im2col columns hold their pairs. Steps past
    /// `k` are zero.
    #[allow(clippy::too_many_arguments)]
    pub fn pack(
        groups: usize,
        rows: usize,
        k: usize,
        tile: usize,
        w: impl Fn(usize, usize) -> i64,
        w_zp: i32,
        x_zp: i32,
        bias: Option<&[i64]>,
        mult: &[i64],
        shift: &[i64],
    ) -> Result<MatConsts, String> {
        let kp = padded_depth(k);
        let tile = tile.max(1);
        let mut panels = vec![0u32; groups * rows * kp / 4];
        let mut ch = Vec::with_capacity(groups * rows);
        for o in 0..groups * rows {
            let mut sum = 0i64;
            for j in 0..k {
                let v = w(o, j) - w_zp as i64;
                if !(-128..=127).contains(&v) {
                    return Err(format!(
                        "weight {} of output channel {o} minus its zero point {w_zp} does not fit int8",
                        w(o, j)
                    ));
                }
                sum += v;
            }
            let b = bias.map_or(0, |b| b[o]) - x_zp as i64 * sum;
            let b = i32::try_from(b).map_err(|_| {
                format!("the bias of output channel {o} with the input zero point folded in overflows int32")
            })?;
            let per = |v: &[i64]| if v.len() == 1 { v[0] } else { v[o] } as i32;
            ch.push(ChannelRq {
                bias: b,
                mult: per(mult),
                shift: per(shift),
            });
        }
        let mut m = MatConsts {
            groups,
            rows,
            k,
            tile,
            panels: vec![],
            ch,
            natural: false,
        };
        for g in 0..groups {
            for r in 0..rows {
                for q in 0..kp / 4 {
                    let mut word = 0u32;
                    for (byte, step) in [0, 2, 1, 3].into_iter().enumerate() {
                        let j = 4 * q + step;
                        let v = if j < k {
                            w(g * rows + r, j) - w_zp as i64
                        } else {
                            0
                        };
                        word |= (v as u8 as u32) << (8 * byte);
                    }
                    panels[m.word(g, r, q)] = word;
                }
            }
        }
        m.panels = panels;
        Ok(m)
    }

    /// A quantized convolution's constants: weights `[M, C/group, K...]`
    /// (the reduction runs over input channels, then taps), bias,
    /// multipliers and shifts.
    pub fn for_qconv(
        q: &QConvAttrs,
        w: &Tensor,
        bias: &Tensor,
        mult: &Tensor,
        shift: &Tensor,
        tile: usize,
    ) -> Result<MatConsts, String> {
        let m = w.dims()[0];
        let k: usize = w.dims()[1..].iter().product();
        let g = q.conv.group.max(1);
        let wv = w.to_i64();
        MatConsts::pack(
            g,
            m / g,
            k,
            tile,
            |o, j| wv[o * k + j],
            q.q.w_zp,
            q.q.x_zp,
            Some(&bias.to_i64()),
            &mult.to_i64(),
            &shift.to_i64(),
        )
    }

    /// A quantized Gemm's constants: `b` is `[K, N]` (or `[N, K]`), one
    /// row per output column.
    pub fn for_qgemm(
        q: &QGemmAttrs,
        b: &Tensor,
        bias: &Tensor,
        mult: &Tensor,
        shift: &Tensor,
        tile: usize,
    ) -> Result<MatConsts, String> {
        let (k, n) = match (q.trans_b, b.dims()) {
            (true, [n, k]) => (*k, *n),
            (false, [k, n]) => (*k, *n),
            _ => return Err(format!("weights {} are not a matrix", b.ty())),
        };
        let bv = b.to_i64();
        let trans = q.trans_b;
        MatConsts::pack(
            1,
            n,
            k,
            tile,
            |o, j| if trans { bv[o * k + j] } else { bv[j * n + o] },
            q.q.w_zp,
            q.q.x_zp,
            Some(&bias.to_i64()),
            &mult.to_i64(),
            &shift.to_i64(),
        )
    }

    /// The same panels with the bytes of every word in natural step order
    /// (`4g, 4g+1, 4g+2, 4g+3`): sign-extending bytes 0 and 2 then gives
    /// the pair of steps `4g, 4g+2`, bytes 1 and 3 the pair `4g+1, 4g+3`,
    /// as `SXTB16` (and `SXTB16 ROR 8`) give them of four int8 inputs read
    /// as a word.
    pub fn natural(mut self) -> MatConsts {
        if !self.natural {
            for w in &mut self.panels {
                let b = w.to_le_bytes();
                *w = u32::from_le_bytes([b[0], b[2], b[1], b[3]]);
            }
            self.natural = true;
        }
        self
    }

    /// The byte of a panel word holding reduction step `4g + s`.
    pub fn byte(&self, s: usize) -> usize {
        if self.natural { s } else { [0, 2, 1, 3][s] }
    }

    /// [`padded_depth`] of `k`.
    pub fn kp(&self) -> usize {
        padded_depth(self.k)
    }

    /// Rows in the panel holding row `r`.
    pub fn panel_rows(&self, r: usize) -> usize {
        let start = r / self.tile * self.tile;
        self.tile.min(self.rows - start)
    }

    /// Index of the word of row `r` (in group `g`) for steps `4q..4q+4`.
    pub fn word(&self, g: usize, r: usize, q: usize) -> usize {
        let start = r / self.tile * self.tile;
        (g * self.rows + start) * self.kp() / 4 + q * self.panel_rows(r) + (r - start)
    }

    /// The packed weight of row `r` (group `g`) at reduction step `j`.
    pub fn weight(&self, g: usize, r: usize, j: usize) -> i32 {
        let word = self.panels[self.word(g, r, j / 4)];
        (word >> (8 * self.byte(j % 4))) as u8 as i8 as i32
    }
}

/// The constants of `dw_pairs`: per channel and kernel row, the weights
/// `w - w_zp` in natural order padded with zeros to whole words (so a word
/// at tap `4q` sign-extended gives the pairs of taps `4q, 4q+2` and
/// `4q+1, 4q+3`), and the folded bias and requantization per channel.
#[derive(Clone, Debug)]
pub struct DwConsts {
    pub kh: usize,
    pub kw: usize,
    /// Words per kernel row.
    pub row_words: usize,
    pub words: Vec<u32>,
    pub ch: Vec<ChannelRq>,
}

impl DwConsts {
    /// `w` is `[C, 1, kh, kw]` flattened (a 1-D window has `kh = 1`).
    #[allow(clippy::too_many_arguments)]
    pub fn pack(
        channels: usize,
        kh: usize,
        kw: usize,
        w: &[i64],
        w_zp: i32,
        x_zp: i32,
        bias: Option<&[i64]>,
        mult: &[i64],
        shift: &[i64],
    ) -> Result<DwConsts, String> {
        let m = MatConsts::pack(
            channels,
            1,
            kh * kw,
            1,
            |c, j| w[c * kh * kw + j],
            w_zp,
            x_zp,
            bias,
            mult,
            shift,
        )?;
        let row_words = padded_depth(kw) / 4;
        let mut words = vec![0u32; channels * kh * row_words];
        for c in 0..channels {
            for ky in 0..kh {
                for x in 0..kw {
                    let v = w[(c * kh + ky) * kw + x] - w_zp as i64;
                    words[(c * kh + ky) * row_words + x / 4] |= (v as u8 as u32) << (8 * (x % 4));
                }
            }
        }
        Ok(DwConsts {
            kh,
            kw,
            row_words,
            words,
            ch: m.ch,
        })
    }

    /// A depthwise quantized convolution's constants (weights `[C, 1,
    /// K...]`, read as `kh x kw` per the band view `band`).
    pub fn for_qconv(
        q: &QConvAttrs,
        band: &DwBand,
        w: &Tensor,
        bias: &Tensor,
        mult: &Tensor,
        shift: &Tensor,
    ) -> Result<DwConsts, String> {
        DwConsts::pack(
            w.dims()[0],
            band.rows.k,
            band.cols.k,
            &w.to_i64(),
            q.q.w_zp,
            q.q.x_zp,
            Some(&bias.to_i64()),
            &mult.to_i64(),
            &shift.to_i64(),
        )
    }

    /// The weight of channel `c` at tap `(ky, kx)`.
    pub fn weight(&self, c: usize, ky: usize, kx: usize) -> i32 {
        let word = self.words[(c * self.kh + ky) * self.row_words + kx / 4];
        (word >> (8 * (kx % 4))) as u8 as i8 as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_columns() {
        assert_eq!(padded_depth(27), 28);
        assert_eq!(padded_depth(64), 64);
        assert_eq!(im2col_bytes(144, 2), 576);
    }

    #[test]
    fn one_column_planes_are_read_along_their_rows() {
        let h = Axis {
            input: 30,
            output: 28,
            k: 3,
            stride: 1,
            dil: 1,
            pad: 0,
            pad_end: 0,
        };
        let w = Window {
            batch: 1,
            channels: 4,
            out_channels: 4,
            groups: 4,
            axes: vec![h, Axis::unit(1)],
        };
        let b = DwBand::of(&w).unwrap();
        assert_eq!(b.cols, h);
        assert_eq!(b.rows, Axis::unit(1));
        assert_eq!(b.width(), 30);
        assert_eq!(b.band_rows(1), 1);
        assert_eq!(b.bytes(1), 40);
    }

    #[test]
    fn panels_pair_the_steps_the_columns_pair() {
        // 3 rows of k = 6 in panels of 2: the second panel has one row.
        let w = |o: usize, j: usize| (o * 10 + j) as i64 - 20;
        let b = [5i64, 6, 7];
        let m = MatConsts::pack(1, 3, 6, 2, w, 0, 3, Some(&b), &[1 << 30], &[-3]).unwrap();
        assert_eq!(m.panels.len(), 3 * 8 / 4);
        for r in 0..3 {
            for j in 0..8 {
                let want = if j < 6 { w(r, j) as i32 } else { 0 };
                assert_eq!(m.weight(0, r, j), want, "row {r} step {j}");
            }
        }
        // Bytes 0 and 2 of a word are steps 4g and 4g+1.
        let word = m.panels[m.word(0, 0, 0)];
        assert_eq!(word as u8 as i8 as i64, w(0, 0));
        assert_eq!((word >> 16) as u8 as i8 as i64, w(0, 1));
        assert_eq!(
            m.ch[1].bias as i64,
            6 - 3 * (0..6).map(|j| w(1, j)).sum::<i64>()
        );
        assert!(MatConsts::pack(1, 1, 1, 1, |_, _| 200, 0, 0, None, &[1], &[-3]).is_err());
        // In natural order the same weights read back the same, and a
        // word's bytes are its four steps in turn.
        let n = m.clone().natural();
        for r in 0..3 {
            for j in 0..8 {
                assert_eq!(n.weight(0, r, j), m.weight(0, r, j), "row {r} step {j}");
            }
        }
        let word = n.panels[n.word(0, 0, 0)];
        assert_eq!((word >> 8) as u8 as i8 as i64, w(0, 1));
        assert_eq!(panels_bytes(640, 1), 0);
        assert_eq!(panels_bytes(640, 2), 2560);
    }

    #[test]
    fn the_high_word_form_is_the_reference_rounding() {
        use crate::op::qmath::requantize;
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20000 {
            let acc = next() as i32 >> (next() % 24);
            let mult = (1 << 30) + (next() % (1 << 30)) as i32;
            let shift = -2 - (next() % 20) as i32;
            let zp = (next() % 256) as i32 - 128;
            let ch = ChannelRq {
                bias: 0,
                mult,
                shift,
            };
            let f = RqForm::of(&[ch], zp);
            assert!(matches!(f, RqForm::High { .. }));
            let want = zp as i64 + requantize(acc, mult, shift) as i64;
            assert_eq!(f.apply(acc, 0, &ch, zp), want, "{acc} {mult} {shift} {zp}");
        }
        let ch = ChannelRq {
            bias: 0,
            mult: 1 << 30,
            shift: -1,
        };
        assert_eq!(RqForm::of(&[ch], 0), RqForm::General);
    }
}
