//! The `nnc` binary as a user sees it: real models, tensor files, dumps fed
//! back in, and clear errors with non-zero exit codes for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nnc::onnx::proto::{
    Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use prost::Message;

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

fn kws() -> (String, String, String) {
    let d = models().join("mlperf_tiny/kws_dscnn_fp32");
    let s = |p: &str| d.join(p).display().to_string();
    (
        s("model.onnx"),
        s("test_data_set_0/input_0.pb"),
        s("test_data_set_0/output_0.pb"),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn help_documents_every_subcommand() {
    let (out, _) = text(&nnc(&["--help"]));
    for cmd in ["run", "dump", "info", "emit-c", "compile", "bench", "prune"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (out, _) = text(&nnc(&["run", "--help"]));
    for opt in [
        "--input",
        "--output",
        "--expect",
        "--input-shape",
        "--backend",
        "-O",
    ] {
        assert!(out.contains(opt), "run --help lacks {opt}:\n{out}");
    }
}

/// `--max-recompute` is documented, shown by `info`, and bad values are
/// usage errors that say why.
#[test]
fn max_recompute_is_an_option() {
    let (out, _) = text(&nnc(&["info", "--help"]));
    assert!(out.contains("--max-recompute <PCT>"), "{out}");
    let (model, _, _) = kws();
    for cmd in ["info", "emit-c", "compile", "bench", "run"] {
        for (bad, why) in [
            ("-5", "from 0 to 100"),
            ("101", "from 0 to 100"),
            ("ten", "is not a number"),
            ("nan", "from 0 to 100"),
        ] {
            let o = nnc(&[cmd, &model, "--max-recompute", bad]);
            let (_, err) = text(&o);
            assert!(!o.status.success(), "{cmd} accepted --max-recompute {bad}");
            assert!(err.contains(why), "{cmd} --max-recompute {bad}: {err}");
        }
    }
    let o = nnc(&[
        "info",
        &model,
        "--target",
        "cortex-m4",
        "--max-recompute",
        "2.5%",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("--max-recompute 2.5%"), "{out}");
    let o = nnc(&["info", &model, "--json", "--max-recompute", "0"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["memory"]["max_recompute_percent"].as_f64(), Some(0.0));
}

#[test]
fn run_matches_reference_and_writes_npy() {
    let (model, input, output) = kws();
    let o = nnc(&["run", &model, "-i", &input, "--expect", &output]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("dense: ok"), "{out}");

    let dir = tmp("npy");
    let npy = dir.join("y.npy");
    let o = nnc(&[
        "run",
        &model,
        "--input",
        &format!("input={input}"),
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    // The written .npy holds the reference output, and reading it back as
    // a reference agrees exactly with a second run.
    let (_, written) = nnc::io::read_tensor(&npy).unwrap();
    let (_, reference) = nnc::io::read_tensor(Path::new(&output)).unwrap();
    let c = nnc::driver::compare(&written, &reference, 1e-4, 1e-5);
    assert!(c.ok(), "{c:?}");
    let o = nnc(&[
        "run",
        &model,
        "-i",
        &input,
        "--expect",
        npy.to_str().unwrap(),
        "--rtol",
        "0",
        "--atol",
        "0",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn expect_mismatch_fails() {
    let (model, input, _) = kws();
    let other = models().join("mlperf_tiny/sww_dscnn_fp32/test_data_set_0/output_0.pb");
    let o = nnc(&[
        "run",
        &model,
        "-i",
        &input,
        "--expect",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).0.contains("MISMATCH"));
}

#[test]
fn dump_to_file_parses_back_and_runs() {
    let (model, input, output) = kws();
    let dir = tmp("dump");
    let f = dir.join("kws.nnir");
    let o = nnc(&["dump", &model, "-o", f.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(dir.join("kws.nnir.bin").exists());
    let o = nnc(&[
        "run",
        f.to_str().unwrap(),
        "-i",
        &input,
        "--expect",
        &output,
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    // An elided dump is for reading only and says so when fed back.
    let elided = dir.join("elided.nnir");
    let (txt, _) = text(&nnc(&["dump", &model]));
    std::fs::write(&elided, txt).unwrap();
    let o = nnc(&["run", elided.to_str().unwrap(), "-i", &input]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("elided"), "{:?}", text(&o));
}

#[test]
fn dot_output() {
    let (model, _, _) = kws();
    let (out, _) = text(&nnc(&["dump", &model, "--format", "dot"]));
    assert!(out.starts_with("digraph"), "{out}");
    assert!(out.contains("conv"));
}

#[test]
fn info_json_has_the_numbers() {
    let (model, _, _) = kws();
    let o = nnc(&["info", &model, "--json", "-O0"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for key in [
        "\"nodes\": 23",
        "\"params\"",
        "\"macs\"",
        "\"activation_bytes\"",
        "\"conv\": 9",
    ] {
        assert!(out.contains(key), "missing {key} in {out}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tmp("bad");
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\x0a\xff\xff\xff\xff\x0f hello").unwrap();
    let (model, input, _) = kws();
    let sww_in = models().join("mlperf_tiny/vww_mbv1_025_96_fp32/test_data_set_0/input_0.pb");
    let unsupported = unsupported_model(&dir);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["info".into(), "/nonexistent.onnx".into()],
            "cannot read `/nonexistent.onnx`",
        ),
        (
            vec!["info".into(), empty.display().to_string()],
            "the file is empty",
        ),
        (
            vec!["info".into(), garbage.display().to_string()],
            "not a valid ONNX file",
        ),
        (
            vec!["run".into(), model.clone()],
            "missing input(s): input (f32[1,49,10,1])",
        ),
        (
            vec![
                "run".into(),
                model.clone(),
                "-i".into(),
                sww_in.display().to_string(),
            ],
            "input 0 (`input`): expected f32[1,49,10,1], got f32[1,96,96,3]",
        ),
        (
            vec![
                "run".into(),
                model.clone(),
                "-i".into(),
                "/nonexistent.npy".into(),
            ],
            "cannot read `/nonexistent.npy`",
        ),
        (
            vec!["run".into(), model.clone(), "-i".into(), model.clone()],
            "neither a .npy file nor a valid ONNX TensorProto",
        ),
        (
            vec![
                "info".into(),
                model.clone(),
                "--input-shape".into(),
                "nope=1,2".into(),
            ],
            "input `nope`: no such model input (inputs: input)",
        ),
        (
            vec![
                "info".into(),
                model.clone(),
                "--input-shape".into(),
                "input=1,2,3,4".into(),
            ],
            "dim 1 is fixed at 49 by the model",
        ),
        (
            vec!["info".into(), unsupported.display().to_string()],
            "4 unsupported operator(s)",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = nnc(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: wanted `{want}` in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Every unsupported node is named, not only the first.
    let (_, err) = text(&nnc(&["info", unsupported.to_str().unwrap()]));
    for want in [
        "Acos in node `first`",
        "TopK in node `second`",
        "com.vendor::Fancy in node `third`",
        "com.microsoft::FusedConv in node `fourth`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    // Usage errors exit with 2.
    let o = nnc(&["run", &model, "-O9", "-i", &input]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown optimization level"));
}

fn vi(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn dim(v: Option<i64>, p: Option<&str>) -> Dimension {
    Dimension {
        dim_value: v,
        dim_param: p.map(str::to_string),
        ..Default::default()
    }
}

/// A chain of four nodes nnc does not support, one in a custom domain and
/// one in onnxruntime's (whose quantized operators nnc reads).
fn unsupported_model(dir: &Path) -> PathBuf {
    let node = |op: &str, domain: &str, name: &str, i: &str, o: &str| NodeProto {
        op_type: op.into(),
        domain: domain.into(),
        name: name.into(),
        input: vec![i.into()],
        output: vec![o.into()],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "unsupported".into(),
            node: vec![
                node("Acos", "", "first", "x", "a"),
                node("TopK", "", "second", "a", "b"),
                node("Fancy", "com.vendor", "third", "b", "c"),
                node("FusedConv", "com.microsoft", "fourth", "c", "y"),
            ],
            input: vec![vi("x", &[dim(Some(4), None)])],
            output: vec![vi("y", &[dim(Some(4), None)])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = dir.join("unsupported.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// `y = x + w` where x has a symbolic batch dim and w lives in an external file.
fn symbolic_model(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("w.bin"),
        [0u8; 4]
            .iter()
            .chain(&2.5f32.to_le_bytes())
            .copied()
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let w = TensorProto {
        name: "w".into(),
        dims: vec![1],
        data_type: 1,
        data_location: 1,
        external_data: vec![
            StringStringEntryProto {
                key: "location".into(),
                value: "w.bin".into(),
            },
            StringStringEntryProto {
                key: "offset".into(),
                value: "4".into(),
            },
            StringStringEntryProto {
                key: "length".into(),
                value: "4".into(),
            },
        ],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "sym".into(),
            node: vec![NodeProto {
                op_type: "Add".into(),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                name: "add0".into(),
                ..Default::default()
            }],
            initializer: vec![w],
            input: vec![vi("x", &[dim(None, Some("batch")), dim(Some(3), None)])],
            output: vec![vi("y", &[dim(None, Some("batch")), dim(Some(3), None)])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = dir.join("sym.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

#[test]
fn symbolic_dims_and_external_data() {
    let dir = tmp("sym");
    let model = symbolic_model(&dir);
    let m = model.to_str().unwrap();
    let o = nnc(&["info", m]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains("dim 0 is symbolic dim `batch`; fix it with --input-shape x=D1,D2,..."),
        "{err}"
    );
    let o = nnc(&["info", m, "--input-shape", "x=4,3"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("x: f32[4,3]"));
    // The shape of an input file fixes the dim as well.
    let x = dir.join("x.npy");
    let npy = nnc_runtime::npy::NpyArray {
        elem: nnc_runtime::npy::Elem::F32,
        shape: vec![2, 3],
        data: [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    std::fs::write(&x, nnc_runtime::npy::write(&npy)).unwrap();
    let o = nnc(&["run", m, "-i", x.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("y: f32[2,3]") && out.contains("[3.500000, 4.500000, 5.500000, 6.500000"),
        "{out}"
    );
}

#[test]
fn pass_pipeline_flags() {
    let (model, input, output) = kws();
    let o = nnc(&["dump", &model, "--print-after", "all"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for h in [
        "; ---- after import (23 nodes)",
        "; ---- after pass egraph (changed, 14 nodes)",
        "; ---- after pass dce",
    ] {
        assert!(out.contains(h), "missing `{h}`:\n{out}");
    }
    // Every dump in the stream is valid IR text ending with the final graph.
    assert!(out.matches("graph @").count() >= 5);

    let o = nnc(&[
        "info",
        &model,
        "--passes",
        "fold-constants,egraph",
        "--stop-after",
        "fold-constants",
        "--json",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    // fold-constants finds nothing to fold in KWS: one node per ONNX node.
    let total: usize = onnx_ops(&model).values().sum();
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(v["nodes"].as_u64(), Some(total as u64), "{v}");

    let o = nnc(&[
        "run",
        &model,
        "-i",
        &input,
        "--expect",
        &output,
        "--time-passes",
        "--egraph-report",
        "--verify",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("egraph") && err.contains("total"), "{err}");
    assert!(err.contains("Stop reason: Saturated"), "{err}");

    // A misspelt pass is a usage error (2); a pass the pipeline lacks, 1.
    for (args, want, code) in [
        (vec!["--passes", "nope"], "unknown pass `nope`", 2),
        (
            vec!["-O0", "--print-after", "egraph"],
            "not in this pipeline",
            1,
        ),
        (vec!["--stop-after", "cse"], "not in this pipeline", 1),
    ] {
        let mut a = vec!["info", model.as_str()];
        a.extend(args);
        let o = nnc(&a);
        assert_eq!(o.status.code(), Some(code));
        assert!(text(&o).1.contains(want), "{:?}", text(&o));
    }
}

/// Node counts of the ONNX model itself, by op type.
fn onnx_ops(model: &str) -> std::collections::BTreeMap<String, usize> {
    let m = nnc::onnx::decode(&std::fs::read(model).unwrap()).unwrap();
    let mut ops = std::collections::BTreeMap::new();
    for n in m.graph.unwrap().node {
        *ops.entry(n.op_type).or_insert(0) += 1;
    }
    ops
}

#[test]
fn optimization_levels_reduce_nodes() {
    let (model, input, output) = kws();
    let info = |lvl: &str| {
        let o = nnc(&["info", &model, lvl, "--json"]);
        assert!(o.status.success(), "{:?}", text(&o));
        serde_json::from_str::<serde_json::Value>(&text(&o).0).unwrap()
    };
    // The expectations come from the ONNX file: KWS is Conv+Relu nine
    // times, two Reshapes, an AveragePool, a Gemm and a Softmax.
    let onnx = onnx_ops(&model);
    let total: usize = onnx.values().sum();
    let (convs, relus) = (onnx["Conv"], onnx["Relu"]);
    assert_eq!(relus, convs, "{onnx:?}");
    // -O0 imports one node per ONNX node; -O1 finds nothing to fold,
    // share or remove (no constant subgraphs, no duplicates, no dead
    // nodes); -O2 and -Os fuse every Relu into the Conv before it.
    let nodes = |v: &serde_json::Value| v["nodes"].as_u64().unwrap() as usize;
    assert_eq!(nodes(&info("-O0")), total);
    assert_eq!(nodes(&info("-O1")), total);
    for lvl in ["-O2", "-Os"] {
        let v = info(lvl);
        assert_eq!(nodes(&v), total - relus, "{lvl}: {v}");
        assert_eq!(v["ops"]["conv"].as_u64(), Some(convs as u64), "{lvl}: {v}");
        assert!(v["ops"].get("relu").is_none(), "{lvl}: {v}");
    }
    let o = nnc(&["run", &model, "-Os", "-i", &input, "--expect", &output]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn emit_c_writes_header_and_source() {
    let (model, _, _) = kws();
    let dir = tmp("emit");
    let o = nnc(&[
        "emit-c",
        &model,
        "-o",
        dir.to_str().unwrap(),
        "--name",
        "kws",
        "--target",
        "cortex-m4",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // Partial execution is on by default for microcontrollers.
    assert!(out.contains("arena 34560 bytes"), "{out}");
    let h = std::fs::read_to_string(dir.join("kws.h")).unwrap();
    let c = std::fs::read_to_string(dir.join("kws.c")).unwrap();
    for want in [
        "#define kws_ARENA_BYTES 34560",
        "#define kws_ARENA_ALIGN 16",
        "#define kws_NUM_INPUTS 1",
        "#define kws_NUM_OUTPUTS 1",
        "#define kws_INPUT_0_BYTES 1960",
        "#define kws_INPUT_0_SHAPE {1, 49, 10, 1}",
        "#define kws_OUTPUT_0_BYTES 48",
        "int kws_run(const void *const *inputs, void *const *outputs, void *arena);",
    ] {
        assert!(h.contains(want), "header lacks `{want}`:\n{h}");
    }
    assert!(
        c.contains("static const float nnc_w0["),
        "weights are const arrays"
    );
    for banned in ["malloc", "stdio", "printf"] {
        assert!(!c.contains(banned), "generated C uses {banned}");
    }
}

#[test]
fn memory_report_and_budgets() {
    let (model, _, _) = kws();
    let o = nnc(&["info", &model, "--target", "cortex-m4", "--steps"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for want in [
        "memory plan (cortex-m4):",
        "arena:          34560 B",
        "greedy-by-size:",
        "naive:",
        "weights:",
        "peak at step",
    ] {
        assert!(out.contains(want), "missing `{want}`:\n{out}");
    }
    let o = nnc(&[
        "info",
        &model,
        "--target",
        "cortex-m4",
        "--sram-budget",
        "32KiB",
        "--flash-budget",
        "1MiB",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(
        err.contains("the plan does not fit: the arena needs 34560 B (33.8 KiB), the SRAM budget is 32768 B (32.0 KiB) (1792 B over)"),
        "{err}"
    );
    // The bottleneck: the steps over the budget and what is live there.
    assert!(err.contains("; bottleneck step"), "{err}");
    assert!(err.contains("these tensors are live: `"), "{err}");
    // emit-c and compile refuse the same budget and write nothing.
    let dir = tmp("budget");
    let o = nnc(&[
        "emit-c",
        &model,
        "-o",
        dir.to_str().unwrap(),
        "--target",
        "cortex-m4",
        "--sram-budget",
        "32KiB",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("bottleneck"), "{:?}", text(&o));
    assert!(!dir.join("model.c").exists() && !dir.join("kws_dscnn_fp32.c").exists());
    let o = nnc(&[
        "info",
        &model,
        "--sram-budget",
        "64KiB",
        "--flash-budget",
        "64K",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("the weights do not fit"),
        "{:?}",
        text(&o)
    );
    let o = nnc(&[
        "info",
        &model,
        "--sram-budget",
        "64KiB",
        "--flash-budget",
        "1MiB",
        "--json",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let out = text(&o).0;
    assert!(
        out.contains("\"arena_bytes\": 64000") && out.contains("\"fits\": true"),
        "{out}"
    );
    // A budget that partitioning meets, and the same with partitioning off:
    // only checked.
    let fits = nnc(&[
        "info",
        &model,
        "--target",
        "cortex-m4",
        "--sram-budget",
        "48KiB",
    ]);
    assert!(fits.status.success(), "{:?}", text(&fits));
    let off = nnc(&[
        "info",
        &model,
        "--target",
        "cortex-m4",
        "--sram-budget",
        "48KiB",
        "--memory",
        "off",
    ]);
    assert_eq!(off.status.code(), Some(1));
    assert!(
        text(&off).1.contains("the arena needs 64000 B"),
        "{:?}",
        text(&off)
    );
    let o = nnc(&["info", &model, "--sram-budget", "lots"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The integer tile kernels' stack scratch is reported beside the arena
/// (the float model's direct kernels have none).
#[test]
fn memory_report_lists_kernel_scratch() {
    let model = models()
        .join("mlperf_tiny/kws_dscnn_int8_qdq/model.onnx")
        .display()
        .to_string();
    let o = nnc(&["info", &model, "--target", "cortex-m4"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("kernel scratch:"))
        .unwrap_or_else(|| panic!("no scratch line in:\n{out}"));
    assert!(
        line.starts_with(
            "  kernel scratch: 256 B (256 B) on the stack, besides the arena (largest: step "
        ) && line.ends_with(", conv_im2col(r=2,c=2,unroll=4))"),
        "{line}"
    );
    let o = nnc(&["info", &model, "--target", "cortex-m4", "--json"]);
    let out = text(&o).0;
    assert!(out.contains("\"scratch_bytes\": 256"), "{out}");
    let (fp32, _, _) = kws();
    let out = text(&nnc(&["info", &fp32, "--target", "cortex-m4"])).0;
    assert!(!out.contains("kernel scratch"), "{out}");
}

#[test]
fn plan_dump_and_bench() {
    let (model, input, _) = kws();
    let o = nnc(&["dump", &model, "--plan"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.starts_with("program @kws_dscnn_fp32") || out.contains("program @"),
        "{out}"
    );
    assert!(
        out.contains("arena 64000 bytes") && out.contains("PEAK"),
        "{out}"
    );
    for backend in ["interp", "c", "native"] {
        let o = nnc(&[
            "bench",
            &model,
            "--backend",
            backend,
            "--runs",
            "5",
            "--json",
            "-i",
            &input,
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{backend}: {err}");
        assert!(
            out.contains("\"median_ms\"")
                && out.contains("\"p90_ms\"")
                && out.contains("\"runs\":5"),
            "{out}"
        );
        // Without --backend, bench measures the default backend, as run does.
        if backend == "native" {
            let o = nnc(&["bench", &model, "--runs", "5", "--json", "-i", &input]);
            assert!(
                text(&o).0.contains("\"backend\":\"native\""),
                "{}",
                text(&o).0
            );
        }
    }
    // Profiles compare each step with the peak of its own code: the C
    // build's vectors are as wide as the C target's (AVX-512 here: 16
    // lanes), the native code's are f32x4.
    for (backend, lanes) in [
        ("c", nnc_backends::c::host_target().f32_lanes()),
        ("native", 4),
    ] {
        let o = nnc(&[
            "bench",
            &model,
            "--backend",
            backend,
            "--profile",
            "--runs",
            "3",
            "--json",
            "-i",
            &input,
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{backend}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["fma_peak_lanes"], lanes, "{backend}: {out}");
        assert!(v["fma_peak_gflops"].as_f64().unwrap() > 0.0, "{out}");
        let o = nnc(&[
            "bench",
            &model,
            "--backend",
            backend,
            "--profile",
            "--runs",
            "3",
            "-i",
            &input,
        ]);
        let want = if backend == "c" {
            format!("f32x{lanes} ")
        } else {
            "f32x4 FMA peak of the native code".to_string()
        };
        assert!(text(&o).0.contains(&want), "{}", text(&o).0);
    }
}

/// The float models every backend must run, relative to the models folder.
const FLOAT_MODELS: [&str; 8] = [
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/sww_dscnn_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
    "torchvision/mobilenet_v2",
    "torchvision/squeezenet1_1",
    "onnx_light/light_squeezenet_randw",
];

/// `nnc compile` executables for every float model, run on their `.pb`
/// inputs, write `.npy` outputs that match the references.
#[test]
fn compiled_executables_match_the_references() {
    let dir = tmp("compile");
    for m in FLOAT_MODELS {
        let d = models().join(m);
        let exe = dir.join(m.replace('/', "_"));
        let o = nnc(&[
            "compile",
            &d.join("model.onnx").display().to_string(),
            "-o",
            &exe.display().to_string(),
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{m}: {err}");
        assert!(out.contains("code") && out.contains("arena"), "{out}");
        let npy = dir.join(format!("{}.npy", m.replace('/', "_")));
        let r = Command::new(&exe)
            .arg("--input")
            .arg(d.join("test_data_set_0/input_0.pb"))
            .arg("--output")
            .arg(&npy)
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let (_, got) = nnc::io::read_tensor(&npy).unwrap();
        let (_, want) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
        let c = nnc::driver::compare(&got, &want, 1e-4, 1e-5);
        assert!(c.ok(), "{m}: {c:?}");
        // The executable's own benchmark mode.
        let b = Command::new(&exe)
            .args(["--bench", "3", "--json"])
            .output()
            .unwrap();
        let bo = String::from_utf8_lossy(&b.stdout);
        assert!(
            b.status.success() && bo.contains("\"median_ms\""),
            "{m}: {bo}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--emit obj` writes an object and a header a C program links against,
/// for the host and (object only) for aarch64.
#[test]
fn compile_emits_objects_for_linking() {
    let (model, input, output) = kws();
    let dir = tmp("obj");
    let obj = dir.join("kws.o");
    let o = nnc(&[
        "compile",
        &model,
        "--emit",
        "obj",
        "-o",
        &obj.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let header = std::fs::read_to_string(dir.join("kws.h")).unwrap();
    for m in [
        "int kws_run(const void *const *inputs, void *const *outputs, void *arena);",
        "#define kws_ARENA_BYTES 64000",
        "#define kws_INPUT_0_BYTES 1960",
        "#define kws_OUTPUT_0_BYTES 48",
    ] {
        assert!(header.contains(m), "header lacks `{m}`:\n{header}");
    }
    // A user program: run the model on zeros and print the top class.
    std::fs::write(
        dir.join("main.c"),
        "#include <stdio.h>\n#include \"kws.h\"\n\
         static float in[kws_INPUT_0_BYTES / 4], out[kws_OUTPUT_0_BYTES / 4];\n\
         static _Alignas(16) unsigned char arena[kws_ARENA_BYTES];\n\
         int main(void) {\n    const void *ins[1] = {in};\n    void *outs[1] = {out};\n\
         int rc = kws_run(ins, outs, arena), best = 0, i;\n\
         for (i = 1; i < 12; ++i) if (out[i] > out[best]) best = i;\n\
         printf(\"rc %d class %d\\n\", rc, best);\n    return rc;\n}\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let b = Command::new(&cc)
        .current_dir(&dir)
        .args([
            "-std=c11", "-Wall", "-Werror", "main.c", "kws.o", "-lm", "-o", "user",
        ])
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let r = Command::new(dir.join("user")).output().unwrap();
    assert!(r.status.success());
    assert!(String::from_utf8_lossy(&r.stdout).starts_with("rc 0 class"));
    // aarch64: an ELF relocatable for machine 183 (EM_AARCH64).
    let arm = dir.join("arm").join("kws.o");
    let o = nnc(&[
        "compile",
        &model,
        "--emit",
        "obj",
        "--target",
        "aarch64",
        "-o",
        &arm.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let bytes = std::fs::read(&arm).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 1, "ET_REL");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "EM_AARCH64"
    );
    // Impossible requests fail clearly.
    let o = nnc(&["compile", &model, "--target", "aarch64", "-o", "x"]);
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("--emit obj"), "{err}");
    let o = nnc(&["compile", &model, "--target", "sparc", "-o", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = nnc(&[
        "compile",
        &model,
        "--target",
        "x86_64:pentium9",
        "--emit",
        "obj",
        "-o",
        &dir.join("p.o").display().to_string(),
    ]);
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("unknown x86_64 CPU"), "{err}");
    // The JIT path from the CLI.
    let o = nnc(&[
        "run",
        &model,
        "--backend",
        "native",
        "-i",
        &input,
        "--expect",
        &output,
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prune_writes_onnx_and_reports_the_cost() {
    let (model, input, _) = kws();
    let d = tmp("prune");
    let out = d.join("kws_pruned.onnx");
    let o = nnc(&[
        "prune",
        &model,
        "--prune",
        "l1-filter:0.25",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");
    for want in [
        "l1-filter: ",
        "channels 64 -> 48 (-16)",
        "prune-dead: nothing removed",
        "parameters",
        "MACs",
        "peak SRAM B",
        "SNR",
        "top-1 agreement",
    ] {
        assert!(stderr.contains(want), "`{want}` missing:\n{stderr}");
    }
    // The written model runs, and so does pruning on the fly.
    let o = nnc(&["run", out.to_str().unwrap(), "-i", &input]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = nnc(&["info", &model, "--prune", "magnitude:0.5"]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("weights stay dense"), "{stderr}");
    // Bad specs are usage errors.
    for bad in [
        "l1-filter",
        "l1-filter:1.5",
        "pruney:0.2",
        "slimming:0.2:sideways",
    ] {
        let o = nnc(&["info", &model, "--prune", bad]);
        assert!(!o.status.success(), "{bad} accepted");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn prune_to_fit_meets_a_budget_and_reports_it() {
    let model = models()
        .join("mlperf_tiny/kws_dscnn_int8_qdq/model.onnx")
        .display()
        .to_string();
    let m4 = ["--target", "cortex-m4"];
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", text(o).1);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // The channel-split-only arena, measured.
    let mut args = vec!["info", &model, "--memory", "min", "--json"];
    args.extend(m4);
    let split = json(&nnc(&args))["memory"]["arena_bytes"].as_u64().unwrap();
    let budget = (split / 2).to_string();
    let mut args = vec!["info", &model, "--sram-budget", &budget, "--json"];
    args.extend(m4);
    // Channel split alone cannot fit it.
    assert!(!nnc(&args).status.success());
    args.extend(["--prune-to-fit", "--prune", "slimming"]);
    let o = nnc(&args);
    let v = json(&o);
    let stderr = text(&o).1;
    let b = split / 2;
    assert!(v["memory"]["fits"].as_bool().unwrap(), "{v}");
    assert!(v["memory"]["arena_bytes"].as_u64().unwrap() <= b);
    let p = &v["prune_to_fit"];
    assert_eq!(p["method"], "slimming");
    assert_eq!(p["budget_bytes"].as_u64(), Some(b));
    assert_eq!(p["arena_before_bytes"].as_u64(), Some(split));
    assert_eq!(p["arena_after_bytes"], v["memory"]["arena_bytes"]);
    assert!(p["channels_removed"].as_u64().unwrap() > 0, "{p}");
    assert!(!p["layers"].as_array().unwrap().is_empty(), "{p}");
    assert!(p["after"]["params"].as_u64() < p["before"]["params"].as_u64());
    assert!(p["deviation"]["sets"].as_u64().unwrap() > 0, "{p}");
    for want in [
        "prune-to-fit (slimming): SRAM budget",
        "with channel split only ->",
        "channel(s) removed",
        "pruning cost:",
        "peak SRAM B",
        "SNR",
    ] {
        assert!(stderr.contains(want), "`{want}` missing:\n{stderr}");
    }
    // With the pass timings asked for, the pruned graph is optimized again
    // to time it: the same graph, plan and report.
    args.push("--time-passes");
    let o = nnc(&args);
    let again = json(&o);
    assert!(text(&o).1.contains("egraph"), "{}", text(&o).1);
    // The channel split's search times differ between runs; all else must not.
    let untimed = |v: &serde_json::Value| {
        let mut m = v["memory"].clone();
        if let Some(cs) = m["channel_split"].as_object_mut() {
            assert!(cs.remove("millis").is_some() && cs.remove("extract_millis").is_some());
        }
        m
    };
    assert_eq!(untimed(&again), untimed(&v));
    assert_eq!(again["prune_to_fit"], v["prune_to_fit"]);
    assert_eq!(again["ops"], v["ops"]);
    // emit-c writes the pruned model within the budget.
    let d = tmp("fit");
    let out = d.display().to_string();
    let o = nnc(&[
        "emit-c",
        &model,
        "--target",
        "cortex-m4",
        "--sram-budget",
        &budget,
        "--prune-to-fit",
        "-o",
        &out,
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("prune-to-fit (l1-filter)"), "{stderr}");
    let arena: u64 = stdout
        .split("arena ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(arena <= b, "{stdout}");
    std::fs::remove_dir_all(&d).ok();
    // Usage errors: no budget, partial execution off, a budget no pruning
    // meets (named at its bottleneck), a bare method without the flag.
    let o = nnc(&["info", &model, "--prune-to-fit"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--sram-budget"), "{}", text(&o).1);
    let o = nnc(&[
        "info",
        &model,
        "--sram-budget",
        "1K",
        "--memory",
        "off",
        "--prune-to-fit",
    ]);
    assert!(text(&o).1.contains("drop --memory off"), "{}", text(&o).1);
    let o = nnc(&[
        "info",
        &model,
        "--target",
        "cortex-m4",
        "--sram-budget",
        "64",
        "--prune-to-fit",
    ]);
    let stderr = text(&o).1;
    assert!(!o.status.success());
    for want in [
        "the SRAM budget is 64 B",
        "bottleneck step",
        "these tensors are live",
        "without removing a whole layer",
    ] {
        assert!(stderr.contains(want), "`{want}` missing:\n{stderr}");
    }
    let o = nnc(&["info", &model, "--prune", "l1-filter"]);
    assert!(text(&o).1.contains("--prune-to-fit"), "{}", text(&o).1);
}
