//! The schedule of the Winograd kernel that kernel selection (its scratch)
//! and both renderers share, so the loops and buffers are the same on
//! every backend.
//!
//! Per image and band of `rows` rows of tiles, the input rows the band
//! reads are copied channels-last into a zero-padded band (the padding is fused
//! into this copy: border tiles read zeros from the band, never a
//! bounds check). Per group of `tiles` tiles of the band, the input
//! transform `B^T d B` of every channel fills `V [elem][tile][channel]`;
//! then per block of `channels` output channels, one product per tile
//! element `M[elem] = V[elem] x U[elem]` (`[tiles x C] x [C x block]`)
//! fills `M [elem][tile][channel]`, and the output transform `A^T M A`
//! with the bias and the epilogue stores the tiles' outputs (the parts of
//! overhanging tiles outside the output are dropped).

use super::Winograd;
use crate::dtype::TensorType;
use crate::op::WinogradAttrs;
use crate::op::winograd::Tiling;

/// One step's schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub t: Tiling,
    pub batch: usize,
    /// Input and output channels.
    pub c: usize,
    pub m: usize,
    /// Input size.
    pub ih: usize,
    pub iw: usize,
    /// Leading pads (rows, columns).
    pub pt: usize,
    pub pl: usize,
    /// Tiles per group (`rows x cols`: a group spans whole rows of tiles
    /// when a row has fewer tiles than a group may hold) and output
    /// channels per block.
    pub tiles: usize,
    pub rows: usize,
    pub cols: usize,
    pub block: usize,
    /// Channels are stored rounded up to a multiple of this (the vector
    /// width of the renderer; padded channels hold zeros).
    pub lanes: usize,
}

impl Schedule {
    /// The schedule of `k` on a step with input `x` and transformed weight
    /// `u`, channels rounded to `lanes`.
    pub fn of(
        a: &WinogradAttrs,
        k: &Winograd,
        x: &TensorType,
        u: &TensorType,
        lanes: usize,
    ) -> Option<Schedule> {
        let t = a.tiling(x).ok()?;
        if u.rank() != 3 || k.tiles == 0 || k.channels == 0 || lanes == 0 {
            return None;
        }
        let (rows, cols) = if k.tiles <= t.tw {
            (1, k.tiles)
        } else {
            ((k.tiles / t.tw).clamp(1, t.th), t.tw)
        };
        Some(Schedule {
            rows,
            cols,
            batch: x.dims[0],
            c: x.dims[1],
            m: u.dims[2],
            ih: x.dims[2],
            iw: x.dims[3],
            pt: a.pads[0],
            pl: a.pads[1],
            tiles: rows * cols,
            block: k.channels.min(u.dims[2]).div_ceil(lanes) * lanes,
            lanes,
            t,
        })
    }

    /// Input channels as stored (rounded up to `lanes`).
    pub fn cp(&self) -> usize {
        self.c.div_ceil(self.lanes) * self.lanes
    }

    /// Output channels as packed in the weight (rounded up to `lanes`).
    pub fn mp(&self) -> usize {
        self.m.div_ceil(self.lanes) * self.lanes
    }

    /// Columns of the band: every column a tile of the row reads.
    pub fn band_cols(&self) -> usize {
        (self.t.tw - 1) * self.t.w.m + self.t.w.alpha
    }

    /// Input rows of the band: every row a group's tile rows read.
    pub fn band_rows(&self) -> usize {
        (self.rows - 1) * self.t.h.m + self.t.h.alpha
    }

    /// Floats of the band, `[band_rows][band_cols][cp]`.
    pub fn band_len(&self) -> usize {
        self.band_rows() * self.band_cols() * self.cp()
    }

    /// Bands (runs of `rows` tile rows) and the tile rows of the last.
    pub fn bands(&self) -> (usize, usize) {
        let n = self.t.th.div_ceil(self.rows);
        (n, self.t.th - (n - 1) * self.rows)
    }

    /// Floats of `V`, `[elems][tiles][cp]`.
    pub fn v_len(&self) -> usize {
        self.t.elems() * self.tiles * self.cp()
    }

    /// Floats from one element's `[tiles][block]` products in `M` to the
    /// next: from 128 floats up, `tiles * block` rounded up to an odd
    /// number of 64-byte lines. The output transform reads every element
    /// of a tile at once, and at a stride of a power-of-two number of lines
    /// (8 tiles x 64 channels: 2 KiB) they fall into two of the L1's 64
    /// sets and evict each other; the padding spreads them over all sets
    /// (11% off SqueezeNet's 16 -> 64 55x55 layer in C). Smaller strides
    /// (microcontroller schedules) stay unpadded.
    pub fn m_stride(&self) -> usize {
        let s = self.tiles * self.block;
        if s < 128 {
            s
        } else {
            (s.div_ceil(16) | 1) * 16
        }
    }

    /// Floats of `M`, `[elems][tiles][block]` at [`Schedule::m_stride`]
    /// per element.
    pub fn m_len(&self) -> usize {
        self.t.elems() * self.m_stride()
    }

    /// Whether the output transform stages a group's outputs before they
    /// are stored: the C host rendering (channels rounded to
    /// [`C_HOST_LANES`]), see [`Schedule::stage_len`]. Cranelift stores
    /// tile rows through register transposes instead, and microcontrollers
    /// (no cache sets to collide in) straight.
    pub fn staged(&self) -> bool {
        self.lanes == C_HOST_LANES
    }

    /// Columns of the stage, `cols * m`: a group's output columns.
    pub fn stage_cols(&self) -> usize {
        self.cols * self.t.w.m
    }

    /// Floats of the stage, `[rows * m][cols * m][block]` (0 when not
    /// [`Schedule::staged`]). The output transform of a tile yields every
    /// output channel of the block at once (a vector over channels); stored
    /// straight into the NCHW output, a tile writes one float into each of
    /// `block` planes per output position, and planes a multiple of 4 KiB
    /// apart fall into the same L1 set: ResNet-8's 32x32 planes of 16
    /// channels evicted each other and its Winograd layers ran 3x slower
    /// than direct ones (two thirds of their time in those stores). Staged
    /// channels-last per group, the outputs are then stored plane by plane,
    /// along contiguous output rows (with the epilogue).
    pub fn stage_len(&self) -> usize {
        if self.staged() {
            self.rows * self.t.h.m * self.stage_cols() * self.block
        } else {
            0
        }
    }

    /// Bytes of scratch (band, `V`, `M` and the stage, f32).
    pub fn scratch_bytes(&self) -> usize {
        (self.band_len() + self.v_len() + self.m_len() + self.stage_len()) * 4
    }

    /// The groups of a band: (first tile column, tiles per row).
    pub fn groups(&self) -> Vec<(usize, usize)> {
        (0..self.t.tw)
            .step_by(self.cols)
            .map(|j| (j, self.cols.min(self.t.tw - j)))
            .collect()
    }

    /// The blocks of output channels: (first channel, channels as
    /// computed: a multiple of `lanes`, possibly past `m`).
    pub fn blocks(&self) -> Vec<(usize, usize)> {
        (0..self.mp())
            .step_by(self.block)
            .map(|o| (o, self.block.min(self.mp() - o)))
            .collect()
    }

    /// The band columns `[lo, hi)` that hold input columns `lo - pl ..`
    /// (the rest are padding).
    pub fn band_interior(&self) -> (usize, usize) {
        let lo = self.pl.min(self.band_cols());
        let hi = (self.pl + self.iw).min(self.band_cols());
        (lo, hi.max(lo))
    }

    /// Packs the transformed weight `[elems, C, M]` to `[elems, C, mp]`
    /// (zero columns past `M`), as f64 values.
    pub fn pack_u(&self, u: &[f64]) -> Vec<f64> {
        let (c, m, mp) = (self.c, self.m, self.mp());
        let mut out = vec![0.0; self.t.elems() * c * mp];
        for k in 0..self.t.elems() {
            for ch in 0..c {
                let src = &u[(k * c + ch) * m..][..m];
                out[(k * c + ch) * mp..][..m].copy_from_slice(src);
            }
        }
        out
    }
}

/// The coefficients of one row of a transform matrix: (column, value)
/// for its nonzero entries.
pub fn row_terms(mat: &[f64], cols: usize, row: usize) -> Vec<(usize, f64)> {
    mat[row * cols..][..cols]
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(j, v)| (j, *v))
        .collect()
}

/// Channels are rounded up to whole vectors of this many floats on this
/// target: f32x4 for Cranelift, 16 (one AVX-512 register, two AVX ones)
/// for C on a host, none on a microcontroller.
pub fn lanes(t: &super::Target) -> usize {
    match (t.codegen, t.is_mcu()) {
        (_, true) => 1,
        (super::Codegen::Cranelift, false) => 4,
        (super::Codegen::C, false) => C_HOST_LANES,
    }
}

/// [`lanes`] of C on a host.
pub const C_HOST_LANES: usize = 16;

/// Stack scratch (band, `V`, `M`) the smallest host schedule may use: the
/// native kernel's stack slot, the smaller of the two host limits.
pub const HOST_SCRATCH_LIMIT: usize = 96 * 1024;

/// Whether the smallest schedule (one tile, one vector of output channels)
/// of a `winograd` op with input `x` and transformed weight `u` fits
/// [`HOST_SCRATCH_LIMIT`] with channels rounded to the widest vectors: the
/// band holds every input channel of `alpha` rows, so wide planes of many
/// channels do not fit, and such convolutions stay direct.
pub fn fits_host_scratch(a: &WinogradAttrs, x: &TensorType, u: &TensorType) -> bool {
    let k = Winograd {
        tile: a.tile,
        tiles: 1,
        channels: 1,
    };
    Schedule::of(a, &k, x, u, C_HOST_LANES).is_some_and(|s| s.scratch_bytes() <= HOST_SCRATCH_LIMIT)
}
