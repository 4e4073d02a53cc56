//! The graph: nodes are ops, edges carry values from an output port of the
//! producer to an input slot of the consumer. A stable petgraph keeps node ids
//! valid while passes add and remove nodes. Constant tensors live in a side
//! table of `Arc`s, so cloning a graph (or running a pass) never copies weights.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};

use crate::dtype::TensorType;
use crate::error::{IrError, Result};
use crate::op::Op;
use crate::tensor::Tensor;

/// Handle of a node.
pub type NodeId = NodeIndex<u32>;

/// A value: output `port` of `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    pub node: NodeId,
    pub port: u32,
}

impl Value {
    pub fn new(node: NodeId, port: u32) -> Self {
        Value { node, port }
    }
}

/// Index into the graph's constant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// Node payload: the op, the types of its outputs, and the source name
/// (the ONNX node or initializer name) for dumps and error messages.
#[derive(Clone, Debug)]
pub struct NodeData {
    pub op: Op,
    pub outputs: Vec<TensorType>,
    pub name: String,
}

/// Edge payload: which output of the producer feeds which input slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub port: u32,
    pub slot: u32,
}

/// A graph output with its external name.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    pub value: Value,
    pub name: String,
}

/// A dataflow graph with static types.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<NodeData, Edge, u32>,
    inputs: Vec<NodeId>,
    outputs: Vec<GraphOutput>,
    consts: Vec<Arc<Tensor>>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Appends a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> Value {
        let id = self.g.add_node(NodeData {
            op: Op::Input,
            outputs: vec![ty],
            name: name.into(),
        });
        self.inputs.push(id);
        Value::new(id, 0)
    }

    /// Adds a tensor to the constant table without creating a node.
    pub fn intern_const(&mut self, t: impl Into<Arc<Tensor>>) -> ConstId {
        self.consts.push(t.into());
        ConstId(self.consts.len() as u32 - 1)
    }

    /// Adds a constant node.
    pub fn add_const(&mut self, t: impl Into<Arc<Tensor>>, name: impl Into<String>) -> Value {
        let t = t.into();
        let ty = t.ty();
        let id = self.intern_const(t);
        let n = self.g.add_node(NodeData {
            op: Op::Const(id),
            outputs: vec![ty],
            name: name.into(),
        });
        Value::new(n, 0)
    }

    /// Adds a node, inferring its output types; fails (naming the node) when
    /// the inputs do not fit the op.
    pub fn add_op(
        &mut self,
        op: Op,
        inputs: &[Value],
        name: impl Into<String>,
    ) -> Result<Vec<Value>> {
        let name = name.into();
        for v in inputs {
            self.check_value(*v)?;
        }
        let tys: Vec<&TensorType> = inputs.iter().map(|v| self.value_type(*v)).collect();
        let outputs = op.infer(&tys).map_err(|msg| IrError::Shape {
            node: name.clone(),
            op: op.name().to_string(),
            msg,
        })?;
        let n = outputs.len() as u32;
        let id = self.add_node_typed(op, inputs, outputs, name);
        Ok((0..n).map(|p| Value::new(id, p)).collect())
    }

    /// Like [`Graph::add_op`] for single-output ops.
    pub fn add1(&mut self, op: Op, inputs: &[Value], name: impl Into<String>) -> Result<Value> {
        let mut v = self.add_op(op, inputs, name)?;
        if v.len() != 1 {
            return Err(IrError::Graph(format!(
                "op produced {} outputs, expected 1",
                v.len()
            )));
        }
        Ok(v.remove(0))
    }

    /// Adds a node with given output types, unchecked (the parser uses this
    /// and then runs the verifier).
    pub fn add_node_typed(
        &mut self,
        op: Op,
        inputs: &[Value],
        outputs: Vec<TensorType>,
        name: impl Into<String>,
    ) -> NodeId {
        let id = self.g.add_node(NodeData {
            op,
            outputs,
            name: name.into(),
        });
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(
                v.node,
                id,
                Edge {
                    port: v.port,
                    slot: slot as u32,
                },
            );
        }
        id
    }

    fn check_value(&self, v: Value) -> Result<()> {
        match self.g.node_weight(v.node) {
            Some(n) if (v.port as usize) < n.outputs.len() => Ok(()),
            _ => Err(IrError::Graph(format!("dangling value {v:?}"))),
        }
    }

    pub fn set_outputs(&mut self, outputs: Vec<GraphOutput>) {
        self.outputs = outputs;
    }

    pub fn add_output(&mut self, value: Value, name: impl Into<String>) {
        self.outputs.push(GraphOutput {
            value,
            name: name.into(),
        });
    }

    /// Graph input nodes, in signature order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    pub fn outputs_mut(&mut self) -> &mut Vec<GraphOutput> {
        &mut self.outputs
    }

    /// Type of input `i`.
    pub fn input_type(&self, i: usize) -> &TensorType {
        &self.g[self.inputs[i]].outputs[0]
    }

    pub fn input_name(&self, i: usize) -> &str {
        &self.g[self.inputs[i]].name
    }

    pub fn node(&self, id: NodeId) -> &NodeData {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut NodeData {
        &mut self.g[id]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    pub fn num_nodes(&self) -> usize {
        self.g.node_count()
    }

    /// All node ids in index order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    pub fn value_type(&self, v: Value) -> &TensorType {
        &self.g[v.node].outputs[v.port as usize]
    }

    /// Inputs of a node in slot order.
    pub fn node_inputs(&self, id: NodeId) -> Vec<Value> {
        let mut e: Vec<(u32, Value)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (e.weight().slot, Value::new(e.source(), e.weight().port)))
            .collect();
        e.sort_by_key(|(s, _)| *s);
        e.into_iter().map(|(_, v)| v).collect()
    }

    /// Raw (slot, value) pairs of a node's inputs, unsorted (for the verifier).
    pub(crate) fn raw_inputs(&self, id: NodeId) -> Vec<(u32, Value)> {
        self.g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (e.weight().slot, Value::new(e.source(), e.weight().port)))
            .collect()
    }

    /// Consumers of a value as (node, input slot), sorted.
    pub fn users(&self, v: Value) -> Vec<(NodeId, usize)> {
        let mut u: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(v.node, Direction::Outgoing)
            .filter(|e| e.weight().port == v.port)
            .map(|e| (e.target(), e.weight().slot as usize))
            .collect();
        u.sort();
        u
    }

    /// True when the value feeds a graph output.
    pub fn is_output(&self, v: Value) -> bool {
        self.outputs.iter().any(|o| o.value == v)
    }

    /// Number of uses of a value, counting graph outputs.
    pub fn use_count(&self, v: Value) -> usize {
        self.users(v).len() + self.outputs.iter().filter(|o| o.value == v).count()
    }

    /// Points every use of `old` (including graph outputs) at `new`.
    pub fn replace_uses(&mut self, old: Value, new: Value) {
        if old == new {
            return;
        }
        let edges: Vec<_> = self
            .g
            .edges_directed(old.node, Direction::Outgoing)
            .filter(|e| e.weight().port == old.port)
            .map(|e| (e.id(), e.target(), e.weight().slot))
            .collect();
        for (eid, target, slot) in edges {
            self.g.remove_edge(eid);
            self.g.add_edge(
                new.node,
                target,
                Edge {
                    port: new.port,
                    slot,
                },
            );
        }
        for o in &mut self.outputs {
            if o.value == old {
                o.value = new;
            }
        }
    }

    /// Replaces the whole input list of a node.
    pub fn set_node_inputs(&mut self, id: NodeId, inputs: &[Value]) {
        let old: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(
                v.node,
                id,
                Edge {
                    port: v.port,
                    slot: slot as u32,
                },
            );
        }
    }

    /// Removes a node and its edges. Graph inputs cannot be removed.
    pub fn remove_node(&mut self, id: NodeId) {
        if !self.inputs.contains(&id) {
            self.g.remove_node(id);
        }
    }

    /// The constant tensor behind a `Const` node's value.
    pub fn const_value(&self, v: Value) -> Option<&Arc<Tensor>> {
        match &self.g.node_weight(v.node)?.op {
            Op::Const(id) => self.consts.get(id.0 as usize),
            _ => None,
        }
    }

    /// A tensor from the constant table.
    pub fn constant(&self, id: ConstId) -> Option<&Arc<Tensor>> {
        self.consts.get(id.0 as usize)
    }

    /// Size of the constant table (including entries no node uses any more).
    pub fn const_table_len(&self) -> usize {
        self.consts.len()
    }

    /// Nodes in a deterministic topological order: among ready nodes, the
    /// one created first goes first. Fails on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let mut indeg: Vec<usize> = vec![0; self.g.node_bound()];
        for id in self.g.node_indices() {
            indeg[id.index()] = self.g.edges_directed(id, Direction::Incoming).count();
        }
        let mut ready: BinaryHeap<Reverse<u32>> = self
            .g
            .node_indices()
            .filter(|id| indeg[id.index()] == 0)
            .map(|id| Reverse(id.index() as u32))
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(i)) = ready.pop() {
            let id = NodeIndex::new(i as usize);
            order.push(id);
            for e in self.g.edges_directed(id, Direction::Outgoing) {
                let t = e.target().index();
                indeg[t] -= 1;
                if indeg[t] == 0 {
                    ready.push(Reverse(t as u32));
                }
            }
        }
        if order.len() != self.g.node_count() {
            return Err(IrError::Graph("the graph has a cycle".into()));
        }
        Ok(order)
    }

    /// Removes nodes that no graph output depends on (graph inputs stay).
    /// Returns how many were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeId> = self.outputs.iter().map(|o| o.value.node).collect();
        while let Some(n) = stack.pop() {
            if !self.g.contains_node(n) || std::mem::replace(&mut live[n.index()], true) {
                continue;
            }
            stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
        }
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|n| !live[n.index()] && !self.inputs.contains(n))
            .collect();
        for n in &dead {
            self.g.remove_node(*n);
        }
        dead.len()
    }

    /// Drops constant-table entries no node refers to and renumbers the rest.
    pub fn compact_consts(&mut self) {
        let mut map = vec![None; self.consts.len()];
        let mut kept = Vec::new();
        let ids: Vec<NodeId> = self.g.node_indices().collect();
        for id in ids {
            if let Op::Const(c) = &mut self.g[id].op {
                let old = c.0 as usize;
                let new = *map[old].get_or_insert_with(|| {
                    kept.push(self.consts[old].clone());
                    kept.len() - 1
                });
                *c = ConstId(new as u32);
            }
        }
        self.consts = kept;
    }

    /// Number of elements and bytes of all constants referenced by nodes.
    pub fn param_stats(&self) -> (usize, usize) {
        let mut seen = vec![false; self.consts.len()];
        let (mut n, mut b) = (0, 0);
        for id in self.g.node_indices() {
            if let Op::Const(c) = self.g[id].op
                && !std::mem::replace(&mut seen[c.0 as usize], true)
            {
                let t = &self.consts[c.0 as usize];
                n += t.len();
                b += t.len() * t.dtype().size();
            }
        }
        (n, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::op::UnaryOp;

    #[test]
    fn build_replace_and_dce() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
        let a = g.add1(Op::Unary(UnaryOp::Relu), &[x], "a").unwrap();
        let b = g.add1(Op::Unary(UnaryOp::Neg), &[a], "b").unwrap();
        let c = g.add1(Op::Identity, &[b], "c").unwrap();
        g.add_output(c, "y");
        assert_eq!(g.users(b), vec![(c.node, 0)]);
        g.replace_uses(c, b);
        assert_eq!(g.outputs()[0].value, b);
        assert_eq!(g.remove_dead(), 1);
        assert_eq!(g.num_nodes(), 3);
        let order = g.topo_order().unwrap();
        assert_eq!(order, vec![x.node, a.node, b.node]);
    }

    #[test]
    fn add_op_reports_shape_errors() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
        let y = g.add_input("y", TensorType::new(DType::F32, vec![3]));
        let e = g
            .add_op(Op::Binary(crate::op::BinaryOp::Add), &[x, y], "bad_add")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `bad_add` (add): cannot broadcast f32[2] with f32[3]"
        );
    }
}
