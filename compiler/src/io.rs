//! Tensor files: `.npy` (numpy) and `.pb` (serialized ONNX TensorProto), as
//! used by `nnc run` and by the ONNX test layout.

use std::path::{Path, PathBuf};

use nnc_ir::{DType, Data, Tensor};
use nnc_runtime::npy::{self, Elem, NpyArray};
use thiserror::Error;

use crate::onnx;

/// Errors reading or writing tensor files.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}`: {msg}")]
    Format { path: PathBuf, msg: String },
}

fn elem_of(d: DType) -> Elem {
    match d {
        DType::F32 => Elem::F32,
        DType::F64 => Elem::F64,
        DType::I8 => Elem::I8,
        DType::U8 => Elem::U8,
        DType::I16 => Elem::I16,
        DType::U16 => Elem::U16,
        DType::I32 => Elem::I32,
        DType::U32 => Elem::U32,
        DType::I64 => Elem::I64,
        DType::Bool => Elem::Bool,
    }
}

fn dtype_of(e: Elem) -> DType {
    match e {
        Elem::F32 => DType::F32,
        Elem::F64 => DType::F64,
        Elem::I8 => DType::I8,
        Elem::U8 => DType::U8,
        Elem::I16 => DType::I16,
        Elem::U16 => DType::U16,
        Elem::I32 => DType::I32,
        Elem::U32 => DType::U32,
        Elem::I64 => DType::I64,
        Elem::Bool => DType::Bool,
    }
}

/// Converts a tensor to a `.npy` array.
pub fn to_npy(t: &Tensor) -> NpyArray {
    NpyArray {
        elem: elem_of(t.dtype()),
        shape: t.dims().to_vec(),
        data: t.data().to_le_bytes(),
    }
}

/// Converts a `.npy` array to a tensor.
pub fn from_npy(a: &NpyArray) -> Result<Tensor, String> {
    let data = Data::from_le_bytes(dtype_of(a.elem), &a.data).ok_or("bad data length")?;
    Tensor::new(a.shape.clone(), data).map_err(|e| e.to_string())
}

/// Reads a tensor from `.npy` or `.pb` (decided by content, not extension).
/// Returns the name stored in the file, if any (`.pb` files carry one).
pub fn read_tensor(path: &Path) -> Result<(Option<String>, Tensor), IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    tensor_from_bytes(&bytes).map_err(|msg| IoError::Format {
        path: path.to_path_buf(),
        msg,
    })
}

/// Decodes the contents of a `.npy` or `.pb` tensor file.
pub fn tensor_from_bytes(bytes: &[u8]) -> Result<(Option<String>, Tensor), String> {
    if bytes.starts_with(b"\x93NUMPY") {
        let a = npy::read(bytes).map_err(|e| e.to_string())?;
        return Ok((None, from_npy(&a)?));
    }
    let (name, t) = onnx::tensor::decode_pb(bytes, "tensor file")
        .map_err(|e| format!("neither a .npy file nor a valid ONNX TensorProto ({e})"))?;
    Ok(((!name.is_empty()).then_some(name), t))
}

/// Writes a tensor as `.npy` (atomically: see [`crate::outfile`]).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), IoError> {
    crate::outfile::write(path, &npy::write(&to_npy(t)))
}

/// Writes a tensor as an ONNX TensorProto `.pb`.
pub fn write_pb(path: &Path, t: &Tensor, name: &str) -> Result<(), IoError> {
    use prost::Message;
    let bytes = onnx::tensor::to_proto(t, name).encode_to_vec();
    crate::outfile::write(path, &bytes)
}
