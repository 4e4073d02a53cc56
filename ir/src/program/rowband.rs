//! The zero-padded input copy of the C row-tile kernel
//! ([`super::Kernel::ConvRowTiles`] with `pad_copy`): the whole input when
//! it fits the stack, else one band of rows per output row.
//!
//! A stem convolution of a 224x224 image (3 input channels, stride 2) has
//! a padded, phase-split copy of about 600 KB, too large for the stack;
//! without a copy, its strided taps are gathers. The band form keeps the
//! copy small: per output row, the `span + 1` padded input rows that row
//! reads, for every input channel, de-interleaved by stride phase like the
//! whole copy, so every tap is still one contiguous run. Selection, the
//! kernel checks and the C renderer all decide the form here, so they
//! agree.

use super::Axis;

/// Largest zero-padded input copy a host kernel keeps on the stack (bytes).
pub const STACK_COPY_LIMIT: usize = 256 * 1024;

/// Largest weight tensor (bytes) for which the band form is chosen: it
/// reads every weight once per output row, which is free while they stay
/// in the L1 cache (stems: 3.5-7 KB).
pub const BAND_WEIGHTS_LIMIT: usize = 32 * 1024;

/// Bytes of the padded copy of all `channels` planes, columns split into
/// `phases` stride phases.
pub fn whole_bytes(channels: usize, h: &Axis, c: &Axis, phases: usize, elem: usize) -> usize {
    let ihp = h.input + h.pad + h.pad_end;
    let iwp = c.input + c.pad + c.pad_end;
    channels * ihp * phases * iwp.div_ceil(phases) * elem
}

/// Rows of one band: the padded input rows one output row reads.
pub fn band_rows(h: &Axis) -> usize {
    h.span() + 1
}

/// Bytes of one band (every input channel's rows for one output row).
pub fn band_bytes(channels: usize, h: &Axis, c: &Axis, phases: usize, elem: usize) -> usize {
    let iwp = c.input + c.pad + c.pad_end;
    channels * band_rows(h) * phases * iwp.div_ceil(phases) * elem
}

/// Does a C row-tile kernel with `pad_copy` copy bands (the whole copy
/// does not fit the stack)?
pub fn uses_band(channels: usize, h: &Axis, c: &Axis, elem: usize) -> bool {
    whole_bytes(channels, h, c, c.stride, elem) > STACK_COPY_LIMIT
}

/// Can a C row-tile kernel keep a padded copy, whole or banded?
pub fn copy_fits(channels: usize, h: &Axis, c: &Axis, elem: usize) -> bool {
    let s = c.stride;
    whole_bytes(channels, h, c, s, elem) <= STACK_COPY_LIMIT
        || band_bytes(channels, h, c, s, elem) <= STACK_COPY_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, k: usize, stride: usize, pad: usize) -> Axis {
        let output = (input + 2 * pad - k) / stride + 1;
        Axis {
            input,
            output,
            k,
            stride,
            dil: 1,
            pad,
            pad_end: pad,
        }
    }

    #[test]
    fn stems_copy_bands_and_small_inputs_copy_whole() {
        // MobileNetV2's stem: 3 x 226 x 226 padded floats do not fit.
        let (h, c) = (axis(224, 3, 2, 1), axis(224, 3, 2, 1));
        assert_eq!(whole_bytes(3, &h, &c, 2, 4), 3 * 226 * 226 * 4);
        assert!(uses_band(3, &h, &c, 4));
        assert_eq!(band_bytes(3, &h, &c, 2, 4), 3 * 3 * 226 * 4);
        assert!(copy_fits(3, &h, &c, 4));
        // ResNet-8's stem (3 x 34 x 34) is copied whole.
        let (h, c) = (axis(32, 3, 1, 1), axis(32, 3, 1, 1));
        assert!(!uses_band(3, &h, &c, 4));
        // Odd padded widths round up per phase.
        let c = axis(224, 3, 2, 0);
        assert_eq!(band_bytes(1, &h, &c, 2, 4), 3 * 2 * 112 * 4);
        // A band of 4096 channels is too large for the stack.
        let (h, c) = (axis(224, 3, 1, 1), axis(224, 3, 1, 1));
        assert!(!copy_fits(4096, &h, &c, 4));
    }
}
