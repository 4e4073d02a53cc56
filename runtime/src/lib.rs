//! nnc-runtime: what compiled models and the tools around them need at run
//! time, with no dependency on the compiler: `.npy` reading and writing,
//! the C harness (plus its generated glue) that compiled models are
//! linked with to become command-line programs, and the startup code and
//! benchmark runtime of Cortex-M firmware.

pub mod harness;
pub mod mcu;
pub mod npy;
