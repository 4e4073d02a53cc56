//! Static statistics of a graph: node and op counts, parameters, multiply-
//! accumulates and activation sizes (`nnc info`).

use std::collections::BTreeMap;

use crate::dtype::TensorType;
use crate::graph::{Graph, NodeId};
use crate::op::Op;

/// Summary numbers of a graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphStats {
    /// Compute nodes (inputs and constants excluded).
    pub nodes: usize,
    /// Compute nodes per op name.
    pub ops: BTreeMap<String, usize>,
    /// Elements and bytes of all constants.
    pub params: usize,
    pub param_bytes: usize,
    /// Multiply-accumulates of one inference.
    pub macs: u64,
    /// Sum of the sizes of every computed tensor.
    pub activation_bytes: usize,
    /// The largest computed tensor.
    pub largest_activation_bytes: usize,
    /// Compute nodes whose inputs and outputs are all integers (or
    /// booleans).
    pub integer_nodes: usize,
    /// Compute nodes that read or produce floats, as (op, node name): in a
    /// quantized model, the float islands that remain.
    pub float_nodes: Vec<(String, String)>,
}

/// Multiply-accumulates of one node (0 for ops that do no multiplication
/// worth counting).
pub fn node_macs(g: &Graph, id: NodeId) -> u64 {
    let n = g.node(id);
    let ins: Vec<&TensorType> = g.node_inputs(id).iter().map(|v| g.value_type(*v)).collect();
    op_macs(&n.op, &ins, &n.outputs)
}

/// Multiply-accumulates of an op applied to inputs of the given types.
pub fn op_macs(op: &Op, ins: &[&TensorType], outs: &[TensorType]) -> u64 {
    let ty = |i: usize| ins[i];
    let out = || outs.first().map_or(0, |t| t.len()) as u64;
    match op {
        Op::Conv(_) | Op::QConv(_) | Op::ConvInteger(_) => {
            let w = ty(1);
            let per: usize = w.dims[1..].iter().product();
            out() * per as u64
        }
        Op::Winograd(a) => a.tiling(ty(0)).map_or(0, |t| {
            let (gemm, transforms) = t.work(ty(0).dims[1], ty(1).dims[2]);
            ty(0).dims[0] as u64 * (gemm + transforms)
        }),
        Op::ConvTranspose(_) => {
            // Every input element meets every tap of its group's filters.
            let w = ty(1);
            let per: usize = w.dims[1..].iter().product();
            ty(0).len() as u64 * per as u64
        }
        Op::Gemm(a) => {
            let k = if a.trans_a {
                ty(0).dims[0]
            } else {
                ty(0).dims[1]
            };
            out() * k as u64
        }
        Op::QGemm(_) => out() * *ty(0).dims.last().unwrap_or(&1) as u64,
        Op::MatMul | Op::MatMulInteger => {
            let a = ty(0);
            let k = *a.dims.last().unwrap_or(&1);
            out() * k as u64
        }
        Op::Lrn(a) => out() * a.size as u64,
        Op::Pool(p) => out() * p.kernel.iter().product::<usize>() as u64,
        // Normalize then scale and shift: two multiply-adds per element.
        Op::BatchNorm(_) => 2 * out(),
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Softmax(_)
        | Op::QBinary(_)
        | Op::Requant(_)
        | Op::QSoftmax(_)
        | Op::Rescale => out(),
        Op::Resize(r) => {
            out()
                * match r.mode {
                    crate::op::ResizeMode::Nearest => 0,
                    crate::op::ResizeMode::Linear => 1 << r.sizes.len().min(4),
                    crate::op::ResizeMode::Cubic => 4u64.pow(r.sizes.len().min(4) as u32),
                }
        }
        _ => 0,
    }
}

/// Computes the statistics of a graph.
pub fn stats(g: &Graph) -> GraphStats {
    let mut s = GraphStats::default();
    (s.params, s.param_bytes) = g.param_stats();
    for id in g.node_ids() {
        let n = g.node(id);
        if matches!(n.op, Op::Input | Op::Const(_)) {
            continue;
        }
        s.nodes += 1;
        *s.ops.entry(n.op.name().to_string()).or_default() += 1;
        s.macs += node_macs(g, id);
        let float = n.outputs.iter().any(|t| t.dtype.is_float())
            || g.node_inputs(id)
                .iter()
                .any(|v| g.value_type(*v).dtype.is_float());
        if float {
            s.float_nodes
                .push((n.op.name().to_string(), n.name.clone()));
        } else {
            s.integer_nodes += 1;
        }
        for t in &n.outputs {
            s.activation_bytes += t.bytes();
            s.largest_activation_bytes = s.largest_activation_bytes.max(t.bytes());
        }
    }
    s
}
