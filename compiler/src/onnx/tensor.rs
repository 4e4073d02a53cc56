//! ONNX TensorProto <-> IR tensors, including external data files and the
//! `.pb` tensor files of the ONNX test layout.

use std::path::Path;

use nnc_ir::{DType, Data, Tensor, dtype::checked_numel};
use prost::Message;

use super::error::{ImportError, Result};
use super::proto::{SparseTensorProto, TensorProto, data_type as dt};

/// IR element type of an ONNX data type, or a message naming the type.
pub fn dtype_of(code: i32) -> std::result::Result<DType, String> {
    Ok(match code {
        dt::FLOAT => DType::F32,
        dt::DOUBLE => DType::F64,
        dt::INT8 => DType::I8,
        dt::UINT8 => DType::U8,
        dt::INT16 => DType::I16,
        dt::UINT16 => DType::U16,
        dt::INT32 => DType::I32,
        dt::UINT32 => DType::U32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        other => return Err(format!("unsupported element type {}", type_name(other))),
    })
}

/// ONNX data type code of an IR element type.
pub fn code_of(d: DType) -> i32 {
    match d {
        DType::F32 => dt::FLOAT,
        DType::F64 => dt::DOUBLE,
        DType::I8 => dt::INT8,
        DType::U8 => dt::UINT8,
        DType::I16 => dt::INT16,
        DType::U16 => dt::UINT16,
        DType::I32 => dt::INT32,
        DType::U32 => dt::UINT32,
        DType::I64 => dt::INT64,
        DType::Bool => dt::BOOL,
    }
}

/// Human-readable name of an ONNX data type code.
pub fn type_name(code: i32) -> String {
    let n = match code {
        0 => "UNDEFINED",
        dt::FLOAT => "FLOAT",
        dt::UINT8 => "UINT8",
        dt::INT8 => "INT8",
        dt::UINT16 => "UINT16",
        dt::INT16 => "INT16",
        dt::INT32 => "INT32",
        dt::INT64 => "INT64",
        dt::STRING => "STRING",
        dt::BOOL => "BOOL",
        dt::FLOAT16 => "FLOAT16",
        dt::DOUBLE => "DOUBLE",
        dt::UINT32 => "UINT32",
        dt::UINT64 => "UINT64",
        dt::COMPLEX64 => "COMPLEX64",
        dt::COMPLEX128 => "COMPLEX128",
        dt::BFLOAT16 => "BFLOAT16",
        17..=20 | 23 | 24 => "FLOAT8",
        21 | 22 | 25 | 26 => "INT4/UINT4",
        _ => return format!("#{code}"),
    };
    n.to_string()
}

fn terr<T>(t: &TensorProto, msg: impl Into<String>) -> Result<T> {
    Err(ImportError::Tensor {
        name: t.name.clone(),
        msg: msg.into(),
    })
}

/// Reads the bytes of an externally stored tensor: `want` bytes from a
/// regular file inside the model's folder (see [`crate::confine`]).
fn external_bytes(t: &TensorProto, base: Option<&Path>, want: u64) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &t.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => match e.value.parse() {
                Ok(v) => offset = v,
                Err(_) => return terr(t, format!("bad external data offset `{}`", e.value)),
            },
            "length" => match e.value.parse::<u64>() {
                Ok(v) => length = Some(v),
                Err(_) => return terr(t, format!("bad external data length `{}`", e.value)),
            },
            _ => {}
        }
    }
    let Some(location) = location else {
        return terr(t, "external data without a location");
    };
    let Some(base) = base else {
        return terr(
            t,
            "external data needs the model's folder (load the model from a file)",
        );
    };
    crate::confine::read_range(base, &location, offset, length, Some(want))
        .or_else(|m| terr(t, format!("external data: {m}")))
}

/// Converts a TensorProto (any storage form) to an IR tensor.
pub fn from_proto(t: &TensorProto, base: Option<&Path>) -> Result<Tensor> {
    let dtype = match dtype_of(t.data_type) {
        Ok(d) => d,
        Err(m) => return terr(t, m),
    };
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        match usize::try_from(d) {
            Ok(d) => dims.push(d),
            Err(_) => return terr(t, format!("negative dimension {d}")),
        }
    }
    let Some(n) = checked_numel(&dims) else {
        return terr(t, format!("shape {dims:?} is too large"));
    };
    let data = if t.data_location == 1 {
        let want = (n as u64).saturating_mul(dtype.size() as u64);
        let b = external_bytes(t, base, want)?;
        bytes_to_data(t, dtype, n, &b)?
    } else if !t.raw_data.is_empty() {
        bytes_to_data(t, dtype, n, &t.raw_data)?
    } else {
        let count = match dtype {
            DType::F32 => t.float_data.len(),
            DType::F64 => t.double_data.len(),
            DType::I64 => t.int64_data.len(),
            DType::U32 => t.uint64_data.len(),
            _ => t.int32_data.len(),
        };
        if count != n {
            return terr(t, format!("holds {count} values, shape {dims:?} needs {n}"));
        }
        match dtype {
            DType::F32 => Data::F32(t.float_data.clone()),
            DType::F64 => Data::F64(t.double_data.clone()),
            DType::I64 => Data::I64(t.int64_data.clone()),
            DType::U32 => Data::U32(t.uint64_data.iter().map(|&v| v as u32).collect()),
            DType::Bool => Data::Bool(t.int32_data.iter().map(|&v| v != 0).collect()),
            // Small integer types are stored one per int32 (uint16 and
            // float16 bit patterns included).
            d => Data::from_i64(d, t.int32_data.iter().map(|&v| v as i64)),
        }
    };
    Tensor::new(dims, data).map_err(|e| ImportError::Tensor {
        name: t.name.clone(),
        msg: e.to_string(),
    })
}

fn bytes_to_data(t: &TensorProto, dtype: DType, n: usize, b: &[u8]) -> Result<Data> {
    let want = n * dtype.size();
    if b.len() != want {
        return terr(
            t,
            format!(
                "has {} bytes of data, {} elements of {dtype} need {want}",
                b.len(),
                n
            ),
        );
    }
    Ok(Data::from_le_bytes(dtype, b).expect("length checked"))
}

/// Densifies a sparse tensor.
pub fn from_sparse(s: &SparseTensorProto, base: Option<&Path>) -> Result<Tensor> {
    let (Some(values), Some(indices)) = (&s.values, &s.indices) else {
        return Err(ImportError::Model(
            "sparse tensor without values or indices".into(),
        ));
    };
    let values = from_proto(values, base)?;
    let idx = from_proto(indices, base)?;
    let dims: Vec<usize> = s.dims.iter().map(|&d| d.max(0) as usize).collect();
    let err = |m: &str| ImportError::Tensor {
        name: indices.name.clone(),
        msg: m.to_string(),
    };
    let n = checked_numel(&dims).ok_or_else(|| err("sparse shape too large"))?;
    let nnz = values.len();
    let flat: Vec<i64> = idx.to_i64();
    let linear: Vec<i64> = if idx.rank() == 1 {
        flat
    } else if idx.rank() == 2 && idx.dims()[1] == dims.len() {
        let st = nnc_ir::dtype::strides(&dims);
        flat.chunks(dims.len())
            .map(|c| c.iter().zip(&st).map(|(i, s)| i * *s as i64).sum())
            .collect()
    } else {
        return Err(err("sparse indices have an unsupported shape"));
    };
    if linear.len() != nnz || linear.iter().any(|&i| i < 0 || i as usize >= n) {
        return Err(err("sparse indices out of range"));
    }
    let mut pos: Vec<Option<usize>> = vec![None; n];
    for (k, &i) in linear.iter().enumerate() {
        pos[i as usize] = Some(k);
    }
    Tensor::new(dims, values.data().gather_or(&pos, 0.0)).map_err(|e| err(&e.to_string()))
}

/// Serializes an IR tensor as a TensorProto (raw_data form).
pub fn to_proto(t: &Tensor, name: &str) -> TensorProto {
    TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: code_of(t.dtype()),
        name: name.to_string(),
        raw_data: t.data().to_le_bytes(),
        ..Default::default()
    }
}

/// Decodes a serialized TensorProto (`.pb` file contents).
pub fn decode_pb(bytes: &[u8], what: &str) -> Result<(String, Tensor)> {
    let t = TensorProto::decode(bytes).map_err(|e| ImportError::Decode(format!("{what}: {e}")))?;
    if t.data_type == 0 {
        return Err(ImportError::Decode(format!(
            "{what}: not a TensorProto (no data type)"
        )));
    }
    let tensor = from_proto(&t, None)?;
    Ok((t.name.clone(), tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_forms_agree() {
        let raw = to_proto(&Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap(), "w");
        let typed = TensorProto {
            dims: vec![2],
            data_type: dt::FLOAT,
            float_data: vec![1.5, -2.0],
            ..Default::default()
        };
        assert_eq!(
            from_proto(&raw, None).unwrap(),
            from_proto(&typed, None).unwrap()
        );
        let i8s = TensorProto {
            dims: vec![3],
            data_type: dt::INT8,
            int32_data: vec![-1, 5, 127],
            ..Default::default()
        };
        assert_eq!(from_proto(&i8s, None).unwrap().to_i64(), vec![-1, 5, 127]);
    }

    #[test]
    fn rejects_bad_tensors() {
        let short = TensorProto {
            dims: vec![3],
            data_type: dt::FLOAT,
            float_data: vec![1.0],
            name: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            from_proto(&short, None).unwrap_err().to_string(),
            "tensor `w`: holds 1 values, shape [3] needs 3"
        );
        let f16 = TensorProto {
            dims: vec![1],
            data_type: dt::FLOAT16,
            ..Default::default()
        };
        assert!(
            from_proto(&f16, None)
                .unwrap_err()
                .to_string()
                .contains("FLOAT16")
        );
        let escape = TensorProto {
            dims: vec![1],
            data_type: dt::FLOAT,
            data_location: 1,
            external_data: vec![super::super::proto::StringStringEntryProto {
                key: "location".into(),
                value: "../secret".into(),
            }],
            ..Default::default()
        };
        assert!(
            from_proto(&escape, Some(Path::new("/tmp")))
                .unwrap_err()
                .to_string()
                .contains("plain relative path")
        );
    }
}
