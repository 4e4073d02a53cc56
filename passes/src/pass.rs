//! The pass interface. A pass rewrites a graph in place and says whether it
//! changed anything; its name is also how it is spelled on the command line.

use std::time::Duration;

use nnc_ir::program::Target;
use nnc_ir::{Graph, IrError};
use thiserror::Error;

/// Errors from passes and the pass manager.
#[derive(Debug, Error)]
pub enum PassError {
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("the graph is invalid after pass `{pass}`: {source}")]
    Verify { pass: String, source: IrError },
    #[error("unknown pass `{name}` (passes: {known})")]
    UnknownPass { name: String, known: String },
    #[error("pass `{pass}`: {msg}")]
    Failed { pass: String, msg: String },
}

/// Result alias for passes.
pub type Result<T, E = PassError> = std::result::Result<T, E>;

/// Limits for e-graph saturation. Every run stops at the first one reached
/// and reports which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgraphLimits {
    pub iterations: usize,
    pub nodes: usize,
    /// Saturation time.
    pub time: Duration,
    /// The whole pass: building the e-graph, saturating and extracting.
    /// Saturation gets what building left of it (none: the graph comes back
    /// as it went in, cleaned up by extraction).
    pub total: Duration,
}

impl Default for EgraphLimits {
    fn default() -> Self {
        EgraphLimits {
            iterations: 32,
            nodes: 200_000,
            time: Duration::from_secs(5),
            total: Duration::from_secs(10),
        }
    }
}

/// Context shared by the passes of one pipeline run.
#[derive(Debug, Default)]
pub struct PassCx {
    /// What the code is for.
    pub target: Target,
    /// Extraction also counts the memory of materialized intermediates
    /// (microcontroller targets and `-Os`).
    pub memory_cost: bool,
    pub egraph_limits: EgraphLimits,
    /// Reports of e-graph runs (saturation statistics and stop reason), in order.
    pub egraph_reports: Vec<String>,
    /// What `--prune` asked for (method, ratio, scope, calibration).
    pub prune: Option<crate::prune::PruneSpec>,
    /// Reports of the pruning passes, in order.
    pub prune_reports: Vec<crate::prune::PruneReport>,
    /// Which convolutions become Winograd convolutions.
    pub winograd: WinogradMode,
}

pub use crate::egraph::rules::winograd::WinogradMode;

/// A graph transformation.
pub trait Pass {
    /// The pass name, as used by `--passes` and `--print-after`.
    fn name(&self) -> &'static str;
    /// Rewrites `g`; returns whether anything changed.
    fn run(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<bool>;
}
