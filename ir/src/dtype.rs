//! Element types and static tensor types: every value in the IR carries one.

use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    Bool,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// The short name used in the text format (`f32`, `i64`, `bool`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// Inverse of [`DType::name`].
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    /// True for types that can hold negative values.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            DType::F32 | DType::F64 | DType::I8 | DType::I16 | DType::I32 | DType::I64
        )
    }

    /// Smallest and largest representable integer, for integer types.
    pub fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::U8 => (0, u8::MAX as i64),
            DType::I16 => (i16::MIN as i64, i16::MAX as i64),
            DType::U16 => (0, u16::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::U32 => (0, u32::MAX as i64),
            DType::I64 => (i64::MIN, i64::MAX),
            DType::Bool => (0, 1),
            DType::F32 | DType::F64 => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest number of elements a single tensor may have. Shapes beyond this are
/// rejected during shape inference, so hostile models cannot request huge
/// allocations.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// A full static tensor type: element type and dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, dims: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype,
            dims: dims.into(),
        }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Number of elements; saturates instead of overflowing (see [`TensorType::checked_len`]).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// True when some dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.dims.contains(&0)
    }

    /// Number of elements, or `None` when it overflows or exceeds [`MAX_ELEMENTS`].
    pub fn checked_len(&self) -> Option<usize> {
        checked_numel(&self.dims)
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.len().saturating_mul(self.dtype.size())
    }

    /// Same dims, other element type.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType {
            dtype,
            dims: self.dims.clone(),
        }
    }
}

/// Product of dims, `None` on overflow or beyond [`MAX_ELEMENTS`]. The
/// bound holds for the non-zero dims too, so that an empty tensor cannot
/// carry dims whose partial products (strides, spatial sizes) overflow.
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d.max(1))?;
        if n > MAX_ELEMENTS {
            return None;
        }
    }
    if dims.contains(&0) { Some(0) } else { Some(n) }
}

/// Row-major strides (in elements) for `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("f16"), None);
    }

    #[test]
    fn type_display_and_len() {
        let t = TensorType::new(DType::F32, vec![1, 3, 224, 224]);
        assert_eq!(t.to_string(), "f32[1,3,224,224]");
        assert_eq!(t.len(), 3 * 224 * 224);
        assert_eq!(t.bytes(), 4 * 3 * 224 * 224);
        assert_eq!(TensorType::new(DType::I64, vec![]).to_string(), "i64[]");
        assert_eq!(checked_numel(&[usize::MAX, 2]), None);
        assert_eq!(checked_numel(&[1 << 20, 1 << 20]), None);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
