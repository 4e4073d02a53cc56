//! The `nnc` command line: a thin layer over the `nnc` library. Errors are
//! printed with their cause chain and exit with status 1 (usage errors: 2).

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let args = cli::Cli::parse();
    let r = cli::run(args).and_then(|code| {
        // Output is buffered: a full disk may only show here.
        std::io::stdout().flush()?;
        Ok(code)
    });
    match r {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
            // The reader went away (`nnc dump M | head`): stop quietly with
            // the status a shell gives a program SIGPIPE ended.
            Some(std::io::ErrorKind::BrokenPipe) => ExitCode::from(141),
            Some(_) if e.chain().count() == 1 => {
                eprintln!("error: cannot write to standard output: {e}");
                ExitCode::from(1)
            }
            _ => {
                eprintln!("error: {}", message(&e));
                ExitCode::from(1)
            }
        },
    }
}

/// An error with its causes, each said once: a message that already quotes
/// its cause (`cannot read `x`: No such file or directory (os error 2)`)
/// is not followed by the cause again.
fn message(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if c.is_empty() || s.contains(&c) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&c);
    }
    s
}
