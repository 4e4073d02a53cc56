//! The pass manager: the registry of named passes, the pipeline of each
//! optimization level (plain ordered lists, all in this file), and the
//! driver loop with verification, dumps after passes, early stop and timing.

use std::time::{Duration, Instant};

use nnc_ir::Graph;

use crate::OptLevel;
use crate::basic::{Cse, DeadCode, FoldConstants, RemoveIdentity};
use crate::egraph::EgraphPass;
use crate::egraph::rules::Group;
use crate::pass::{EgraphLimits, Pass, PassCx, PassError, Result};
use crate::prune::{Magnitude, Method, PruneDead, PruneReport, PruneSpec, Structured};
use nnc_ir::program::Target;

/// Every pass name, in the order `--help` lists them.
pub const PASS_NAMES: [&str; 11] = [
    "fold-constants",
    "remove-identity",
    "cse",
    "dce",
    "prune-dead",
    "l1-filter",
    "slimming",
    "magnitude",
    "egraph",
    "egraph-cleanup",
    "egraph-fuse",
];

/// Instantiates a pass by name.
pub fn make_pass(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "fold-constants" => Box::new(FoldConstants),
        "remove-identity" => Box::new(RemoveIdentity),
        "cse" => Box::new(Cse),
        "dce" => Box::new(DeadCode),
        "prune-dead" => Box::new(PruneDead),
        "l1-filter" => Box::new(Structured(Method::L1Filter)),
        "slimming" => Box::new(Structured(Method::Slimming)),
        "magnitude" => Box::new(Magnitude),
        "egraph" => Box::new(EgraphPass::all()),
        "egraph-cleanup" => Box::new(EgraphPass::with_groups(
            "egraph-cleanup",
            &[Group::Cleanup, Group::Layout],
        )),
        "egraph-fuse" => Box::new(EgraphPass::with_groups(
            "egraph-fuse",
            &[Group::Cleanup, Group::BatchNorm, Group::Fusion, Group::Pad],
        )),
        _ => return None,
    })
}

/// The pipeline of an optimization level.
pub fn pipeline(level: OptLevel) -> Vec<&'static str> {
    match level {
        OptLevel::O0 => vec![],
        OptLevel::O1 => vec!["fold-constants", "remove-identity", "cse", "dce"],
        OptLevel::O2 | OptLevel::Os => vec![
            "fold-constants",
            "remove-identity",
            "prune-dead",
            "egraph",
            "dce",
        ],
    }
}

/// The pipeline of a level with a `--prune` method: the pruning pass runs
/// on the graph as imported (after constant folding, before the e-graph
/// folds BatchNorm and rewrites QDQ patterns into integer ops).
pub fn pipeline_with(level: OptLevel, prune: Option<&PruneSpec>) -> Vec<&'static str> {
    let mut p = pipeline(level);
    if let Some(s) = prune {
        let at = p
            .iter()
            .position(|n| !matches!(*n, "fold-constants" | "remove-identity"))
            .unwrap_or(p.len());
        p.insert(at, s.method.name());
    }
    p
}

/// Which passes to print the graph after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrintAfter {
    #[default]
    Never,
    All,
    Passes(Vec<String>),
}

/// How to run a pipeline.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// A custom pass list instead of the level's pipeline (`--passes`).
    pub passes: Option<Vec<String>>,
    pub print_after: PrintAfter,
    /// Stop after this pass (`--stop-after`).
    pub stop_after: Option<String>,
    /// Verify after every pass even in release builds (`--verify`).
    pub verify: bool,
    /// What the code is for: a microcontroller target (and `-Os`) makes
    /// extraction count memory.
    pub target: Target,
    pub limits: EgraphLimits,
    /// `--prune`: a pruning pass added to the level's pipeline (or the
    /// ratio of the one named in `passes`).
    pub prune: Option<PruneSpec>,
    /// Which convolutions become Winograd convolutions (`--winograd`).
    pub winograd: crate::pass::WinogradMode,
}

/// What happened in one pass.
#[derive(Clone, Debug)]
pub struct PassRecord {
    pub name: &'static str,
    pub changed: bool,
    pub time: Duration,
    /// Compute nodes after the pass.
    pub nodes: usize,
    /// The caller should print the graph (`--print-after`).
    pub print: bool,
}

/// The outcome of a pipeline run.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    pub records: Vec<PassRecord>,
    pub egraph_reports: Vec<String>,
    /// What the pruning passes removed.
    pub prune_reports: Vec<PruneReport>,
}

impl PipelineReport {
    /// `--time-passes` table.
    pub fn timing_table(&self) -> String {
        let mut s = String::from("pass               time (ms)  changed  nodes\n");
        let mut total = 0.0;
        for r in &self.records {
            let ms = r.time.as_secs_f64() * 1e3;
            total += ms;
            s.push_str(&format!(
                "{:<18} {:>9.3}  {:<7}  {}\n",
                r.name,
                ms,
                if r.changed { "yes" } else { "no" },
                r.nodes
            ));
        }
        s.push_str(&format!("{:<18} {:>9.3}\n", "total", total));
        s
    }
}

fn compute_nodes(g: &Graph) -> usize {
    nnc_ir::stats::stats(g).nodes
}

/// The pass names a run would execute, after validating every name given.
pub fn resolve(level: OptLevel, opts: &PipelineOptions) -> Result<Vec<String>> {
    let unknown = |name: &str| PassError::UnknownPass {
        name: name.to_string(),
        known: PASS_NAMES.join(", "),
    };
    let list: Vec<String> = match &opts.passes {
        Some(p) => p.clone(),
        None => pipeline_with(level, opts.prune.as_ref())
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if let Some(s) = &opts.prune
        && !list.iter().any(|p| p == s.method.name())
    {
        return Err(PassError::Failed {
            pass: s.method.name().to_string(),
            msg: "--prune names a method that --passes does not run".into(),
        });
    }
    for p in &list {
        if make_pass(p).is_none() {
            return Err(unknown(p));
        }
    }
    let named = |p: &String| -> Result<()> {
        if make_pass(p).is_none() {
            return Err(unknown(p));
        }
        if !list.contains(p) {
            return Err(PassError::Failed {
                pass: p.clone(),
                msg: format!(
                    "not in this pipeline ({})",
                    if list.is_empty() {
                        "empty".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            });
        }
        Ok(())
    };
    if let Some(s) = &opts.stop_after {
        named(s)?;
    }
    if let PrintAfter::Passes(ps) = &opts.print_after {
        for p in ps {
            named(p)?;
        }
    }
    Ok(list)
}

/// Runs the pipeline of `level` (or the custom list) on `g`. `on_pass` is
/// called after each pass with its record and the graph, so the caller
/// can print dumps as they happen.
pub fn run_pipeline(
    g: &mut Graph,
    level: OptLevel,
    opts: &PipelineOptions,
    mut on_pass: impl FnMut(&PassRecord, &Graph),
) -> Result<PipelineReport> {
    let list = resolve(level, opts)?;
    let mut cx = PassCx {
        target: opts.target.clone(),
        memory_cost: level == OptLevel::Os || opts.target.is_mcu(),
        egraph_limits: opts.limits,
        egraph_reports: vec![],
        prune: opts.prune.clone(),
        prune_reports: vec![],
        winograd: opts.winograd,
    };
    let verify = opts.verify || cfg!(debug_assertions);
    let mut report = PipelineReport::default();
    for name in &list {
        let mut pass = make_pass(name).expect("resolved");
        let t0 = Instant::now();
        let changed = pass.run(g, &mut cx)?;
        let time = t0.elapsed();
        if verify {
            g.verify().map_err(|source| PassError::Verify {
                pass: name.clone(),
                source,
            })?;
        }
        let print = match &opts.print_after {
            PrintAfter::Never => false,
            PrintAfter::All => true,
            PrintAfter::Passes(ps) => ps.contains(name),
        };
        let rec = PassRecord {
            name: pass.name(),
            changed,
            time,
            nodes: compute_nodes(g),
            print,
        };
        log::debug!("pass {} changed={} in {:?}", rec.name, changed, time);
        on_pass(&rec, g);
        report.records.push(rec);
        if opts.stop_after.as_deref() == Some(name.as_str()) {
            break;
        }
    }
    report.egraph_reports = cx.egraph_reports;
    report.prune_reports = cx.prune_reports;
    Ok(report)
}
