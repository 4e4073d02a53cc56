//! nnc-backends: renderers of the lowered program.
//!
//! A [`nnc_ir::program::Program`] (lowered, planned and with every step's
//! kernel selected by `nnc-passes`) becomes C source (`c`) or native code
//! through Cranelift (`cranelift`). Both render exactly the program they are
//! given: the same steps, kernels, tile shapes and arena offsets, so the
//! memory report is exact for both. They make no choices of their own.
//! Depends only on `nnc-ir`.

pub mod c;
pub mod cranelift;
pub mod error;
pub mod header;
pub mod names;
pub mod tables;

pub use error::{BackendError, Result};
