//! The e-graph pass: the graph goes into an e-graph, rule groups saturate
//! it within explicit limits, and the cheapest equivalent graph for the
//! target is extracted. CSE, constant folding and dead-code removal come
//! with the representation: identical nodes share a class, classes with a
//! known value get a free constant leaf, and extraction only rebuilds what
//! the outputs need.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod memextract;
pub mod rules;

use std::time::Instant;

use egg::Runner;
use nnc_ir::Graph;

use crate::pass::{Pass, PassCx, Result};
use rules::Group;

/// An e-graph pass over some rule groups.
#[derive(Debug)]
pub struct EgraphPass {
    name: &'static str,
    groups: Vec<Group>,
}

impl EgraphPass {
    /// Every rule group: the `-O2` / `-Os` pass.
    pub fn all() -> Self {
        Self::with_groups("egraph", &Group::ALL)
    }

    /// A pass over some groups, registered under `name`.
    pub fn with_groups(name: &'static str, groups: &[Group]) -> Self {
        EgraphPass {
            name,
            groups: groups.to_vec(),
        }
    }
}

/// Saturation statistics of one run, for `--egraph-report` and benchmarks.
#[derive(Clone, Debug, PartialEq)]
pub struct EgraphStats {
    pub stop_reason: String,
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    pub saturate_ms: f64,
    pub extract_ms: f64,
}

/// Runs the pass on `g` and returns the extracted graph.
pub fn run_egraph(pass: &mut EgraphPass, g: &Graph, cx: &mut PassCx) -> Result<Graph> {
    Ok(run_egraph_with_stats(pass, g, cx)?.0)
}

/// Like [`run_egraph`], also returning the statistics.
pub fn run_egraph_with_stats(
    pass: &mut EgraphPass,
    g: &Graph,
    cx: &mut PassCx,
) -> Result<(Graph, EgraphStats)> {
    let t0 = Instant::now();
    let mut built = convert::to_egraph(g)?;
    built.egraph.analysis.winograd = cx.winograd;
    built.egraph.analysis.l2_bytes = if cx.target.is_mcu() {
        0
    } else {
        cx.target.l2_bytes
    };
    let rules = rules::rules(&pass.groups);
    let lim = cx.egraph_limits;
    let left = lim.total.saturating_sub(t0.elapsed());
    let runner = Runner::default()
        .with_egraph(built.egraph)
        .with_iter_limit(lim.iterations)
        .with_node_limit(lim.nodes)
        .with_time_limit(lim.time.min(left))
        .run(&rules);
    let saturate_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let stop = runner
        .stop_reason
        .as_ref()
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|| "none".into());
    let out = convert::from_egraph(&runner.egraph, &built.roots, g, cx.memory_cost)?;
    let extract_ms = t1.elapsed().as_secs_f64() * 1e3;
    if t0.elapsed() > lim.total {
        log::warn!(
            "{}: took {:.1} s, over its {:.1} s budget (saturation was cut short)",
            pass.name,
            t0.elapsed().as_secs_f64(),
            lim.total.as_secs_f64()
        );
    }
    let stats = EgraphStats {
        stop_reason: stop,
        iterations: runner.iterations.len(),
        nodes: runner.egraph.total_number_of_nodes(),
        classes: runner.egraph.number_of_classes(),
        saturate_ms,
        extract_ms,
    };
    log::info!(
        "{}: stopped after {} iterations ({}), {} nodes in {} classes, saturation {:.1} ms, extraction {:.1} ms",
        pass.name,
        stats.iterations,
        stats.stop_reason,
        stats.nodes,
        stats.classes,
        saturate_ms,
        extract_ms
    );
    cx.egraph_reports.push(format!(
        "e-graph pass `{}` ({} rules)\n{}  Extraction time: {:.4} s\n",
        pass.name,
        rules.len(),
        runner.report(),
        extract_ms / 1e3
    ));
    Ok((out, stats))
}

impl Pass for EgraphPass {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
        let out = run_egraph(self, g, cx)?;
        let changed = nnc_ir::print(&out) != nnc_ir::print(g);
        *g = out;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pass::EgraphLimits;

    #[test]
    fn the_total_budget_caps_saturation() {
        let g = nnc_ir::parse(
            "graph @t(v0 \"x\": f32[4]) -> (\"y\": f32[4]) {\n    v1 = relu v0 : f32[4]\n    v2 = relu v1 : f32[4]\n    return v2\n}",
        )
        .unwrap();
        let mut cx = PassCx {
            egraph_limits: EgraphLimits {
                total: Duration::ZERO,
                ..Default::default()
            },
            ..Default::default()
        };
        let (out, stats) = run_egraph_with_stats(&mut EgraphPass::all(), &g, &mut cx).unwrap();
        assert!(stats.stop_reason.contains("TimeLimit"), "{stats:?}");
        assert_eq!(nnc_ir::print(&out), nnc_ir::print(&g));
        // With time, relu(relu(x)) becomes relu(x).
        let mut cx = PassCx::default();
        let (out, _) = run_egraph_with_stats(&mut EgraphPass::all(), &g, &mut cx).unwrap();
        assert_eq!(
            nnc_ir::stats::stats(&out).nodes,
            2,
            "{}",
            nnc_ir::print(&out)
        );
    }

    /// A long chain extracts in one pass over the e-graph (egg's extractor
    /// took minutes on 20,000 nodes); the result is the chain itself.
    #[test]
    fn long_chains_extract() {
        let mut text = String::from("graph @t(v0 \"x\": f32[4]) -> (\"y\": f32[4]) {\n");
        let n = 3000;
        for i in 1..=n {
            let op = ["exp", "tanh", "sigmoid"][i % 3];
            text.push_str(&format!("    v{i} = {op} v{} : f32[4]\n", i - 1));
        }
        text.push_str(&format!("    return v{n}\n}}\n"));
        let g = nnc_ir::parse(&text).unwrap();
        let mut cx = PassCx::default();
        let (out, _) = run_egraph_with_stats(&mut EgraphPass::all(), &g, &mut cx).unwrap();
        let ops = |g: &Graph| format!("{:?}", nnc_ir::stats::stats(g).ops);
        assert_eq!(ops(&out), ops(&g));
    }
}
