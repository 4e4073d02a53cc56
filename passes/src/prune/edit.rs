//! Removing channel classes: every producer drops the filters, every
//! consumer drops the input channels (weights, biases, BatchNorm
//! parameters, per-channel quantization scales, slice bounds, split sizes,
//! flattened Gemm rows), and output types are inferred again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use nnc_ir::op::SliceAttrs;
use nnc_ir::{Graph, IrError, NodeId, Op, Tensor, Value};

use super::channels::{Channels, is_depthwise};

/// Channels removed from each value.
pub type Removal = HashMap<Value, Vec<usize>>;

/// The removal of the given classes (root slots), per value.
pub fn removal(ch: &Channels, classes: &BTreeSet<usize>) -> Removal {
    let mut r: Removal = HashMap::new();
    for (v, cv) in ch.values() {
        let gone: Vec<usize> = (0..cv.n)
            .filter(|c| classes.contains(&ch.find(cv.base + c)))
            .collect();
        if !gone.is_empty() {
            r.insert(*v, gone);
        }
    }
    r
}

/// Indices kept along `axis` of `dims` when `drop` (channel indices, each
/// `block` wide) go.
fn kept_indices(dims: &[usize], axis: usize, drop: &[usize], block: usize) -> Vec<usize> {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let d = dims[axis];
    let dropped: BTreeSet<usize> = drop
        .iter()
        .flat_map(|c| c * block..(c + 1) * block)
        .collect();
    let keep: Vec<usize> = (0..d).filter(|i| !dropped.contains(i)).collect();
    let mut idx = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in &keep {
            for i in 0..inner {
                idx.push((o * d + k) * inner + i);
            }
        }
    }
    idx
}

/// `t` without the given indices along `axis`.
pub fn slice_tensor(t: &Tensor, axis: usize, drop: &[usize], block: usize) -> Tensor {
    let idx = kept_indices(t.dims(), axis, drop, block);
    let mut dims = t.dims().to_vec();
    dims[axis] -= drop.len() * block;
    Tensor::new(dims, t.data().gather(&idx)).expect("sizes agree")
}

/// A new value equal to `v` (a constant or a dequantize of constants)
/// without the given indices along `axis`. Per-channel quantization
/// parameters along the same axis shrink with it. Shared constants are
/// never modified: new nodes are made.
pub fn slice_param(
    g: &mut Graph,
    v: Value,
    axis: usize,
    drop: &[usize],
    block: usize,
) -> nnc_ir::Result<Value> {
    if drop.is_empty() {
        return Ok(v);
    }
    if let Some(t) = g.const_value(v).cloned() {
        let name = g.node(v.node).name.clone();
        return Ok(g.add_const(Arc::new(slice_tensor(&t, axis, drop, block)), name));
    }
    let n = g.node(v.node).clone();
    let Op::Dequantize(a) = &n.op else {
        return Err(IrError::Graph(format!(
            "prune: `{}` ({}) is not a constant weight",
            n.name,
            n.op.name()
        )));
    };
    let ins = g.node_inputs(v.node);
    let q = g.const_value(ins[0]).cloned().expect("editable");
    let qname = g.node(ins[0].node).name.clone();
    let mut new_ins = vec![g.add_const(Arc::new(slice_tensor(&q, axis, drop, block)), qname)];
    for &p in &ins[1..] {
        let t = g.const_value(p).cloned().expect("editable");
        if t.len() > 1 && a.axis == axis {
            let name = g.node(p.node).name.clone();
            new_ins.push(g.add_const(Arc::new(slice_tensor(&t, 0, drop, block)), name));
        } else {
            new_ins.push(p);
        }
    }
    g.add1(n.op.clone(), &new_ins, n.name.clone())
}

/// Applies a removal to the graph. Node ids stay the same (the pruned
/// graph can be compared with the original node by node).
pub fn apply(g: &mut Graph, ch: &Channels, r: &Removal) -> nnc_ir::Result<()> {
    let empty: Vec<usize> = vec![];
    let gone = |v: Value| r.get(&v).unwrap_or(&empty);
    for id in g.topo_order()? {
        let ins = g.node_inputs(id);
        let nout = g.node(id).outputs.len() as u32;
        let outs_touched = (0..nout).any(|p| r.contains_key(&Value::new(id, p)));
        let ins_touched = ins.iter().any(|v| r.contains_key(v));
        if !outs_touched && !ins_touched {
            continue;
        }
        let y = Value::new(id, 0);
        let op = g.node(id).op.clone();
        let mut new_ins = ins.clone();
        let mut new_op = op.clone();
        match &op {
            Op::Conv(a) => {
                let dw = is_depthwise(g, id);
                let ry = gone(y).clone();
                let w = slice_param(g, ins[1], 0, &ry, 1)?;
                new_ins[1] = if dw {
                    w
                } else {
                    slice_param(g, w, 1, gone(ins[0]), 1)?
                };
                if let Some(&b) = ins.get(2) {
                    new_ins[2] = slice_param(g, b, 0, &ry, 1)?;
                }
                if dw {
                    let mut a = a.clone();
                    a.group -= ry.len();
                    new_op = Op::Conv(a);
                }
            }
            Op::BatchNorm(_) => {
                let ry = gone(y).clone();
                for slot in new_ins.iter_mut().skip(1) {
                    *slot = slice_param(g, *slot, 0, &ry, 1)?;
                }
            }
            Op::Binary(_) => {
                let ry = gone(y).clone();
                let yr = g.node(id).outputs[0].rank();
                for slot in new_ins.iter_mut() {
                    if g.const_value(*slot).is_some() {
                        let t = g.value_type(*slot).clone();
                        if let Some(p) = (t.rank() + 1).checked_sub(yr)
                            && t.dims.get(p).is_some_and(|d| *d > 1)
                        {
                            *slot = slice_param(g, *slot, p, &ry, 1)?;
                        }
                    }
                }
            }
            Op::Reshape(a) => {
                let cv = ch.val(y).expect("reshape with channels");
                let mut a = a.clone();
                a.shape[1] -= gone(y).len() * cv.block;
                new_op = Op::Reshape(a);
            }
            Op::Gemm(a) => {
                let ry = gone(y).clone();
                let xv = ch.val(ins[0]).expect("gemm input with channels");
                let (kax, max) = if a.trans_b { (1, 0) } else { (0, 1) };
                let b = slice_param(g, ins[1], kax, gone(ins[0]), xv.block)?;
                new_ins[1] = slice_param(g, b, max, &ry, 1)?;
                if let Some(&c) = ins.get(2) {
                    let ax = g.value_type(c).rank() - 1;
                    new_ins[2] = slice_param(g, c, ax, &ry, 1)?;
                }
            }
            Op::MatMul => {
                let ry = gone(y).clone();
                let xv = ch.val(ins[0]).expect("matmul input with channels");
                let b = slice_param(g, ins[1], 0, gone(ins[0]), xv.block)?;
                new_ins[1] = slice_param(g, b, 1, &ry, 1)?;
            }
            Op::Slice(a) => {
                let rx = gone(ins[0]);
                let (s, e) = (a.starts[1], a.ends[1]);
                let before = rx.iter().filter(|c| (**c as i64) < s).count() as i64;
                let inside = rx.iter().filter(|c| (s..e).contains(&(**c as i64))).count() as i64;
                let mut a: SliceAttrs = a.clone();
                a.starts[1] = s - before;
                a.ends[1] = e - before - inside;
                new_op = Op::Slice(a);
            }
            Op::Split(a) => {
                let mut a = a.clone();
                for (p, s) in a.sizes.iter_mut().enumerate() {
                    *s -= gone(Value::new(id, p as u32)).len();
                }
                new_op = Op::Split(a);
            }
            // Channel-local ops and concat: only the types change.
            _ => {}
        }
        if new_ins != ins {
            g.set_node_inputs(id, &new_ins);
        }
        let tys: Vec<nnc_ir::TensorType> =
            new_ins.iter().map(|v| g.value_type(*v).clone()).collect();
        let refs: Vec<&nnc_ir::TensorType> = tys.iter().collect();
        let name = g.node(id).name.clone();
        let outs = new_op.infer(&refs).map_err(|msg| IrError::Shape {
            node: name,
            op: new_op.name().to_string(),
            msg: format!("after pruning: {msg}"),
        })?;
        let n = g.node_mut(id);
        n.op = new_op;
        n.outputs = outs;
    }
    g.remove_dead();
    g.compact_consts();
    Ok(())
}

/// The name of the node producing a value, for reports.
pub fn producer_name(g: &Graph, id: NodeId) -> String {
    let n = g.node(id);
    format!("{} `{}`", n.op.name(), n.name)
}
