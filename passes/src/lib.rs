//! nnc-passes: transformations over the graph IR.
//!
//! The pass manager and the pipelines of each optimization level
//! (`manager`), plain graph clean-ups (`basic`), and the e-graph engine
//! with its rewrite rules (`egraph`), pruning (`prune`), and lowering to the program level
//! (`lower`: memory planning and kernel selection). `check` compares graphs
//! with the interpreter. Depends only on `nnc-ir`.

pub mod basic;
pub mod check;
pub mod egraph;
pub mod lower;
pub mod manager;
pub mod pass;
pub mod prune;

pub use manager::{PASS_NAMES, PipelineOptions, PipelineReport, PrintAfter, run_pipeline};
pub use pass::{EgraphLimits, Pass, PassCx, PassError, WinogradMode};

use std::fmt;
use std::str::FromStr;

/// Optimization level, as given by `-O0`, `-O1`, `-O2` or `-Os`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OptLevel {
    /// The graph as imported.
    O0,
    /// Cheap clean-ups.
    O1,
    /// Everything that makes the model faster (the default).
    #[default]
    O2,
    /// Size and memory first.
    Os,
}

impl FromStr for OptLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" => Ok(OptLevel::O0),
            "1" => Ok(OptLevel::O1),
            "2" => Ok(OptLevel::O2),
            "s" => Ok(OptLevel::Os),
            _ => Err(format!(
                "unknown optimization level `-O{s}` (use -O0, -O1, -O2 or -Os)"
            )),
        }
    }
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptLevel::O0 => "-O0",
            OptLevel::O1 => "-O1",
            OptLevel::O2 => "-O2",
            OptLevel::Os => "-Os",
        })
    }
}
