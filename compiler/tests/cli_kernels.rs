//! Kernel choice as a user sees it: `nnc dump --plan` names every step's
//! kernel for the backend and target asked for, `--kernel` forces one on
//! any command, and impossible choices are clear errors.

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

fn models() -> PathBuf {
    if let Ok(d) = std::env::var("NNC_SHARED_DIR") {
        return Path::new(&d).join("models");
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/models"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("shared models not found above {}", here.display()))
}

fn case(m: &str) -> (String, String, String) {
    let d = models().join(m);
    let s = |p: &str| d.join(p).display().to_string();
    (
        s("model.onnx"),
        s("test_data_set_0/input_0.pb"),
        s("test_data_set_0/output_0.pb"),
    )
}

/// The kernel names on the step lines of a plan dump.
fn kernels(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let k = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("kernel="))
                .unwrap_or_else(|| panic!("step without a kernel: {l}"));
            k.split('(').next().unwrap_or(k).to_string()
        })
        .collect()
}

#[test]
fn every_step_of_every_shared_model_names_its_kernel() {
    for m in [
        "mlperf_tiny/ad_fc_autoencoder_fp32",
        "mlperf_tiny/ic_resnet8_fp32",
        "mlperf_tiny/kws_dscnn_fp32",
        "mlperf_tiny/sww_dscnn_fp32",
        "mlperf_tiny/vww_mbv1_025_96_fp32",
        "torchvision/mobilenet_v2",
        "torchvision/squeezenet1_1",
        "onnx_light/light_squeezenet_randw",
        "mlperf_tiny/kws_dscnn_int8_qdq",
        "mlperf_tiny/vww_mbv1_025_96_int8_qdq",
    ] {
        let (model, _, _) = case(m);
        for args in [
            vec!["--backend", "c"],
            vec!["--backend", "native"],
            vec!["--backend", "c", "--target", "cortex-m4"],
        ] {
            let mut a = vec!["dump", "--plan", &model];
            a.extend(&args);
            let o = nnc(&a);
            let (out, err) = text(&o);
            assert!(o.status.success(), "{m} {args:?}: {err}");
            let ks = kernels(&out);
            assert!(ks.len() >= 3, "{m} {args:?}:\n{out}");
            if args.contains(&"cortex-m4") {
                assert!(
                    out.contains("target cortex-m4 (c, scalar, fma, dsp)"),
                    "{out}"
                );
                for k in &ks {
                    assert!(
                        !["conv_blocked", "conv_row_tiles", "dw_rows", "dw_grid"]
                            .contains(&k.as_str()),
                        "{m}: {k} on a microcontroller"
                    );
                }
            }
        }
    }
}

#[test]
fn the_plan_shows_each_backends_kernels() {
    let (model, _, _) = case("mlperf_tiny/kws_dscnn_fp32");
    let (c, _) = text(&nnc(&["dump", "--plan", &model, "--backend", "c"]));
    // Native is the default backend, C the default for a Cortex-M.
    let (native, _) = text(&nnc(&["dump", "--plan", &model]));
    let (mcu, _) = text(&nnc(&["dump", "--plan", &model, "--target", "cortex-m4"]));
    assert!(c.contains("(c, "), "{c}");
    assert!(native.contains("(native, 128-bit vectors x 16"), "{native}");
    // The pointwise convolutions (125 positions): C row tiles with
    // 512-bit vectors, the channel-blocked kernel on narrower hosts (a row
    // tile would need every register there), Cranelift register blocks,
    // the direct kernel on the Cortex-M4.
    let c_pointwise = if c.contains("512-bit vectors") {
        "conv_row_tiles"
    } else {
        "conv_blocked"
    };
    assert_eq!(kernels(&c)[2], c_pointwise, "{c}");
    assert_eq!(kernels(&native)[2], "conv_blocked", "{native}");
    assert_eq!(kernels(&mcu)[2], "conv_direct", "{mcu}");
    assert!(mcu.contains("epilogue=[bias(in2),relu]"), "{mcu}");
    // The same memory plan for every backend.
    let arena = |s: &str| s.lines().nth(1).map(str::to_string);
    assert_eq!(arena(&c), arena(&native));
}

#[test]
fn forced_kernels_run_and_impossible_ones_are_refused() {
    let (model, input, output) = case("mlperf_tiny/kws_dscnn_fp32");
    for backend in ["c", "native"] {
        for k in [
            "conv=conv_direct",
            "2=conv_blocked(p=3,c=12,unroll=2)",
            "Conv__58=dw_rows(w=8,pad_copy=1)",
            "gemm=matmul_packed(cols=8)",
            "avg_pool=global_pool(partials=8)",
        ] {
            let o = nnc(&[
                "run",
                &model,
                "--backend",
                backend,
                "-i",
                &input,
                "--expect",
                &output,
                "--kernel",
                k,
            ]);
            let (out, err) = text(&o);
            assert!(o.status.success(), "{backend} {k}: {out}{err}");
            assert!(out.contains("dense: ok"), "{backend} {k}: {out}");
        }
    }
    let o = nnc(&[
        "dump",
        "--plan",
        &model,
        "--kernel",
        "2=conv_blocked(p=3,c=12)",
    ]);
    let (out, _) = text(&o);
    assert!(
        out.contains("kernel=conv_blocked(p=3,c=12,unroll=1,pad_copy=0)"),
        "{out}"
    );
    // Unknown kernels are argument errors, listing the kernels.
    let o = nnc(&["dump", "--plan", &model, "--kernel", "conv=warp_drive"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown kernel `warp_drive`") && err.contains("conv_direct"),
        "{err}"
    );
    // A kernel that cannot compute the step says which step and why.
    let o = nnc(&["dump", "--plan", &model, "--kernel", "gemm=conv_blocked"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("step 10 (gemm") && err.contains("needs a convolution"),
        "{err}"
    );
    let o = nnc(&[
        "dump",
        "--plan",
        &model,
        "--kernel",
        "conv=conv_blocked(p=0)",
    ]);
    let (_, err) = text(&o);
    assert!(err.contains("p must be in 1..=64"), "{err}");
    let o = nnc(&[
        "dump",
        "--plan",
        &model,
        "--kernel",
        "conv=conv_blocked(q=1)",
    ]);
    let (_, err) = text(&o);
    assert!(
        err.contains("has no parameter `q`") && err.contains("unroll"),
        "{err}"
    );
    let o = nnc(&[
        "dump",
        "--plan",
        &model,
        "--kernel",
        "node:nope=conv_direct",
    ]);
    let (_, err) = text(&o);
    assert!(err.contains("node `nope` matches no step"), "{err}");
}
