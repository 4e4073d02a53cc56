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
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
