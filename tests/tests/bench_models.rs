//! The wider benchmark set (`scripts/make_bench_models.py`: public
//! architectures written with onnx.helper, seeded weights, ONNX Runtime's
//! output as the reference; cached under `target/bench-models/`) through
//! nnc's C and native backends.
//!
//! Asserted: every model compiles and runs on both backends and matches
//! ONNX Runtime within float32 reordering error (rtol 1e-3, atol 1e-4 of
//! the output's largest magnitude: these are deep networks with random
//! weights, where both sides sum in different orders), and the kernels
//! written for these op families are the ones selection picks for them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nnc::driver::{self, Backend, LoadOptions};
use nnc_ir::Tensor;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Runs the script once per test binary (models are cached on disk, and
/// the script serializes concurrent runs) and returns the model folders.
fn models() -> Vec<PathBuf> {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(generate).clone()
}

fn generate() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(repo.join("scripts/make_bench_models.py"))
        .arg(target_dir().join("bench-models"))
        .output()
        .expect("python3 runs (scripts/setup.sh installs it with numpy, onnx, onnxruntime)");
    assert!(
        out.status.success(),
        "scripts/make_bench_models.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().expect("the manifest path").trim();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .expect("a list of folders")
        .iter()
        .map(|d| PathBuf::from(d.as_str().expect("a path")))
        .collect()
}

fn tensor(p: &Path) -> Tensor {
    nnc::io::read_tensor(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .1
}

#[test]
fn wider_benchmark_set_matches_onnx_runtime_on_both_backends() {
    let dirs = models();
    assert_eq!(dirs.len(), 6, "{dirs:?}");
    let mut failures = Vec::new();
    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let g = driver::load(&d.join("model.onnx"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = tensor(&d.join("test_data_set_0/input_0.pb"));
        let want = tensor(&d.join("test_data_set_0/output_0.pb"));
        let scale = want.to_f64().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for backend in [Backend::C, Backend::Native] {
            match driver::execute(&g, backend, std::slice::from_ref(&x)) {
                Ok(got) => {
                    let c = driver::compare(&got[0], &want, 1e-3, 1e-4 * scale);
                    if !c.ok() {
                        failures.push(format!("{name} {}: {c:?}", backend.name()));
                    }
                }
                Err(e) => failures.push(format!("{name} {}: {e}", backend.name())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wider_benchmark_set_uses_the_phase_kernels() {
    let dirs = models();
    let d = dirs
        .iter()
        .find(|d| d.ends_with("resnet18_224"))
        .expect("resnet18_224 in the set");
    let g = driver::load(&d.join("model.onnx"), &LoadOptions::default()).unwrap();
    let p = driver::lower(&g, "r", &nnc_backends::c::host_target(), &[]).unwrap();
    let text = p.dump();
    // The 3x3 stride-2 max pool after the stem runs on phase planes in C.
    assert!(
        text.lines()
            .any(|l| l.contains("= max_pool") && l.contains("kernel=dw_phases")),
        "{text}"
    );
}
