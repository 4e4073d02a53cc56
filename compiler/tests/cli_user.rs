//! The `nnc` binary as a new user meets it: the quick-start model shipped in
//! the repository, models whose exporters write dynamic dims as `-1`, and
//! flags that mean one thing and fail as flag errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnc_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nnc"));
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.args(args).output().expect("run nnc")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
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
    for (name, backend, want) in [
        ("kws_dscnn_fp32", "native", "dense: ok"),
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
        let backend_flag = if backend == "interp" {
            String::new()
        } else {
            format!(" --backend {backend}")
        };
        let cmd = format!(
            "cargo run --release -- run {model}{backend_flag} \\\n    -i {input} \\\n    --expect {output}"
        );
        assert!(readme.contains(&cmd), "README's quick start runs:\n{cmd}");
        let mut args = vec!["run", model.as_str(), "-i", input, "--expect", output];
        if backend != "interp" {
            args.extend(["--backend", backend]);
        }
        let o = nnc_in(Some(&root), &args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{name}: {out}{err}");
        assert!(out.contains(want), "{name}: {out}");
    }
}
