//! Linear quantization: QuantizeLinear and DequantizeLinear, per tensor or
//! per channel along one axis. The scale and zero point are inputs (always
//! constants in practice) so that passes can fold QDQ patterns later.

use super::attr::{AttrReader, AttrWriter};
use crate::dtype::{DType, TensorType};
use crate::tensor::{Data, Tensor};

type R<T> = Result<T, String>;

/// Shared checks: scale is a scalar or a 1-D tensor along `axis`; the zero
/// point, if present, has the scale's shape and the integer type `int`.
fn check_params(
    x: &TensorType,
    scale: &TensorType,
    zp: Option<&TensorType>,
    axis: usize,
    int: DType,
) -> R<()> {
    if !scale.dtype.is_float() {
        return Err(format!("scale must be float, got {}", scale.dtype));
    }
    let per_axis = scale.len() != 1;
    if per_axis {
        if scale.rank() != 1 || axis >= x.rank() || scale.dims[0] != x.dims[axis] {
            return Err(format!("scale {scale} does not match axis {axis} of {x}"));
        }
    } else if scale.rank() > 1 {
        return Err(format!("scale {scale} must be a scalar or 1-D"));
    }
    if let Some(z) = zp {
        if z.dims != scale.dims && !(z.len() == 1 && scale.len() == 1) {
            return Err(format!("zero point {z} does not match scale {scale}"));
        }
        if z.dtype != int {
            return Err(format!("zero point type {} differs from {int}", z.dtype));
        }
    }
    Ok(())
}

/// Channel of flat element `i` for per-axis parameters.
fn channel_of(dims: &[usize], axis: usize) -> impl Fn(usize) -> usize {
    let c = dims.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = dims
        .get(axis + 1..)
        .map_or(1, |d| d.iter().product::<usize>())
        .max(1);
    move |i| (i / inner) % c
}

/// QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeAttrs {
    pub axis: usize,
    pub to: DType,
}

impl QuantizeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
        w.ident("to", self.to.name());
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let to = r.ident("to")?;
        Ok(QuantizeAttrs {
            axis: r.usize("axis")?,
            to: DType::from_name(&to).ok_or_else(|| format!("unknown type `{to}`"))?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (x, s, z) = match ins {
            [x, s] => (x, s, None),
            [x, s, z] => (x, s, Some(*z)),
            _ => return Err(format!("expects 2 or 3 inputs, got {}", ins.len())),
        };
        if !x.dtype.is_float() || !self.to.is_int() {
            return Err(format!(
                "quantizes float to integer, not {} to {}",
                x.dtype, self.to
            ));
        }
        check_params(x, s, z, self.axis, self.to)?;
        Ok(vec![x.with_dtype(self.to)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let x = ins[0];
        let scale = ins[1].to_f64();
        let zp = ins
            .get(2)
            .map(|z| z.to_i64())
            .unwrap_or_else(|| vec![0; scale.len()]);
        let ch = channel_of(x.dims(), self.axis);
        let (lo, hi) = self.to.int_range().ok_or("integer target")?;
        let per = scale.len() != 1;
        // The reference divides in the input's precision; do the same.
        let f32_math = x.dtype() == DType::F32;
        let v: Vec<i64> = x
            .to_f64()
            .iter()
            .enumerate()
            .map(|(i, &xv)| {
                let k = if per { ch(i) } else { 0 };
                let q = if f32_math {
                    ((xv as f32) / (scale[k] as f32)).round_ties_even() as f64
                } else {
                    (xv / scale[k]).round_ties_even()
                };
                let q = if q.is_nan() { 0.0 } else { q };
                (q + zp[k] as f64).clamp(lo as f64, hi as f64) as i64
            })
            .collect();
        Tensor::new(x.dims().to_vec(), Data::from_i64(self.to, v)).map_err(|e| e.to_string())
    }
}

/// DequantizeLinear: `(x - zero_point) * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct DequantizeAttrs {
    pub axis: usize,
}

impl DequantizeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(DequantizeAttrs {
            axis: r.usize("axis")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (x, s, z) = match ins {
            [x, s] => (x, s, None),
            [x, s, z] => (x, s, Some(*z)),
            _ => return Err(format!("expects 2 or 3 inputs, got {}", ins.len())),
        };
        if !x.dtype.is_int() {
            return Err(format!("dequantizes integers, not {}", x.dtype));
        }
        check_params(x, s, z, self.axis, x.dtype)?;
        Ok(vec![x.with_dtype(s.dtype)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let x = ins[0];
        let st = ins[1];
        let scale = st.to_f64();
        let zp = ins
            .get(2)
            .map(|z| z.to_i64())
            .unwrap_or_else(|| vec![0; scale.len()]);
        let ch = channel_of(x.dims(), self.axis);
        let per = scale.len() != 1;
        let f32_math = st.dtype() == DType::F32;
        let v: Vec<f64> = x
            .to_i64()
            .iter()
            .enumerate()
            .map(|(i, &xv)| {
                let k = if per { ch(i) } else { 0 };
                if f32_math {
                    ((xv - zp[k]) as f32 * scale[k] as f32) as f64
                } else {
                    (xv - zp[k]) as f64 * scale[k]
                }
            })
            .collect();
        Tensor::from_f64(st.dtype(), x.dims().to_vec(), v).map_err(|e| e.to_string())
    }
}
