//! The ONNX backend suites through import and the interpreter: every test
//! in the checked-in pass list must still pass, and nothing may panic.

use nnc::driver::Backend;
use nnc_passes::OptLevel;
use nnc_tests::conformance::{Outcome, expected_list_path, read_list, run_suite, table};
use nnc_tests::shared::{onnx_tests_dir, require};

fn check_suite(suite: &str, backend: Backend, opt: OptLevel) {
    require(&onnx_tests_dir().join(suite));
    let expected = read_list(&expected_list_path(backend));
    let results = run_suite(suite, backend, opt, "");
    println!("{}", table(&results, backend));
    let mut problems = Vec::new();
    for r in &results {
        match &r.outcome {
            Outcome::Panic(m) => problems.push(format!("{} panicked: {m}", r.id)),
            o if !o.is_pass() && expected.contains(&r.id) => {
                problems.push(format!("{} regressed: {o:?}", r.id))
            }
            _ => {}
        }
    }
    let listed = expected
        .iter()
        .filter(|id| id.starts_with(&format!("{suite}/")))
        .count();
    let ran: std::collections::BTreeSet<&String> = results.iter().map(|r| &r.id).collect();
    for id in expected
        .iter()
        .filter(|id| id.starts_with(&format!("{suite}/")))
    {
        if !ran.contains(id) {
            problems.push(format!("{id} is listed but was not found"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("{suite}: all {listed} listed tests pass");
}

#[test]
fn node_suite() {
    check_suite("node", Backend::Interp, OptLevel::O0);
}

#[test]
fn pytorch_converted_suite() {
    check_suite("pytorch-converted", Backend::Interp, OptLevel::O0);
}

#[test]
fn pytorch_operator_suite() {
    check_suite("pytorch-operator", Backend::Interp, OptLevel::O0);
}

#[test]
fn simple_suite() {
    check_suite("simple", Backend::Interp, OptLevel::O0);
}

/// Every listed test also passes after the -O2 pipeline.
#[test]
fn node_suite_at_o2() {
    check_suite("node", Backend::Interp, OptLevel::O2);
}

#[test]
fn pytorch_suites_at_o2() {
    check_suite("pytorch-converted", Backend::Interp, OptLevel::O2);
    check_suite("pytorch-operator", Backend::Interp, OptLevel::O2);
    check_suite("simple", Backend::Interp, OptLevel::O2);
}

/// The C column: the same suites through generated C (compiled with
/// `-Werror -pedantic`), at -O0 and at -O2.
#[test]
fn c_node_suite() {
    check_suite("node", Backend::C, OptLevel::O0);
}

#[test]
fn c_node_suite_at_o2() {
    check_suite("node", Backend::C, OptLevel::O2);
}

#[test]
fn c_pytorch_and_simple_suites() {
    for opt in [OptLevel::O0, OptLevel::O2] {
        check_suite("pytorch-converted", Backend::C, opt);
        check_suite("pytorch-operator", Backend::C, opt);
        check_suite("simple", Backend::C, opt);
    }
}

/// The native column: the same suites through Cranelift (JIT), at -O0 and
/// at -O2.
#[test]
fn native_node_suite() {
    check_suite("node", Backend::Native, OptLevel::O0);
}

#[test]
fn native_node_suite_at_o2() {
    check_suite("node", Backend::Native, OptLevel::O2);
}

#[test]
fn native_pytorch_and_simple_suites() {
    for opt in [OptLevel::O0, OptLevel::O2] {
        check_suite("pytorch-converted", Backend::Native, opt);
        check_suite("pytorch-operator", Backend::Native, opt);
        check_suite("simple", Backend::Native, opt);
    }
}

/// Every test that passes in the interpreter passes on `backend`, or is
/// listed in `<backend>-differences.txt` with the reason.
fn column_covers_the_interpreter(backend: Backend) {
    let interp = read_list(&expected_list_path(Backend::Interp));
    let listed = read_list(&expected_list_path(backend));
    let diff_path =
        expected_list_path(backend).with_file_name(format!("{}-differences.txt", backend.name()));
    let text = std::fs::read_to_string(&diff_path).unwrap_or_default();
    let mut explained = std::collections::BTreeSet::new();
    for l in text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
    {
        let (id, reason) = l.split_once('#').unwrap_or((l, ""));
        assert!(
            !reason.trim().is_empty(),
            "{}: `{l}` has no reason",
            diff_path.display()
        );
        explained.insert(id.trim().to_string());
    }
    let missing: Vec<&String> = interp
        .iter()
        .filter(|id| !listed.contains(*id) && !explained.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "pass in the interpreter, not on {}, no reason given: {missing:?}",
        backend.name()
    );
}

#[test]
fn c_column_covers_the_interpreter() {
    column_covers_the_interpreter(Backend::C);
}

#[test]
fn native_column_covers_the_interpreter() {
    column_covers_the_interpreter(Backend::Native);
}

/// The pass list is the contract; keep it from shrinking below the goals.
#[test]
fn pass_list_meets_the_goals() {
    let l = read_list(&expected_list_path(Backend::Interp));
    let count = |p: &str| l.iter().filter(|id| id.starts_with(p)).count();
    assert!(
        count("node/") >= 450,
        "only {} node tests listed",
        count("node/")
    );
    assert_eq!(count("pytorch-converted/"), 82);
}
