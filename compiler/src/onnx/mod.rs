//! The ONNX frontend: protobuf decoding (messages declared in `proto`),
//! writing graphs back as ONNX (`export`),
//! tensor conversion, and import of a model into the graph IR with every
//! shape made static and shape computations folded to constants.

pub mod build;
mod error;
pub mod export;
mod import;
mod ops;
pub mod proto;
pub mod tensor;

pub use error::{ImportError, Result, UnsupportedNode};
pub use import::{ImportOptions, MAX_OPSET, decode, import, import_model, input_names, load};
pub use ops::SUPPORTED;
