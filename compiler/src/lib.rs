//! nnc: the compiler driver. ONNX import (`onnx`), tensor file I/O (`io`)
//! and the session that loads a model, runs passes and backends
//! (`driver`). The `nnc` binary is a thin CLI over this library.

pub mod cbuild;
pub mod driver;
pub mod io;
pub mod native;
pub mod onnx;
