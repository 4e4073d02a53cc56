//! nnc-runtime: what compiled models and the tools around them need at run
//! time, with no dependency on the compiler: `.npy` reading and writing,
//! and the C harness (plus its generated glue) that compiled models are
//! linked with to become command-line programs.

pub mod harness;
pub mod npy;
