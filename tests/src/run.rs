//! Running a lowered program on one input through the C backend (built
//! with the host compiler and run as an executable) and through native code
//! (Cranelift, JIT), for the tests that lower or transform programs
//! themselves instead of going through the driver.

use nnc::cbuild::{CFlags, build_executable, harness_glue, run_executable};
use nnc_ir::Tensor;
use nnc_ir::program::Program;

/// The first output of `p` on input `x`, through the C backend.
pub fn run_c(p: &Program, x: &Tensor) -> Tensor {
    let src = nnc_backends::c::emit(p, &p.name).unwrap();
    let glue = harness_glue(p, &src.name);
    let exe = build_executable(&src, &glue, &CFlags::default()).unwrap();
    run_executable(&exe, p, std::slice::from_ref(x))
        .unwrap()
        .remove(0)
}

/// The first output of `p` on input `x`, through native code.
pub fn run_native(p: &Program, x: &Tensor) -> Tensor {
    let jit = nnc_backends::cranelift::jit(p).unwrap();
    nnc::native::run_jit(&jit, p, std::slice::from_ref(x))
        .unwrap()
        .remove(0)
}
