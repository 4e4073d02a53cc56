//! Graph-level clean-ups that need no e-graph: constant folding, dead code
//! removal, common subexpression sharing and identity removal. They run at
//! `-O1` and around the e-graph pass at `-O2`.

use std::collections::HashMap;
use std::sync::Arc;

use nnc_ir::parse::op_attr_text;
use nnc_ir::{Graph, NodeId, Op, Tensor, Value};

use crate::pass::{Pass, PassCx, Result};

/// Constants up to this many elements are materialized by folding.
pub const FOLD_LIMIT: usize = 1 << 24;

/// Nodes costing more multiply-accumulates than this are not folded (the
/// interpreter would take too long); they run with the model.
pub const FOLD_MACS: u64 = 1 << 26;

/// True when folding `op` on inputs of types `ins` is cheap enough.
pub fn cheap_to_fold(op: &Op, ins: &[&nnc_ir::TensorType], outs: &[nnc_ir::TensorType]) -> bool {
    nnc_ir::stats::op_macs(op, ins, outs) <= FOLD_MACS
}

/// Folding may add this many bytes of constants beyond what it consumes,
/// plus twice the graph's own constants (the importer's rule): past that,
/// nodes are left for run time rather than blowing up weights and code.
pub const FOLD_BUDGET_BASE: u64 = 32 << 20;

/// The folding budget of a graph, in bytes of growth.
pub fn fold_budget(g: &Graph) -> u64 {
    let own = g.param_stats().1 as u64;
    FOLD_BUDGET_BASE.saturating_add(own.saturating_mul(2))
}

/// Bytes a fold adds beyond its inputs.
pub fn fold_growth(ins: &[&Tensor], outs: &[nnc_ir::TensorType]) -> u64 {
    let out: u64 = outs.iter().map(|t| t.bytes() as u64).sum();
    let inp: u64 = ins.iter().map(|t| t.ty().bytes() as u64).sum();
    out.saturating_sub(inp)
}

/// Evaluates nodes whose inputs are all constants.
#[derive(Debug, Default)]
pub struct FoldConstants;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&mut self, g: &mut Graph, _: &mut PassCx) -> Result<bool> {
        let mut changed = false;
        let mut budget = fold_budget(g);
        for id in g.topo_order()? {
            let n = g.node(id);
            if matches!(n.op, Op::Input | Op::Const(_))
                || n.op.is_quantization()
                || n.outputs.iter().any(|t| t.len() > FOLD_LIMIT)
            {
                continue;
            }
            let ins = g.node_inputs(id);
            let Some(consts) = ins
                .iter()
                .map(|v| g.const_value(*v).cloned())
                .collect::<Option<Vec<Arc<Tensor>>>>()
            else {
                continue;
            };
            if consts.is_empty() {
                continue;
            }
            let refs: Vec<&Tensor> = consts.iter().map(|t| t.as_ref()).collect();
            let in_tys: Vec<nnc_ir::TensorType> = refs.iter().map(|t| t.ty()).collect();
            let in_refs: Vec<&nnc_ir::TensorType> = in_tys.iter().collect();
            if !cheap_to_fold(&n.op, &in_refs, &n.outputs) {
                continue;
            }
            let growth = fold_growth(&refs, &n.outputs);
            if growth > budget {
                log::info!(
                    "fold-constants: node `{}` ({}) is left for run time: folding would add {growth} bytes",
                    n.name,
                    n.op.name()
                );
                continue;
            }
            budget -= growth;
            // A node that fails to evaluate is left for run time to report.
            let Ok(res) = n.op.eval(&refs) else { continue };
            let name = n.name.clone();
            for (p, t) in res.into_iter().enumerate() {
                let c = g.add_const(t, name.clone());
                g.replace_uses(Value::new(id, p as u32), c);
            }
            changed = true;
        }
        if changed {
            g.remove_dead();
            g.compact_consts();
        }
        Ok(changed)
    }
}

/// Removes nodes no output depends on.
#[derive(Debug, Default)]
pub struct DeadCode;

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&mut self, g: &mut Graph, _: &mut PassCx) -> Result<bool> {
        let n = g.remove_dead();
        g.compact_consts();
        Ok(n > 0)
    }
}

/// Removes `identity` nodes by forwarding their input.
#[derive(Debug, Default)]
pub struct RemoveIdentity;

impl Pass for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove-identity"
    }

    fn run(&mut self, g: &mut Graph, _: &mut PassCx) -> Result<bool> {
        let mut changed = false;
        for id in g.node_ids() {
            if g.node(id).op == Op::Identity {
                let src = g.node_inputs(id)[0];
                g.replace_uses(Value::new(id, 0), src);
                g.remove_node(id);
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Shares identical nodes (same op, attributes and inputs) and bitwise
/// identical constants.
#[derive(Debug, Default)]
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&mut self, g: &mut Graph, _: &mut PassCx) -> Result<bool> {
        let mut changed = false;
        let mut seen: HashMap<(String, Vec<Value>), NodeId> = HashMap::new();
        // Constants are keyed by type and content hash, then compared exactly.
        let mut consts: HashMap<(String, u64), Vec<NodeId>> = HashMap::new();
        for id in g.topo_order()? {
            let n = g.node(id);
            match &n.op {
                Op::Input => continue,
                Op::Const(_) => {
                    let t = g.const_value(Value::new(id, 0)).expect("const").clone();
                    let key = (t.ty().to_string(), hash_bytes(&t.data().to_le_bytes()));
                    let bucket = consts.entry(key).or_default();
                    let twin = bucket.iter().copied().find(|&o| {
                        g.const_value(Value::new(o, 0))
                            .is_some_and(|u| u.bit_eq(&t))
                    });
                    match twin {
                        Some(o) => {
                            g.replace_uses(Value::new(id, 0), Value::new(o, 0));
                            g.remove_node(id);
                            changed = true;
                        }
                        None => bucket.push(id),
                    }
                }
                op => {
                    let key = (
                        format!("{}{{{}}}", op.name(), op_attr_text(op)),
                        g.node_inputs(id),
                    );
                    match seen.get(&key) {
                        Some(&o) => {
                            for p in 0..n.outputs.len() as u32 {
                                g.replace_uses(Value::new(id, p), Value::new(o, p));
                            }
                            g.remove_node(id);
                            changed = true;
                        }
                        None => {
                            seen.insert(key, id);
                        }
                    }
                }
            }
        }
        if changed {
            g.compact_consts();
        }
        Ok(changed)
    }
}

/// FNV-1a, enough to bucket constants before an exact comparison.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use nnc_ir::op::{BinaryOp, ExpandAttrs};
    use nnc_ir::{DType, TensorType};

    use super::*;

    /// A 4-byte constant expanded to 64 MiB is more than folding may add:
    /// the expand stays for run time, the small fold next to it happens.
    #[test]
    fn folding_respects_the_budget() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![1 << 24]));
        let one = g.add_const(Tensor::from_f32(vec![1], vec![1.0]).unwrap(), "one");
        let big = g
            .add1(
                Op::Expand(ExpandAttrs {
                    shape: vec![1 << 24],
                }),
                &[one],
                "big",
            )
            .unwrap();
        let two = g
            .add1(Op::Binary(BinaryOp::Add), &[one, one], "two")
            .unwrap();
        let s = g.add1(Op::Binary(BinaryOp::Add), &[x, big], "s").unwrap();
        let y = g.add1(Op::Binary(BinaryOp::Mul), &[s, two], "y").unwrap();
        g.add_output(y, "y");
        FoldConstants.run(&mut g, &mut PassCx::default()).unwrap();
        let ops: Vec<&str> = g
            .node_ids()
            .iter()
            .map(|&id| g.node(id).op.name())
            .collect();
        assert!(ops.contains(&"expand"), "{ops:?}");
        assert_eq!(g.param_stats().0, 2, "{}", nnc_ir::print(&g));
    }
}
