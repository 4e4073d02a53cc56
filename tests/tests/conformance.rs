//! The ONNX backend suites through import and every backend at -O0 and
//! -O2, audited against the checked-in expectations (`tests/conformance/`,
//! see `nnc_tests::expect`): every listed test passes, every test that
//! passes is listed, every other test is unsupported (as before) or has a
//! written reason, and nothing panics.

use std::collections::BTreeSet;

use nnc::driver::Backend;
use nnc_passes::OptLevel;
use nnc_tests::conformance::{SUITES, cases, run_suite, table};
use nnc_tests::expect::{self, Expectations};
use nnc_tests::shared::{onnx_tests_dir, require};

fn expectations(backend: Backend) -> Expectations {
    Expectations::load(backend).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

fn check_suite(suite: &str, backend: Backend, opt: OptLevel) {
    require(&onnx_tests_dir().join(suite));
    let e = expectations(backend);
    let results = run_suite(suite, backend, opt, "");
    println!("{}", table(&results, backend));
    let problems = expect::audit(&results, &e);
    assert!(
        problems.is_empty(),
        "{suite} on {} at {opt}: {} problem(s):\n{}",
        backend.name(),
        problems.len(),
        problems.join("\n")
    );
    let listed = e
        .pass
        .iter()
        .filter(|id| id.starts_with(&format!("{suite}/")))
        .count();
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
    let interp = expectations(Backend::Interp);
    let e = expectations(backend);
    let missing: Vec<&String> = interp
        .pass
        .iter()
        .filter(|id| !e.pass.contains(*id) && !e.reasons.contains_key(*id))
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

/// The expectation files agree with each other and with the suites: they
/// parse, every reason is written down, no test is both listed and
/// excused, and every test they name exists.
#[test]
fn expectation_files_are_consistent() {
    let mut all = BTreeSet::new();
    for suite in SUITES {
        require(&onnx_tests_dir().join(suite));
        for c in cases(suite) {
            let name = c.file_name().unwrap().to_string_lossy().to_string();
            all.insert(format!("{suite}/{name}"));
        }
    }
    let mut problems = Vec::new();
    for backend in Backend::ALL {
        let e = expectations(backend);
        problems.extend(expect::lint(&e));
        for id in e.named() {
            if !all.contains(id) {
                problems.push(format!(
                    "{id} ({} expectations) is not a test of the suites",
                    backend.name()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
