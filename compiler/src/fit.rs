//! Pruning to fit an SRAM budget (`--sram-budget B --prune-to-fit`):
//! channel split first (the lowering partitions as far as the budget
//! needs), then, while the plan does not fit, prune the least important
//! channels at the memory bottleneck (`nnc_passes::prune::fit`), optimize
//! and lower again. Pruning edits the graph as imported (float or QDQ);
//! each round runs the optimization pipeline on it again. The deviation
//! is not measured inside the loop: the caller measures it once, at the
//! end ([`crate::prune::cost`]).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use nnc_ir::Graph;
use nnc_ir::program::{Program, Target};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_passes::prune::{self, LayerPrune, Method, channels::Channels, fit::Live};

use crate::driver::{self, LoadOptions, Lowering};

/// Rounds before giving up (each one removes at least one channel, and
/// usually many: as many as the bytes missing call for).
pub const MAX_ROUNDS: usize = 200;

/// What `--prune-to-fit` did.
#[derive(Clone, Debug, PartialEq)]
pub struct FitReport {
    pub method: Method,
    pub budget: usize,
    /// The arena with channel split only (no pruning).
    pub arena_before: usize,
    pub arena_after: usize,
    /// Prune-and-replan rounds.
    pub rounds: usize,
    /// Per layer, its channels before the first round and after the last.
    pub layers: Vec<LayerPrune>,
    pub channels_removed: usize,
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "prune-to-fit ({}): SRAM budget {} B; arena {} B with channel split only -> {} B \
             after pruning; {} channel(s) removed in {} round(s)",
            self.method.name(),
            self.budget,
            self.arena_before,
            self.arena_after,
            self.channels_removed,
            self.rounds
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "  {}: channels {} -> {} (-{})",
                l.layer,
                l.before,
                l.after,
                l.before - l.after
            )?;
        }
        Ok(())
    }
}

impl FitReport {
    /// The report as JSON (for `nnc info --json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method.name(),
            "budget_bytes": self.budget,
            "arena_before_bytes": self.arena_before,
            "arena_after_bytes": self.arena_after,
            "rounds": self.rounds,
            "channels_removed": self.channels_removed,
            "layers": self.layers.iter().map(|l| serde_json::json!({
                "layer": l.layer,
                "before": l.before,
                "after": l.after,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The result of the loop.
#[derive(Clone, Debug)]
pub struct Fitted {
    /// The pruned graph, as imported (before optimization).
    pub imported: Graph,
    /// The pruned graph optimized as `opts` says: what the command compiles.
    pub optimized: Graph,
    /// It lowered within the budget.
    pub program: Program,
    pub report: FitReport,
    /// The graph before pruning, optimized as `opts` says, and its figures
    /// lowered with the budget: the baseline of the pruning cost.
    pub original: Graph,
    pub before: crate::prune::Figures,
}

/// Prunes `imported` (a graph as imported) until, optimized with `opts`
/// (whose pipeline must not prune again) and lowered for `target` as `how`
/// says with the budget, its arena fits `budget`; ranks channels by
/// `method`. Fails with the reason (the bottleneck, its tensors, the bytes
/// missing) when no channel at the bottleneck can go without removing a
/// whole layer.
pub fn fit(
    imported: &Graph,
    opts: &LoadOptions,
    target: &Target,
    how: &Lowering,
    budget: usize,
    method: Method,
) -> Result<Fitted> {
    if method == Method::Magnitude {
        bail!(
            "--prune-to-fit removes channels: rank them with l1-filter or slimming (magnitude \
             pruning zeroes weights and saves no SRAM)"
        );
    }
    let how = Lowering {
        kernels: how.kernels.clone(),
        memory: MemoryGoal::Budget(budget),
        max_recompute: how.max_recompute,
        channel_split: how.channel_split,
    };
    let mut g = imported.clone();
    // Layer name -> (channels at the start, channels now).
    let mut layers: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut removed = 0usize;
    let mut original: Option<(Graph, crate::prune::Figures)> = None;
    for round in 0.. {
        let (opt, _) = driver::optimize(g.clone(), opts, |_, _| {})?;
        let p = how.lower(&opt, "model", target).context("lowering")?;
        if original.is_none() {
            original = Some((opt.clone(), crate::prune::figures_of(&opt, &p)));
        }
        let before = original.as_ref().map_or(0, |o| o.1.peak);
        let Some(over) = nnc_passes::lower::plan::over_budget(&p, budget) else {
            log::info!(
                "prune-to-fit: fits after {round} round(s): {} B",
                p.arena_bytes
            );
            let (original, figures) = original.expect("set in round 0");
            return Ok(Fitted {
                original,
                before: figures,
                imported: g,
                optimized: opt,
                report: FitReport {
                    method,
                    budget,
                    arena_before: before,
                    arena_after: p.arena_bytes,
                    rounds: round,
                    layers: layers
                        .into_iter()
                        .filter(|(_, (a, b))| a != b)
                        .map(|(layer, (before, after))| LayerPrune {
                            layer,
                            before,
                            after,
                        })
                        .collect(),
                    channels_removed: removed,
                },
                program: p,
            });
        };
        if round == MAX_ROUNDS {
            bail!("{over}; --prune-to-fit gave up after {MAX_ROUNDS} rounds");
        }
        let missing = p.arena_bytes - budget;
        let live: Vec<Live> = p
            .stats
            .live_at(p.stats.peak_step)
            .into_iter()
            .map(|b| Live {
                name: b.name.clone(),
                bytes: b.bytes,
            })
            .collect();
        let ch = Channels::analyze(&g)?;
        let pick = prune::fit::choose(&g, &ch, method, &live, missing).map_err(|why| {
            let removed = if removed > 0 {
                format!(" (after removing {removed} channel(s) in {round} round(s))")
            } else {
                String::new()
            };
            anyhow::anyhow!("{over}; --prune-to-fit cannot meet the budget{removed}: {why}")
        })?;
        log::info!(
            "prune-to-fit round {round}: arena {} B, {missing} B missing at step {}; removing {} \
             channel(s), about {} B there",
            p.arena_bytes,
            p.stats.peak_step,
            pick.classes.len(),
            pick.bytes
        );
        let (rep, _) = prune::remove(&mut g, &ch, &pick.classes, "prune-to-fit")?;
        for l in rep.layers {
            let e = layers.entry(l.layer).or_insert((l.before, l.before));
            e.1 = l.after;
        }
        removed += rep.channels_removed;
    }
    unreachable!("the loop returns")
}
