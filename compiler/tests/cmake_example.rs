//! The CMake helper (`cmake/nnc.cmake`, `nnc_add_model`) through the CMake
//! example (`examples/cmake`): the shipped KWS model built into the host
//! program and into Cortex-M4 firmware (run under QEMU), the C regenerated
//! when the model changes and only then.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnc-cmake-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{cmd:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn configure(src: &Path, build: &Path, model: &Path, extra: &[String]) {
    run(Command::new("cmake")
        .arg("-S")
        .arg(src)
        .arg("-B")
        .arg(build)
        .arg(format!("-DNNC_MODEL={}", model.display()))
        .arg(format!("-DNNC_EXECUTABLE={}", env!("CARGO_BIN_EXE_nnc")))
        .args(extra));
}

fn build(dir: &Path) {
    run(Command::new("cmake").arg("--build").arg(dir));
}

/// The numbers after `NAME:` on the program's output line.
fn values(out: &str) -> Vec<f64> {
    let line = out.lines().find(|l| l.starts_with("dense:")).expect(out);
    line["dense:".len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn cmake_builds_the_model_for_the_host_and_the_cortex_m4() {
    let shipped = repo().join("models/kws_dscnn_fp32");
    let dir = tmp("kws");
    // A copy of the model, so the test can change it.
    let model = dir.join("model.onnx");
    std::fs::copy(shipped.join("model.onnx"), &model).unwrap();
    let src = repo().join("examples/cmake");

    // Host: the reference input, the reference output.
    let host = dir.join("host");
    configure(&src, &host, &model, &[]);
    build(&host);
    let (_, input) = nnc::io::read_tensor(&shipped.join("test_data_set_0/input_0.pb")).unwrap();
    let (_, want) = nnc::io::read_tensor(&shipped.join("test_data_set_0/output_0.pb")).unwrap();
    let raw = dir.join("input.bin");
    std::fs::write(&raw, input.data().to_le_bytes()).unwrap();
    let exe = host.join("kws");
    let got = values(&run(Command::new(&exe).arg(&raw)));
    let want = want.to_f64();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 2e-6, "{got:?} vs {want:?}");
    }

    // The C is regenerated when the model changes, and only then.
    let c = host.join("nnc/kws/kws.c");
    let first = mtime(&c);
    build(&host);
    assert_eq!(mtime(&c), first, "rebuilt without a change");
    let later = SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_modified(later)
        .unwrap();
    build(&host);
    assert!(
        mtime(&c) > first,
        "the model changed but the C was not regenerated"
    );

    // Cortex-M4 firmware under QEMU: the same outputs as the host on the
    // firmware's all-zero input.
    let zeros = values(&run(&mut Command::new(&exe)));
    let m4 = dir.join("m4");
    let toolchain = repo().join("cmake/arm-none-eabi.cmake");
    configure(
        &src,
        &m4,
        &model,
        &[format!("-DCMAKE_TOOLCHAIN_FILE={}", toolchain.display())],
    );
    build(&m4);
    let tools = nnc::mcu::Toolchain::find().unwrap();
    let out = run(Command::new(&tools.qemu)
        .args(["-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic"])
        .args(["-semihosting", "-kernel"])
        .arg(m4.join("kws")));
    let fw = values(&out);
    assert_eq!(fw.len(), zeros.len());
    for (f, h) in fw.iter().zip(&zeros) {
        assert!((f - h).abs() <= 2e-5, "{fw:?} vs {zeros:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cmake_reports_a_missing_model() {
    let dir = tmp("missing");
    let o = Command::new("cmake")
        .arg("-S")
        .arg(repo().join("examples/cmake"))
        .arg("-B")
        .arg(dir.join("b"))
        .arg(format!("-DNNC_MODEL={}", dir.join("nope.onnx").display()))
        .arg(format!("-DNNC_EXECUTABLE={}", env!("CARGO_BIN_EXE_nnc")))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nnc_add_model: no model at"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
