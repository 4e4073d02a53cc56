//! nnc-tests: the ONNX conformance runner and helpers shared by the
//! end-to-end tests (paths to `../shared`, model lists, comparisons).

pub mod conformance;
pub mod expect;
pub mod fuzz;
pub mod graphgen;
pub mod graphs;
pub mod shared;
pub mod targets;
