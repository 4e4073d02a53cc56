//! The C backend end to end: every shared model through generated C at -O0
//! and -O2 against its reference, the MLPerf Tiny models under
//! AddressSanitizer and UndefinedBehaviorSanitizer, and C for Cortex-M0
//! and Cortex-M7 compiling warning-free with the Arm toolchain.

use std::process::Command;

use nnc::cbuild::{CFlags, run_c};
use nnc::driver::{self, LoadOptions};
use nnc_backends::c;
use nnc_ir::program::{Arch, Target};
use nnc_passes::OptLevel;
use nnc_tests::shared::{FLOAT_MODELS, INT8_MODELS, MLPERF_TINY_FP32, models_dir, require};

fn load(m: &str, opt: OptLevel) -> nnc_ir::Graph {
    let d = models_dir().join(m);
    require(&d);
    driver::load(
        &d.join("model.onnx"),
        &LoadOptions {
            opt_level: opt,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{m}: {e}"))
}

fn check(m: &str, opt: OptLevel, flags: &CFlags) {
    let g = load(m, opt);
    let d = models_dir().join(m).join("test_data_set_0");
    let (_, x) = nnc::io::read_tensor(&d.join("input_0.pb")).unwrap();
    let (_, want) = nnc::io::read_tensor(&d.join("output_0.pb")).unwrap();
    let out = run_c(&g, &[x], flags).unwrap_or_else(|e| panic!("{m} {opt}: {e}"));
    let c = driver::compare(&out[0], &want, 1e-4, 1e-5);
    assert!(c.ok(), "{m} through C at {opt}: {c:?}");
}

// The model lists are split over several tests so that the harness runs
// them side by side (each is a few minutes of C compiles otherwise).

fn through_c(models: &[&str]) {
    for m in models {
        for opt in [OptLevel::O0, OptLevel::O2] {
            check(m, opt, &CFlags::default());
        }
    }
}

#[test]
fn mlperf_tiny_fp32_through_c() {
    through_c(&MLPERF_TINY_FP32);
}

#[test]
fn mlperf_tiny_int8_through_c() {
    through_c(&INT8_MODELS);
}

#[test]
fn large_models_through_c() {
    let large: Vec<&str> = FLOAT_MODELS
        .iter()
        .copied()
        .filter(|m| !m.starts_with("mlperf"))
        .collect();
    through_c(&large);
}

fn sanitized(models: &[&str]) {
    let flags = CFlags {
        opt: vec!["-O1".into()],
        sanitize: true,
        profile: false,
    };
    for m in models {
        check(m, OptLevel::O2, &flags);
    }
}

#[test]
fn mlperf_tiny_fp32_clean_under_sanitizers() {
    sanitized(&MLPERF_TINY_FP32);
}

#[test]
fn mlperf_tiny_int8_clean_under_sanitizers() {
    sanitized(&INT8_MODELS);
}

/// Cortex-M0 (no FPU, soft float) and Cortex-M7 builds of the same C.
#[test]
fn c_compiles_for_other_cortex_m_cores() {
    let dir = std::env::temp_dir().join(format!("nnc-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (target, flags) in [
        (
            Target::cortex_m(Arch::CortexM0),
            vec!["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
        ),
        (
            Target::cortex_m(Arch::CortexM7),
            vec![
                "-mcpu=cortex-m7",
                "-mthumb",
                "-mfloat-abi=hard",
                "-mfpu=fpv5-d16",
            ],
        ),
    ] {
        for m in [
            "mlperf_tiny/kws_dscnn_fp32",
            "mlperf_tiny/ic_resnet8_int8_qdq",
        ] {
            let g = load(m, OptLevel::Os);
            let name = c::ident(m.rsplit('/').next().unwrap());
            let p = driver::lower(&g, &name, &target, &[]).unwrap();
            let src = c::emit(&p, &name).unwrap();
            std::fs::write(dir.join(format!("{name}.h")), &src.header).unwrap();
            std::fs::write(dir.join(format!("{name}.c")), &src.source).unwrap();
            let out = Command::new("arm-none-eabi-gcc")
                .current_dir(&dir)
                .args(&flags)
                .args([
                    "-std=c99",
                    "-Os",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-pedantic",
                    "-c",
                ])
                .arg(format!("{name}.c"))
                .output()
                .expect("arm-none-eabi-gcc (run scripts/setup.sh)");
            assert!(
                out.status.success(),
                "{m} for {}: {}",
                target.spec(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// On host targets `--memory auto` does not partition, but it still lets
/// the producers of SqueezeNet's concatenations write into their block of
/// the output: no concat step is left (for C or native), the arena does
/// not grow over `--memory off`, and the C output still matches the
/// reference (`large_models_through_c` runs the same lowering).
#[test]
fn host_programs_elide_concatenations() {
    use nnc_passes::lower::partition::MemoryGoal;
    let g = load("torchvision/squeezenet1_1", OptLevel::O2);
    let native = nnc_backends::cranelift::host_target().unwrap();
    for t in [c::host_target(), native] {
        let concats = |p: &nnc_ir::program::Program| {
            p.steps
                .iter()
                .filter(|s| matches!(s.op, nnc_ir::Op::Concat(_)))
                .count()
        };
        let off = driver::lower_with(&g, "m", &t, &[], MemoryGoal::Off).unwrap();
        let auto = driver::lower(&g, "m", &t, &[]).unwrap();
        assert_eq!(concats(&off), 8, "{t}");
        assert_eq!(concats(&auto), 0, "{t}");
        assert!(auto.arena_bytes <= off.arena_bytes, "{t}");
        assert_eq!(auto.steps.len() + 8, off.steps.len(), "{t}");
    }
}
