//! Memory-aware extraction: channel split chosen by peak memory.
//!
//! Peak memory is not a sum over nodes, so no cost model can say what a
//! sliced alternative saves; the planner is asked. The graph goes into an
//! e-graph, the channel-split rules ([`super::rules::chsplit`]) fire once,
//! the usual cost extraction picks every class's node (never a sliced
//! one), and then, for the classes that have sliced alternatives, widest
//! intermediate first, each alternative is tried in turn: the graph with it
//! is rebuilt and planned ([`crate::lower::plan::memory`]: arena and peak,
//! no lowering), and the alternative with the smallest arena is kept when
//! it lowers the arena of the choices so far (fewer slices among equals).
//! The planner's depth-first schedule runs the k slices one after another
//! (each slice's producer, local ops and consumer part before the next
//! slice's producer), so one slice of the wide intermediate is live at a
//! time.

use std::collections::HashMap;
use std::time::Instant;

use egg::{Id, Language, Runner};
use nnc_ir::Graph;

use super::convert::{build, to_egraph};
use super::cost::CostModel;
use super::extract::Extracted;
use super::lang::TLang;
use super::rules::chsplit::SplitKind;
use super::rules::{Group, rules};
use crate::pass::Result;

/// A chain that was split.
#[derive(Clone, Debug, PartialEq)]
pub struct ChosenSplit {
    /// Source names of the chain's ops, producer first (and the consumer
    /// last, for accumulation).
    pub names: Vec<String>,
    pub kind: SplitKind,
    pub k: usize,
    /// The graph's arena (as planned, before partial execution) after
    /// this split.
    pub arena_after: usize,
}

/// What channel split did to a graph.
#[derive(Clone, Debug)]
pub struct ChannelSplit {
    /// The graph with the chosen splits (the input graph when none).
    pub graph: Graph,
    pub splits: Vec<ChosenSplit>,
    /// Sliced alternatives the rules offered.
    pub candidates: usize,
    /// The planned arena without and with the splits.
    pub arena_before: usize,
    pub arena_after: usize,
    pub millis: f64,
}

/// `n` with canonical children.
fn canon(eg: &super::rules::EG, n: &TLang) -> TLang {
    n.clone().map_children(|c| eg.find(c))
}

/// Channel-splits `g` where that lowers its planned arena (see the module
/// documentation). `memory_cost` is the cost model's (microcontroller
/// targets).
pub fn channel_split(g: &Graph, memory_cost: bool) -> Result<ChannelSplit> {
    let t0 = Instant::now();
    let built = to_egraph(g)?;
    let runner = Runner::default()
        .with_egraph(built.egraph)
        .with_iter_limit(1)
        .with_node_limit(500_000)
        .with_time_limit(std::time::Duration::from_secs(30))
        .run(&rules(&[Group::ChSplit]));
    let eg = &runner.egraph;
    let roots: Vec<Id> = built.roots.iter().map(|&r| eg.find(r)).collect();
    let mut ex = Extracted::new(eg, CostModel::new(eg, memory_cost));
    // The alternatives per class, and the class's unsplit node.
    let mut by_class: HashMap<Id, Vec<usize>> = HashMap::new();
    let alts: Vec<TLang> = eg
        .analysis
        .splits
        .iter()
        .map(|s| canon(eg, &s.node))
        .collect();
    for (i, s) in eg.analysis.splits.iter().enumerate() {
        by_class.entry(eg.find(s.class)).or_default().push(i);
    }
    let mut classes: Vec<Id> = by_class.keys().copied().collect();
    for &c in &classes {
        // The cost extraction must start unsplit.
        let is_alt = |n: &TLang| alts.contains(&canon(eg, n));
        if ex.node(c).is_some_and(is_alt)
            && let Some(plain) = eg[c].nodes.iter().find(|n| !is_alt(n)).cloned()
        {
            ex.choose(c, plain);
        }
    }
    let arena_of = |ex: &Extracted<'_>| -> Result<usize> {
        let q = build(eg, ex, &roots, g)?;
        Ok(crate::lower::plan::memory(&q)?.arena_bytes)
    };
    let before = arena_of(&ex)?;
    let mut arena = before;
    let bytes = |c: &Id| {
        by_class[c]
            .iter()
            .map(|&i| eg.analysis.splits[i].bytes)
            .max()
            .unwrap_or(0)
    };
    classes.sort_by_key(|c| (std::cmp::Reverse(bytes(c)), *c));
    let mut splits = Vec::new();
    for c in classes {
        let Some(old) = ex.node(c).cloned() else {
            continue;
        };
        let mut best: Option<(usize, usize, usize)> = None; // (arena, k, index)
        for &i in &by_class[&c] {
            let s = &eg.analysis.splits[i];
            ex.choose(c, alts[i].clone());
            let a = arena_of(&ex)?;
            if best.is_none_or(|b| (a, s.k) < (b.0, b.1)) {
                best = Some((a, s.k, i));
            }
        }
        match best {
            Some((a, _, i)) if a < arena => {
                ex.choose(c, alts[i].clone());
                arena = a;
                let s = &eg.analysis.splits[i];
                splits.push(ChosenSplit {
                    names: s.names.clone(),
                    kind: s.kind,
                    k: s.k,
                    arena_after: a,
                });
            }
            _ => ex.choose(c, old),
        }
    }
    let graph = if splits.is_empty() {
        g.clone()
    } else {
        build(eg, &ex, &roots, g)?
    };
    Ok(ChannelSplit {
        graph,
        splits,
        candidates: eg.analysis.splits.len(),
        arena_before: before,
        arena_after: arena,
        millis: t0.elapsed().as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wide intermediate between a narrow input and a narrow output:
    /// accumulation over slices lowers the planned arena, and the split
    /// graph computes the same.
    #[test]
    fn a_wide_intermediate_is_split() {
        let c = 32;
        let w1: Vec<String> = (0..c * 2).map(|i| format!("{}", i as f32 * 0.01)).collect();
        let dw: Vec<String> = (0..c * 9)
            .map(|i| format!("{}", (i % 11) as f32 * 0.1 - 0.5))
            .collect();
        let w2: Vec<String> = (0..2 * c)
            .map(|i| format!("{}", i as f32 * 0.02 - 0.3))
            .collect();
        let src = format!(
            "graph @t(v0 \"x\": f32[1,2,8,8]) -> (\"y\": f32[1,2,8,8]) {{
    c1 = const f32[{c},2,1,1] [{}]
    c2 = const f32[{c},1,3,3] [{}]
    c3 = const f32[2,{c},1,1] [{}]
    c4 = const f32[2] [0.5,-0.5]
    v5 = conv v0, c1 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,{c},8,8]
    v6 = conv v5, c2 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1] group={c}}} : f32[1,{c},8,8]
    v7 = relu v6 : f32[1,{c},8,8]
    v8 = conv v7, c3, c4 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,2,8,8]
    return v8
}}",
            w1.join(","),
            dw.join(","),
            w2.join(",")
        );
        let g = nnc_ir::parse(&src).unwrap();
        let cs = channel_split(&g, true).unwrap();
        assert!(cs.arena_after < cs.arena_before, "{cs:?}");
        assert_eq!(cs.splits.len(), 1, "{:?}", cs.splits);
        assert_eq!(cs.splits[0].kind, SplitKind::Accumulate);
        assert_eq!(cs.splits[0].k, 8, "{}", nnc_ir::print(&cs.graph));
        cs.graph.verify().unwrap();
        crate::check::assert_same_outputs(&g, &cs.graph, 3, 1e-4, 1e-5);
        // The same multiply-accumulates, plus k - 1 additions of the
        // consumer's output.
        assert_eq!(
            nnc_ir::stats::stats(&cs.graph).macs,
            nnc_ir::stats::stats(&g).macs + 7 * 2 * 8 * 8
        );
    }
}
