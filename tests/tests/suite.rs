//! The integration suites of nnc-tests, one module per file, in one test
//! binary: linked once, and the harness runs all their tests side by side
//! on every core. Run one suite with `cargo test -p nnc-tests --test suite
//! NAME::` (for example `conformance::`), or one test by its name. The
//! suites cargo-mutants runs live in `quick.rs`.
//!
//! The suites share this process, so a suite's scratch folders carry its
//! own name as well as the process id.

mod bench_models;
mod c_backend;
mod chsplit;
mod conformance;
mod cortex_m;
mod differential;
mod fuzz_corpus;
mod mcu_clock;
mod ort_quant;
mod partition;
mod prune;
mod prune_fit;
mod prune_onnx;
mod qkernels;
mod qrequant;
mod qtiles;
mod robustness;
mod rust_example;
mod text_format;
mod winograd;
