//! Partial execution: which chains of a program run streamed, chosen with
//! the memory planner in the loop.
//!
//! Peak memory is not a sum over steps, so no local cost model can say
//! what streaming a chain saves: the search asks the planner. From the
//! unpartitioned program it repeatedly finds the step where the most bytes
//! are live, tries the streamable chains that touch the storage live there
//! (each chain's output written in place over a dying input where that is
//! safe), places each candidate, and keeps the one with the smallest arena
//! (fewest bytes copied among equals), until nothing lowers the peak or a
//! budget is met. Only the arena changes: every candidate computes exactly
//! what the unpartitioned program computes.

use std::collections::BTreeSet;

use nnc_ir::program::{Loc, Program};

use super::edit::Edit;
use super::inplace::{channel_local, inplace_mut};
use super::plan::{measure, peak};
use super::stream::{Streamed, stream_edit, streamable_with};
use crate::pass::Result;

/// How much effort to spend on memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryGoal {
    /// Minimize the arena on microcontrollers; on hosts only elide
    /// concatenations.
    #[default]
    Auto,
    /// Never partition.
    Off,
    /// Make the arena as small as partial execution can.
    Minimize,
    /// The smallest partitioning effort whose arena fits this many bytes.
    Budget(usize),
}

/// One streamed chain.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainReport {
    /// The source names of the chain's steps, first to last.
    pub names: Vec<String>,
    pub ops: Vec<String>,
    pub streamed: Streamed,
    /// The arena after streaming it.
    pub arena_after: usize,
}

/// What partitioning did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionReport {
    pub arena_before: usize,
    pub arena_after: usize,
    /// Concatenations whose producers now write into their output.
    pub concats: super::concat::Elided,
    pub chains: Vec<ChainReport>,
}

impl PartitionReport {
    /// Bytes the row copies of all streamed chains move per inference.
    pub fn copied_bytes(&self) -> usize {
        self.chains.iter().map(|c| c.streamed.copied_bytes).sum()
    }

    /// Multiply-accumulates the column tiles of all chains repeat.
    pub fn extra_macs(&self) -> u64 {
        self.chains.iter().map(|c| c.streamed.extra_macs).sum()
    }
}

/// The steps that touch each arena storage, in order, indexed by storage.
/// Storages are small dense numbers, so a table is cheaper than a map: the
/// partition search rebuilds this for every program it edits.
#[derive(Debug, Default)]
pub(super) struct Uses(Vec<Vec<usize>>);

impl Uses {
    /// The steps that touch storage `k` (none for a storage no step uses).
    pub(super) fn of(&self, k: usize) -> &[usize] {
        self.0.get(k).map_or(&[], Vec::as_slice)
    }
}

/// The steps that touch each arena storage.
pub(super) fn uses(p: &Program) -> Uses {
    let mut u: Vec<Vec<usize>> = Vec::new();
    for (i, s) in p.steps.iter().enumerate() {
        for b in s.inputs.iter().chain(&s.outputs) {
            if let Loc::Temp(k) = b.loc {
                if u.len() <= k {
                    u.resize_with(k + 1, Vec::new);
                }
                let v = &mut u[k];
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
    }
    Uses(u)
}

/// Every step that can run in place does: channel-local steps by channel
/// groups, stride-1 steps streamed over their own input. Returns the
/// program and the steps changed (as chain reports, one step each).
fn inplace_all(mut cur: Program) -> (Program, Vec<ChainReport>) {
    let mut done = Vec::new();
    // Storage uses, recomputed only when the program changes.
    let mut u = uses(&cur);
    let mut i = cur.steps.len();
    while i > 0 {
        i -= 1;
        let st = &cur.steps[i];
        // Already over its input: nothing to gain.
        if st.in_place {
            continue;
        }
        let (name, op) = (st.name.clone(), st.op.name().to_string());
        if channel_local(&cur, i, &u) {
            let x = &st.inputs[0].ty;
            let plane = x.bytes() / x.dims[1].max(1);
            // Groups of at least one plane and about a sixteenth of the
            // input, so each copy is worth a call.
            let per = (x.bytes() / 16).max(plane).max(1);
            let groups = (x.bytes() / per).clamp(1, x.dims[1]);
            // `inplace_mut` changes nothing when it fails.
            if let Ok(s) = inplace_mut(&mut cur, i, groups, &u) {
                done.push(ChainReport {
                    names: vec![name],
                    ops: vec![op],
                    streamed: Streamed {
                        steps_before: 1,
                        steps_after: 2 * s.groups,
                        in_place: true,
                        copied_bytes: s.copied_bytes,
                        tiles: 1,
                        extra_macs: 0,
                    },
                    arena_after: 0,
                });
                u = uses(&cur);
            }
            continue;
        }
        if streamable_with(&cur, i, i, &u)
            && let Ok((e, s)) = stream_edit(&cur, i, i, 1, &u)
            && s.in_place
        {
            done.push(ChainReport {
                names: vec![name],
                ops: vec![op],
                streamed: s,
                arena_after: 0,
            });
            e.apply(&mut cur);
            u = uses(&cur);
        }
    }
    done.reverse();
    (cur, done)
}

/// Longest chain the search tries.
const MAX_CHAIN: usize = 24;
/// Candidates judged by what in-place steps would leave, per ranking.
const SHORTLIST: usize = 12;
/// Candidates evaluated per round at most.
const MAX_CANDIDATES: usize = 400;

/// Most column tiles a chain is tried in.
const MAX_TILES: usize = 3;
/// Extra multiply-accumulates column tiling may add by default, in percent
/// of the program's (`--max-recompute`).
pub const MAX_EXTRA_MACS_PERCENT: f64 = 10.0;

/// Multiply-accumulates of a program's steps.
fn program_macs(p: &Program) -> u64 {
    p.steps
        .iter()
        .map(|s| {
            let ins: Vec<&nnc_ir::TensorType> = s.inputs.iter().map(|b| &b.ty).collect();
            let outs: Vec<nnc_ir::TensorType> = s.outputs.iter().map(|b| b.ty.clone()).collect();
            nnc_ir::stats::op_macs(&s.op, &ins, &outs)
        })
        .sum()
}

/// Partitions an unplaced program for `goal` (see the module
/// documentation). Returns the program unchanged when the goal does not
/// ask for partitioning or nothing helps. Chains run in whole rows first;
/// only when that misses the budget (or, minimizing, when tiles do
/// better) are column tiles tried, within `max_recompute` percent extra
/// multiply-accumulates (default [`MAX_EXTRA_MACS_PERCENT`]; 0 never
/// tiles).
pub fn partition(
    p: Program,
    goal: MemoryGoal,
    max_recompute: f64,
) -> Result<(Program, PartitionReport)> {
    let before = measure(&p).arena;
    let mut report = PartitionReport {
        arena_before: before,
        arena_after: before,
        concats: Default::default(),
        chains: vec![],
    };
    let budget = match goal {
        MemoryGoal::Off => return Ok((p, report)),
        MemoryGoal::Auto | MemoryGoal::Minimize => None,
        MemoryGoal::Budget(b) => Some(b),
    };
    // Concatenations are elided on every target: bit-identical, less
    // memory and no copy. A host program is not partitioned further.
    let mut cur = p;
    report.concats = super::concat::elide(&mut cur);
    if goal == MemoryGoal::Auto && !cur.target.is_mcu() {
        report.arena_after = measure(&cur).arena;
        return Ok((cur, report));
    }
    let macs = program_macs(&cur);
    let cap = (macs as f64 * max_recompute.clamp(0.0, 100.0) / 100.0) as u64;
    let rows = search(cur.clone(), budget, 1, cap);
    let fits = |a: usize| budget.is_some_and(|b| a <= b);
    let (q, chains, arena) =
        if fits(rows.2) || matches!(goal, MemoryGoal::Auto) || max_recompute <= 0.0 {
            rows
        } else {
            let tiled = search(cur, budget, MAX_TILES, cap);
            // The tiled schedule only where it fits a budget the rows miss,
            // or, minimizing, lowers the arena by at least the fraction it
            // adds to the multiply-accumulates.
            let extra: u64 = tiled.1.iter().map(|c| c.streamed.extra_macs).sum();
            let saved = rows.2.saturating_sub(tiled.2) as u128;
            let worth = saved * macs as u128 >= extra as u128 * rows.2 as u128;
            let better = match budget {
                Some(_) => fits(tiled.2) || tiled.2 < rows.2,
                None => tiled.2 < rows.2 && worth,
            };
            if better { tiled } else { rows }
        };
    report.chains = chains;
    report.arena_after = arena;
    Ok((q, report))
}

/// The greedy search of [`partition`] with chains in up to `max_tiles`
/// column tiles and at most `cap` extra multiply-accumulates: the program,
/// its chains and its arena.
fn search(
    mut cur: Program,
    budget: Option<usize>,
    max_tiles: usize,
    cap: u64,
) -> (Program, Vec<ChainReport>, usize) {
    let mut chains: Vec<ChainReport> = Vec::new();
    let mut extra = 0u64;
    let mut arena = measure(&cur).arena;
    // What the program would need if every step that can run in place did:
    // the yardstick for chains (a chain that leaves more for in-place steps
    // to remove can be the better one).
    let completed = |q: Program| -> (usize, Program, Vec<ChainReport>) {
        let (c, r) = inplace_all(q);
        (measure(&c).arena, c, r)
    };
    let (mut goal_now, _, _) = completed(cur.clone());
    loop {
        if budget.is_some_and(|b| arena <= b) {
            break;
        }
        let pl = measure(&cur);
        let u = uses(&cur);
        let at = peak(&pl.live);
        // Steps that touch what is live at the peak.
        let mut near: BTreeSet<usize> = BTreeSet::new();
        for (k, segs) in pl.segments.iter().enumerate() {
            if segs.iter().any(|&(f, l, _)| f <= at && at <= l) && pl.sizes[k] > 0 {
                near.extend(u.of(k).iter().copied());
            }
        }
        let mut cands: BTreeSet<(usize, usize)> = BTreeSet::new();
        'outer: for &t in &near {
            for a in t.saturating_sub(MAX_CHAIN - 1)..=t {
                for b in t..(a + MAX_CHAIN).min(cur.steps.len()) {
                    if streamable_with(&cur, a, b, &u) {
                        cands.insert((a, b));
                        if cands.len() >= MAX_CANDIDATES {
                            break 'outer;
                        }
                    }
                }
            }
        }
        // Every candidate chain: its arena, and the peak within its own
        // steps.
        let mut tried: Vec<(usize, usize, Edit, ChainReport)> = Vec::new();
        let mut todo: Vec<(usize, usize, usize)> = cands.iter().map(|&(a, b)| (a, b, 1)).collect();
        // Where each tried chain starts and ends.
        let mut at: Vec<(usize, usize)> = Vec::new();
        let mut round = 0;
        while !todo.is_empty() {
            for (a, b, tiles) in std::mem::take(&mut todo) {
                let Ok((e, s)) = stream_edit(&cur, a, b, tiles, &u) else {
                    continue;
                };
                if extra + s.extra_macs > cap {
                    continue;
                }
                let m = e.measure(&cur);
                let local = m.live[a..a + s.steps_after]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(0);
                let r = ChainReport {
                    names: cur.steps[a..=b].iter().map(|s| s.name.clone()).collect(),
                    ops: cur.steps[a..=b]
                        .iter()
                        .map(|s| s.op.name().to_string())
                        .collect(),
                    streamed: s,
                    arena_after: m.arena,
                };
                tried.push((m.arena, local, e, r));
                at.push((a, b));
            }
            // Column tiles for the chains that do best in whole rows (by
            // arena and by their own peak): tiling a chain shrinks its
            // windows, not which chain is worth streaming.
            round += 1;
            if round == 1 && max_tiles > 1 {
                let mut pick: BTreeSet<(usize, usize)> = BTreeSet::new();
                for key in [0, 1] {
                    let mut idx: Vec<usize> = (0..tried.len()).collect();
                    idx.sort_by_key(|&i| {
                        let t = &tried[i];
                        if key == 0 { (t.0, t.1) } else { (t.1, t.0) }
                    });
                    pick.extend(idx.iter().take(2 * SHORTLIST).map(|&i| at[i]));
                }
                for (a, b) in pick {
                    todo.extend((2..=max_tiles).map(|t| (a, b, t)));
                }
            }
        }
        // A budget met by some candidate: the one with the least recompute,
        // then the fewest bytes copied.
        if let Some(bgt) = budget
            && let Some(i) = (0..tried.len())
                .filter(|&i| tried[i].0 <= bgt)
                .min_by_key(|&i| {
                    let s = &tried[i].3.streamed;
                    (s.extra_macs, s.copied_bytes, tried[i].0)
                })
        {
            let (ar, _, e, r) = tried.swap_remove(i);
            chains.push(r);
            e.apply(&mut cur);
            arena = ar;
            break;
        }
        // The most promising few, by arena and by their own peak, are
        // judged by what in-place steps would then leave.
        let mut short: BTreeSet<usize> = BTreeSet::new();
        let mut by = |key: &dyn Fn(&(usize, usize, Edit, ChainReport)) -> (usize, usize)| {
            let mut idx: Vec<usize> = (0..tried.len()).collect();
            idx.sort_by_key(|&i| key(&tried[i]));
            short.extend(idx.into_iter().take(SHORTLIST));
        };
        by(&|t| (t.0, t.3.streamed.copied_bytes));
        by(&|t| (t.1, t.0));
        let mut best: Option<(usize, usize, u64, usize)> = None; // (completed, arena, extra, index)
        for &i in &short {
            let mut q = cur.clone();
            tried[i].2.clone().apply(&mut q);
            let (c, _, _) = completed(q);
            let key = (c, tried[i].0, tried[i].3.streamed.extra_macs, i);
            if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                best = Some(key);
            }
        }
        match best {
            Some((c, ar, _, i)) if c < goal_now || (c == goal_now && ar < arena) => {
                let (_, _, e, r) = tried.swap_remove(i);
                extra += r.streamed.extra_macs;
                chains.push(r);
                e.apply(&mut cur);
                arena = ar;
                goal_now = c;
            }
            _ => break,
        }
    }
    // Finally every step that can run in place does, if that helps.
    let (c, q, mut r) = completed(cur.clone());
    if c < arena && budget.is_none_or(|b| arena > b) {
        for x in &mut r {
            x.arena_after = c;
        }
        chains.extend(r);
        cur = q;
        arena = c;
    }
    (cur, chains, arena)
}
