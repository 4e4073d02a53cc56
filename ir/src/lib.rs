//! nnc-ir: the graph IR of the nnc compiler.
//!
//! Every value has a static [`TensorType`]; operations form a closed [`Op`]
//! enum with one attribute struct per variant; the [`Graph`] is a stable
//! petgraph with constants in a shared side table. The crate also holds the
//! verifier, the text format ([`print()`] / [`parse()`], which round-trip),
//! Graphviz output and the reference interpreter ([`interp`]), the oracle
//! for every pass and backend. [`program`] is the second IR level: the
//! lowered program (steps with their kernels and buffers) that both code
//! generators render, with the target description kernels are chosen for.
//!
//! This crate depends on nothing else in nnc.

pub mod dot;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod interp;
pub mod op;
pub mod parse;
pub mod print;
pub mod program;
pub mod stats;
pub mod tensor;
mod verify;

pub use dtype::{DType, TensorType};
pub use error::{IrError, Result};
pub use graph::{ConstId, Edge, Graph, GraphOutput, NodeData, NodeId, Value};
pub use op::Op;
pub use parse::{parse, parse_with};
pub use print::{ConstMode, PrintOptions, print, print_full, print_with};
pub use tensor::{Data, Tensor};
