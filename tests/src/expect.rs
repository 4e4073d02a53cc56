//! What the conformance suites are expected to do, as checked-in files in
//! `tests/conformance/`, and the audit of a run against them.
//!
//! - `<backend>.txt`: the tests that must pass on the backend, at every
//!   optimization level the tests run. The lists are the floors:
//!   `conformance --update` only adds to them.
//! - `removed.txt`: `backend suite/test: reason` for every test that does
//!   not pass on a backend although nnc supports it: one that left a list,
//!   or one that never passed (a wrong reference output, say).
//! - `<backend>-differences.txt`: `suite/test  # reason` for tests that
//!   pass in the interpreter but not on the backend.
//! - `unsupported.txt`: the tests nnc reports as unsupported (operators,
//!   element types it does not have), with the reason as a comment.
//!   `--update` only removes from it.
//!
//! Every test of every suite is accounted for: it passes and is listed, or
//! it does not pass and is unsupported (and was so before) or has a
//! written reason. So a listed test cannot leave its list silently: if it
//! still passes, it is missing from the list; if it fails, it has no
//! reason; if it became unsupported, it is not in `unsupported.txt`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nnc::driver::Backend;

use crate::conformance::{CaseResult, Outcome};

/// The folder of the expectation files.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// `<backend>.txt`.
pub fn list_path(backend: Backend) -> PathBuf {
    dir().join(format!("{}.txt", backend.name()))
}

/// `<backend>-differences.txt` (none for the interpreter).
pub fn differences_path(backend: Backend) -> Option<PathBuf> {
    (backend != Backend::Interp).then(|| dir().join(format!("{}-differences.txt", backend.name())))
}

/// `removed.txt`.
pub fn removed_path() -> PathBuf {
    dir().join("removed.txt")
}

/// `unsupported.txt`.
pub fn unsupported_path() -> PathBuf {
    dir().join("unsupported.txt")
}

/// One line of `removed.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub backend: String,
    pub id: String,
    pub reason: String,
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses `removed.txt`: `backend suite/test: reason` per line.
pub fn parse_removed(text: &str) -> Result<Vec<Removed>, Vec<String>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (n, l) in lines(text) {
        let parsed = l.split_once(char::is_whitespace).and_then(|(b, rest)| {
            let (id, reason) = rest.trim().split_once(':')?;
            Some(Removed {
                backend: b.to_string(),
                id: id.trim().to_string(),
                reason: reason.trim().to_string(),
            })
        });
        match parsed {
            Some(r)
                if Backend::ALL.iter().any(|b| b.name() == r.backend)
                    && r.id.contains('/')
                    && !r.reason.is_empty() =>
            {
                out.push(r)
            }
            _ => errs.push(format!(
                "removed.txt:{n}: `{l}` is not `interp|c|native suite/test: reason`"
            )),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Parses a differences file: `suite/test  # reason` per line.
pub fn parse_differences(file: &str, text: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    for (n, l) in lines(text) {
        match l.split_once('#') {
            Some((id, reason)) if !id.trim().is_empty() && !reason.trim().is_empty() => {
                out.insert(id.trim().to_string(), reason.trim().to_string());
            }
            _ => errs.push(format!("{file}:{n}: `{l}` has no `# reason`")),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// The expectations of one backend.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The backend's name.
    pub backend: String,
    /// Tests that must pass.
    pub pass: BTreeSet<String>,
    /// Tests that may report "unsupported".
    pub unsupported: BTreeSet<String>,
    /// Tests that may fail, with the reason (from `removed.txt` and the
    /// differences file).
    pub reasons: BTreeMap<String, String>,
}

impl Expectations {
    /// Builds the expectations from the files' texts.
    pub fn from_texts(
        backend: Backend,
        pass: &str,
        unsupported: &str,
        removed: &str,
        differences: &str,
    ) -> Result<Expectations, Vec<String>> {
        let mut errs = Vec::new();
        let mut reasons = BTreeMap::new();
        match parse_removed(removed) {
            Ok(v) => reasons.extend(
                v.into_iter()
                    .filter(|r| r.backend == backend.name())
                    .map(|r| (r.id, r.reason)),
            ),
            Err(e) => errs.extend(e),
        }
        let file = format!("{}-differences.txt", backend.name());
        match parse_differences(&file, differences) {
            Ok(d) => reasons.extend(d),
            Err(e) => errs.extend(e),
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Expectations {
            backend: backend.name().to_string(),
            pass: list_from(pass),
            unsupported: list_from(unsupported),
            reasons,
        })
    }

    /// Reads the checked-in files of `backend`.
    pub fn load(backend: Backend) -> Result<Expectations, Vec<String>> {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        Expectations::from_texts(
            backend,
            &read(&list_path(backend)),
            &read(&unsupported_path()),
            &read(&removed_path()),
            &differences_path(backend)
                .map(|p| read(&p))
                .unwrap_or_default(),
        )
    }

    /// Every test the files name.
    pub fn named(&self) -> impl Iterator<Item = &String> {
        self.pass
            .iter()
            .chain(&self.unsupported)
            .chain(self.reasons.keys())
    }
}

fn list_from(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Contradictions between the files: a test listed as passing and also as
/// unsupported or failing for a reason.
pub fn lint(e: &Expectations) -> Vec<String> {
    let b = &e.backend;
    let mut v = Vec::new();
    for id in &e.pass {
        if let Some(r) = e.reasons.get(id) {
            v.push(format!(
                "{id} is in {b}.txt and has a reason not to pass ({r}): it passes again, so remove the reason"
            ));
        }
        if e.unsupported.contains(id) {
            v.push(format!(
                "{id} is in {b}.txt and in unsupported.txt: remove it from unsupported.txt"
            ));
        }
    }
    v
}

/// What is wrong with a run against the expectations (empty: nothing).
pub fn audit(results: &[CaseResult], e: &Expectations) -> Vec<String> {
    let b = &e.backend;
    let mut v = Vec::new();
    for r in results {
        let id = &r.id;
        let listed = e.pass.contains(id);
        let reason = e.reasons.contains_key(id);
        match &r.outcome {
            Outcome::Panic(m) => v.push(format!("{id} panicked: {m}")),
            Outcome::Pass if !listed && !reason => v.push(format!(
                "{id} passes but is not in {b}.txt (run `conformance --backend {b} --update`)"
            )),
            Outcome::Pass => {}
            o if listed => v.push(format!(
                "{id} regressed: {o:?} (a listed test leaves {b}.txt only with a `{b} {id}: reason` line in removed.txt)"
            )),
            Outcome::Fail(m) if !reason => v.push(format!(
                "{id} fails without a reason: {m} (fix it, or add `{b} {id}: reason` to removed.txt)"
            )),
            Outcome::Unsupported(m) if !reason && !e.unsupported.contains(id) => v.push(format!(
                "{id} became unsupported: {m} (it is not in unsupported.txt; fix it, or add `{b} {id}: reason` to removed.txt)"
            )),
            _ => {}
        }
    }
    v
}

/// The pass list after `--update`: the old list plus every test that
/// passed in every run (one per optimization level) and has no reason not
/// to. Never smaller than the old list.
pub fn updated_pass(
    old: &BTreeSet<String>,
    runs: &[Vec<CaseResult>],
    e: &Expectations,
) -> BTreeSet<String> {
    let mut new = old.clone();
    if let Some(first) = runs.first() {
        for r in first {
            let everywhere = runs
                .iter()
                .all(|run| run.iter().any(|x| x.id == r.id && x.outcome.is_pass()));
            if everywhere && !e.reasons.contains_key(&r.id) {
                new.insert(r.id.clone());
            }
        }
    }
    new
}

/// `unsupported.txt` after `--update`: the old entries, without those no
/// run reports as unsupported any more. Never larger than the old list;
/// the message of the first run that reports one is kept as its comment.
pub fn updated_unsupported(
    old: &BTreeSet<String>,
    runs: &[Vec<CaseResult>],
) -> BTreeMap<String, String> {
    let mut new = BTreeMap::new();
    for id in old {
        let msg = runs.iter().flatten().find_map(|r| match &r.outcome {
            Outcome::Unsupported(m) if &r.id == id => Some(m.clone()),
            _ => None,
        });
        let ran = runs.iter().flatten().any(|r| &r.id == id);
        match msg {
            Some(m) => {
                new.insert(id.clone(), m);
            }
            // Not run (another suite): kept as it is.
            None if !ran => {
                new.insert(id.clone(), String::new());
            }
            None => {}
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, o: Outcome) -> CaseResult {
        CaseResult {
            id: id.into(),
            outcome: o,
            millis: 0.0,
        }
    }

    fn fail() -> Outcome {
        Outcome::Fail("output 0 differs".into())
    }

    fn unsupported() -> Outcome {
        Outcome::Unsupported("operator Foo".into())
    }

    const PASS: &str = "# header\nnode/a\nnode/b\n";
    const UNSUPPORTED: &str = "node/u  # operator Foo\n";
    const REMOVED: &str = "# header\nc node/f: the reference is rounded\n";

    fn expectations(pass: &str, removed: &str) -> Expectations {
        Expectations::from_texts(Backend::C, pass, UNSUPPORTED, removed, "").unwrap()
    }

    fn run() -> Vec<CaseResult> {
        vec![
            case("node/a", Outcome::Pass),
            case("node/b", Outcome::Pass),
            case("node/f", fail()),
            case("node/u", unsupported()),
        ]
    }

    #[test]
    fn a_run_as_expected_has_no_problems() {
        let e = expectations(PASS, REMOVED);
        assert_eq!(audit(&run(), &e), Vec::<String>::new());
        assert!(lint(&e).is_empty());
    }

    #[test]
    fn a_passing_test_taken_off_the_list_is_found() {
        let e = expectations("node/a\n", REMOVED);
        let p = audit(&run(), &e);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("node/b passes but is not in c.txt"), "{p:?}");
    }

    #[test]
    fn a_failing_test_taken_off_the_list_needs_a_reason() {
        let mut r = run();
        r[1].outcome = fail();
        // Still listed: a regression.
        let p = audit(&r, &expectations(PASS, REMOVED));
        assert!(p.len() == 1 && p[0].contains("node/b regressed"), "{p:?}");
        // Taken off the list without a reason.
        let p = audit(&r, &expectations("node/a\n", REMOVED));
        assert!(
            p.len() == 1 && p[0].contains("node/b fails without a reason"),
            "{p:?}"
        );
        // Taken off with a reason: accepted.
        let removed = format!("{REMOVED}c node/b: a known bug\n");
        assert!(audit(&r, &expectations("node/a\n", &removed)).is_empty());
        // A reason for another backend does not count.
        let removed = format!("{REMOVED}native node/b: a known bug\n");
        assert_eq!(audit(&r, &expectations("node/a\n", &removed)).len(), 1);
    }

    #[test]
    fn a_test_that_becomes_unsupported_needs_a_reason() {
        let mut r = run();
        r[0].outcome = unsupported();
        assert_eq!(audit(&r, &expectations("node/b\n", REMOVED)).len(), 1);
        r[0].outcome = Outcome::Panic("boom".into());
        let p = audit(&r, &expectations(PASS, REMOVED));
        assert!(p.iter().any(|m| m.contains("panicked")), "{p:?}");
    }

    #[test]
    fn reasons_must_be_written_down() {
        for bad in [
            "c node/f\n",
            "c node/f:\n",
            "gpu node/f: faster\n",
            "c f: no suite\n",
        ] {
            assert!(parse_removed(bad).is_err(), "{bad}");
        }
        assert!(parse_differences("x", "node/f\n").is_err());
        assert!(parse_differences("x", "node/f  # why\n").is_ok());
    }

    #[test]
    fn contradictions_between_the_files_are_found() {
        let e = expectations("node/a\nnode/f\nnode/u\n", REMOVED);
        assert_eq!(lint(&e).len(), 2, "{:?}", lint(&e));
    }

    #[test]
    fn update_only_adds_tests_that_pass_at_every_level() {
        let e = expectations(PASS, REMOVED);
        let mut o0 = run();
        o0.push(case("node/new", Outcome::Pass));
        o0.push(case("node/o0_only", Outcome::Pass));
        // A listed test that regressed is kept: removal is by hand.
        o0[0].outcome = fail();
        let mut o2 = o0.clone();
        o2[5].outcome = fail();
        let new = updated_pass(&e.pass, &[o0.clone(), o2.clone()], &e);
        let want: BTreeSet<String> = ["node/a", "node/b", "node/new"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(new, want);
        // A test with a reason not to pass is not added back.
        o0[2].outcome = Outcome::Pass;
        o2[2].outcome = Outcome::Pass;
        assert!(!updated_pass(&e.pass, &[o0, o2], &e).contains("node/f"));
    }

    #[test]
    fn update_only_removes_unsupported_tests() {
        let old: BTreeSet<String> = ["node/u", "node/v", "simple/w"]
            .into_iter()
            .map(String::from)
            .collect();
        let mut r = run();
        r.push(case("node/v", Outcome::Pass));
        r.push(case("node/x", unsupported()));
        let new = updated_unsupported(&old, &[r]);
        let keys: Vec<&str> = new.keys().map(String::as_str).collect();
        assert_eq!(keys, ["node/u", "simple/w"]);
        assert_eq!(new["node/u"], "operator Foo");
    }
}
