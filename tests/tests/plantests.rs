//! Plan file tests (in the style of Cranelift's precise-output lowering
//! tests): every `tests/plantests/*.nnir` is a graph lowered for one target
//! (`; plan: BACKEND TARGET`, with `; kernel: SEL=KERNEL` forcing kernels),
//! and its lowered plan must contain the `; check:` lines in order and none
//! of the `; not:` lines. The program then runs on its backend and must
//! match the interpreter on random inputs, and the whole plan is an insta
//! snapshot. Together the files cover every kernel family.
//!
//! `; memory: min` (or `auto`) lowers with partial execution (default
//! `off`); such a plan must have a smaller arena than the same program
//! unpartitioned, and give exactly the unpartitioned plan's outputs.

use std::collections::BTreeSet;
use std::path::Path;

use nnc_ir::Tensor;
use nnc_ir::program::{Family, Program};
use nnc_passes::lower::KernelChoice;
use nnc_passes::lower::partition::MemoryGoal;

struct Spec {
    backend: String,
    target: String,
    kernels: Vec<KernelChoice>,
    memory: MemoryGoal,
    checks: Vec<String>,
    nots: Vec<String>,
}

fn spec(text: &str, file: &str) -> Spec {
    let mut s = Spec {
        backend: String::new(),
        target: String::new(),
        kernels: vec![],
        memory: MemoryGoal::Off,
        checks: vec![],
        nots: vec![],
    };
    for l in text.lines() {
        let Some(d) = l.trim().strip_prefix(';') else {
            continue;
        };
        let d = d.trim();
        if let Some(p) = d.strip_prefix("plan:") {
            let mut it = p.split_whitespace();
            s.backend = it.next().unwrap_or_default().to_string();
            s.target = it.next().unwrap_or("host").to_string();
        } else if let Some(k) = d.strip_prefix("kernel:") {
            s.kernels
                .push(KernelChoice::parse(k.trim()).unwrap_or_else(|e| panic!("{file}: {e}")));
        } else if let Some(m) = d.strip_prefix("memory:") {
            s.memory = match m.trim() {
                "off" => MemoryGoal::Off,
                "min" => MemoryGoal::Minimize,
                "auto" => MemoryGoal::Auto,
                other => panic!("{file}: `; memory: {other}`: use off, min or auto"),
            };
        } else if let Some(c) = d.strip_prefix("check:") {
            s.checks.push(c.trim().to_string());
        } else if let Some(c) = d.strip_prefix("not:") {
            s.nots.push(c.trim().to_string());
        }
    }
    assert!(
        s.backend == "c" || s.backend == "native",
        "{file}: `; plan: c|native TARGET` missing"
    );
    assert!(!s.checks.is_empty(), "{file}: nothing to check");
    s
}

/// Runs a plan on the backend it was lowered for.
fn execute(p: &Program, inputs: &[Tensor]) -> Vec<Tensor> {
    nnc_tests::targets::run_program(p, inputs).unwrap_or_else(|e| panic!("{}: {e}", p.name))
}

fn run_file(path: &Path, families: &mut BTreeSet<Family>) -> String {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let s = spec(&text, &file);
    let g = nnc_ir::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let target = match s.backend.as_str() {
        "c" => nnc_backends::c::target(&s.target),
        _ => nnc_backends::cranelift::target(&s.target),
    }
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    let lowering = |memory| nnc::driver::Lowering {
        kernels: s.kernels.clone(),
        memory,
        ..Default::default()
    };
    let p = lowering(s.memory)
        .lower(&g, "plan", &target)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let whole = (s.memory != MemoryGoal::Off).then(|| {
        let q = lowering(MemoryGoal::Off)
            .lower(&g, "plan", &target)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            p.arena_bytes < q.arena_bytes,
            "{file}: partial execution leaves the arena at {} B (unpartitioned {} B)",
            p.arena_bytes,
            q.arena_bytes
        );
        q
    });
    let out = p.dump();
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
    families.extend(p.steps.iter().map(|st| st.kernel.family()));
    if !nnc_tests::targets::host_can_run(&p.target) {
        println!("{file}: checked as text only; this CPU cannot run its target");
        return out;
    }
    for seed in [3, 11] {
        let inputs = nnc_passes::check::random_inputs(&g, seed);
        let want = nnc_ir::interp::run(&g, &inputs).unwrap();
        let got = execute(&p, &inputs);
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            if let Err(e) = nnc_passes::check::close(a, b, 1e-4, 1e-5) {
                panic!("{file}: output {k} on {}: {e}\n{out}", s.backend);
            }
        }
        if let Some(q) = &whole {
            let plain = execute(q, &inputs);
            for (k, (a, b)) in got.iter().zip(&plain).enumerate() {
                if a.dtype().is_int() {
                    assert_eq!(
                        a, b,
                        "{file}: output {k} differs from the unpartitioned plan"
                    );
                } else if let Err(e) = nnc_passes::check::close(a, b, 1e-4, 1e-5) {
                    panic!("{file}: output {k} against the unpartitioned plan: {e}");
                }
            }
        }
    }
    out
}

#[test]
fn plan_file_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plantests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "nnir"))
        .collect();
    files.sort();
    let mut families = BTreeSet::new();
    for f in &files {
        let out = run_file(f, &mut families);
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(name, out);
    }
    let all = [
        Family::Conv,
        Family::Depthwise,
        Family::ConvTranspose,
        Family::MatMul,
        Family::Pool,
        Family::Map,
        Family::Copy,
        Family::Lookup,
        Family::Reduction,
    ];
    for f in all {
        assert!(families.contains(&f), "no plan file test covers {f:?}");
    }
}
