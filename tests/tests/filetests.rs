//! File tests for passes: every `tests/filetests/*.nnir` names the passes to
//! run (`; pass: a,b`), optionally the target (`; target: mcu`), and lines
//! the output must contain in order (`; check:`) or must not contain
//! (`; not:`). Each result must also compute the same as the input on
//! random inputs (within `; atol: X` for rewrites that round differently on
//! purpose, such as integer requantization), and its whole dump is an insta
//! snapshot.

use std::path::Path;

use nnc_ir::program::{Arch, Target};
use nnc_passes::{OptLevel, PipelineOptions, run_pipeline};

struct Spec {
    passes: Vec<String>,
    target: Target,
    checks: Vec<String>,
    nots: Vec<String>,
    atol: f64,
}

fn spec(text: &str, file: &str) -> Spec {
    let mut s = Spec {
        passes: vec![],
        target: Target::default(),
        checks: vec![],
        nots: vec![],
        atol: 1e-5,
    };
    for l in text.lines() {
        let Some(d) = l.trim().strip_prefix(';') else {
            continue;
        };
        let d = d.trim();
        if let Some(p) = d.strip_prefix("pass:") {
            s.passes = p.split(',').map(|x| x.trim().to_string()).collect();
        } else if let Some(t) = d.strip_prefix("target:") {
            s.target = match t.trim() {
                "mcu" => Target::cortex_m(Arch::CortexM4),
                "host" => Target::default(),
                other => panic!("{file}: unknown target `{other}`"),
            };
        } else if let Some(c) = d.strip_prefix("check:") {
            s.checks.push(c.trim().to_string());
        } else if let Some(a) = d.strip_prefix("atol:") {
            s.atol = a
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{file}: bad atol `{a}`: {e}"));
        } else if let Some(c) = d.strip_prefix("not:") {
            s.nots.push(c.trim().to_string());
        }
    }
    assert!(!s.passes.is_empty(), "{file}: no `; pass:` line");
    assert!(
        !s.checks.is_empty() || !s.nots.is_empty(),
        "{file}: nothing to check"
    );
    s
}

fn run_file(path: &Path) -> String {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let s = spec(&text, &file);
    let input = nnc_ir::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut g = input.clone();
    let opts = PipelineOptions {
        passes: Some(s.passes.clone()),
        target: s.target.clone(),
        verify: true,
        ..Default::default()
    };
    run_pipeline(&mut g, OptLevel::O2, &opts, |_, _| {}).unwrap_or_else(|e| panic!("{file}: {e}"));
    let out = nnc_ir::print(&g);
    let mut pos = 0;
    for c in &s.checks {
        match out[pos..].find(c.as_str()) {
            Some(i) => pos += i + c.len(),
            None => panic!("{file}: `; check: {c}` not found (in order) in:\n{out}"),
        }
    }
    for n in &s.nots {
        assert!(
            !out.contains(n.as_str()),
            "{file}: `; not: {n}` found in:\n{out}"
        );
    }
    nnc_passes::check::assert_same_outputs(&input, &g, 4, 1e-4, s.atol);
    out
}

#[test]
fn pass_file_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "nnir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the file tests in {}",
        dir.display()
    );
    for f in files {
        let out = run_file(&f);
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(name, out);
    }
}
