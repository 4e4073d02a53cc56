//! The ONNX backend test suites (`../shared/onnx-tests`) run through import
//! and a backend. Each case is classified as passed, failed (wrong result
//! or an error that is not about an unsupported feature), unsupported, or
//! panicked. The checked-in expectations ([`crate::expect`]) say which
//! tests must pass on each backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nnc::driver::{self, Backend, DriverError, LoadOptions};
use nnc::onnx::ImportError;
use nnc_ir::Tensor;
use nnc_passes::OptLevel;

use crate::shared::onnx_tests_dir;

/// The four suites, in report order.
pub const SUITES: [&str; 4] = ["node", "pytorch-converted", "pytorch-operator", "simple"];

/// Float tolerance of the suites.
pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 1e-5;

/// What happened to one test.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Unsupported(String),
    Panic(String),
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
}

/// Result of one test case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// `suite/test_name`.
    pub id: String,
    pub outcome: Outcome,
    pub millis: f64,
}

/// Test case folders of a suite, sorted.
pub fn cases(suite: &str) -> Vec<PathBuf> {
    let dir = onnx_tests_dir().join(suite);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    v.sort();
    v
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut k = 0;
    let mut v = Vec::new();
    loop {
        let p = dir.join(format!("{prefix}_{k}.pb"));
        if !p.exists() {
            return v;
        }
        v.push(p);
        k += 1;
    }
}

fn data_sets(case: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(case)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Errors that mean "nnc does not support this" rather than "nnc is wrong".
fn is_unsupported(e: &DriverError) -> bool {
    if matches!(e, DriverError::Import(ImportError::Unsupported(_))) {
        return true;
    }
    let m = e.to_string();
    m.contains("not supported")
        || m.contains("does not support")
        || m.contains("must be a constant; nnc needs static shapes")
        || m.contains("unsupported element type")
        || m.contains("is not supported")
        || m.contains("only tensor inputs are supported")
}

fn read_tensors(files: &[PathBuf]) -> Result<Vec<(Option<String>, Tensor)>, String> {
    files
        .iter()
        .map(|f| nnc::io::read_tensor(f).map_err(|e| e.to_string()))
        .collect()
}

/// Runs one test case on a backend at an optimization level.
pub fn run_case(case: &Path, backend: Backend, opt: OptLevel) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| run_case_inner(case, backend, opt))) {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Outcome::Panic(msg)
        }
    }
}

fn run_case_inner(case: &Path, backend: Backend, opt: OptLevel) -> Outcome {
    let sets = data_sets(case);
    let Some(first) = sets.first() else {
        return Outcome::Unsupported("no test data".into());
    };
    let first_inputs = match read_tensors(&numbered(first, "input")) {
        Ok(v) => v,
        Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
    };
    let model = case.join("model.onnx");
    // Input names, to turn the data files' shapes into shape hints.
    let names: Vec<String> = match std::fs::read(&model)
        .map_err(|e| e.to_string())
        .and_then(|b| nnc::onnx::decode(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => {
            let g = m.graph.unwrap_or_default();
            let inits: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
            g.input
                .iter()
                .filter(|i| !inits.contains(i.name.as_str()))
                .map(|i| i.name.clone())
                .collect()
        }
        Err(e) => return Outcome::Fail(e),
    };
    let mut hints = HashMap::new();
    for (k, (name, t)) in first_inputs.iter().enumerate() {
        let n = name
            .clone()
            .filter(|n| names.contains(n))
            .or_else(|| names.get(k).cloned());
        if let Some(n) = n {
            hints.insert(n, t.dims().to_vec());
        }
    }
    let opts = LoadOptions {
        shape_hints: hints,
        opt_level: opt,
        ..Default::default()
    };
    let g = match driver::load(&model, &opts) {
        Ok(g) => g,
        Err(e) if is_unsupported(&e) => return Outcome::Unsupported(one_line(&e.to_string())),
        Err(e) => return Outcome::Fail(format!("import: {}", one_line(&e.to_string()))),
    };
    let in_names: Vec<String> = (0..g.inputs().len())
        .map(|i| g.input_name(i).to_string())
        .collect();
    for set in &sets {
        let given = match read_tensors(&numbered(set, "input")) {
            Ok(v) => v,
            Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
        };
        let expected = match read_tensors(&numbered(set, "output")) {
            Ok(v) => v,
            Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
        };
        // Match files to inputs by name when the names agree, else by position.
        let by_name = given.len() == in_names.len()
            && given
                .iter()
                .all(|(n, _)| n.as_ref().is_some_and(|n| in_names.contains(n)));
        let mut inputs: Vec<Option<Tensor>> = vec![None; in_names.len()];
        for (k, (n, t)) in given.into_iter().enumerate() {
            let idx = if by_name {
                in_names.iter().position(|x| Some(x) == n.as_ref())
            } else {
                Some(k)
            };
            match idx.and_then(|i| inputs.get_mut(i)) {
                Some(slot) => *slot = Some(t),
                None => return Outcome::Fail("more input files than model inputs".into()),
            }
        }
        let Some(inputs) = inputs.into_iter().collect::<Option<Vec<Tensor>>>() else {
            return Outcome::Unsupported("optional inputs left empty".into());
        };
        let outs = match driver::execute(&g, backend, &inputs) {
            Ok(o) => o,
            Err(e) if is_unsupported(&e) => return Outcome::Unsupported(one_line(&e.to_string())),
            Err(e) => return Outcome::Fail(format!("run: {}", one_line(&e.to_string()))),
        };
        if outs.len() != expected.len() {
            return Outcome::Fail(format!(
                "{} outputs, expected {}",
                outs.len(),
                expected.len()
            ));
        }
        for (k, (o, (_, e))) in outs.iter().zip(&expected).enumerate() {
            let c = driver::compare(o, e, RTOL, ATOL);
            if let Some(m) = c.shape_mismatch {
                return Outcome::Fail(format!("output {k}: {m}"));
            }
            if !c.ok() {
                return Outcome::Fail(format!(
                    "output {k}: {} of {} elements differ (max abs err {:.3e})",
                    c.mismatches,
                    e.len(),
                    c.max_abs
                ));
            }
        }
    }
    Outcome::Pass
}

fn one_line(s: &str) -> String {
    s.lines().take(2).collect::<Vec<_>>().join(" | ")
}

/// Runs every case of a suite whose name contains `filter`.
pub fn run_suite(suite: &str, backend: Backend, opt: OptLevel, filter: &str) -> Vec<CaseResult> {
    cases(suite)
        .into_iter()
        .filter(|c| {
            c.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(filter))
        })
        .map(|c| {
            let t0 = Instant::now();
            let outcome = run_case(&c, backend, opt);
            CaseResult {
                id: format!(
                    "{suite}/{}",
                    c.file_name().expect("case dir").to_string_lossy()
                ),
                outcome,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            }
        })
        .collect()
}

/// Counts per suite: (passed, failed, unsupported, panicked, total).
pub fn counts(results: &[CaseResult]) -> BTreeMap<String, [usize; 5]> {
    let mut m: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    for r in results {
        let suite = r.id.split('/').next().unwrap_or("").to_string();
        let e = m.entry(suite).or_default();
        let k = match r.outcome {
            Outcome::Pass => 0,
            Outcome::Fail(_) => 1,
            Outcome::Unsupported(_) => 2,
            Outcome::Panic(_) => 3,
        };
        e[k] += 1;
        e[4] += 1;
    }
    m
}

/// The per-suite table printed by the runner and quoted in notes.
pub fn table(results: &[CaseResult], backend: Backend) -> String {
    let c = counts(results);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| suite ({}) | passed | failed | unsupported | panicked | total |",
        backend.name()
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    let mut tot = [0usize; 5];
    for suite in SUITES {
        if let Some(v) = c.get(suite) {
            let _ = writeln!(
                s,
                "| {suite} | {} | {} | {} | {} | {} |",
                v[0], v[1], v[2], v[3], v[4]
            );
            for i in 0..5 {
                tot[i] += v[i];
            }
        }
    }
    let _ = writeln!(
        s,
        "| all | {} | {} | {} | {} | {} |",
        tot[0], tot[1], tot[2], tot[3], tot[4]
    );
    s
}

/// Reads a pass list (one `suite/test` per line, `#` comments).
pub fn read_list(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Writes a list: the header as `#` comments, then one test per line with
/// its comment, if any.
pub fn write_list<'a>(
    path: &Path,
    header: &str,
    ids: impl IntoIterator<Item = (&'a String, Option<&'a String>)>,
) -> std::io::Result<()> {
    let mut s = String::new();
    for l in header.lines() {
        let _ = writeln!(s, "# {l}");
    }
    for (id, comment) in ids {
        match comment.filter(|c| !c.is_empty()) {
            Some(c) => {
                let _ = writeln!(s, "{id}  # {c}");
            }
            None => {
                let _ = writeln!(s, "{id}");
            }
        }
    }
    std::fs::write(path, s)
}
