//! Targets beyond this machine's own: kernel selection reads the vector
//! width and FMA from the target, so the host alone (AVX-512 with FMA here)
//! never runs the 256-bit tiles or the paths without fused multiply-adds.
//! The tests lower for these targets explicitly and run the result here:
//! C compiled with the target's ISA flags, native code JIT-compiled with
//! the target's (forced) CPU features.

use nnc::cbuild::{CFlags, build_executable, harness_glue, run_executable};
use nnc_ir::program::{Codegen, Program, Target};
use nnc_ir::{Graph, Tensor};
use nnc_passes::lower::KernelChoice;

/// C targets: this machine, SSE2 without FMA, and AVX2 with FMA.
pub const C_TARGETS: [&str; 3] = ["host", "x86_64", "x86_64:avx2"];

/// Native targets: this machine, and x86-64-v2 (SSE4.2, no FMA).
pub const NATIVE_TARGETS: [&str; 2] = ["host", "x86_64:x86-64-v2"];

/// The C target `spec` (see `nnc_backends::c::target`).
pub fn c(spec: &str) -> Target {
    nnc_backends::c::target(spec).unwrap_or_else(|e| panic!("C target {spec}: {e}"))
}

/// The native target `spec` (see `nnc_backends::cranelift::target`).
pub fn native(spec: &str) -> Target {
    nnc_backends::cranelift::target(spec).unwrap_or_else(|e| panic!("native target {spec}: {e}"))
}

/// Every target above, C first.
pub fn all() -> Vec<Target> {
    C_TARGETS
        .iter()
        .map(|s| c(s))
        .chain(NATIVE_TARGETS.iter().map(|s| native(s)))
        .collect()
}

/// Runs a program on the backend it was lowered for: C built at `-O2`
/// with the target's ISA flags, or native code through the JIT.
pub fn run_program(p: &Program, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    match p.target.codegen {
        Codegen::C => {
            let src = nnc_backends::c::emit(p, &p.name).map_err(|e| e.to_string())?;
            let glue = harness_glue(p, &src.name);
            let mut opt = vec!["-O2".to_string()];
            opt.extend(
                nnc_backends::c::isa_flags(&p.target)
                    .iter()
                    .map(|f| f.to_string()),
            );
            let flags = CFlags {
                opt,
                ..Default::default()
            };
            let exe = build_executable(&src, &glue, &flags).map_err(|e| e.to_string())?;
            run_executable(&exe, p, inputs).map_err(|e| e.to_string())
        }
        Codegen::Cranelift => {
            let jit = nnc_backends::cranelift::jit(p).map_err(|e| e.to_string())?;
            nnc::native::run_jit(&jit, p, inputs).map_err(|e| e.to_string())
        }
    }
}

/// Lowers `g` for `t` (with `kernels` forced) and runs it.
pub fn run(
    g: &Graph,
    t: &Target,
    kernels: &[KernelChoice],
    inputs: &[Tensor],
) -> Result<Vec<Tensor>, String> {
    let name = nnc_backends::c::ident(if g.name.is_empty() { "model" } else { &g.name });
    let p = nnc::driver::lower(g, &name, t, kernels).map_err(|e| e.to_string())?;
    run_program(&p, inputs)
}

/// `codegen spec`, e.g. `c x86_64:avx2`, for messages.
pub fn label(t: &Target) -> String {
    format!("{} {}", t.codegen.name(), t.spec())
}

/// Whether this machine can execute code built for `t`: false for x86
/// targets whose ISA (AVX-512, VNNI, AVX2) the CPU lacks, whose plans the
/// tests still lower and check as text but cannot run here (they would
/// stop on an illegal instruction).
pub fn host_can_run(t: &Target) -> bool {
    if t.host || t.arch != nnc_ir::program::Arch::X86_64 {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq");
        let vnni = std::arch::is_x86_feature_detected!("avx512vnni");
        match t.cpu.as_deref() {
            Some("avx2" | "x86-64-v3" | "haswell") => avx2,
            Some("avx512" | "skylake-avx512" | "x86-64-v4") => avx2 && avx512,
            Some("avx512vnni" | "cascadelake" | "icelake-server") => avx2 && avx512 && vnni,
            Some("avxvnni") => avx2 && std::arch::is_x86_feature_detected!("avxvnni"),
            _ => true,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
