//! The integration suites that exercise the interpreter, the rewrite rules
//! and lowering without the ONNX suites (file tests, plan tests, kernel
//! sweeps, program split, the shared models, the JIT), one module per
//! file, in one test binary. cargo-mutants runs these (`--test quick`,
//! `.cargo/mutants.toml`); `suite.rs` holds the rest.
//!
//! The suites share this process, so a suite's scratch folders carry its
//! own name as well as the process id.

mod filetests;
mod kernels;
mod models;
mod native_backend;
mod plantests;
mod program_split;
