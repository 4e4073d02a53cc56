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

use nnc_ir::program::{ARENA_ALIGN, Buffer, Loc};
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

/// A planned schedule.
#[derive(Clone, Debug)]
pub struct Planned {
    pub steps: Vec<PlannedStep>,
    /// Arena bytes (aligned).
    pub arena: usize,
    /// Sum of all arena tensors (one buffer each).
    pub naive: usize,
    /// Live arena bytes while each step runs.
    pub live: Vec<usize>,
    /// Steps computed in place.
    pub in_place: usize,
    /// Which schedule it is.
    pub order: &'static str,
}

/// The last step that reads each value class. Only the last use matters
/// (a class dies after it), and keeping only it makes in-place merging
/// constant time: a list of every use grew along a chain of in-place steps
/// and made planning quadratic (80,000 steps took 5 s).
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

    fn last(&self, c: &Value) -> Option<usize> {
        self.0.get(c).copied()
    }
}

/// The buffers placed so far, indexed for the question placement asks:
/// which of them are live at some step of `[def, last]`. Scanning every
/// placed buffer made placement quadratic (a 20,000-step chain without
/// in-place steps has 20,000 buffers). Buffers are grouped by the binary
/// order of their lifetime's length, each group ordered by first step, so
/// only those that start late enough to reach `def` are looked at.
#[derive(Debug, Default)]
struct Placed {
    /// By length class: (def, index) -> (offset, bytes, def, last).
    by_len: Vec<BTreeMap<(usize, usize), (usize, usize, usize, usize)>>,
    n: usize,
    end: usize,
}

impl Placed {
    fn len_class(def: usize, last: usize) -> usize {
        (usize::BITS - (last - def + 1).leading_zeros()) as usize
    }

    fn insert(&mut self, off: usize, bytes: usize, def: usize, last: usize) {
        let k = Self::len_class(def, last);
        if self.by_len.len() <= k {
            self.by_len.resize_with(k + 1, BTreeMap::new);
        }
        self.by_len[k].insert((def, self.n), (off, bytes, def, last));
        self.n += 1;
        self.end = self.end.max(off + bytes);
    }

    /// `(offset, end)` of the placed buffers live at some step of
    /// `[def, last]`, sorted.
    fn busy(&self, def: usize, last: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (k, m) in self.by_len.iter().enumerate() {
            // Lifetimes in class k are shorter than 2^k steps.
            let from = def.saturating_sub(1usize << k.min(usize::BITS as usize - 1));
            for p in m.range((from, 0)..=(last, usize::MAX)).map(|(_, p)| p) {
                if p.3 >= def {
                    v.push((p.0, p.0 + p.1));
                }
            }
        }
        v.sort();
        v
    }
}

/// Storage of one value-class in a given schedule.
#[derive(Clone, Debug)]
struct Store {
    home: Loc,
    bytes: usize,
    def: usize,
    last: usize,
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
    let n_steps_guess = steps_order.len();
    // Homes.
    let mut stores: HashMap<Value, Store> = HashMap::new();
    let mut out_home: HashMap<Value, usize> = HashMap::new();
    for (k, o) in g.outputs().iter().enumerate() {
        let c = cls.find(o.value);
        out_home.entry(c).or_insert(k);
    }
    let home_of = |cls: &mut Classes, v: Value| -> Loc {
        let c = cls.find(v);
        let root = g.node(c.node);
        match &root.op {
            Op::Input => Loc::Input(input_pos[&c.node]),
            Op::Const(cid) => Loc::Const(weight_of[cid]),
            _ => match out_home.get(&c) {
                Some(&k) => Loc::Output(k),
                None => Loc::Arena(usize::MAX),
            },
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
                let arena = matches!(home_of(&mut cls, *v), Loc::Arena(_));
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
        for p in 0..n.outputs.len() {
            let v = Value::new(id, p as u32);
            let c = cls.find(v);
            let home = home_of(&mut cls, v);
            let st = stores.entry(c).or_insert(Store {
                home,
                bytes: align(g.value_type(v).bytes()),
                def: s,
                last: s,
            });
            st.bytes = st.bytes.max(align(g.value_type(v).bytes()));
        }
        steps.push((id, merged));
    }
    // Lifetimes.
    for (c, st) in stores.iter_mut() {
        if let Some(u) = uses.last(c) {
            st.last = u.max(st.def);
        }
    }
    // Placement: greedy by size over live intervals.
    let mut arena_classes: Vec<(Value, Store)> = stores
        .iter()
        .filter(|(_, s)| matches!(s.home, Loc::Arena(_)))
        .map(|(c, s)| (*c, s.clone()))
        .collect();
    arena_classes.sort_by(|a, b| {
        b.1.bytes
            .cmp(&a.1.bytes)
            .then(a.1.def.cmp(&b.1.def))
            .then(a.0.cmp(&b.0))
    });
    let mut placed = Placed::default();
    let mut offsets: HashMap<Value, usize> = HashMap::new();
    // Live bytes per step, as differences (a buffer adds its bytes at its
    // first step and removes them after its last).
    let mut live_delta = vec![0isize; n_steps_guess + g.outputs().len() + 1];
    for (c, st) in &arena_classes {
        let mut off = 0;
        for (b0, b1) in placed.busy(st.def, st.last) {
            if off + st.bytes <= b0 {
                break;
            }
            off = off.max(b1);
        }
        placed.insert(off, st.bytes, st.def, st.last);
        offsets.insert(*c, off);
        let steps = live_delta.len() - 1;
        if st.def < steps {
            live_delta[st.def] += st.bytes as isize;
            live_delta[(st.last + 1).min(steps)] -= st.bytes as isize;
        }
    }
    let arena = placed.end;
    let mut live = Vec::with_capacity(live_delta.len() - 1);
    let mut acc = 0isize;
    for d in &live_delta[..live_delta.len() - 1] {
        acc += d;
        live.push(acc as usize);
    }
    // Steps with resolved buffers.
    let buf = |cls: &mut Classes, v: Value| -> Buffer {
        let c = cls.find(v);
        let loc = match home_of(cls, v) {
            Loc::Arena(_) => Loc::Arena(offsets[&c]),
            l => l,
        };
        Buffer::new(loc, g.value_type(v).clone())
    };
    let mut out = Vec::with_capacity(steps.len());
    for (id, merged) in steps {
        let n = g.node(id);
        let inputs: Vec<Buffer> = g
            .node_inputs(id)
            .into_iter()
            .map(|v| buf(&mut cls, v))
            .collect();
        let outputs: Vec<Buffer> = (0..n.outputs.len())
            .map(|p| buf(&mut cls, Value::new(id, p as u32)))
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
        let src = buf(&mut cls, o.value);
        if src.loc != Loc::Output(k) {
            out.push(PlannedStep {
                node: None,
                inputs: vec![src],
                outputs: vec![Buffer::new(Loc::Output(k), g.value_type(o.value).clone())],
                in_place: false,
            });
        }
    }
    live.truncate(out.len());
    Planned {
        steps: out,
        arena: align(arena),
        naive: arena_classes.iter().map(|(_, s)| s.bytes).sum(),
        live,
        in_place,
        order: label,
    }
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
        if best.as_ref().is_none_or(|b| p.arena < b.arena) {
            best = Some(p);
        }
    }
    Ok(Schedule {
        best: best.expect("at least one schedule"),
        greedy_bytes: baseline.arena,
        naive_bytes: baseline.naive,
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
    let peak_step = peak(&s.best.live);
    Ok(MemoryPlan {
        arena_bytes: s.best.arena,
        peak_node: s.best.steps.get(peak_step).and_then(|st| st.node),
        live_bytes: s.best.live,
        peak_step,
        greedy_bytes: s.greedy_bytes,
        order: s.best.order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexed query returns exactly what scanning every placed buffer
    /// returns, for lifetimes of every length.
    #[test]
    fn placed_busy_matches_a_scan() {
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
            let def = rnd(5000);
            let len = [0, 1, 3, 40, 700, 4000][i % 6].min(4999 - def);
            let (off, bytes) = (rnd(1 << 20), 16 + rnd(4096));
            placed.insert(off, bytes, def, def + len);
            all.push((off, bytes, def, def + len));
            let (qd, ql) = {
                let d = rnd(5000);
                (d, (d + rnd(50)).min(4999))
            };
            let mut want: Vec<(usize, usize)> = all
                .iter()
                .filter(|p| !(p.3 < qd || ql < p.2))
                .map(|p| (p.0, p.0 + p.1))
                .collect();
            want.sort();
            assert_eq!(placed.busy(qd, ql), want, "query [{qd}, {ql}] after {i}");
        }
        let end = all.iter().map(|p| p.0 + p.1).max().unwrap();
        assert_eq!(placed.end, end);
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
        assert_eq!((u.last(&v(1)), u.last(&v(2))), (Some(7), None));
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
        assert_eq!(s.best.arena, 256);
        assert_eq!(s.greedy_bytes, 512);
        assert_eq!(s.best.live.len(), n);
    }
}
