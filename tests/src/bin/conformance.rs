//! The conformance runner: runs the ONNX backend test suites through nnc
//! and prints, per suite, passed / failed / unsupported / panicked.
//!
//! ```text
//! cargo run --release -p nnc-tests --bin conformance -- [--backend interp]
//!     [--suite node]... [--filter abs] [-O 0|1|2|s] [--failures] [--update]
//! ```
//!
//! `--update` rewrites the checked-in list of tests that must pass
//! (`tests/conformance/<backend>.txt`) from this run.

use std::collections::BTreeSet;
use std::process::ExitCode;

use nnc::driver::Backend;
use nnc_passes::OptLevel;
use nnc_tests::conformance::{
    Outcome, SUITES, expected_list_path, read_list, run_suite, table, write_list,
};

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
    // Panics are caught and reported per test; keep stderr readable.
    std::panic::set_hook(Box::new(|_| {}));
    let mut results = Vec::new();
    for s in &suites {
        results.extend(run_suite(s, backend, opt, &filter));
    }
    print!("{}", table(&results, backend));
    let expected = read_list(&expected_list_path(backend));
    let mut regressions = Vec::new();
    for r in &results {
        let listed = expected.contains(&r.id);
        let show = match &r.outcome {
            Outcome::Pass => false,
            Outcome::Panic(_) => true,
            _ => show_failures || listed,
        };
        if show {
            println!("{:<60} {:?}", r.id, r.outcome);
        }
        if listed && !r.outcome.is_pass() {
            regressions.push(r.id.clone());
        }
    }
    if update {
        if !filter.is_empty() || suites.len() != SUITES.len() {
            eprintln!("--update needs a full run (no --suite or --filter)");
            return ExitCode::from(2);
        }
        let pass: BTreeSet<String> = results
            .iter()
            .filter(|r| r.outcome.is_pass())
            .map(|r| r.id.clone())
            .collect();
        let path = expected_list_path(backend);
        let header = format!(
            "ONNX backend tests that must pass on the `{}` backend.\nWritten by `conformance --backend {} --update`; CI fails if one of them stops passing.",
            backend.name(),
            backend.name()
        );
        if let Err(e) = write_list(&path, &header, &pass) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("wrote {} tests to {}", pass.len(), path.display());
    }
    let panics = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Panic(_)))
        .count();
    if !regressions.is_empty() || panics > 0 {
        eprintln!(
            "{} listed test(s) no longer pass, {panics} panic(s)",
            regressions.len()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
