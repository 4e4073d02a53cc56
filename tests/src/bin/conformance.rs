//! The conformance runner: runs the ONNX backend test suites through nnc
//! and prints, per suite, passed / failed / unsupported / panicked.
//!
//! ```text
//! cargo run --release -p nnc-tests --bin conformance -- [--backend interp]
//!     [--suite node]... [--filter abs] [-O 0|1|2|s] [--failures] [--update]
//! ```
//!
//! The run is audited against the checked-in expectations
//! (`tests/conformance/`, see `nnc_tests::expect`), as the conformance
//! test does. `--update` runs every suite at -O0 and -O2 and adds the
//! tests that pass at both to `<backend>.txt`, and drops the tests that are
//! no longer unsupported from `unsupported.txt`; it never takes a test off
//! a pass list (that takes a `removed.txt` line with the reason).

use std::process::ExitCode;

use nnc::driver::Backend;
use nnc_passes::OptLevel;
use nnc_tests::conformance::{Outcome, SUITES, read_list, run_suite, table, write_list};
use nnc_tests::expect::{self, Expectations};

fn main() -> ExitCode {
    let mut backend = Backend::Interp;
    let mut suites: Vec<String> = vec![];
    let mut filter = String::new();
    let mut opt = OptLevel::O0;
    let mut show_failures = false;
    let mut update = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backend" => {
                let b = args.next().unwrap_or_default();
                match Backend::ALL.into_iter().find(|x| x.name() == b) {
                    Some(x) => backend = x,
                    None => {
                        eprintln!("unknown backend `{b}`");
                        return ExitCode::from(2);
                    }
                }
            }
            "--suite" => suites.push(args.next().unwrap_or_default()),
            "--filter" => filter = args.next().unwrap_or_default(),
            "-O" => match args.next().unwrap_or_default().parse() {
                Ok(o) => opt = o,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            },
            "--failures" => show_failures = true,
            "--update" => update = true,
            "-h" | "--help" => {
                println!(
                    "usage: conformance [--backend interp] [--suite NAME]... [--filter TEXT] [-O LEVEL] [--failures] [--update]"
                );
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("unknown argument `{a}`");
                return ExitCode::from(2);
            }
        }
    }
    if suites.is_empty() {
        suites = SUITES.iter().map(|s| s.to_string()).collect();
    }
    if update && (!filter.is_empty() || suites.len() != SUITES.len()) {
        eprintln!("--update needs a full run (no --suite or --filter)");
        return ExitCode::from(2);
    }
    let e = match Expectations::load(backend) {
        Ok(e) => e,
        Err(errs) => {
            eprintln!("{}", errs.join("\n"));
            return ExitCode::from(2);
        }
    };
    // Panics are caught and reported per test; keep stderr readable.
    std::panic::set_hook(Box::new(|_| {}));
    // --update needs every level the tests run at.
    let levels = if update {
        vec![OptLevel::O0, OptLevel::O2]
    } else {
        vec![opt]
    };
    let mut runs = Vec::new();
    let mut problems = expect::lint(&e);
    for &level in &levels {
        let mut results = Vec::new();
        for s in &suites {
            results.extend(run_suite(s, backend, level, &filter));
        }
        println!("-{level}:");
        print!("{}", table(&results, backend));
        for r in &results {
            let shown = match &r.outcome {
                Outcome::Pass => false,
                Outcome::Panic(_) => true,
                _ => show_failures || e.pass.contains(&r.id),
            };
            if shown {
                println!("{:<60} {:?}", r.id, r.outcome);
            }
        }
        problems.extend(
            expect::audit(&results, &e)
                .into_iter()
                .map(|p| format!("{level}: {p}")),
        );
        runs.push(results);
    }
    if update {
        let pass = expect::updated_pass(&e.pass, &runs, &e);
        let path = expect::list_path(backend);
        let header = format!(
            "ONNX backend tests that must pass on the `{b}` backend at -O0 and -O2.\n\
             `conformance --backend {b} --update` only adds to this list; a test leaves it\n\
             only with a `{b} suite/test: reason` line in removed.txt (tests/tests/conformance.rs\n\
             checks both).",
            b = backend.name()
        );
        let added = pass.len() - e.pass.len();
        if let Err(err) = write_list(&path, &header, pass.iter().map(|id| (id, None))) {
            eprintln!("cannot write {}: {err}", path.display());
            return ExitCode::from(1);
        }
        println!("{}: {} tests ({added} added)", path.display(), pass.len());
        let unsupported =
            expect::updated_unsupported(&read_list(&expect::unsupported_path()), &runs);
        let path = expect::unsupported_path();
        let header = "ONNX backend tests nnc reports as unsupported (operators, element types, run-time\n\
                      shape inputs it does not have), with the reason. `conformance --update` only\n\
                      removes from this list: a test that becomes unsupported needs a line in\n\
                      removed.txt.";
        // Messages name data files; keep this machine's paths out.
        let prefix = format!("{}/", nnc_tests::shared::onnx_tests_dir().display());
        let unsupported: Vec<(String, String)> = unsupported
            .into_iter()
            .map(|(id, m)| (id, m.replace(&prefix, "")))
            .collect();
        if let Err(err) = write_list(
            &path,
            header,
            unsupported.iter().map(|(id, m)| (id, Some(m))),
        ) {
            eprintln!("cannot write {}: {err}", path.display());
            return ExitCode::from(1);
        }
        println!("{}: {} tests", path.display(), unsupported.len());
    }
    // Tests added by this update are no longer problems.
    if update {
        let e = Expectations::load(backend).unwrap_or(e);
        problems = expect::lint(&e);
        for (level, results) in levels.iter().zip(&runs) {
            problems.extend(
                expect::audit(results, &e)
                    .into_iter()
                    .map(|p| format!("{level}: {p}")),
            );
        }
    }
    if !problems.is_empty() {
        eprintln!("{} problem(s):\n{}", problems.len(), problems.join("\n"));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
