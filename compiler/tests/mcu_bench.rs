//! `nnc bench --backend c --target cortex-m4` as a user runs it: a shared
//! MLPerf Tiny model built as firmware, run under QEMU, its outputs
//! checked on the device, a positive instruction count whose per-step sum
//! accounts for the profiled inference; and clean errors for a missing
//! toolchain, a model too big for the board and a wrong backend.
//!
//! The toolchain and QEMU come from `scripts/setup.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .expect("run nnc")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn model(rel: &str) -> (String, String, String) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var("NNC_SHARED_DIR")
        .map(|d| PathBuf::from(d).join("models"))
        .unwrap_or_else(|_| {
            here.ancestors()
                .map(|a| a.join("shared/models"))
                .find(|p| p.is_dir())
                .expect("shared models")
        });
    let d = models.join(rel);
    let s = |p: &str| d.join(p).display().to_string();
    (
        s("model.onnx"),
        s("test_data_set_0/input_0.pb"),
        s("test_data_set_0/output_0.pb"),
    )
}

fn json(o: &Output) -> serde_json::Value {
    let (out, err) = text(o);
    assert!(o.status.success(), "{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {v}"))
}

/// fp32 and int8 autoencoders: checked on the device, counted, profiled.
#[test]
fn autoencoder_on_cortex_m4_is_checked_counted_and_profiled() {
    for (rel, lsb) in [
        ("mlperf_tiny/ad_fc_autoencoder_fp32", "0"),
        ("mlperf_tiny/ad_fc_autoencoder_int8_qdq", "1"),
    ] {
        let (m, i, e) = model(rel);
        let base = [
            "bench",
            &m,
            "--backend",
            "c",
            "--target",
            "cortex-m4",
            "-i",
            &i,
            "--expect",
            &e,
            "--lsb",
            lsb,
            "--runs",
            "2",
        ];
        let v = json(&nnc(&[&base[..], &["--json", "--profile"]].concat()));
        assert_eq!(v["board"], "mps2-an386", "{v}");
        assert!(v["unit"].as_str().unwrap().contains("not cycles"), "{v}");
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{v}");
        assert_eq!(checks[0]["ok"], true, "{rel}: {v}");
        let (median, min, max) = (
            u(&v, "median_instructions"),
            u(&v, "min_instructions"),
            u(&v, "max_instructions"),
        );
        assert!(median > 0 && min <= median && median <= max, "{v}");
        // The code is deterministic and so is the count.
        assert_eq!(min, max, "{v}");
        assert_eq!(u(&v, "runs"), 2);
        assert!(u(&v["image"], "flash") > u(&v, "weight_bytes"), "{v}");
        assert!(u(&v["image"], "ram") > u(&v, "arena_bytes"), "{v}");
        // Every instruction of the profiled inference is a step's, a
        // hook's, or one of the few of the entry point's own prologue
        // and epilogue.
        let steps = v["steps"].as_array().unwrap();
        assert!(!steps.is_empty());
        let sum: u64 = steps.iter().map(|s| u(s, "instructions")).sum();
        assert_eq!(sum, u(&v, "steps_sum"));
        assert!(
            steps
                .iter()
                .all(|s| s["kernel"].is_string() && s["op"].is_string())
        );
        let own = u(&v, "profiled_instructions") - sum - u(&v, "hook_instructions");
        assert!(own < 64, "entry point outside the steps: {own} ({v})");
        // Against the image without hooks: each step also carries its
        // hook call, and GCC optimizes across steps without the calls;
        // that stays within a few percent.
        let diff = sum.abs_diff(median) as f64 / median as f64;
        assert!(diff < 0.05, "steps {sum} vs whole {median}: {v}");

        // The text report says what the numbers are.
        let o = nnc(&base);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        assert!(
            out.contains(&format!("median {median}, min {min}, max {max}")),
            "{out}"
        );
        assert!(
            out.contains("not cycles") && out.contains(": ok (max abs err"),
            "{out}"
        );
        assert!(
            out.contains("image: flash ") && out.contains("arena "),
            "{out}"
        );
    }
}

#[test]
fn device_mismatches_fail_the_bench() {
    // No tolerance at all: the float kernels on the M4 round differently
    // from the reference, so the comparison on the device must fail.
    let (m, i, e) = model("mlperf_tiny/ad_fc_autoencoder_fp32");
    let o = nnc(&[
        "bench",
        &m,
        "--target",
        "cortex-m4",
        "-i",
        &i,
        "--expect",
        &e,
        "--runs",
        "1",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("MISMATCH") && out.contains("outside rtol 0 atol 0"),
        "{out}"
    );
    assert!(out.contains("instructions per inference"), "{out}");
}

#[test]
fn errors_are_clean() {
    let (m, _, _) = model("mlperf_tiny/ad_fc_autoencoder_fp32");
    // No toolchain anywhere.
    let empty = std::env::temp_dir().join(format!("nnc-no-tools-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["bench", &m, "--target", "cortex-m4"])
        .env("PATH", &empty)
        .env("NNC_TOOLS_DIR", &empty)
        .env_remove("NNC_QEMU")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("arm-none-eabi-gcc") && err.contains("scripts/setup.sh"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&empty);

    // Cortex-M needs C, and the same target is refused the same way by
    // every command whose backend has no code generator for it.
    for args in [
        &["bench", &m, "--target", "cortex-m4", "--backend", "native"][..],
        &[
            "compile",
            &m,
            "--target",
            "cortex-m4",
            "-o",
            "never-written",
        ][..],
        &[
            "dump",
            &m,
            "--plan",
            "--target",
            "cortex-m4",
            "--backend",
            "native",
        ][..],
    ] {
        let o = nnc(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("native backend has no") && err.contains("emit-c --target cortex-m4"),
            "{args:?}: {err}"
        );
        assert!(!Path::new("never-written").exists());
    }
    // Without --backend, a Cortex-M bench is a C bench (checked above:
    // it asked for arm-none-eabi-gcc); the interpreter runs here only.
    let o = nnc(&["bench", &m, "--target", "cortex-m4", "--backend", "interp"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("interpreter runs on this machine only"),
        "{err}"
    );
    // One grammar: a C-only CPU name works for native, a Cranelift preset is
    // refused by C with the reason.
    let o = nnc(&[
        "dump",
        &m,
        "--plan",
        "--backend",
        "native",
        "--target",
        "x86_64:avx2",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("x86_64:x86-64-v3"));
    let o = nnc(&["info", &m, "--target", "x86_64:skylake"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("C backend does not know the x86_64 CPU `skylake`"),
        "{err}"
    );
    assert!(err.contains("for the native backend"), "{err}");
    let o = nnc(&["emit-c", &m, "--target", "sparc", "-o", "never-written"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("use host, x86_64, x86_64:CPU, aarch64, cortex-m0"),
        "{err}"
    );

    // A model bigger than the board: 4.4 MB of input in 4 MiB of flash.
    let dir = std::env::temp_dir().join(format!("nnc-mcu-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.nnir");
    std::fs::write(
        &big,
        "graph @big(v0 \"x\": f32[1,1100,1000]) -> (\"y\": f32[1,1100,1000]) {\n    v1 = relu v0 : f32[1,1100,1000]\n    return v1\n}\n",
    )
    .unwrap();
    let o = nnc(&["bench", big.to_str().unwrap(), "--target", "cortex-m4"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("does not fit the mps2-an386 board's flash")
            && err.contains("4400000 B")
            && err.contains("4194304 B"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_says_instructions_not_cycles() {
    let o = nnc(&["bench", "--help"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("cortex-m4") && out.contains("NOT CYCLES"),
        "{out}"
    );
    assert!(
        out.contains("-icount shift=0") && out.contains("--expect"),
        "{out}"
    );
}
