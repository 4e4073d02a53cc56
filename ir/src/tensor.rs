//! Tensors with data: constants in the graph and values in the interpreter.
//!
//! The interpreter computes float ops in f64 and integer ops in i64 and rounds
//! to the value's element type at the end, so the conversions here are the
//! only place where element types are matched one by one.

use crate::dtype::{DType, TensorType, checked_numel};
use crate::error::{IrError, Result};

/// Typed element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

macro_rules! each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => $body,
            Data::F64($v) => $body,
            Data::I8($v) => $body,
            Data::U8($v) => $body,
            Data::I16($v) => $body,
            Data::U16($v) => $body,
            Data::I32($v) => $body,
            Data::U32($v) => $body,
            Data::I64($v) => $body,
            Data::Bool($v) => $body,
        }
    };
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::I16(_) => DType::I16,
            Data::U16(_) => DType::U16,
            Data::I32(_) => DType::I32,
            Data::U32(_) => DType::U32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        each_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All-zero (false) storage of `n` elements.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::I8 => Data::I8(vec![0; n]),
            DType::U8 => Data::U8(vec![0; n]),
            DType::I16 => Data::I16(vec![0; n]),
            DType::U16 => Data::U16(vec![0; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::U32 => Data::U32(vec![0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::Bool => Data::Bool(vec![false; n]),
        }
    }

    /// Converts f64 values to `dtype`: floats round, integers truncate toward
    /// zero and saturate (NaN becomes 0), bool is `x != 0`.
    pub fn from_f64(dtype: DType, v: impl IntoIterator<Item = f64>) -> Data {
        let v = v.into_iter();
        match dtype {
            DType::F32 => Data::F32(v.map(|x| x as f32).collect()),
            DType::F64 => Data::F64(v.collect()),
            DType::I8 => Data::I8(v.map(|x| x as i8).collect()),
            DType::U8 => Data::U8(v.map(|x| x as u8).collect()),
            DType::I16 => Data::I16(v.map(|x| x as i16).collect()),
            DType::U16 => Data::U16(v.map(|x| x as u16).collect()),
            DType::I32 => Data::I32(v.map(|x| x as i32).collect()),
            DType::U32 => Data::U32(v.map(|x| x as u32).collect()),
            DType::I64 => Data::I64(v.map(|x| x as i64).collect()),
            DType::Bool => Data::Bool(v.map(|x| x != 0.0).collect()),
        }
    }

    /// Converts i64 values to `dtype`, wrapping like C casts for integers.
    pub fn from_i64(dtype: DType, v: impl IntoIterator<Item = i64>) -> Data {
        let v = v.into_iter();
        match dtype {
            DType::F32 => Data::F32(v.map(|x| x as f32).collect()),
            DType::F64 => Data::F64(v.map(|x| x as f64).collect()),
            DType::I8 => Data::I8(v.map(|x| x as i8).collect()),
            DType::U8 => Data::U8(v.map(|x| x as u8).collect()),
            DType::I16 => Data::I16(v.map(|x| x as i16).collect()),
            DType::U16 => Data::U16(v.map(|x| x as u16).collect()),
            DType::I32 => Data::I32(v.map(|x| x as i32).collect()),
            DType::U32 => Data::U32(v.map(|x| x as u32).collect()),
            DType::I64 => Data::I64(v.collect()),
            DType::Bool => Data::Bool(v.map(|x| x != 0).collect()),
        }
    }

    /// Values as f64 (exact for every type but large i64).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Values as i64 (floats truncate toward zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match self {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// Elements gathered by index: `out[i] = self[idx[i]]`.
    pub fn gather(&self, idx: &[usize]) -> Data {
        match self {
            Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
            Data::F64(v) => Data::F64(idx.iter().map(|&i| v[i]).collect()),
            Data::I8(v) => Data::I8(idx.iter().map(|&i| v[i]).collect()),
            Data::U8(v) => Data::U8(idx.iter().map(|&i| v[i]).collect()),
            Data::I16(v) => Data::I16(idx.iter().map(|&i| v[i]).collect()),
            Data::U16(v) => Data::U16(idx.iter().map(|&i| v[i]).collect()),
            Data::I32(v) => Data::I32(idx.iter().map(|&i| v[i]).collect()),
            Data::U32(v) => Data::U32(idx.iter().map(|&i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
            Data::Bool(v) => Data::Bool(idx.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Like [`Data::gather`], with `None` picking `fill` (converted from f64).
    pub fn gather_or(&self, idx: &[Option<usize>], fill: f64) -> Data {
        let fill_data = Data::from_f64(self.dtype(), [fill]);
        macro_rules! go {
            ($v:expr, $f:expr, $var:ident) => {{
                let f = match $f {
                    Data::$var(f) => f[0],
                    _ => unreachable!("fill converted to the same dtype"),
                };
                Data::$var(idx.iter().map(|i| i.map_or(f, |i| $v[i])).collect())
            }};
        }
        match self {
            Data::F32(v) => go!(v, &fill_data, F32),
            Data::F64(v) => go!(v, &fill_data, F64),
            Data::I8(v) => go!(v, &fill_data, I8),
            Data::U8(v) => go!(v, &fill_data, U8),
            Data::I16(v) => go!(v, &fill_data, I16),
            Data::U16(v) => go!(v, &fill_data, U16),
            Data::I32(v) => go!(v, &fill_data, I32),
            Data::U32(v) => go!(v, &fill_data, U32),
            Data::I64(v) => go!(v, &fill_data, I64),
            Data::Bool(v) => go!(v, &fill_data, Bool),
        }
    }

    /// Little-endian bytes of the elements (bool as one byte each).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8).collect(),
        }
    }

    /// Parses little-endian bytes; the length must be a multiple of the element size.
    pub fn from_le_bytes(dtype: DType, b: &[u8]) -> Option<Data> {
        let n = dtype.size();
        if !b.len().is_multiple_of(n) {
            return None;
        }
        macro_rules! chunks {
            ($t:ty, $k:expr) => {
                b.chunks_exact($k)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
                    .collect()
            };
        }
        Some(match dtype {
            DType::F32 => Data::F32(chunks!(f32, 4)),
            DType::F64 => Data::F64(chunks!(f64, 8)),
            DType::I8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(b.to_vec()),
            DType::I16 => Data::I16(chunks!(i16, 2)),
            DType::U16 => Data::U16(chunks!(u16, 2)),
            DType::I32 => Data::I32(chunks!(i32, 4)),
            DType::U32 => Data::U32(chunks!(u32, 4)),
            DType::I64 => Data::I64(chunks!(i64, 8)),
            DType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
        })
    }
}

/// A tensor: dims plus typed data, with `data.len() == product(dims)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dims: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// Checks that the element count matches the dims.
    pub fn new(dims: Vec<usize>, data: Data) -> Result<Tensor> {
        match checked_numel(&dims) {
            Some(n) if n == data.len() => Ok(Tensor { dims, data }),
            _ => Err(IrError::Tensor(format!(
                "{} elements do not fill a {}{:?} tensor",
                data.len(),
                data.dtype(),
                dims
            ))),
        }
    }

    /// All-zero tensor of the given type.
    pub fn zeros(ty: &TensorType) -> Tensor {
        Tensor {
            dims: ty.dims.clone(),
            data: Data::zeros(ty.dtype, ty.len()),
        }
    }

    /// Tensor from f64 values converted to `dtype` (see [`Data::from_f64`]).
    pub fn from_f64(dtype: DType, dims: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
        Tensor::new(dims, Data::from_f64(dtype, v))
    }

    /// Tensor from i64 values converted to `dtype` (see [`Data::from_i64`]).
    pub fn from_i64(dtype: DType, dims: Vec<usize>, v: Vec<i64>) -> Result<Tensor> {
        Tensor::new(dims, Data::from_i64(dtype, v))
    }

    pub fn scalar_f32(x: f32) -> Tensor {
        Tensor {
            dims: vec![],
            data: Data::F32(vec![x]),
        }
    }

    pub fn from_f32(dims: Vec<usize>, v: Vec<f32>) -> Result<Tensor> {
        Tensor::new(dims, Data::F32(v))
    }

    pub fn from_i64s(dims: Vec<usize>, v: Vec<i64>) -> Result<Tensor> {
        Tensor::new(dims, Data::I64(v))
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.dims.clone())
    }

    /// Same data, other dims (element count must match).
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Tensor> {
        Tensor::new(dims, self.data.clone())
    }

    pub fn to_f64(&self) -> Vec<f64> {
        self.data.to_f64()
    }

    pub fn to_i64(&self) -> Vec<i64> {
        self.data.to_i64()
    }

    /// The f32 elements, when this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Converts to another element type (ONNX Cast semantics for the supported types).
    pub fn cast(&self, to: DType) -> Tensor {
        if to == self.dtype() {
            return self.clone();
        }
        let data = if self.dtype().is_float() || to.is_float() || to == DType::Bool {
            Data::from_f64(to, self.data.to_f64())
        } else {
            Data::from_i64(to, self.data.to_i64())
        };
        Tensor {
            dims: self.dims.clone(),
            data,
        }
    }

    /// Bitwise equality (NaN equals NaN with the same bits); used to share
    /// identical constants.
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        self.dims == other.dims
            && self.dtype() == other.dtype()
            && self.data.to_le_bytes() == other.data.to_le_bytes()
    }

    /// The single element as f64, when the tensor holds exactly one.
    pub fn scalar_f64(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.data.to_f64()[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_len() {
        assert!(Tensor::from_f32(vec![2, 2], vec![1.0; 4]).is_ok());
        assert!(Tensor::from_f32(vec![2, 3], vec![1.0; 4]).is_err());
        assert!(Tensor::from_f32(vec![usize::MAX, 3], vec![]).is_err());
    }

    #[test]
    fn bytes_round_trip() {
        for dt in DType::ALL {
            let d = Data::from_f64(dt, [1.0, 0.0, 3.0, 2.0]);
            let b = d.to_le_bytes();
            assert_eq!(b.len(), 4 * dt.size());
            assert_eq!(Data::from_le_bytes(dt, &b), Some(d));
        }
        assert_eq!(Data::from_le_bytes(DType::F32, &[0, 0, 0]), None);
    }

    #[test]
    fn casts_follow_onnx() {
        let t = Tensor::from_f32(vec![4], vec![-1.7, 2.5, 0.0, 300.0]).unwrap();
        assert_eq!(t.cast(DType::I32).to_i64(), vec![-1, 2, 0, 300]);
        assert_eq!(
            t.cast(DType::Bool).data(),
            &Data::Bool(vec![true, true, false, true])
        );
        let i = Tensor::from_i64s(vec![2], vec![300, -1]).unwrap();
        assert_eq!(i.cast(DType::U8).to_i64(), vec![44, 255]);
    }
}
