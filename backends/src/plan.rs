//! Lowering and memory planning: graph → [`Program`].
//!
//! Values that are views of each other (reshape, identity) share storage.
//! Storage that holds a graph input, a weight or a graph output lives in
//! the caller's buffer or in flash; everything else gets an offset in one
//! arena. Elementwise steps whose input dies at that step write in place.
//! Offsets come from greedy-by-size placement over the live intervals, for
//! a few candidate schedules; the schedule with the smallest arena wins.

use std::collections::HashMap;

use nnc_ir::{ConstId, Graph, NodeId, Op, TensorType, Value};

use crate::error::{BackendError, Result};
use crate::program::{ARENA_ALIGN, Buffer, Loc, PlanStats, Program, Step, Weight};

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

/// A planned schedule.
struct Planned {
    steps: Vec<Step>,
    arena: usize,
    /// Sum of all arena tensors (one buffer each).
    naive: usize,
    live: Vec<usize>,
    in_place: usize,
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
) -> Result<Planned> {
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
    // Uses of each class: the steps that read any value of it.
    let mut uses: HashMap<Value, Vec<usize>> = HashMap::new();
    for (s, &id) in steps_order.iter().enumerate() {
        for v in g.node_inputs(id) {
            let c = cls.find(v);
            uses.entry(c).or_default().push(s);
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
                let dies = uses.get(&c).is_some_and(|u| u.iter().all(|&x| x <= s));
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
                    let extra = uses.remove(&oc).unwrap_or_default();
                    cls.union(c, out);
                    uses.entry(c).or_default().extend(extra);
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
        if let Some(u) = uses.get(c) {
            st.last = u.iter().copied().max().unwrap_or(st.def).max(st.def);
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
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // offset, bytes, def, last
    let mut offsets: HashMap<Value, usize> = HashMap::new();
    for (c, st) in &arena_classes {
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|p| !(p.3 < st.def || st.last < p.2))
            .map(|p| (p.0, p.0 + p.1))
            .collect();
        busy.sort();
        let mut off = 0;
        for (b0, b1) in busy {
            if off + st.bytes <= b0 {
                break;
            }
            off = off.max(b1);
        }
        placed.push((off, st.bytes, st.def, st.last));
        offsets.insert(*c, off);
    }
    let arena = placed.iter().map(|p| p.0 + p.1).max().unwrap_or(0);
    let mut live = vec![0usize; n_steps_guess + g.outputs().len()];
    for p in &placed {
        for l in live.iter_mut().take(p.3 + 1).skip(p.2) {
            *l += p.1;
        }
    }
    // Steps with resolved buffers.
    let buf = |cls: &mut Classes, v: Value| -> Buffer {
        let c = cls.find(v);
        let loc = match home_of(cls, v) {
            Loc::Arena(_) => Loc::Arena(offsets[&c]),
            l => l,
        };
        Buffer {
            loc,
            ty: g.value_type(v).clone(),
        }
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
        out.push(Step {
            op: n.op.clone(),
            inputs,
            outputs,
            name: n.name.clone(),
            in_place: merged,
        });
    }
    // Outputs that do not live in their own buffer get a copy.
    for (k, o) in g.outputs().iter().enumerate() {
        let src = buf(&mut cls, o.value);
        if src.loc != Loc::Output(k) {
            out.push(Step {
                op: Op::Identity,
                inputs: vec![src],
                outputs: vec![Buffer {
                    loc: Loc::Output(k),
                    ty: g.value_type(o.value).clone(),
                }],
                name: format!("copy to output `{}`", o.name),
                in_place: false,
            });
        }
    }
    live.truncate(out.len());
    Ok(Planned {
        steps: out,
        arena: align(arena),
        naive: arena_classes.iter().map(|(_, s)| s.bytes).sum(),
        live,
        in_place,
    })
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

/// Lowers an optimized graph to a program with a memory plan.
pub fn lower(g: &Graph, name: &str) -> Result<Program> {
    g.verify().map_err(BackendError::Ir)?;
    let mut weights = Vec::new();
    let mut weight_of: HashMap<ConstId, usize> = HashMap::new();
    for id in g.topo_order()? {
        if let Op::Const(c) = g.node(id).op {
            weight_of.entry(c).or_insert_with(|| {
                weights.push(Weight {
                    name: g.node(id).name.clone(),
                    tensor: g.constant(c).expect("verified").clone(),
                });
                weights.len() - 1
            });
        }
    }
    let candidates = orders(g)?;
    let baseline = plan_order(g, &candidates[0].1, &weight_of, false)?;
    let naive = baseline.naive;
    let mut best: Option<(&str, Planned)> = None;
    for (label, order) in &candidates {
        let p = plan_order(g, order, &weight_of, true)?;
        if best.as_ref().is_none_or(|(_, b)| p.arena < b.arena) {
            best = Some((label, p));
        }
    }
    let (label, p) = best.expect("at least one schedule");
    let peak_step = p
        .live
        .iter()
        .enumerate()
        .max_by_key(|(i, b)| (**b, usize::MAX - i))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Ok(Program {
        name: name.to_string(),
        inputs: (0..g.inputs().len())
            .map(|i| (g.input_name(i).to_string(), g.input_type(i).clone()))
            .collect(),
        outputs: g
            .outputs()
            .iter()
            .map(|o| (o.name.clone(), g.value_type(o.value).clone()))
            .collect(),
        weights,
        arena_bytes: p.arena,
        stats: PlanStats {
            naive_bytes: naive,
            greedy_bytes: baseline.arena,
            arena_bytes: p.arena,
            live_bytes: p.live,
            peak_step,
            order: label.to_string(),
            in_place_steps: p.in_place,
        },
        steps: p.steps,
    })
}
