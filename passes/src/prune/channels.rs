//! Channel classes: which channels of which values must be removed
//! together. Every (value, channel) pair is a slot; ops that keep channels
//! apart (activations, pooling, depthwise convolution, BatchNorm, residual
//! adds, concatenation, flatten) unite the slots they connect, so a class
//! is one channel as it flows through the graph and across the branches of
//! a residual add. Convolutions and matrix products are where a class
//! starts (a filter, a *source*) and ends (an input channel the layer
//! reads, a *sink*). A slot the pruner cannot edit (a graph input or
//! output, an op it does not know) pins its whole class.

use std::collections::HashMap;
use std::sync::Arc;

use nnc_ir::op::{BinaryOp, UnaryOp};
use nnc_ir::{Graph, NodeId, Op, Tensor, Value};

/// Where the channels of one value live: slots `base..base + n`, channel
/// `c` covering `block` consecutive elements along axis 1 (1 for NCHW
/// tensors; `H*W` for a flattened `[N, C*H*W]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChanVal {
    pub base: usize,
    pub n: usize,
    pub block: usize,
}

/// A layer that defines channels: the output channels of a convolution
/// or a matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub node: NodeId,
    /// Output channel of the node.
    pub channel: usize,
}

/// The channel classes of a graph.
#[derive(Debug, Default)]
pub struct Channels {
    vals: HashMap<Value, ChanVal>,
    parent: Vec<usize>,
    pinned: Vec<bool>,
    /// A sink (a convolution or matrix product) reads the slot.
    read: Vec<bool>,
    /// The slot is exactly zero for every input.
    zero: Vec<bool>,
    /// Filters producing the slot.
    sources: Vec<Vec<Source>>,
    /// BatchNorm nodes whose output is the slot (for slimming).
    norms: Vec<Vec<(NodeId, usize)>>,
    /// Why classes were pinned, by slot (first reason only).
    why: HashMap<usize, String>,
}

/// A constant reachable through `Dequantize` (int8 weights) or directly,
/// evaluated to real values.
pub fn real_const(g: &Graph, v: Value) -> Option<Arc<Tensor>> {
    if let Some(t) = g.const_value(v) {
        return Some(t.clone());
    }
    let n = g.node(v.node);
    if let Op::Dequantize(_) = n.op {
        let ins = g.node_inputs(v.node);
        let ts: Vec<Arc<Tensor>> = ins
            .iter()
            .map(|i| g.const_value(*i).cloned())
            .collect::<Option<_>>()?;
        let refs: Vec<&Tensor> = ts.iter().map(|t| t.as_ref()).collect();
        return n.op.eval(&refs).ok().map(|mut r| Arc::new(r.remove(0)));
    }
    None
}

/// True when the pruner can slice `v` (a weight or bias input): a constant,
/// or a dequantize of constants.
pub fn editable(g: &Graph, v: Value) -> bool {
    if g.const_value(v).is_some() {
        return true;
    }
    matches!(g.node(v.node).op, Op::Dequantize(_))
        && g.node_inputs(v.node)
            .iter()
            .all(|i| g.const_value(*i).is_some())
}

/// True for a convolution that is depthwise with one filter per channel.
pub fn is_depthwise(g: &Graph, id: NodeId) -> bool {
    let Op::Conv(a) = &g.node(id).op else {
        return false;
    };
    // From the weights only (a valid conv then has `group` input
    // channels), so it holds while a removal is being applied.
    let w = g.value_type(g.node_inputs(id)[1]);
    a.group > 1 && w.dims[0] == a.group && w.dims[1] == 1
}

fn act_keeps_zero(act: &Option<UnaryOp>) -> bool {
    act.as_ref().is_none_or(|u| u.apply_f64(0.0) == 0.0)
}

impl Channels {
    /// Builds the classes of `g`.
    pub fn analyze(g: &Graph) -> nnc_ir::Result<Channels> {
        let mut cx = Channels::default();
        let order = g.topo_order()?;
        // Values computed from constants only (weights, dequantized weights).
        let mut constlike: HashMap<NodeId, bool> = HashMap::new();
        for &id in &order {
            let n = g.node(id);
            let c = match n.op {
                Op::Const(_) => true,
                Op::Input => false,
                _ => g.node_inputs(id).iter().all(|v| constlike[&v.node]),
            };
            constlike.insert(id, c);
        }
        for (i, &id) in g.inputs().iter().enumerate() {
            let v = Value::new(id, 0);
            cx.add_val(g, v, 1);
            cx.pin_val(v, &format!("graph input `{}`", g.input_name(i)));
        }
        for &id in &order {
            let n = g.node(id);
            if matches!(n.op, Op::Input | Op::Const(_)) || constlike[&id] {
                continue;
            }
            cx.node(g, id, &constlike);
        }
        for o in g.outputs() {
            cx.pin_val(o.value, &format!("graph output `{}`", o.name));
        }
        Ok(cx)
    }

    fn add_val(&mut self, g: &Graph, v: Value, block: usize) -> Option<ChanVal> {
        let t = g.value_type(v);
        if t.rank() < 2 || t.dims[1] == 0 || !t.dims[1].is_multiple_of(block) {
            return None;
        }
        let n = t.dims[1] / block;
        let cv = ChanVal {
            base: self.parent.len(),
            n,
            block,
        };
        for i in 0..n {
            self.parent.push(cv.base + i);
            self.pinned.push(false);
            self.read.push(false);
            self.zero.push(false);
            self.sources.push(vec![]);
            self.norms.push(vec![]);
        }
        self.vals.insert(v, cv);
        Some(cv)
    }

    /// The channel layout of a value, if it has channels.
    pub fn val(&self, v: Value) -> Option<ChanVal> {
        self.vals.get(&v).copied()
    }

    fn pin_val(&mut self, v: Value, why: &str) {
        if let Some(cv) = self.val(v) {
            for s in cv.base..cv.base + cv.n {
                self.pinned[s] = true;
                self.why.entry(s).or_insert_with(|| why.to_string());
            }
        }
    }

    /// The class (root slot) of a slot.
    pub fn find(&self, mut s: usize) -> usize {
        while self.parent[s] != s {
            s = self.parent[s];
        }
        s
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (a, b);
        while self.parent[a] != a {
            let p = self.parent[a];
            self.parent[a] = self.parent[p];
            a = p;
        }
        while self.parent[b] != b {
            let p = self.parent[b];
            self.parent[b] = self.parent[p];
            b = p;
        }
        if a != b {
            let (lo, hi) = (a.min(b), a.max(b));
            self.parent[hi] = lo;
        }
    }

    /// Unites channel `c` of `a` with channel `c + off` of `b`.
    fn link(&mut self, a: ChanVal, b: ChanVal, off: usize) {
        for c in 0..a.n {
            self.union(a.base + c, b.base + off + c);
        }
    }

    fn node(&mut self, g: &Graph, id: NodeId, constlike: &HashMap<NodeId, bool>) {
        let n = g.node(id);
        let ins = g.node_inputs(id);
        let dyn_ins: Vec<Value> = ins
            .iter()
            .copied()
            .filter(|v| !constlike[&v.node])
            .collect();
        let outs: Vec<Value> = (0..n.outputs.len() as u32)
            .map(|p| Value::new(id, p))
            .collect();
        let pin_all = |cx: &mut Channels, why: String| {
            for &v in &outs {
                if cx.val(v).is_none() {
                    cx.add_val(g, v, 1);
                }
                cx.pin_val(v, &why);
            }
            for &v in &dyn_ins {
                cx.pin_val(v, &why);
            }
        };
        let why = format!("{} `{}`", n.op.name(), n.name);
        let x = dyn_ins.first().and_then(|v| self.val(*v));
        // Channel-local ops: output channel c is input channel c.
        let local = |cx: &mut Channels, x: ChanVal| -> Option<ChanVal> {
            let y = cx.add_val(g, outs[0], x.block)?;
            if y.n != x.n {
                return None;
            }
            cx.link(x, y, 0);
            Some(y)
        };
        let ok = match (&n.op, x) {
            (Op::Conv(a), Some(xv)) if ins[0] == dyn_ins[0] && dyn_ins.len() == 1 => {
                let params_ok = ins[1..].iter().all(|v| editable(g, *v));
                let w = real_const(g, ins[1]);
                let b = ins.get(2).and_then(|v| real_const(g, *v));
                match (params_ok, w) {
                    (true, Some(w)) if is_depthwise(g, id) => match local(self, xv) {
                        Some(y) => {
                            let k: usize = w.dims()[1..].iter().product();
                            let wv = w.to_f64();
                            let bv = b.map(|b| b.to_f64());
                            for c in 0..y.n {
                                let wz = wv[c * k..(c + 1) * k].iter().all(|x| *x == 0.0);
                                let bz = bv.as_ref().is_none_or(|b| b[c] == 0.0);
                                self.zero[y.base + c] =
                                    (wz || self.zero[xv.base + c]) && bz && act_keeps_zero(&a.act);
                            }
                            true
                        }
                        None => false,
                    },
                    (true, Some(w)) if a.group == 1 => match self.add_val(g, outs[0], 1) {
                        Some(y) => {
                            let cin = w.dims()[1];
                            let k: usize = w.dims()[2..].iter().product();
                            let wv = w.to_f64();
                            let bv = b.map(|b| b.to_f64());
                            for s in xv.base..xv.base + xv.n {
                                self.read[s] = true;
                            }
                            for o in 0..y.n {
                                let all = (0..cin).all(|c| {
                                    self.zero[xv.base + c]
                                        || wv[(o * cin + c) * k..(o * cin + c + 1) * k]
                                            .iter()
                                            .all(|x| *x == 0.0)
                                });
                                let bz = bv.as_ref().is_none_or(|b| b[o] == 0.0);
                                self.zero[y.base + o] = all && bz && act_keeps_zero(&a.act);
                                self.sources[y.base + o].push(Source {
                                    node: id,
                                    channel: o,
                                });
                            }
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            (Op::BatchNorm(_), Some(xv)) if dyn_ins.len() == 1 && ins[0] == dyn_ins[0] => {
                let p: Option<Vec<Vec<f64>>> = ins[1..5]
                    .iter()
                    .map(|v| g.const_value(*v).map(|t| t.to_f64()))
                    .collect();
                match (p, local(self, xv)) {
                    (Some(p), Some(y)) => {
                        for c in 0..y.n {
                            let (s, b, m) = (p[0][c], p[1][c], p[2][c]);
                            self.zero[y.base + c] =
                                b == 0.0 && (s == 0.0 || (self.zero[xv.base + c] && m == 0.0));
                            self.norms[y.base + c].push((id, c));
                        }
                        true
                    }
                    _ => false,
                }
            }
            (Op::Unary(u), Some(xv)) => match local(self, xv) {
                Some(y) => {
                    let keeps = u.apply_f64(0.0) == 0.0;
                    for c in 0..y.n {
                        self.zero[y.base + c] = keeps && self.zero[xv.base + c];
                    }
                    true
                }
                None => false,
            },
            (Op::Pool(_) | Op::GlobalPool(_), Some(xv)) => match local(self, xv) {
                Some(y) => {
                    for c in 0..y.n {
                        self.zero[y.base + c] = self.zero[xv.base + c];
                    }
                    true
                }
                None => false,
            },
            (Op::Quantize(_) | Op::Dequantize(_), Some(xv))
                if ins[0] == dyn_ins[0]
                    && dyn_ins.len() == 1
                    && ins[1..]
                        .iter()
                        .all(|v| g.const_value(*v).is_some_and(|t| t.len() == 1)) =>
            {
                match local(self, xv) {
                    Some(y) => {
                        for c in 0..y.n {
                            self.zero[y.base + c] = self.zero[xv.base + c];
                        }
                        true
                    }
                    None => false,
                }
            }
            (Op::Binary(b @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul)), Some(_)) => {
                self.binary(g, id, *b, &ins, constlike)
            }
            (Op::Concat(a), _) if a.axis == 1 && dyn_ins.len() == ins.len() => {
                let parts: Option<Vec<ChanVal>> = ins
                    .iter()
                    .map(|v| self.val(*v).filter(|c| c.block == 1))
                    .collect();
                match (parts, self.add_val(g, outs[0], 1)) {
                    (Some(parts), Some(y)) => {
                        let mut off = 0;
                        for p in parts {
                            self.link(p, y, off);
                            for c in 0..p.n {
                                self.zero[y.base + off + c] = self.zero[p.base + c];
                            }
                            off += p.n;
                        }
                        true
                    }
                    _ => false,
                }
            }
            (Op::Reshape(_), Some(xv)) => {
                let (xt, yt) = (g.value_type(ins[0]), &n.outputs[0]);
                let inner_x: usize = xt.dims[2..].iter().product();
                let block = if yt.rank() == 2 && yt.dims[0] == xt.dims[0] && xv.block == 1 {
                    Some(inner_x)
                } else if yt.rank() >= 2
                    && yt.dims[..2] == xt.dims[..2]
                    && xv.block == 1
                    && yt.dims[2..].iter().product::<usize>() == inner_x
                {
                    Some(1)
                } else {
                    None
                };
                match block.and_then(|b| self.add_val(g, outs[0], b)) {
                    Some(y) if y.n == xv.n => {
                        self.link(xv, y, 0);
                        for c in 0..y.n {
                            self.zero[y.base + c] = self.zero[xv.base + c];
                        }
                        true
                    }
                    _ => false,
                }
            }
            (Op::Gemm(a), Some(xv))
                if !a.trans_a
                    && dyn_ins.len() == 1
                    && ins[0] == dyn_ins[0]
                    && ins[1..].iter().all(|v| editable(g, *v))
                    && ins.get(2).is_none_or(|c| {
                        let d = &g.value_type(*c).dims;
                        d.len() == 1 || (d.len() == 2 && d[0] == 1)
                    }) =>
            {
                self.matrix(
                    g,
                    id,
                    xv,
                    a.trans_b,
                    a.act.as_ref().is_none_or(|u| u.apply_f64(0.0) == 0.0),
                )
            }
            (Op::MatMul, Some(xv))
                if dyn_ins.len() == 1
                    && ins[0] == dyn_ins[0]
                    && g.value_type(ins[0]).rank() == 2
                    && g.value_type(ins[1]).rank() == 2
                    && editable(g, ins[1]) =>
            {
                self.matrix(g, id, xv, false, true)
            }
            (Op::Slice(a), Some(xv)) if xv.block == 1 && a.steps[1] == 1 => {
                let xt = g.value_type(ins[0]);
                let (s, e) = (a.starts[1].max(0) as usize, a.ends[1].max(0) as usize);
                let other_full = (0..xt.rank())
                    .filter(|&i| i != 1)
                    .all(|i| a.starts[i] == 0 && a.ends[i] == xt.dims[i] as i64 && a.steps[i] == 1);
                match self.add_val(g, outs[0], 1) {
                    Some(y) if other_full && e > s && y.n == e - s => {
                        for c in 0..y.n {
                            self.union(xv.base + s + c, y.base + c);
                            self.zero[y.base + c] = self.zero[xv.base + s + c];
                        }
                        true
                    }
                    _ => false,
                }
            }
            (Op::Split(a), Some(xv)) if a.axis == 1 && xv.block == 1 => {
                let mut off = 0;
                let mut ok = true;
                for &o in &outs {
                    match self.add_val(g, o, 1) {
                        Some(y) => {
                            for c in 0..y.n {
                                self.union(xv.base + off + c, y.base + c);
                                self.zero[y.base + c] = self.zero[xv.base + off + c];
                            }
                            off += y.n;
                        }
                        None => ok = false,
                    }
                }
                ok
            }
            _ => false,
        };
        if !ok {
            pin_all(self, why);
        }
    }

    /// Gemm / MatMul with constant B: the input's channels are read (in
    /// blocks), the output's are produced.
    fn matrix(&mut self, g: &Graph, id: NodeId, xv: ChanVal, trans_b: bool, keeps: bool) -> bool {
        let ins = g.node_inputs(id);
        let Some(b) = real_const(g, ins[1]) else {
            return false;
        };
        let Some(y) = self.add_val(g, Value::new(id, 0), 1) else {
            return false;
        };
        let (k, m) = if trans_b {
            (b.dims()[1], b.dims()[0])
        } else {
            (b.dims()[0], b.dims()[1])
        };
        if k != xv.n * xv.block || m != y.n {
            return false;
        }
        let bv = b.to_f64();
        let at = |kk: usize, o: usize| {
            if trans_b {
                bv[o * k + kk]
            } else {
                bv[kk * m + o]
            }
        };
        let c = ins
            .get(2)
            .and_then(|v| real_const(g, *v))
            .map(|t| t.to_f64());
        for s in xv.base..xv.base + xv.n {
            self.read[s] = true;
        }
        for o in 0..m {
            let all = (0..xv.n).all(|ch| {
                self.zero[xv.base + ch]
                    || (ch * xv.block..(ch + 1) * xv.block).all(|kk| at(kk, o) == 0.0)
            });
            let cz = c.as_ref().is_none_or(|c| c[o % c.len()] == 0.0);
            self.zero[y.base + o] = all && cz && keeps;
            self.sources[y.base + o].push(Source {
                node: id,
                channel: o,
            });
        }
        true
    }

    /// Elementwise add, subtract or multiply: operands with the output's
    /// channels share classes with it; a constant operand broadcast along
    /// the channels is sliced with them.
    fn binary(
        &mut self,
        g: &Graph,
        id: NodeId,
        op: BinaryOp,
        ins: &[Value],
        constlike: &HashMap<NodeId, bool>,
    ) -> bool {
        let yt = &g.node(id).outputs[0];
        let c = yt.dims[1];
        let mut parts = vec![];
        let mut const_zero = vec![];
        for &v in ins {
            let t = g.value_type(v);
            // Position of the channel axis in the operand (aligned right).
            let pos = (t.rank() + 1).checked_sub(yt.rank());
            let ch_dim = pos.and_then(|p| t.dims.get(p)).copied().unwrap_or(1);
            if constlike[&v.node] {
                let Some(k) = g.const_value(v) else {
                    return false;
                };
                if ch_dim != 1 && ch_dim != c {
                    return false;
                }
                // Per channel: is this operand all zero (finite for Mul)?
                let kv = k.to_f64();
                let z: Vec<bool> = (0..c)
                    .map(|ch| {
                        let idx = if ch_dim == 1 { 0 } else { ch };
                        let inner: usize =
                            pos.map(|p| t.dims[p + 1..].iter().product()).unwrap_or(1);
                        let outer = kv.len() / (ch_dim * inner).max(1);
                        (0..outer).all(|o| {
                            kv[(o * ch_dim + idx) * inner..][..inner]
                                .iter()
                                .all(|x| *x == 0.0)
                        })
                    })
                    .collect();
                const_zero.push(z);
                continue;
            }
            match self.val(v) {
                Some(cv) if cv.block == 1 && t.rank() == yt.rank() && t.dims[1] == c => {
                    parts.push(cv)
                }
                Some(_) if t.rank() == yt.rank() && t.dims[1] == 1 => return false,
                _ => return false,
            }
        }
        let Some(y) = self.add_val(g, Value::new(id, 0), 1) else {
            return false;
        };
        for p in &parts {
            self.link(*p, y, 0);
        }
        for ch in 0..c {
            let dz = parts.iter().map(|p| self.zero[p.base + ch]);
            let cz = const_zero.iter().map(|z| z[ch]);
            self.zero[y.base + ch] = match op {
                BinaryOp::Mul => {
                    let d: Vec<bool> = dz.collect();
                    // 0 * x is 0 only for finite x: require every dynamic
                    // operand zero, or a zero constant with zero dynamics.
                    d.iter().all(|z| *z) && !d.is_empty()
                }
                _ => dz.chain(cz).all(|z| z),
            };
        }
        true
    }

    /// Every class (root slot) with its slots.
    pub fn classes(&self) -> HashMap<usize, Vec<usize>> {
        let mut m: HashMap<usize, Vec<usize>> = HashMap::new();
        for s in 0..self.parent.len() {
            m.entry(self.find(s)).or_default().push(s);
        }
        m
    }

    pub fn is_pinned(&self, slots: &[usize]) -> bool {
        slots.iter().any(|s| self.pinned[*s])
    }

    /// Why a class is pinned, if it is.
    pub fn pin_reason(&self, slots: &[usize]) -> Option<&str> {
        slots
            .iter()
            .find_map(|s| self.why.get(s))
            .map(String::as_str)
    }

    /// A class whose removal changes nothing: every slot a layer reads is
    /// exactly zero (or no layer reads it at all).
    pub fn is_dead(&self, slots: &[usize]) -> bool {
        !self.is_pinned(slots) && slots.iter().all(|s| !self.read[*s] || self.zero[*s])
    }

    /// True when no layer reads the class.
    pub fn is_unread(&self, slots: &[usize]) -> bool {
        slots.iter().all(|s| !self.read[*s])
    }

    /// The filters producing a class.
    pub fn sources(&self, slots: &[usize]) -> Vec<Source> {
        slots
            .iter()
            .flat_map(|s| self.sources[*s].iter().copied())
            .collect()
    }

    /// The BatchNorm channels of a class.
    pub fn norms(&self, slots: &[usize]) -> Vec<(NodeId, usize)> {
        slots
            .iter()
            .flat_map(|s| self.norms[*s].iter().copied())
            .collect()
    }

    /// The values with channels, with their layouts.
    pub fn values(&self) -> impl Iterator<Item = (&Value, &ChanVal)> {
        self.vals.iter()
    }

    /// The (value, channel) of every slot.
    pub fn slot_owners(&self) -> Vec<(Value, usize)> {
        let mut v = vec![(Value::new(NodeId::new(0), 0), 0); self.parent.len()];
        for (val, cv) in &self.vals {
            for c in 0..cv.n {
                v[cv.base + c] = (*val, c);
            }
        }
        v
    }
}
