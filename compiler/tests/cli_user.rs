//! The `nnc` binary as a new user meets it: the quick-start model shipped in
//! the repository, models whose exporters write dynamic dims as `-1`, and
//! flags that mean one thing and fail as flag errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nnc::onnx::proto::{
    Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use prost::Message;

fn nnc_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nnc"));
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.args(args).output().expect("run nnc")
}

fn nnc(args: &[&str]) -> Output {
    nnc_in(None, args)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnc-cli-user-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The quick-start model (`models/NAME` in the repository): model, input,
/// reference output, as paths relative to the repository root.
fn shipped(name: &str) -> [String; 3] {
    let d = format!("models/{name}");
    [
        format!("{d}/model.onnx"),
        format!("{d}/test_data_set_0/input_0.pb"),
        format!("{d}/test_data_set_0/output_0.pb"),
    ]
}

/// A fresh clone has the quick-start models, in the repository (plain
/// files, not links to `../shared`), small, with their origin and license;
/// the README's quick-start commands run them and match the references.
#[test]
fn quick_start_models_ship_in_the_repository() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let notice = std::fs::read_to_string(root.join("models/README.md")).unwrap();
    assert!(
        notice.contains("MLPerf Tiny")
            && notice.contains("Apache License, Version 2.0")
            && notice.contains("mlcommons/tiny"),
        "models/README.md names the origin and the license"
    );
    let license = std::fs::read_to_string(root.join("models/LICENSE-APACHE-2.0")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    // Both run on the default backend (native); the int8 model must also
    // match exactly on the reference interpreter.
    for (name, backend, want) in [
        ("kws_dscnn_fp32", "native", "dense: ok"),
        ("kws_dscnn_int8_qdq", "native", "Identity: ok"),
        ("kws_dscnn_int8_qdq", "interp", "Identity: ok"),
    ] {
        let files = shipped(name);
        for f in &files {
            let meta =
                std::fs::symlink_metadata(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(meta.is_file(), "{f} is a plain file in the repository");
            assert!(
                meta.len() < 128 * 1024,
                "{f} is small ({} bytes)",
                meta.len()
            );
        }
        // The README's command, word for word.
        let [model, input, output] = &files;
        let cmd = format!(
            "cargo run --release -- run {model} \\\n    -i {input} \\\n    --expect {output}"
        );
        assert!(readme.contains(&cmd), "README's quick start runs:\n{cmd}");
        let mut args = vec!["run", model.as_str(), "-i", input, "--expect", output];
        if backend != "native" {
            args.extend(["--backend", backend]);
        }
        let o = nnc_in(Some(&root), &args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{name}: {out}{err}");
        assert!(out.contains(want), "{name}: {out}");
    }
}

fn dim(v: i64) -> Dimension {
    Dimension {
        dim_value: Some(v),
        ..Default::default()
    }
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

/// `y = x + w`, `z = relu(x)`, as Paddle's exporter writes a dynamic
/// batch: `x: [-1,3]`, `y: [-1,3]`, `z: [0,-1]`.
fn minus_one_model(dir: &Path) -> PathBuf {
    let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
        op_type: op.into(),
        name: format!("{op}_0"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "dyn".into(),
            node: vec![node("Add", &["x", "w"], "y"), node("Relu", &["x"], "z")],
            initializer: vec![TensorProto {
                name: "w".into(),
                dims: vec![3],
                data_type: 1,
                float_data: vec![0.5, -1.0, 2.0],
                ..Default::default()
            }],
            input: vec![vi("x", &[dim(-1), dim(3)])],
            output: vec![vi("y", &[dim(-1), dim(3)]), vi("z", &[dim(0), dim(-1)])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = dir.join("dyn.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn write_x(dir: &Path) -> PathBuf {
    let x = dir.join("x.npy");
    let npy = nnc_runtime::npy::NpyArray {
        elem: nnc_runtime::npy::Elem::F32,
        shape: vec![2, 3],
        data: [1.0f32, -2.0, 3.0, -4.0, 5.0, -6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    std::fs::write(&x, nnc_runtime::npy::write(&npy)).unwrap();
    x
}

fn f32s(t: &nnc_ir::Tensor) -> Vec<f64> {
    t.to_f64()
}

/// Non-positive `dim_value`s are symbolic dims on inputs and outputs: the
/// model imports, and `run`, `bench`, `compile` and `emit-c` take the
/// shape from the input file.
#[test]
fn dynamic_dims_written_as_minus_one() {
    let dir = tmp("dyn");
    let model = minus_one_model(&dir);
    let m = model.to_str().unwrap();
    let x = write_x(&dir);
    let xs = x.to_str().unwrap();
    // Without a shape the dim must be fixed, and the message says how.
    let o = nnc(&["info", m]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(
        err.contains("dim 0 is dynamic (-1); fix it with --input-shape x=D1,D2,..."),
        "{err}"
    );
    // The declared output shapes [-1,3] and [0,-1] do not contradict [4,3].
    let o = nnc(&["info", m, "--input-shape", "x=4,3"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("y: f32[4,3]") && out.contains("z: f32[4,3]"),
        "{out}"
    );
    // run: the shape comes from the file.
    for backend in ["interp", "c", "native"] {
        let o = nnc(&["run", m, "-i", xs, "--backend", backend]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{backend}: {err}");
        assert!(
            out.contains("y: f32[2,3]")
                && out.contains("[1.500000, -3.000000, 5.000000, -3.500000, 4.000000, -4.000000]")
                && out.contains("[1.000000, 0.000000, 3.000000, 0.000000, 5.000000, 0.000000]"),
            "{backend}: {out}"
        );
    }
    // bench, with the file's shape.
    let o = nnc(&["bench", m, "-i", xs, "--runs", "2", "--backend", "native"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("over 2 runs"), "{out}");
    // emit-c: the C is for [2,3] (6 floats, 24 bytes of input).
    let c_dir = dir.join("c");
    let o = nnc(&[
        "emit-c",
        m,
        "-i",
        &format!("x={xs}"),
        "-o",
        c_dir.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("wrote"), "{out}");
    let h = std::fs::read_to_string(c_dir.join("dyn.h")).unwrap();
    assert!(h.contains("#define dyn_INPUT_0_BYTES 24\n"), "{h}");
    // compile: an executable for [2,3] that computes the outputs.
    let exe = dir.join("dyn");
    let o = nnc(&["compile", m, "-i", xs, "-o", exe.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let y = dir.join("y.npy");
    let r = Command::new(&exe)
        .arg("--input")
        .arg(&x)
        .arg("--output")
        .arg(format!("y={}", y.display()))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (_, got) = nnc::io::read_tensor(&y).unwrap();
    assert_eq!(got.dims(), &[2, 3]);
    assert_eq!(f32s(&got), vec![1.5, -3.0, 5.0, -3.5, 4.0, -4.0]);
    // A missing input file is an error naming it, and writes nothing.
    let missing = dir.join("missing");
    let o = nnc(&[
        "compile",
        m,
        "-i",
        "nope.npy",
        "-o",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("cannot read `nope.npy`"),
        "{:?}",
        text(&o)
    );
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped float model, by absolute path.
fn kws() -> [String; 3] {
    shipped("kws_dscnn_fp32").map(|f| repo().join(f).display().to_string())
}

/// Flag values are checked as flags (usage errors, status 2, naming the
/// flag), sizes read in both conventions, errors say their cause once, and
/// outputs print in their own type.
#[test]
fn flags_mean_one_thing_and_fail_as_flags() {
    let [model, input, _] = kws();
    // --runs 0 measures nothing.
    let o = nnc(&["bench", &model, "--runs", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(
        err.contains("--runs") && err.contains("0 runs measure nothing"),
        "{err}"
    );
    let o = nnc(&["bench", &model, "--runs", "-3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("is not a number of runs"),
        "{:?}",
        text(&o)
    );
    // Sizes: K and KiB are 1024 bytes, kB and KB 1000.
    for (budget, bytes) in [
        ("32KiB", 32768),
        ("32K", 32768),
        ("32k", 32768),
        ("32kB", 32000),
        ("32KB", 32000),
        ("0.03125MiB", 32768),
        ("32768", 32768),
    ] {
        let o = nnc(&[
            "info",
            &model,
            "--target",
            "cortex-m4",
            "--sram-budget",
            budget,
        ]);
        assert_eq!(o.status.code(), Some(1), "{budget}");
        let err = text(&o).1;
        assert!(
            err.contains(&format!("the SRAM budget is {bytes} B")),
            "{budget}: {err}"
        );
    }
    for (bad, why) in [
        ("-1", "sizes are not negative"),
        ("64parsecs", "unknown size unit `parsecs`"),
        ("1.5", "not a whole number of bytes"),
    ] {
        let o = nnc(&["info", &model, "--sram-budget", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = text(&o).1;
        assert!(
            err.contains("--sram-budget") && err.contains(why),
            "{bad}: {err}"
        );
    }
    // A misspelt pass is a flag error, not a model-loading error.
    for flag in ["--passes", "--stop-after", "--print-after"] {
        let o = nnc(&["run", &model, "-i", &input, flag, "foo"]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        let err = text(&o).1;
        assert!(
            err.contains(flag) && err.contains("unknown pass `foo`") && !err.contains("loading"),
            "{flag}: {err}"
        );
    }
    let o = nnc(&["run", &model, "-i", &input, "--stop-after", "cse"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(
        err.contains("--print-after / --stop-after: pass `cse`: not in this pipeline")
            && !err.contains("loading"),
        "{err}"
    );
    // A cause is said once.
    let o = nnc(&["run", &model, "-i", "/nonexistent/input.pb"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert_eq!(
        err.trim(),
        "error: cannot read `/nonexistent/input.pb`: No such file or directory (os error 2)"
    );
    let o = nnc(&["info", "/nonexistent/model.onnx"]);
    let err = text(&o).1;
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    // Integer outputs print as integers.
    let [q, qin, _] = shipped("kws_dscnn_int8_qdq").map(|f| repo().join(f).display().to_string());
    let o = nnc(&["run", &q, "-i", &qin]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("Identity: i8[1,12]  min -128 max 127 mean -106.750000 argmax 5")
            && out.contains("[-128, -128, -128, -128, -128, 127, -128, -128, ...]"),
        "{out}"
    );
    // The hint of `compile -o NAME` runs from the current folder.
    let dir = tmp("hint");
    let o = nnc_in(Some(&dir), &["compile", &model, "-o", "kws"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("run it: ./kws --input"), "{out}");
    assert!(dir.join("kws").is_file());
    let _ = std::fs::remove_dir_all(&dir);
    // Error messages name targets as they are spelt on the command line.
    for args in [
        vec![
            "compile",
            model.as_str(),
            "--target",
            "aarch64",
            "-o",
            "/nonexistent/x",
        ],
        vec!["bench", model.as_str(), "--target", "aarch64"],
        vec![
            "bench",
            model.as_str(),
            "--backend",
            "native",
            "--target",
            "cortex-m4",
        ],
    ] {
        let o = nnc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o).1;
        assert!(
            err.contains("aarch64") || err.contains("cortex-m4"),
            "{err}"
        );
        assert!(
            !err.contains("Aarch64") && !err.contains("CortexM"),
            "{err}"
        );
    }
}

/// Every output option creates the folders it names, and writes nothing
/// when the command fails.
#[test]
fn outputs_create_their_folders() {
    let [model, input, _] = kws();
    let dir = tmp("folders");
    let at = |p: &str| dir.join(p).display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                model.clone(),
                "-i".into(),
                input.clone(),
                "-o".into(),
                at("run/a/out.npy"),
            ],
            "run/a/out.npy",
        ),
        (
            vec![
                "dump".into(),
                model.clone(),
                "-o".into(),
                at("dump/a/m.nnir"),
            ],
            "dump/a/m.nnir.bin",
        ),
        (
            vec![
                "dump".into(),
                model.clone(),
                "--plan".into(),
                "-o".into(),
                at("plan/a/p.txt"),
            ],
            "plan/a/p.txt",
        ),
        (
            vec![
                "info".into(),
                model.clone(),
                "--memory-svg".into(),
                at("svg/a/m.svg"),
            ],
            "svg/a/m.svg",
        ),
        (
            vec![
                "compile".into(),
                model.clone(),
                "-o".into(),
                at("exe/a/kws"),
            ],
            "exe/a/kws",
        ),
        (
            vec!["emit-c".into(), model.clone(), "-o".into(), at("c/a")],
            "c/a/kws_dscnn_fp32.c",
        ),
    ];
    for (args, written) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = nnc(&a);
        assert!(o.status.success(), "{a:?}: {:?}", text(&o));
        assert!(dir.join(written).is_file(), "{a:?} wrote {written}");
    }
    // A failing run creates nothing.
    let o = nnc(&[
        "run",
        &model,
        "-i",
        "/nonexistent.pb",
        "-o",
        &at("never/out.npy"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!dir.join("never").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Long work shows a progress line on a terminal (here a pseudo-terminal
/// made by util-linux's `script`) and nothing when standard error is a
/// pipe.
#[test]
fn progress_only_on_a_terminal() {
    let [model, input, _] = kws();
    let nnc = env!("CARGO_BIN_EXE_nnc");
    let args = [
        "bench",
        &model,
        "--backend",
        "interp",
        "--runs",
        "20",
        "-i",
        &input,
    ];
    // Piped: the output alone.
    let o = Command::new(nnc)
        .args(args)
        .env("NNC_PROGRESS_DELAY_MS", "0")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("median "), "{out}");
    assert!(err.is_empty(), "nothing on a piped standard error: {err:?}");
    // On a terminal: the line, erased before the result.
    let cmd = format!("{nnc} {}", args.join(" "));
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NNC_PROGRESS_DELAY_MS", "0")
        .output()
        .expect("util-linux `script` (bsdutils) runs the pseudo-terminal test");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("nnc: measuring 20 runs"), "{out:?}");
    assert!(out.contains("\r\x1b[2Kmedian "), "{out:?}");
}

/// `emit-c --weights`: literal initializers or blobs (one string literal
/// per array in a union with the typed array); both compile warning-free
/// as strict C99, and `auto` keeps the small quick-start model literal.
#[test]
fn emit_c_weight_forms() {
    let [model, _, _] = kws();
    let dir = std::env::temp_dir().join(format!("nnc-weights-{}", std::process::id()));
    for (form, want) in [
        ("auto", "(literal)"),
        ("literal", "(literal)"),
        ("blob", "(blob)"),
    ] {
        let out = dir.join(form);
        let o = nnc_in(
            None,
            &[
                "emit-c",
                &model,
                "--weights",
                form,
                "--name",
                "kws",
                "-o",
                &out.display().to_string(),
            ],
        );
        let (stdout, err) = text(&o);
        assert!(o.status.success(), "{form}: {err}");
        assert!(stdout.contains(want), "{form}: {stdout}");
        let src = std::fs::read_to_string(out.join("kws.c")).unwrap();
        assert_eq!(
            src.contains("kws") && src.contains("_u = {"),
            form == "blob"
        );
        let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .current_dir(&out)
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O1",
                "-c",
                "kws.c",
            ])
            .output()
            .unwrap();
        assert!(cc.status.success(), "{form}: {}", text(&cc).1);
    }
    let o = nnc_in(None, &["emit-c", &model, "--weights", "hex", "-o", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
