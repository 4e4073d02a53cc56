//! Hostile and careless use of the `nnc` binary, one test per reproducer
//! of issue 13: every case ends in a clear error and a non-zero exit (or
//! the right result), never a panic, a signal, a hang, a read outside the
//! model's folder, or a file changed that the user did not ask to change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nnc::onnx::build::{Attr, ModelBuilder};
use nnc_ir::{DType, Tensor};

fn nnc_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nnc"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run nnc")
}

fn nnc(args: &[&str]) -> Output {
    nnc_env(args, &[])
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Fails unless `o` exited with status 1 and printed `want` on stderr,
/// without a panic or a signal.
#[track_caller]
fn fails_with(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(err.contains(want), "wanted `{want}` in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[track_caller]
fn succeeds(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    text(o)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnc-harden-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `y = relu(x + 1)` on f32[2,3], written to `dir/name.onnx`.
fn small_model(dir: &Path, name: &str) -> PathBuf {
    let m = ModelBuilder::new("small", 13)
        .input("x", DType::F32, &[2, 3])
        .init("one", &Tensor::scalar_f32(1.0))
        .node("Add", "add", &["x", "one"], &["s"], &[])
        .node("Relu", "relu", &["s"], &["y"], &[])
        .output("y", DType::F32, &[2, 3]);
    let p = dir.join(format!("{name}.onnx"));
    std::fs::write(&p, m.bytes()).unwrap();
    p
}

fn npy(path: &Path, t: &Tensor) {
    nnc::io::write_npy(path, t).unwrap();
}

fn x23() -> Tensor {
    Tensor::from_f32(vec![2, 3], vec![-3.0, -1.0, 0.0, 1.0, 2.0, 3.0]).unwrap()
}

// ---- the build cache

#[test]
fn the_build_cache_is_private_and_verified() {
    let dir = tmp("cache");
    let model = small_model(&dir, "m");
    let x = dir.join("x.npy");
    npy(&x, &x23());
    let cache = dir.join("cache");
    let run = |cache: &Path| {
        nnc_env(
            &["run", s(&model), "--backend", "c", "-i", s(&x)],
            &[("NNC_CACHE_DIR", cache)],
        )
    };
    assert!(succeeds(&run(&cache)).contains("y: f32[2,3]"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // A planted executable in place of the cached one is not run: the
    // entry fails verification and is rebuilt.
    let mut planted = 0;
    for e in std::fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path().join("model");
        if p.exists() {
            std::fs::write(&p, "#!/bin/sh\necho PLANTED\nexit 0\n").unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0);
    let out = succeeds(&run(&cache));
    assert!(
        !out.contains("PLANTED") && out.contains("y: f32[2,3]"),
        "{out}"
    );
    // A cache folder that is a symlink is refused.
    let link = dir.join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    fails_with(&run(&link), "is not a directory");
    // A cache folder another user owns is refused (checkable as root).
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let chowned = Command::new("chown")
        .args(["65534", s(&other)])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if chowned {
        fails_with(&run(&other), "belongs to user 65534");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- files a model names

/// `y = x + w`, with `w` (f32[2]) stored externally at `location`.
fn external_model(dir: &Path, location: &str, length: Option<u64>) -> PathBuf {
    use nnc::onnx::proto::{StringStringEntryProto, TensorProto};
    let mut ext = vec![StringStringEntryProto {
        key: "location".into(),
        value: location.into(),
    }];
    if let Some(l) = length {
        ext.push(StringStringEntryProto {
            key: "length".into(),
            value: l.to_string(),
        });
    }
    let w = TensorProto {
        name: "w".into(),
        dims: vec![2],
        data_type: 1,
        data_location: 1,
        external_data: ext,
        ..Default::default()
    };
    let m = ModelBuilder::new("ext", 13)
        .input("x", DType::F32, &[2])
        .init_proto(w)
        .node("Add", "add", &["x", "w"], &["y"], &[])
        .output("y", DType::F32, &[2]);
    let p = dir.join("model.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    p
}

#[test]
fn external_data_stays_inside_the_model_folder() {
    let dir = tmp("external");
    let outside = tmp("external-outside");
    std::fs::write(outside.join("secret.bin"), 7.5f32.to_le_bytes().repeat(2)).unwrap();
    std::fs::write(dir.join("w.bin"), 0.5f32.to_le_bytes().repeat(2)).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("link.bin")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(dir.join("big.bin"), [0u8; 64]).unwrap();
    let cases = [
        ("link.bin", None, "outside the model's folder"),
        ("passwd", None, "outside the model's folder"),
        ("zero", None, "outside the model's folder"),
        ("fifo", None, "not a regular file"),
        (
            "../external-outside/secret.bin",
            None,
            "plain relative path",
        ),
        ("/etc/passwd", None, "plain relative path"),
        ("big.bin", None, "the tensor needs 8"),
        ("w.bin", Some(4), "the tensor needs 8"),
        ("w.bin", Some(1 << 40), "outside `w.bin`"),
    ];
    for (loc, len, want) in cases {
        let m = external_model(&dir, loc, len);
        let o = nnc(&["info", s(&m)]);
        fails_with(&o, want);
        assert!(text(&o).contains("tensor `w`"), "{}", text(&o));
    }
    // A plain file in the folder works, also for a model given as a bare
    // file name (the folder is then the current one).
    let m = external_model(&dir, "w.bin", Some(8));
    succeeds(&nnc(&["info", s(&m)]));
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["info", "model.onnx"])
        .current_dir(&dir)
        .output()
        .unwrap();
    succeeds(&o);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn nnir_weights_stay_inside_the_model_folder() {
    let dir = tmp("nnir-weights");
    std::fs::write(dir.join("w.bin"), 0.5f32.to_le_bytes().repeat(2)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let ir = |weights: &str| {
        let p = dir.join("m.nnir");
        std::fs::write(
            &p,
            format!(
                "graph @m(v0 \"x\": f32[2]) -> (\"y\": f32[2]) {{\n    weights \"{weights}\"\n    c0 = const f32[2] @0\n    v1 = add v0, c0 : f32[2]\n    return v1\n}}\n"
            ),
        )
        .unwrap();
        p
    };
    for (w, want) in [
        ("../../etc/passwd", "plain relative path"),
        ("/etc/passwd", "plain relative path"),
        ("/proc/self/environ", "plain relative path"),
        ("/dev/zero", "plain relative path"),
        ("passwd", "outside the model's folder"),
        ("fifo", "not a regular file"),
    ] {
        fails_with(&nnc(&["dump", s(&ir(w))]), want);
    }
    succeeds(&nnc(&["dump", s(&ir("w.bin"))]));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- size amplification

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_i64s(vec![v.len()], v.to_vec()).unwrap()
}

#[test]
fn folding_has_a_total_budget() {
    let dir = tmp("amplify");
    // One ConstantOfShape of 64 MiB from a model of a few hundred bytes.
    let m = ModelBuilder::new("amp", 13)
        .input("x", DType::F32, &[1])
        .init("shape", &i64s(&[4096, 4096]))
        .node("ConstantOfShape", "big", &["shape"], &["c"], &[])
        .node("Add", "add", &["x", "c"], &["y"], &[])
        .output("y", DType::F32, &[4096, 4096]);
    let p = dir.join("one.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() < 400);
    fails_with(
        &nnc(&["info", s(&p)]),
        "node `big` (ConstantOfShape): folding constants here would add 64.0 MiB",
    );
    // Many small expansions: each below the budget, together above it.
    let mut m = ModelBuilder::new("amp", 13)
        .input("x", DType::F32, &[1 << 20])
        .init("small", &Tensor::from_f32(vec![1], vec![2.0]).unwrap())
        .init("shape", &i64s(&[1 << 20]));
    let mut prev = "x".to_string();
    for i in 0..12 {
        let e = format!("e{i}");
        let y = format!("y{i}");
        m = m
            .node(
                "Expand",
                &format!("expand{i}"),
                &["small", "shape"],
                &[&e],
                &[],
            )
            .node("Add", &format!("add{i}"), &[&prev, &e], &[&y], &[]);
        prev = y;
    }
    let m = m.output(&prev, DType::F32, &[1 << 20]);
    let p = dir.join("many.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    fails_with(
        &nnc(&["info", s(&p)]),
        "node `expand8` (Expand): folding constants here would add 4.0 MiB, 36.0 MiB in all",
    );
    // Folding that does not grow the data is free: a 4 MiB weight
    // transposed and scaled at import.
    let n = 1 << 20;
    let w = Tensor::from_f32(vec![1024, 1024], vec![0.5; n]).unwrap();
    let m = ModelBuilder::new("ok", 13)
        .input("x", DType::F32, &[1024, 1024])
        .init("w", &w)
        .init("k", &Tensor::scalar_f32(3.0))
        .node(
            "Transpose",
            "t",
            &["w"],
            &["wt"],
            &[("perm", Attr::Ints(vec![1, 0]))],
        )
        .node("Mul", "m", &["wt", "k"], &["ws"], &[])
        .node("Neg", "n", &["ws"], &["wn"], &[])
        .node("Add", "a", &["x", "wn"], &["y"], &[])
        .output("y", DType::F32, &[1024, 1024]);
    let p = dir.join("ok.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    succeeds(&nnc(&["info", s(&p), "-O0"]));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- output errors

fn kws() -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = std::env::var("NNC_SHARED_DIR")
        .map(|d| PathBuf::from(d).join("models"))
        .unwrap_or_else(|_| {
            here.ancestors()
                .map(|a| a.join("shared/models"))
                .find(|p| p.is_dir())
                .expect("shared models")
        });
    d.join("mlperf_tiny/kws_dscnn_fp32/model.onnx")
        .display()
        .to_string()
}

#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let model = kws();
    for args in [
        vec!["dump", &model, "--weights", "inline"],
        vec![
            "dump",
            &model,
            "--print-after",
            "all",
            "--weights",
            "inline",
        ],
        vec!["info", &model, "--steps"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is gone now (`| head -1`).
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!first.is_empty());
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(
            matches!(o.status.code(), Some(0 | 141)),
            "{args:?}: {:?}",
            o.status
        );
    }
}

#[test]
fn a_full_disk_is_reported() {
    let model = kws();
    let dir = tmp("full");
    let exe = dir.join("exe");
    let exe_s = exe.display().to_string();
    let input = Path::new(&model)
        .parent()
        .unwrap()
        .join("test_data_set_0/input_0.pb")
        .display()
        .to_string();
    for args in [
        vec!["info", &model],
        vec!["dump", &model],
        vec!["run", &model, "-i", &input],
        vec!["compile", &model, "-o", &exe_s],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        fails_with(
            &o,
            "cannot write to standard output: No space left on device",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deeply_nested_text_ir_is_an_error() {
    let dir = tmp("nested");
    let p = dir.join("deep.nnir");
    std::fs::write(
        &p,
        format!(
            "graph @t(v0 \"x\": f32[1]) -> (\"y\": f32[1]) {{\n    v1 = relu v0 {{a={}1{}}} : f32[1]\n    return v1\n}}\n",
            "[".repeat(40_000),
            "]".repeat(40_000)
        ),
    )
    .unwrap();
    fails_with(
        &nnc(&["dump", s(&p)]),
        "attribute values nest more than 32 deep",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- verdicts

#[test]
fn tolerances_are_finite_and_nan_is_a_mismatch() {
    let dir = tmp("verdicts");
    let model = small_model(&dir, "m");
    let x = dir.join("x.npy");
    npy(&x, &x23());
    // relu(x + 1) = [0, 0, 1, 2, 3, 4]; a reference 0.918 away.
    let far = dir.join("far.npy");
    npy(
        &far,
        &Tensor::from_f32(vec![2, 3], vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.918]).unwrap(),
    );
    for (opt, v) in [("--rtol", "NaN"), ("--atol", "inf"), ("--rtol=-1", "")] {
        let mut args = vec!["run", s(&model), "-i", s(&x), "--expect", s(&far), opt];
        if !v.is_empty() {
            args.push(v);
        }
        let o = nnc(&args);
        assert_eq!(o.status.code(), Some(2), "{opt} {v}: {}", text(&o));
        assert!(text(&o).contains("is not a tolerance"), "{}", text(&o));
    }
    let o = nnc(&["run", s(&model), "-i", s(&x), "--expect", s(&far)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("max abs err 9.180e-1"), "{}", text(&o));
    // sqrt of a negative input is NaN: a NaN against a number is a
    // mismatch, against a NaN only with --equal-nan.
    let m = ModelBuilder::new("sq", 13)
        .input("x", DType::F32, &[2])
        .node("Sqrt", "sqrt", &["x"], &["y"], &[])
        .output("y", DType::F32, &[2]);
    let sq = dir.join("sq.onnx");
    std::fs::write(&sq, m.bytes()).unwrap();
    let xs = dir.join("xs.npy");
    npy(&xs, &Tensor::from_f32(vec![2], vec![4.0, -1.0]).unwrap());
    let num = dir.join("num.npy");
    npy(&num, &Tensor::from_f32(vec![2], vec![2.0, 0.0]).unwrap());
    let nan = dir.join("nan.npy");
    npy(
        &nan,
        &Tensor::from_f32(vec![2], vec![2.0, f32::NAN]).unwrap(),
    );
    for backend in ["interp", "c", "native"] {
        let run = |want: &Path, extra: &[&str]| {
            let mut args = vec![
                "run",
                s(&sq),
                "--backend",
                backend,
                "-i",
                s(&xs),
                "--expect",
                s(want),
            ];
            args.extend_from_slice(extra);
            nnc(&args)
        };
        let o = run(&num, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("1 of 2 elements") && text(&o).contains("1 with a NaN"),
            "{}",
            text(&o)
        );
        let o = run(&num, &["--equal-nan"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let o = run(&nan, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("--equal-nan takes NaN = NaN"),
            "{}",
            text(&o)
        );
        assert!(succeeds(&run(&nan, &["--equal-nan"])).contains("y: ok"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- malformed graphs

#[test]
fn ambiguous_graphs_are_rejected_with_names() {
    let dir = tmp("ambiguous");
    let base = || {
        ModelBuilder::new("g", 13)
            .input("x", DType::F32, &[2])
            .output("y", DType::F32, &[2])
    };
    let two_writers = base().node("Relu", "first", &["x"], &["y"], &[]).node(
        "Neg",
        "second",
        &["x"],
        &["y"],
        &[],
    );
    let mut dup_input = base().node("Relu", "r", &["x"], &["y"], &[]);
    dup_input
        .graph()
        .input
        .push(nnc::onnx::build::value_info("x", DType::F32, &[2]));
    let mut init_vs_input = base()
        .init(
            "w",
            &Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap(),
        )
        .node("Add", "a", &["x", "w"], &["y"], &[]);
    init_vs_input
        .graph()
        .input
        .push(nnc::onnx::build::value_info("w", DType::F32, &[2]));
    let mut ir999 = base().node("Relu", "r", &["x"], &["y"], &[]);
    ir999.model.ir_version = 999;
    let writes_input =
        base()
            .node("Relu", "r", &["x"], &["y"], &[])
            .node("Neg", "clobber", &["y"], &["x"], &[]);
    let cases = [
        (
            two_writers,
            "tensor `y` is written by node `first` (Relu) and by node `second` (Neg)",
        ),
        (dup_input, "graph input `x` is listed twice"),
        (
            init_vs_input,
            "initializer `w` (FLOAT [3]) contradicts the graph input of that name (FLOAT [2])",
        ),
        (ir999, "IR version 999 is not supported"),
        (
            writes_input,
            "tensor `x` is written by a graph input and by node `clobber` (Neg)",
        ),
    ];
    for (i, (m, want)) in cases.into_iter().enumerate() {
        let p = dir.join(format!("m{i}.onnx"));
        std::fs::write(&p, m.bytes()).unwrap();
        fails_with(&nnc(&["info", s(&p)]), want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- names

const IN: &str = "in=put */ /* ??= \"q\" \\ \u{e9}\n\u{1}";
const OUT: &str = "out=y */??/";

/// `out = relu(in) * 2` with names that are hard to print anywhere.
fn named_model(dir: &Path) -> PathBuf {
    let m = ModelBuilder::new("g*/ ??= \"", 13)
        .input(IN, DType::F32, &[2, 3])
        .init("two */", &Tensor::scalar_f32(2.0))
        .node("Relu", "relu */ /* ??/\n", &[IN], &["mid\"??'"], &[])
        .node("Mul", "mul\\", &["mid\"??'", "two */"], &[OUT], &[])
        .output(OUT, DType::F32, &[2, 3]);
    let p = dir.join("named.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    p
}

#[test]
fn any_name_is_safe_everywhere_it_is_printed() {
    let dir = tmp("names");
    let model = named_model(&dir);
    let x = dir.join("x.npy");
    npy(&x, &x23());
    let want = Tensor::from_f32(vec![2, 3], vec![0.0, 0.0, 0.0, 2.0, 4.0, 6.0]).unwrap();
    let input = format!("{IN}={}", s(&x));
    for backend in ["interp", "c", "native"] {
        let y = dir.join(format!("y-{backend}.npy"));
        let output = format!("{OUT}={}", s(&y));
        succeeds(&nnc(&[
            "run",
            s(&model),
            "--backend",
            backend,
            "-i",
            &input,
            "-o",
            &output,
        ]));
        assert!(
            nnc::io::read_tensor(&y).unwrap().1.bit_eq(&want),
            "{backend}"
        );
    }
    // Generated C compiles warning-free.
    let c = dir.join("c");
    succeeds(&nnc(&["emit-c", s(&model), "-o", s(&c), "--name", "named"]));
    let o = Command::new(nnc::cbuild::cc())
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"])
        .arg(c.join("named.c"))
        .arg("-o")
        .arg(c.join("named.o"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A compiled executable takes the names.
    let exe = dir.join("named-exe");
    succeeds(&nnc(&["compile", s(&model), "-o", s(&exe)]));
    let y = dir.join("y-exe.npy");
    let o = Command::new(&exe)
        .args(["--input", &input, "--output", &format!("{OUT}={}", s(&y))])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(nnc::io::read_tensor(&y).unwrap().1.bit_eq(&want));
    // The text IR reads back with every name, and dot output stays valid.
    let ir = dir.join("named.nnir");
    succeeds(&nnc(&["dump", s(&model), "-o", s(&ir)]));
    let y = dir.join("y-nnir.npy");
    succeeds(&nnc(&[
        "run",
        s(&ir),
        "-i",
        &input,
        "-o",
        &format!("{OUT}={}", s(&y)),
    ]));
    assert!(nnc::io::read_tensor(&y).unwrap().1.bit_eq(&want));
    let dot = succeeds(&nnc(&["dump", s(&model), "--format", "dot"]));
    for line in dot.lines().filter(|l| l.contains("label=")) {
        assert!(line.trim_end().ends_with("];"), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_output_names_are_rejected() {
    let dir = tmp("outnames");
    let model = small_model(&dir, "m");
    let x = dir.join("x.npy");
    npy(&x, &x23());
    let cwd_file = dir.join("nope=x.npy");
    let run = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["run", s(&model), "-i", s(&x), "-o", "nope=x.npy"])
        .current_dir(&dir)
        .output()
        .unwrap();
    fails_with(&run, "output `nope` is not one of the model's outputs: `y`");
    let exe = dir.join("exe");
    succeeds(&nnc(&["compile", s(&model), "-o", s(&exe)]));
    let o = Command::new(&exe)
        .args(["--input", s(&x), "--output", "nope=x.npy"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("output `nope` is not one of the model's outputs: `y`"),
        "{}",
        text(&o)
    );
    let o = Command::new(&exe)
        .args(["--input", "nope=x.npy"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!cwd_file.exists());
    // The named forms work, also for a file name with `=`.
    let eq = dir.join("a=b.npy");
    succeeds(&nnc(&[
        "run",
        s(&model),
        "-i",
        s(&x),
        "-o",
        &format!("y={}", s(&eq)),
    ]));
    assert!(eq.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- targets

#[test]
fn cpu_presets_with_fma_use_avx() {
    let model = kws();
    let dir = tmp("presets");
    let code = |out: &str| -> usize {
        let i = out.find("code ").expect("code size") + 5;
        out[i..].split(' ').next().unwrap().parse().unwrap()
    };
    let host = code(&succeeds(&nnc(&[
        "compile",
        &model,
        "-o",
        s(&dir.join("host")),
    ])));
    for cpu in ["x86-64-v3", "x86-64-v4", "znver3"] {
        let out = succeeds(&nnc(&[
            "compile",
            &model,
            "-o",
            s(&dir.join(cpu)),
            "--target",
            &format!("x86_64:{cpu}"),
        ]));
        assert!(
            out.contains(" avx ") && out.contains(" fma "),
            "{cpu}: {out}"
        );
        // Without AVX every vector FMA was a libcall: 11x the code.
        assert!(
            code(&out) <= host + host / 10,
            "{cpu}: {out} (host: {host})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn constant_gather_indices_out_of_range_fail_at_compile_time() {
    let dir = tmp("gather");
    let m = ModelBuilder::new("g", 13)
        .input("x", DType::F32, &[4, 3])
        .init("idx", &i64s(&[1, 4]))
        .node(
            "Gather",
            "pick_rows",
            &["x", "idx"],
            &["y"],
            &[("axis", Attr::Int(0))],
        )
        .output("y", DType::F32, &[2, 3]);
    let p = dir.join("g.onnx");
    std::fs::write(&p, m.bytes()).unwrap();
    let want = "node `pick_rows` (gather): constant index 4 is out of range for axis 0 of size 4";
    fails_with(&nnc(&["compile", s(&p), "-o", s(&dir.join("exe"))]), want);
    fails_with(&nnc(&["emit-c", s(&p), "-o", s(&dir.join("c"))]), want);
    assert!(!dir.join("exe").exists() && !dir.join("c").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- outputs

fn no_temporaries(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains("nnc-tmp"), "left behind: {n}");
    }
}

#[test]
fn commands_never_overwrite_their_inputs() {
    let dir = tmp("inputs");
    let model = small_model(&dir, "m");
    let before = std::fs::read(&model).unwrap();
    let x = dir.join("x.npy");
    npy(&x, &x23());
    let x_before = std::fs::read(&x).unwrap();
    let m = s(&model);
    let cases: Vec<Vec<&str>> = vec![
        vec!["compile", m, "-o", m],
        vec!["compile", m, "--emit", "obj", "-o", m],
        vec!["dump", m, "-o", m],
        vec!["dump", m, "--plan", "-o", m],
        vec!["run", m, "-i", s(&x), "-o", s(&x)],
        vec!["run", m, "-i", s(&x), "-o", m],
        vec!["info", m, "--memory-svg", m],
    ];
    for args in cases {
        fails_with(&nnc(&args), "refusing to write");
        assert_eq!(std::fs::read(&model).unwrap(), before, "{args:?}");
        assert_eq!(std::fs::read(&x).unwrap(), x_before, "{args:?}");
    }
    // Through another name (a hard link) too.
    let alias = dir.join("alias.onnx");
    std::fs::hard_link(&model, &alias).unwrap();
    fails_with(&nnc(&["compile", m, "-o", s(&alias)]), "refusing to write");
    // A .nnir dump's weights file is an input of a dump of that dump.
    let wide = ModelBuilder::new("wide", 13)
        .input("x", DType::F32, &[32])
        .init("w", &Tensor::from_f32(vec![32], vec![0.5; 32]).unwrap())
        .node("Add", "add", &["x", "w"], &["y"], &[])
        .output("y", DType::F32, &[32]);
    let wide_p = dir.join("wide.onnx");
    std::fs::write(&wide_p, wide.bytes()).unwrap();
    let ir = dir.join("d.nnir");
    succeeds(&nnc(&["dump", s(&wide_p), "-o", s(&ir), "-O0"]));
    let w = dir.join("d.nnir.bin");
    assert!(w.exists());
    let w_before = std::fs::read(&w).unwrap();
    fails_with(&nnc(&["dump", s(&ir), "-o", s(&w)]), "refusing to write");
    fails_with(&nnc(&["dump", s(&ir), "-o", s(&ir)]), "refusing to write");
    assert_eq!(std::fs::read(&w).unwrap(), w_before);
    no_temporaries(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn object_outputs_do_not_clobber_other_files() {
    let dir = tmp("objects");
    let model = small_model(&dir, "m");
    let main_c = dir.join("main.c");
    std::fs::write(&main_c, "int main(void) { return 0; }\n").unwrap();
    fails_with(
        &nnc(&["compile", s(&model), "--emit", "obj", "-o", s(&main_c)]),
        "exists and is not an object file",
    );
    assert_eq!(
        std::fs::read_to_string(&main_c).unwrap(),
        "int main(void) { return 0; }\n"
    );
    fails_with(
        &nnc(&[
            "compile",
            s(&model),
            "--emit",
            "obj",
            "-o",
            s(&dir.join("x.h")),
        ]),
        "the object and its header would be the same file",
    );
    assert!(!dir.join("x.h").exists());
    // A real object is replaced (with its header), and again.
    let obj = dir.join("m.o");
    for _ in 0..2 {
        succeeds(&nnc(&[
            "compile",
            s(&model),
            "--emit",
            "obj",
            "-o",
            s(&obj),
        ]));
        assert!(nnc::outfile::is_object_file(&obj));
        assert!(
            std::fs::read_to_string(dir.join("m.h"))
                .unwrap()
                .contains("m_run")
        );
    }
    // emit-c writes the pair whole, and an executable replaces the old one.
    let c = dir.join("c");
    for _ in 0..2 {
        succeeds(&nnc(&["emit-c", s(&model), "-o", s(&c)]));
        no_temporaries(&c);
    }
    let exe = dir.join("exe");
    std::fs::write(&exe, "old").unwrap();
    succeeds(&nnc(&["compile", s(&model), "-o", s(&exe)]));
    assert!(nnc::outfile::is_object_file(&exe));
    no_temporaries(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leftovers_of_killed_builds_are_removed() {
    let dir = tmp("leftovers");
    let model = small_model(&dir, "m");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // What a killed `nnc compile` leaves: a scratch folder of a dead process.
    let stale = cache.join(".link-999999999-0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("glue.o"), "x").unwrap();
    let o = nnc_env(
        &["compile", s(&model), "-o", s(&dir.join("exe"))],
        &[("NNC_CACHE_DIR", &cache)],
    );
    succeeds(&o);
    assert!(!stale.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
