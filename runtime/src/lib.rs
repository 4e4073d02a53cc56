//! nnc-runtime: what compiled models and the tools around them need at run
//! time, with no dependency on the compiler: `.npy` reading and writing, and
//! (as C sources) the harness that native executables are linked with.

pub mod npy;
