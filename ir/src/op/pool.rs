//! Windowed pooling (max and average, with pads, dilations, ceil mode and
//! count_include_pad) and global pooling over all spatial dims.

use super::attr::{AttrReader, AttrWriter};
use super::conv::{increment, window_pairs};
use crate::dtype::{DType, TensorType, checked_numel};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

/// MaxPool / AveragePool attributes. Pads are all begins, then all ends.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kind: PoolKind,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Output size rounds up; a last window starting beyond the padded input is dropped.
    pub ceil_mode: bool,
    /// Average divides by the window size including pads (never the ceil-mode overhang).
    pub count_include_pad: bool,
}

impl PoolAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("kernel", &self.kernel);
        w.usizes("stride", &self.strides);
        w.usizes("pad", &self.pads);
        if self.dilations.iter().any(|&d| d != 1) {
            w.usizes("dilation", &self.dilations);
        }
        if self.ceil_mode {
            w.bool("ceil_mode", true);
        }
        if self.count_include_pad {
            w.bool("count_include_pad", true);
        }
    }

    pub fn read(r: &mut AttrReader, kind: PoolKind) -> R<Self> {
        let kernel = r.usizes("kernel")?;
        let n = kernel.len();
        Ok(PoolAttrs {
            kind,
            strides: r.usizes("stride")?,
            pads: r.usizes("pad")?,
            dilations: r.usizes_or("dilation", vec![1; n])?,
            ceil_mode: r.bool_or("ceil_mode", false)?,
            count_include_pad: r.bool_or("count_include_pad", false)?,
            kernel,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        let n = self.kernel.len();
        if x.rank() != n + 2 {
            return Err(format!(
                "input {x} must have rank {} for a {n}-D kernel",
                n + 2
            ));
        }
        let avg_ok = x.dtype.is_float() || matches!(x.dtype, DType::I8 | DType::U8);
        if x.dtype == DType::Bool || (self.kind == PoolKind::Avg && !avg_ok) {
            return Err(format!("unsupported input type {}", x.dtype));
        }
        if self.strides.len() != n || self.pads.len() != 2 * n || self.dilations.len() != n {
            return Err("strides, pads and dilations do not match the kernel rank".into());
        }
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err("kernel, strides and dilations must be positive".into());
        }
        let mut dims = x.dims[..2].to_vec();
        for i in 0..n {
            let span = self.dilations[i]
                .checked_mul(self.kernel[i] - 1)
                .and_then(|s| s.checked_add(1))
                .ok_or("kernel or dilations out of range")?;
            let padded = x.dims[2 + i]
                .checked_add(self.pads[i])
                .and_then(|p| p.checked_add(self.pads[n + i]))
                .ok_or("pads out of range")?;
            if padded < span {
                return Err(format!(
                    "window {span} exceeds padded input {padded} on spatial axis {i}"
                ));
            }
            let s = self.strides[i];
            let mut o = if self.ceil_mode {
                (padded - span).div_ceil(s) + 1
            } else {
                (padded - span) / s + 1
            };
            if self.ceil_mode && (o - 1) * s >= x.dims[2 + i] + self.pads[i] {
                o -= 1;
            }
            dims.push(o);
        }
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let n = self.kernel.len();
        let in_sp = &x.dims()[2..];
        let out_sp = &out.dims[2..];
        let in_size: usize = in_sp.iter().product();
        let out_size: usize = out_sp.iter().product();
        let pairs = window_pairs(
            in_sp,
            out_sp,
            &self.kernel,
            &self.strides,
            &self.pads[..n],
            &self.dilations,
        );
        // Divisor per output position.
        let divisor: Vec<f64> = if self.count_include_pad {
            let mut idx = vec![0usize; n];
            (0..out_size)
                .map(|_| {
                    let mut c = 1usize;
                    for d in 0..n {
                        let lo = -(self.pads[d] as isize);
                        let hi = (in_sp[d] + self.pads[n + d]) as isize;
                        c *= (0..self.kernel[d])
                            .filter(|&k| {
                                let p = (idx[d] * self.strides[d] + k * self.dilations[d]) as isize
                                    - self.pads[d] as isize;
                                p >= lo && p < hi
                            })
                            .count();
                    }
                    increment(&mut idx, out_sp);
                    c as f64
                })
                .collect()
        } else {
            let mut c = vec![0.0; out_size];
            for pk in &pairs {
                for &(o, _) in pk {
                    c[o] += 1.0;
                }
            }
            c
        };
        let xv = x.to_f64();
        let planes = x.dims()[0] * x.dims()[1];
        let mut y = vec![0.0; planes * out_size];
        for p in 0..planes {
            let xs = &xv[p * in_size..][..in_size];
            let ys = &mut y[p * out_size..][..out_size];
            match self.kind {
                PoolKind::Max => {
                    ys.fill(f64::NEG_INFINITY);
                    for pk in &pairs {
                        for &(o, i) in pk {
                            if xs[i] > ys[o] || xs[i].is_nan() {
                                ys[o] = xs[i];
                            }
                        }
                    }
                }
                PoolKind::Avg => {
                    for pk in &pairs {
                        for &(o, i) in pk {
                            ys[o] += xs[i];
                        }
                    }
                    for (v, d) in ys.iter_mut().zip(&divisor) {
                        *v = if x.dtype().is_float() {
                            *v / d
                        } else {
                            int_average(*v as i64, *d as i64) as f64
                        };
                    }
                }
            }
        }
        Tensor::from_f64(x.dtype(), out.dims, y).map_err(|e| e.to_string())
    }
}

/// The average of integers `sum / count` rounded to nearest, ties away
/// from zero (TFLite's integer average pooling); 0 for an empty window.
pub fn int_average(sum: i64, count: i64) -> i64 {
    if count <= 0 {
        0
    } else if sum > 0 {
        (sum + count / 2) / count
    } else {
        (sum - count / 2) / count
    }
}

/// GlobalAveragePool / GlobalMaxPool: one value per (N, C).
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalPoolAttrs {
    pub kind: PoolKind,
}

impl GlobalPoolAttrs {
    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if x.rank() < 2 || !(x.dtype.is_float() || matches!(x.dtype, DType::I8 | DType::U8)) {
            return Err(format!(
                "input {x} must be a float, i8 or u8 tensor of rank >= 2"
            ));
        }
        let mut dims = x.dims.clone();
        for d in dims.iter_mut().skip(2) {
            *d = 1;
        }
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let inner: usize = x.dims()[2..].iter().product();
        let xv = x.to_f64();
        let planes = x.dims()[0] * x.dims()[1];
        let y: Vec<f64> = (0..planes)
            .map(|p| {
                let s = &xv[p * inner..][..inner];
                match self.kind {
                    PoolKind::Avg if !x.dtype().is_float() => {
                        int_average(s.iter().sum::<f64>() as i64, inner as i64) as f64
                    }
                    PoolKind::Avg => s.iter().sum::<f64>() / inner as f64,
                    PoolKind::Max => s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                }
            })
            .collect();
        Tensor::from_f64(x.dtype(), out.dims, y).map_err(|e| e.to_string())
    }
}
