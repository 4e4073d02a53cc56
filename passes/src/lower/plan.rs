//! The memory planner: which buffer every value lives in, and when.
//!
//! Values that are views of each other (reshape, identity) share storage.
//! Storage that holds a graph input, a weight or a graph output lives in
//! the caller's buffer or in flash; everything else gets an offset in one
//! arena. Elementwise steps whose input dies at that step write in place.
//! Offsets come from greedy-by-size placement over the live intervals, for
//! a few candidate schedules; the schedule with the smallest arena wins.
//!
//! [`memory`] is the entry point for passes that want to know what a
//! rewrite does to peak memory: it plans a graph without lowering it.

use std::collections::{BTreeMap, HashMap};

use nnc_ir::program::{ARENA_ALIGN, Buffer, Loc, Loop, PlacedBuffer, Program};
use nnc_ir::{ConstId, Graph, NodeId, Op, TensorType, Value};

use crate::pass::Result;

fn align(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Union-find over values: views share a class.
#[derive(Debug, Default)]
struct Classes {
    parent: HashMap<Value, Value>,
}

impl Classes {
    fn find(&mut self, v: Value) -> Value {
        let p = *self.parent.get(&v).unwrap_or(&v);
        if p == v {
            return v;
        }
        let r = self.find(p);
        self.parent.insert(v, r);
        r
    }

    fn union(&mut self, into: Value, v: Value) {
        let (a, b) = (self.find(into), self.find(v));
        if a != b {
            self.parent.insert(b, a);
        }
    }
}

/// True for ops whose kernels may write their output over input `i`.
fn in_place_ok(op: &Op, input: &TensorType, out: &TensorType, i: usize) -> bool {
    let same = input.dims == out.dims && input.dtype.size() == out.dtype.size();
    if !same {
        return false;
    }
    match op {
        Op::Unary(_) | Op::Cast(_) | Op::Softmax(_) => true,
        Op::Binary(_) => true,
        Op::Where => i > 0,
        Op::BatchNorm(_) => i == 0,
        _ => false,
    }
}

/// The last step that reads each value class. Only the last use matters
/// (a class dies after it), and keeping only it makes in-place merging
/// constant time (a list of every use grows along a chain of in-place
/// steps and makes planning quadratic).
#[derive(Debug, Default)]
struct LastUse(HashMap<Value, usize>);

impl LastUse {
    fn note(&mut self, c: Value, step: usize) {
        let l = self.0.entry(c).or_insert(step);
        *l = (*l).max(step);
    }

    /// True when class `c` is read, and by no step after `step`.
    fn dies_by(&self, c: Value, step: usize) -> bool {
        self.0.get(&c).is_some_and(|&l| l <= step)
    }

    /// Class `from` joins class `into`: their uses combine.
    fn merge(&mut self, from: Value, into: Value) {
        if let Some(l) = self.0.remove(&from) {
            self.note(into, l);
        }
    }
}

/// One step of a planned schedule: a node with resolved buffers, or (with
/// `node: None`) a copy of a value into a graph output that does not live
/// there.
#[derive(Clone, Debug)]
pub struct PlannedStep {
    pub node: Option<NodeId>,
    pub inputs: Vec<Buffer>,
    pub outputs: Vec<Buffer>,
    pub in_place: bool,
}

/// A planned schedule: steps whose arena buffers name their storage
/// ([`Loc::Temp`]), and where that storage goes.
#[derive(Clone, Debug)]
pub struct Planned {
    pub steps: Vec<PlannedStep>,
    pub placement: Placement,
    /// Steps computed in place.
    pub in_place: usize,
    /// Which schedule it is.
    pub order: &'static str,
}

impl Planned {
    pub fn arena(&self) -> usize {
        self.placement.arena
    }
}

fn plan_order(
    g: &Graph,
    order: &[NodeId],
    weight_of: &HashMap<ConstId, usize>,
    allow_in_place: bool,
    label: &'static str,
) -> Planned {
    let mut cls = Classes::default();
    // Views share storage with their source.
    for &id in order {
        let n = g.node(id);
        if n.op.is_view() {
            let src = g.node_inputs(id)[0];
            cls.union(src, Value::new(id, 0));
        }
    }
    let input_pos: HashMap<NodeId, usize> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &n)| (n, k))
        .collect();
    let steps_order: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| {
            !matches!(g.node(id).op, Op::Input | Op::Const(_)) && !g.node(id).op.is_view()
        })
        .collect();
    // The last step that reads any value of each class.
    let mut uses = LastUse::default();
    for (s, &id) in steps_order.iter().enumerate() {
        for v in g.node_inputs(id) {
            let c = cls.find(v);
            uses.note(c, s);
        }
    }
    let mut out_home: HashMap<Value, usize> = HashMap::new();
    for (k, o) in g.outputs().iter().enumerate() {
        let c = cls.find(o.value);
        out_home.entry(c).or_insert(k);
    }
    let home_of = |cls: &mut Classes, v: Value| -> Option<Loc> {
        let c = cls.find(v);
        let root = g.node(c.node);
        match &root.op {
            Op::Input => Some(Loc::Input(input_pos[&c.node])),
            Op::Const(cid) => Some(Loc::Const(weight_of[cid])),
            _ => out_home.get(&c).map(|&k| Loc::Output(k)),
        }
    };
    let mut in_place = 0;
    let mut steps = Vec::with_capacity(steps_order.len() + g.outputs().len());
    for (s, &id) in steps_order.iter().enumerate() {
        let n = g.node(id);
        let ins = g.node_inputs(id);
        // In place: an arena input whose class dies here, same size as the output.
        let mut merged = false;
        if allow_in_place && n.outputs.len() == 1 {
            for (i, v) in ins.iter().enumerate() {
                let c = cls.find(*v);
                let dies = uses.dies_by(c, s);
                let used_twice = ins.iter().filter(|w| cls.find(**w) == c).count() > 1;
                let arena = home_of(&mut cls, *v).is_none();
                if dies
                    && !used_twice
                    && arena
                    && in_place_ok(&n.op, g.value_type(*v), &n.outputs[0], i)
                    && !out_home.contains_key(&cls.find(Value::new(id, 0)))
                {
                    let out = Value::new(id, 0);
                    let oc = cls.find(out);
                    cls.union(c, out);
                    uses.merge(oc, c);
                    merged = true;
                    in_place += 1;
                    break;
                }
            }
        }
        steps.push((id, merged));
    }
    // Arena storage: one number per class, in order of definition.
    let mut temp_of: HashMap<Value, usize> = HashMap::new();
    let buf = |cls: &mut Classes, temp_of: &mut HashMap<Value, usize>, v: Value| -> Buffer {
        let c = cls.find(v);
        let loc = match home_of(cls, v) {
            Some(l) => l,
            None => {
                let n = temp_of.len();
                Loc::Temp(*temp_of.entry(c).or_insert(n))
            }
        };
        Buffer::new(loc, g.value_type(v).clone())
    };
    let mut out = Vec::with_capacity(steps.len());
    for (id, merged) in steps {
        let n = g.node(id);
        let outputs: Vec<Buffer> = (0..n.outputs.len())
            .map(|p| buf(&mut cls, &mut temp_of, Value::new(id, p as u32)))
            .collect();
        let inputs: Vec<Buffer> = g
            .node_inputs(id)
            .into_iter()
            .map(|v| buf(&mut cls, &mut temp_of, v))
            .collect();
        out.push(PlannedStep {
            node: Some(id),
            inputs,
            outputs,
            in_place: merged,
        });
    }
    // Outputs that do not live in their own buffer get a copy.
    for (k, o) in g.outputs().iter().enumerate() {
        let src = buf(&mut cls, &mut temp_of, o.value);
        if src.loc != Loc::Output(k) {
            out.push(PlannedStep {
                node: None,
                inputs: vec![src],
                outputs: vec![Buffer::new(Loc::Output(k), g.value_type(o.value).clone())],
                in_place: false,
            });
        }
    }
    let access: Vec<(&[Buffer], &[Buffer], bool)> = out
        .iter()
        .map(|s| (s.inputs.as_slice(), s.outputs.as_slice(), !s.in_place))
        .collect();
    let placement = place(&access, &[]);
    Planned {
        steps: out,
        placement,
        in_place,
        order: label,
    }
}

/// Where every arena storage ([`Loc::Temp`]) goes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Byte offset of storage `k`.
    pub offsets: Vec<usize>,
    /// Bytes of storage `k` (aligned).
    pub sizes: Vec<usize>,
    /// Live interval (first and last step) of storage `k`.
    pub intervals: Vec<(usize, usize)>,
    /// The steps storage `k` holds a live value: (first, last, bytes)
    /// segments.
    pub segments: Vec<Vec<(usize, usize, usize)>>,
    /// Arena bytes (aligned).
    pub arena: usize,
    /// One buffer per storage, no reuse.
    pub naive: usize,
    /// Live arena bytes while each step runs.
    pub live: Vec<usize>,
}

/// Greedy-by-size placement of the storage that steps name (`(inputs,
/// outputs, in place)` per step) over its live segments. A storage is live
/// from a step that writes all of it to the last step that touches it
/// before the next such write (so a one-row buffer that every row of a
/// streamed chain rewrites is live only between its writes and reads).
/// Inside a loop, a storage whose first touch in the body writes all of
/// it lives only across the body steps that use it; any other storage
/// touched in the body lives for the whole loop.
pub fn place(steps: &[(&[Buffer], &[Buffer], bool)], loops: &[Loop]) -> Placement {
    // `steps[s].2`: the step overwrites its outputs whole (see
    // [`overwrites`]).
    let mut n = 0;
    for (ins, outs, _) in steps {
        for b in ins.iter().chain(outs.iter()) {
            if let Loc::Temp(k) = b.loc {
                n = n.max(k + 1);
            }
        }
    }
    let loop_at = |s: usize| loops.iter().find(|l| l.first <= s && s < l.end());
    let mut sizes = vec![0usize; n];
    for (s, (ins, outs, _)) in steps.iter().enumerate() {
        let count = loop_at(s).map_or(1, |l| l.count);
        for b in ins.iter().chain(outs.iter()) {
            if let Loc::Temp(k) = b.loc {
                sizes[k] = sizes[k].max(align(b.extent(count)));
            }
        }
    }
    // Every touch of every storage, in order: (first step, last step,
    // writes all of it, bytes reached).
    let full_write = |s: usize, k: usize| -> bool {
        let (ins, outs, over) = steps[s];
        over && !ins.iter().any(|b| b.loc == Loc::Temp(k))
            && outs.iter().any(|b| {
                b.loc == Loc::Temp(k)
                    && b.offset == 0
                    && b.step == 0
                    && align(b.bytes()) == sizes[k]
            })
    };
    let mut touches: Vec<Vec<(usize, usize, bool, usize)>> = vec![Vec::new(); n];
    for (s, (ins, outs, _)) in steps.iter().enumerate() {
        let count = loop_at(s).map_or(1, |l| l.count);
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for b in ins.iter().chain(outs.iter()) {
            if let Loc::Temp(k) = b.loc {
                let e = align(b.extent(count));
                match seen.iter_mut().find(|x| x.0 == k) {
                    Some(x) => x.1 = x.1.max(e),
                    None => seen.push((k, e)),
                }
            }
        }
        for (k, e) in seen {
            touches[k].push((s, s, full_write(s, k), e));
        }
    }
    for l in loops {
        for t in touches.iter_mut() {
            let inside: Vec<usize> = (0..t.len())
                .filter(|&i| t[i].0 >= l.first && t[i].0 < l.end())
                .collect();
            let Some(&f) = inside.first() else { continue };
            if !t[f].2 {
                // Carried from one iteration to the next: one touch for
                // the whole loop.
                let last = *inside.last().expect("non-empty");
                let e = t[f..=last].iter().map(|x| x.3).max().unwrap_or(0);
                t.splice(f..=last, [(l.first, l.end() - 1, false, e)]);
            }
        }
    }
    // Pieces of live storage (first step, last step, bytes): a full write
    // starts a value, every other touch extends it; within a value the
    // bytes only grow (an in-place step writing a larger output over its
    // input needs the larger size from that step on, not before).
    let pieces: Vec<Vec<(usize, usize, usize)>> = touches
        .iter()
        .map(|t| {
            let mut v: Vec<(usize, usize, usize)> = Vec::new();
            let mut open = false;
            for &(a, b, full, e) in t {
                match v.last_mut() {
                    Some(p) if open && !full => {
                        if e > p.2 {
                            let start = a.max(p.0);
                            if start > p.0 {
                                p.1 = start - 1;
                                v.push((start, b, e));
                            } else {
                                p.2 = e;
                                p.1 = p.1.max(b);
                            }
                        } else {
                            p.1 = p.1.max(b);
                        }
                    }
                    _ => v.push((a, b, e)),
                }
                open = true;
            }
            v
        })
        .collect();
    // Offsets by first fit in a few orders (largest first, longest-lived
    // bytes first, earliest first); the smallest arena wins.
    let first = |k: usize| pieces[k].first().map_or(usize::MAX, |s| s.0);
    let area = |k: usize| -> usize { pieces[k].iter().map(|p| (p.1 - p.0 + 1) * p.2).sum() };
    let live_k: Vec<usize> = (0..n).filter(|&k| !pieces[k].is_empty()).collect();
    let mut by_size = live_k.clone();
    by_size.sort_by(|&a, &b| {
        sizes[b]
            .cmp(&sizes[a])
            .then(first(a).cmp(&first(b)))
            .then(a.cmp(&b))
    });
    let mut by_area = live_k.clone();
    by_area.sort_by(|&a, &b| area(b).cmp(&area(a)).then(a.cmp(&b)));
    let mut by_first = live_k;
    by_first.sort_by(|&a, &b| first(a).cmp(&first(b)).then(sizes[b].cmp(&sizes[a])));
    let mut best: Option<(usize, Vec<usize>, Vec<usize>)> = None;
    for order in [by_size, by_area, by_first] {
        let offsets = first_fit(&pieces, &order, n);
        let arena = order
            .iter()
            .flat_map(|&k| pieces[k].iter().map(move |p| (k, p.2)))
            .map(|(k, e)| offsets[k] + e)
            .max()
            .unwrap_or(0);
        if best.as_ref().is_none_or(|b| arena < b.0) {
            best = Some((arena, offsets, order));
        }
    }
    let (arena, offsets, order) = best.unwrap_or_default();
    // Live bytes per step, as differences (a piece adds its bytes at its
    // first step and removes them after its last): walking every piece's
    // steps was quadratic when many values live long.
    let mut delta = vec![0isize; steps.len() + 1];
    for &k in &order {
        for &(a, b, e) in &pieces[k] {
            if a < steps.len() {
                delta[a] += e as isize;
                delta[(b + 1).min(steps.len())] -= e as isize;
            }
        }
    }
    let mut acc = 0isize;
    let live: Vec<usize> = delta[..steps.len()]
        .iter()
        .map(|d| {
            acc += d;
            acc as usize
        })
        .collect();
    let segments = pieces;
    Placement {
        offsets,
        naive: order.iter().map(|&k| sizes[k]).sum(),
        intervals: (0..n)
            .map(|k| match (segments[k].first(), segments[k].last()) {
                (Some(a), Some(b)) => (a.0, b.1),
                _ => (0, 0),
            })
            .collect(),
        segments,
        sizes,
        arena: align(arena),
        live,
    }
}

/// The pieces placed so far, indexed for the question first fit asks:
/// which of them are live at some step of `[a, b]`. Scanning every placed
/// piece made placement quadratic (a 20,000-step chain without in-place
/// steps has 20,000 buffers). Pieces are grouped by the binary order of
/// their lifetime's length, each group ordered by first step, so only
/// those that start late enough to reach `a` are looked at.
#[derive(Debug, Default)]
struct Placed {
    /// By length class: (first step, index) -> (last step, offset, bytes).
    by_len: Vec<BTreeMap<(usize, usize), (usize, usize, usize)>>,
    n: usize,
}

impl Placed {
    fn insert(&mut self, first: usize, last: usize, offset: usize, bytes: usize) {
        let k = (usize::BITS - (last - first + 1).leading_zeros()) as usize;
        if self.by_len.len() <= k {
            self.by_len.resize_with(k + 1, BTreeMap::new);
        }
        self.by_len[k].insert((first, self.n), (last, offset, bytes));
        self.n += 1;
    }

    /// Calls `f(offset, bytes)` for every placed piece live at some step
    /// of `[a, b]`.
    fn overlapping(&self, a: usize, b: usize, mut f: impl FnMut(usize, usize)) {
        for (k, m) in self.by_len.iter().enumerate() {
            // Lifetimes in class k are shorter than 2^k steps.
            let from = a.saturating_sub(1usize << k.min(usize::BITS as usize - 1));
            for (_, &(last, offset, bytes)) in m.range((from, 0)..=(b, usize::MAX)) {
                if last >= a {
                    f(offset, bytes);
                }
            }
        }
    }
}

/// Lowest offsets, storage by storage in `order`, where every piece fits
/// beside the pieces already placed that are live at the same time.
fn first_fit(pieces: &[Vec<(usize, usize, usize)>], order: &[usize], n: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; n];
    let mut placed = Placed::default();
    for &k in order {
        let mut busy: Vec<(usize, usize, usize)> = Vec::new(); // start, end, needed
        for &(a, b, e) in &pieces[k] {
            placed.overlapping(a, b, |off, f| busy.push((off, off + f, e)));
        }
        busy.sort();
        let mut off = 0;
        while let Some(&(_, b1, _)) = busy
            .iter()
            .find(|&&(b0, b1, need)| off < b1 && b0 < off + need)
        {
            off = b1;
        }
        offsets[k] = off;
        for &(a, b, e) in &pieces[k] {
            placed.insert(a, b, off, e);
        }
    }
    offsets
}

/// Does a step replace everything its output buffers hold? Not when it
/// writes in place over an input, adds to a partial sum, or copies some
/// rows of a tensor.
pub fn overwrites(st: &nnc_ir::program::Step) -> bool {
    let rows_only = match &st.kernel {
        nnc_ir::program::Kernel::RowCopy(r) => st.outputs.first().is_none_or(|y| {
            !(r.dst_row == 0
                && r.dst_step == 0
                && r.rows == y.ty.dims[2]
                && r.cols.is_none_or(|c| c.dst == 0 && c.n == y.ty.dims[3]))
        }),
        _ => false,
    };
    !st.in_place && !st.part.accumulate && !rows_only
}

/// A buffer with its storage placed.
pub fn placed_buffer(b: &Buffer, p: &Placement) -> Buffer {
    match b.loc {
        Loc::Temp(k) => Buffer {
            loc: Loc::Arena(p.offsets[k]),
            ..b.clone()
        },
        _ => b.clone(),
    }
}

/// Places an unplaced program's storage without changing the program.
pub fn measure(p: &Program) -> Placement {
    let access: Vec<(&[Buffer], &[Buffer], bool)> = p
        .steps
        .iter()
        .map(|s| (s.inputs.as_slice(), s.outputs.as_slice(), overwrites(s)))
        .collect();
    place(&access, &p.loops)
}

/// Places a program's storage: every [`Loc::Temp`] becomes an arena
/// offset, and the arena size, live bytes and peak are filled in.
pub fn place_program(p: &mut Program) -> Placement {
    let pl = measure(p);
    for st in &mut p.steps {
        for b in st.inputs.iter_mut().chain(st.outputs.iter_mut()) {
            *b = placed_buffer(b, &pl);
        }
    }
    p.arena_bytes = pl.arena;
    p.stats.arena_bytes = pl.arena;
    p.stats.live_bytes = pl.live.clone();
    p.stats.peak_step = peak(&pl.live);
    p.stats.in_place_steps = p.steps.iter().filter(|s| s.in_place).count();
    p.stats.buffers = pl
        .segments
        .iter()
        .enumerate()
        .flat_map(|(k, segs)| {
            let off = pl.offsets[k];
            segs.iter()
                .map(move |&(first, last, bytes)| (k, off, first, last, bytes))
        })
        .map(|(storage, offset, first, last, bytes)| PlacedBuffer {
            storage,
            offset,
            bytes,
            first,
            last,
            name: p.steps[first].name.clone(),
        })
        .collect();
    p.stats.buffers.sort_by_key(|b| (b.first, b.offset));
    pl
}

/// Candidate schedules: the graph's own order, a memory-greedy list
/// schedule, and a depth-first schedule from the outputs.
fn orders(g: &Graph) -> Result<Vec<(&'static str, Vec<NodeId>)>> {
    let topo = g.topo_order()?;
    let mut v = vec![("topological", topo.clone())];
    v.push(("memory-greedy", memory_greedy(g, &topo)));
    v.push(("depth-first", depth_first(g)));
    Ok(v)
}

fn out_bytes(g: &Graph, id: NodeId) -> i64 {
    let n = g.node(id);
    if n.op.is_view() || matches!(n.op, Op::Input | Op::Const(_)) {
        0
    } else {
        n.outputs.iter().map(|t| t.bytes() as i64).sum()
    }
}

/// At each step, run the ready node that grows live memory the least.
fn memory_greedy(g: &Graph, topo: &[NodeId]) -> Vec<NodeId> {
    let pos: HashMap<NodeId, usize> = topo.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut indeg: HashMap<NodeId, usize> = HashMap::new();
    let mut remaining: HashMap<NodeId, usize> = HashMap::new();
    for &id in topo {
        indeg.insert(id, g.node_inputs(id).len());
        let users: usize = (0..g.node(id).outputs.len())
            .map(|p| g.users(Value::new(id, p as u32)).len())
            .sum();
        remaining.insert(id, users);
    }
    let mut ready: Vec<NodeId> = topo.iter().copied().filter(|id| indeg[id] == 0).collect();
    let mut order = Vec::with_capacity(topo.len());
    while !ready.is_empty() {
        let score = |id: NodeId, remaining: &HashMap<NodeId, usize>| -> i64 {
            let freed: i64 = g
                .node_inputs(id)
                .iter()
                .filter(|v| remaining[&v.node] == 1)
                .map(|v| out_bytes(g, v.node))
                .sum();
            out_bytes(g, id) - freed
        };
        let (k, _) = ready
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| (score(**id, &remaining), pos[id]))
            .expect("non-empty");
        let id = ready.swap_remove(k);
        order.push(id);
        for v in g.node_inputs(id) {
            *remaining.get_mut(&v.node).expect("known") -= 1;
        }
        for p in 0..g.node(id).outputs.len() {
            for (u, _) in g.users(Value::new(id, p as u32)) {
                let d = indeg.get_mut(&u).expect("known");
                *d -= 1;
                if *d == 0 {
                    ready.push(u);
                }
            }
        }
    }
    order
}

/// Post-order depth-first walk from the outputs (inputs first in slot order).
fn depth_first(g: &Graph) -> Vec<NodeId> {
    let mut seen = std::collections::HashSet::new();
    let mut order = Vec::new();
    for &i in g.inputs() {
        seen.insert(i);
        order.push(i);
    }
    for o in g.outputs() {
        let mut stack = vec![(o.value.node, false)];
        while let Some((id, done)) = stack.pop() {
            if done {
                order.push(id);
                continue;
            }
            if !seen.insert(id) {
                continue;
            }
            stack.push((id, true));
            for v in g.node_inputs(id).into_iter().rev() {
                if !seen.contains(&v.node) {
                    stack.push((v.node, false));
                }
            }
        }
    }
    // Nodes no output needs (dead code) still run, at the end.
    for id in g.node_ids() {
        if seen.insert(id) {
            order.push(id);
        }
    }
    order
}

/// The weights of a graph in topological order (each with the first node
/// that holds it), and each constant's index in that list.
pub fn weights(g: &Graph) -> Result<(Vec<(ConstId, NodeId)>, HashMap<ConstId, usize>)> {
    let mut list = Vec::new();
    let mut index: HashMap<ConstId, usize> = HashMap::new();
    for id in g.topo_order()? {
        if let Op::Const(c) = g.node(id).op {
            index.entry(c).or_insert_with(|| {
                list.push((c, id));
                list.len() - 1
            });
        }
    }
    Ok((list, index))
}

/// The chosen schedule and the baseline figures it is compared with.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub best: Planned,
    /// TFLite Micro's greedy-by-size on the topological order, no in-place.
    pub greedy_bytes: usize,
    /// One buffer per intermediate.
    pub naive_bytes: usize,
}

/// Plans every candidate schedule and keeps the one with the smallest arena.
pub fn schedule(g: &Graph, weight_of: &HashMap<ConstId, usize>) -> Result<Schedule> {
    let candidates = orders(g)?;
    let baseline = plan_order(g, &candidates[0].1, weight_of, false, "topological");
    let mut best: Option<Planned> = None;
    for (label, order) in &candidates {
        let p = plan_order(g, order, weight_of, true, label);
        if best.as_ref().is_none_or(|b| p.arena() < b.arena()) {
            best = Some(p);
        }
    }
    Ok(Schedule {
        best: best.expect("at least one schedule"),
        greedy_bytes: baseline.arena(),
        naive_bytes: baseline.placement.naive,
    })
}

/// What a memory plan costs, for passes that search over rewrites.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// Arena bytes of the best schedule.
    pub arena_bytes: usize,
    /// Live arena bytes while each step runs (steps in schedule order).
    pub live_bytes: Vec<usize>,
    /// The step with the most live bytes (the bottleneck), as a node
    /// (`None` for a copy into a graph output).
    pub peak_step: usize,
    pub peak_node: Option<NodeId>,
    /// The greedy-by-size baseline.
    pub greedy_bytes: usize,
    /// Which schedule won.
    pub order: &'static str,
}

/// Index of the step with the most live bytes (the first such step).
pub fn peak(live: &[usize]) -> usize {
    live.iter()
        .enumerate()
        .max_by_key(|(i, b)| (**b, usize::MAX - i))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Plans the memory of `g` without lowering it: arena, live bytes per step
/// and the bottleneck. Cheap enough for a search loop (no kernels are
/// selected and no weights are copied).
pub fn memory(g: &Graph) -> Result<MemoryPlan> {
    let (_, weight_of) = weights(g)?;
    let s = schedule(g, &weight_of)?;
    let peak_step = peak(&s.best.placement.live);
    Ok(MemoryPlan {
        arena_bytes: s.best.arena(),
        peak_node: s.best.steps.get(peak_step).and_then(|st| st.node),
        live_bytes: s.best.placement.live,
        peak_step,
        greedy_bytes: s.greedy_bytes,
        order: s.best.order,
    })
}

/// Bytes for people: `272 B`, `8.4 KiB`, `5.74 MiB`.
pub fn human_bytes(b: usize) -> String {
    let f = b as f64;
    if f >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", f / 1024.0 / 1024.0)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Exact bytes, with the rounded figure beside them from 1 KiB on.
fn human(b: usize) -> String {
    if b >= 1024 {
        format!("{b} B ({})", human_bytes(b))
    } else {
        format!("{b} B")
    }
}

/// Why a placed program misses an SRAM budget, or `None` when its arena
/// fits: the steps whose live bytes exceed the budget (and by how much),
/// and the buffers live at the worst of them.
pub fn over_budget(p: &Program, budget: usize) -> Option<String> {
    if p.arena_bytes <= budget {
        return None;
    }
    let s = &p.stats;
    let mut msg = format!(
        "the plan does not fit: the arena needs {}, the SRAM budget is {} ({} B over)",
        human(p.arena_bytes),
        human(budget),
        p.arena_bytes - budget
    );
    // Runs of consecutive steps over the budget.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // first, last, most live
    for (i, &l) in s.live_bytes.iter().enumerate() {
        if l <= budget {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.1 + 1 == i => {
                r.1 = i;
                r.2 = r.2.max(l);
            }
            _ => runs.push((i, i, l)),
        }
    }
    if runs.is_empty() {
        msg.push_str(&format!(
            "; every step's live bytes fit (at most {} at step {}), the rest is lost between \
             buffers of different lifetimes",
            human(s.live_bytes.get(s.peak_step).copied().unwrap_or(0)),
            s.peak_step
        ));
        return Some(msg);
    }
    let shown: Vec<String> = runs
        .iter()
        .take(8)
        .map(|&(a, b, l)| {
            let steps = if a == b {
                format!("step {a}")
            } else {
                format!("steps {a}-{b}")
            };
            format!("{steps} ({} live, {} B over)", human(l), l - budget)
        })
        .collect();
    let more = if runs.len() > 8 {
        format!(" and {} more runs", runs.len() - 8)
    } else {
        String::new()
    };
    msg.push_str(&format!("; bottleneck {}{more}", shown.join(", ")));
    let at = s.peak_step;
    if let Some(st) = p.steps.get(at) {
        let live = s.live_at(at);
        let list: Vec<String> = live
            .iter()
            .take(6)
            .map(|b| format!("`{}` {}", b.name, human(b.bytes)))
            .collect();
        let rest = if live.len() > 6 {
            format!(" and {} smaller", live.len() - 6)
        } else {
            String::new()
        };
        msg.push_str(&format!(
            "; at the peak, step {at} ({} `{}`), these tensors are live: {}{rest}",
            st.op.name(),
            st.name,
            list.join(", ")
        ));
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexed query finds exactly the pieces a scan of every placed
    /// piece finds, for lifetimes of every length.
    #[test]
    fn placed_overlapping_matches_a_scan() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut placed = Placed::default();
        let mut all = Vec::new();
        for i in 0..2000 {
            let first = rnd(5000);
            let len = [0, 1, 3, 40, 700, 4000][i % 6].min(4999 - first);
            let (off, bytes) = (rnd(1 << 20), 16 + rnd(4096));
            placed.insert(first, first + len, off, bytes);
            all.push((first, first + len, off, bytes));
            let a = rnd(5000);
            let b = (a + rnd(50)).min(4999);
            let mut want: Vec<(usize, usize)> = all
                .iter()
                .filter(|p| !(p.1 < a || b < p.0))
                .map(|p| (p.2, p.3))
                .collect();
            let mut got = Vec::new();
            placed.overlapping(a, b, |o, n| got.push((o, n)));
            want.sort();
            got.sort();
            assert_eq!(got, want, "query [{a}, {b}] after {i}");
        }
    }

    #[test]
    fn last_use_merges() {
        let v = |n: usize| Value::new(NodeId::new(n), 0);
        let mut u = LastUse::default();
        u.note(v(1), 3);
        u.note(v(1), 2);
        u.note(v(2), 7);
        assert!(u.dies_by(v(1), 3) && !u.dies_by(v(1), 2));
        assert!(!u.dies_by(v(3), 100), "a class nobody reads does not die");
        u.merge(v(2), v(1));
        assert!(!u.dies_by(v(1), 6) && u.dies_by(v(1), 7));
        assert!(!u.dies_by(v(2), 100));
    }

    /// A 20,000-step elementwise chain: every step runs in place in one
    /// buffer, and the no-in-place baseline alternates two.
    #[test]
    fn long_chains_plan_in_one_buffer() {
        let n = 20_000;
        let mut text = String::from("graph @t(v0 \"x\": f32[64]) -> (\"y\": f32[64]) {\n");
        for i in 1..=n {
            let op = ["exp", "tanh", "relu"][i % 3];
            text.push_str(&format!("    v{i} = {op} v{} : f32[64]\n", i - 1));
        }
        text.push_str(&format!("    return v{n}\n}}\n"));
        let g = nnc_ir::parse(&text).unwrap();
        let (_, weight_of) = weights(&g).unwrap();
        let s = schedule(&g, &weight_of).unwrap();
        // The last step writes the output; the n - 2 before it run in
        // place after the first.
        assert_eq!(s.best.in_place, n - 2);
        assert_eq!(s.best.arena(), 256);
        assert_eq!(s.greedy_bytes, 512);
        assert_eq!(s.best.placement.live.len(), n);
        assert!(s.best.placement.live.iter().all(|&l| l <= 256));
    }
}
