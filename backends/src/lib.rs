//! nnc-backends: from an optimized graph to code.
//!
//! `plan` lowers a graph to a [`Program`]: a schedule of kernel steps whose
//! buffers are offsets in one arena, weights, or the caller's input and
//! output buffers. The C generator (`c`) and the Cranelift generator
//! consume the same program, so both execute the same memory plan.
//! Depends on `nnc-ir` and `nnc-passes`.

pub mod c;
pub mod cranelift;
pub mod error;
pub mod header;
pub mod plan;
pub mod program;
pub mod tables;

pub use error::{BackendError, Result};
pub use plan::lower;
pub use program::{ARENA_ALIGN, Buffer, Loc, PlanStats, Program, Step, Weight};
