//! Generation-time tables both backends use: the valid output range of
//! every convolution tap (so kernels need no bounds checks), the source
//! index of every padded position, and the exact taps of every resized
//! coordinate. Shapes are static, so all of this is known before any code
//! is written, and computing it in one place keeps the C and native
//! kernels in agreement.

use nnc_ir::op::{PadAttrs, PadMode, ResizeAttrs};
use nnc_ir::{DType, Tensor, TensorType};

/// Valid output range `[lo, hi)` for kernel tap `k` on one spatial axis:
/// the outputs `o` whose input position `o * stride + k * dil - pad` lies
/// in `[0, in_len)`.
pub fn tap_range(
    k: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    in_len: usize,
    out_len: usize,
) -> (usize, usize) {
    nnc_ir::program::Axis {
        input: in_len,
        output: out_len,
        k: k + 1,
        stride,
        dil,
        pad,
        pad_end: 0,
    }
    .tap_range(k)
}

/// For a transposed convolution: the input positions `i` whose output
/// position `i * stride + k * dil - pad` lies in `[0, out_len)` (the same
/// range with the roles of input and output swapped).
pub fn scatter_range(
    k: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    in_len: usize,
    out_len: usize,
) -> (usize, usize) {
    tap_range(k, stride, dil, pad, out_len, in_len)
}

pub use nnc_ir::op::matmul::gemm_c_strides;

/// A MatMul with numpy batching: `[.., m, k] x [.., k, n]` (1-D operands
/// promoted), and for every batch the element offsets of its A and B
/// matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulBatches {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a_off: Vec<usize>,
    pub b_off: Vec<usize>,
}

pub fn matmul_batches(at: &TensorType, bt: &TensorType) -> MatMulBatches {
    use nnc_ir::op::elementwise::{broadcast_dims, broadcast_offsets};
    let ad: Vec<usize> = if at.rank() == 1 {
        vec![1, at.dims[0]]
    } else {
        at.dims.clone()
    };
    let bd: Vec<usize> = if bt.rank() == 1 {
        vec![bt.dims[0], 1]
    } else {
        bt.dims.clone()
    };
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = broadcast_dims(&ad[..ad.len() - 2], &bd[..bd.len() - 2]).unwrap_or_default();
    let ao = broadcast_offsets(&ad[..ad.len() - 2], &batch);
    let bo = broadcast_offsets(&bd[..bd.len() - 2], &batch);
    let nb = ao.len().max(1);
    MatMulBatches {
        m,
        k,
        n,
        a_off: (0..nb)
            .map(|i| ao.get(i).copied().unwrap_or(0) * m * k)
            .collect(),
        b_off: (0..nb)
            .map(|i| bo.get(i).copied().unwrap_or(0) * k * n)
            .collect(),
    }
}

pub use nnc_ir::program::geometry::merge_dims;

/// Per axis, the source index of every output position of a Pad, or -1
/// where the constant fill goes.
pub fn pad_source_maps(a: &PadAttrs, x: &TensorType, y: &TensorType) -> Vec<Vec<i64>> {
    (0..x.rank())
        .map(|ax| {
            let d = x.dims[ax] as i64;
            (0..y.dims[ax] as i64)
                .map(|o| {
                    let s = o - a.pads[ax];
                    if (0..d).contains(&s) {
                        return s;
                    }
                    match a.mode {
                        PadMode::Constant => -1,
                        PadMode::Edge => s.clamp(0, d - 1),
                        PadMode::Wrap => s.rem_euclid(d),
                        PadMode::Reflect => {
                            if d == 1 {
                                0
                            } else {
                                let p = 2 * (d - 1);
                                let i = s.rem_euclid(p);
                                if i >= d { p - i } else { i }
                            }
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// Per axis and output coordinate, the source taps `(index, weight)` of a
/// Resize. They are read off the interpreter's own 1-D kernel applied to
/// one-hot vectors, so every coordinate mode, rounding rule and cubic
/// coefficient matches the oracle exactly. An empty tap list means the
/// coordinate extrapolates (tf_crop_and_resize) and takes the fill value.
pub fn resize_taps(a: &ResizeAttrs, x: &TensorType, y: &TensorType) -> Vec<Vec<Vec<(usize, f64)>>> {
    let n = x.rank();
    (0..n)
        .map(|ax| {
            let (il, ol) = (x.dims[ax], y.dims[ax]);
            let mut probe = a.clone();
            let mut dims = vec![1; n];
            dims[ax] = il;
            probe.sizes = dims.clone();
            probe.sizes[ax] = ol;
            let mut weights = vec![vec![0.0f64; il]; ol];
            // The response to zeros: the fill value where a coordinate
            // extrapolates, else 0. Taps are what one-hot inputs add to it.
            let base: Vec<f64> = Tensor::from_f64(DType::F64, dims.clone(), vec![0.0; il])
                .ok()
                .and_then(|z| probe.eval(&z).ok())
                .map(|r| r.to_f64())
                .unwrap_or_default();
            for k in 0..il {
                let mut v = vec![0.0; il];
                v[k] = 1.0;
                let Ok(e) = Tensor::from_f64(DType::F64, dims.clone(), v) else {
                    continue;
                };
                if let Ok(r) = probe.eval(&e) {
                    for (o, val) in r.to_f64().into_iter().enumerate() {
                        if o < ol {
                            weights[o][k] = val - base.get(o).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
            weights
                .iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .filter(|(_, w)| **w != 0.0)
                        .map(|(k, w)| (k, *w))
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_ranges_cover_exactly_the_valid_outputs() {
        for (stride, dil, pad, inl, k) in [(1, 1, 1, 5, 3), (2, 1, 1, 7, 3), (2, 2, 2, 9, 3)] {
            let outl = (inl + 2 * pad - dil * (k - 1) - 1) / stride + 1;
            for t in 0..k {
                let (lo, hi) = tap_range(t, stride, dil, pad, inl, outl);
                for o in 0..outl {
                    let p = (o * stride + t * dil) as i64 - pad as i64;
                    let valid = p >= 0 && p < inl as i64;
                    assert_eq!(valid, (lo..hi).contains(&o), "tap {t} out {o}");
                }
            }
        }
    }

    #[test]
    fn gemm_c_broadcasts() {
        assert_eq!(gemm_c_strides(&[4], 3, 4), (0, 1));
        assert_eq!(gemm_c_strides(&[3, 1], 3, 4), (1, 0));
        assert_eq!(gemm_c_strides(&[3, 4], 3, 4), (4, 1));
        assert_eq!(gemm_c_strides(&[1], 3, 4), (0, 0));
    }

    #[test]
    fn contiguous_dims_merge_and_unit_dims_drop() {
        // [2, 1, 3, 4] dense, and a broadcast along the last dim.
        let (d, s) = merge_dims(&[2, 1, 3, 4], &[vec![12, 12, 4, 1], vec![3, 3, 1, 0]]);
        assert_eq!(d, vec![6, 4]);
        assert_eq!(s, vec![vec![4, 1], vec![1, 0]]);
        let (d, _) = merge_dims(&[2, 3], &[vec![3, 1]]);
        assert_eq!(d, vec![6]);
    }

    #[test]
    fn pad_maps_reflect_and_edge() {
        let x = TensorType::new(DType::F32, vec![3]);
        let y = TensorType::new(DType::F32, vec![7]);
        let mk = |mode| PadAttrs {
            mode,
            pads: vec![2, 2],
            value: 0.0,
        };
        assert_eq!(
            pad_source_maps(&mk(PadMode::Reflect), &x, &y)[0],
            vec![2, 1, 0, 1, 2, 1, 0]
        );
        assert_eq!(
            pad_source_maps(&mk(PadMode::Edge), &x, &y)[0],
            vec![0, 0, 0, 1, 2, 2, 2]
        );
        assert_eq!(
            pad_source_maps(&mk(PadMode::Constant), &x, &y)[0],
            vec![-1, -1, 0, 1, 2, -1, -1]
        );
    }
}
