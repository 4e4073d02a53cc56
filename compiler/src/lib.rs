//! nnc: the compiler driver. ONNX import (`onnx`), tensor file I/O (`io`),
//! the session that loads a model, runs passes and backends (`driver`),
//! host builds (`cbuild`, `native`), Cortex-M firmware measured under
//! QEMU (`mcu`), the memory picture (`memsvg`) and the cost of pruning (`prune`). The `nnc` binary is a thin CLI over this library.

pub mod build;
pub mod cache;
pub mod cbuild;
pub mod confine;
pub mod driver;
pub mod fit;
pub mod io;
pub mod mcu;
pub mod memsvg;
pub mod native;
pub mod onnx;
pub mod outfile;
pub mod prune;
