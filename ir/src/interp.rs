//! The reference interpreter: evaluates a graph node by node with the
//! straightforward kernels in `op/`. It is the oracle every pass and backend
//! is checked against, so it favours obviously correct code over speed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{IrError, Result};
use crate::graph::{Graph, NodeId, Value};
use crate::op::Op;
use crate::tensor::Tensor;

/// Checks that `inputs` match the graph signature.
pub fn check_inputs(g: &Graph, inputs: &[Tensor]) -> Result<()> {
    if inputs.len() != g.inputs().len() {
        return Err(IrError::Input {
            index: inputs.len().min(g.inputs().len()),
            name: String::new(),
            msg: format!(
                "the graph takes {} input(s), {} given",
                g.inputs().len(),
                inputs.len()
            ),
        });
    }
    for (i, t) in inputs.iter().enumerate() {
        let want = g.input_type(i);
        if &t.ty() != want {
            return Err(IrError::Input {
                index: i,
                name: g.input_name(i).to_string(),
                msg: format!("expected {want}, got {}", t.ty()),
            });
        }
    }
    Ok(())
}

/// Runs the graph on `inputs` (in signature order) and returns its outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    run_traced(g, inputs, |_, _| {})
}

/// Like [`run`], calling `trace(node, outputs)` after each node is evaluated.
pub fn run_traced(
    g: &Graph,
    inputs: &[Tensor],
    mut trace: impl FnMut(NodeId, &[Arc<Tensor>]),
) -> Result<Vec<Tensor>> {
    check_inputs(g, inputs)?;
    let order = g.topo_order()?;
    // Remaining uses per value, so intermediates are freed early.
    let mut uses: HashMap<Value, usize> = HashMap::new();
    for &id in &order {
        for v in g.node_inputs(id) {
            *uses.entry(v).or_default() += 1;
        }
    }
    for o in g.outputs() {
        *uses.entry(o.value).or_default() += 1;
    }
    let mut env: HashMap<Value, Arc<Tensor>> = HashMap::new();
    for (i, &id) in g.inputs().iter().enumerate() {
        env.insert(Value::new(id, 0), Arc::new(inputs[i].clone()));
    }
    for &id in &order {
        let n = g.node(id);
        let outs: Vec<Arc<Tensor>> = match &n.op {
            Op::Input => continue,
            Op::Const(c) => vec![g.constant(*c).cloned().ok_or_else(|| IrError::Eval {
                node: n.name.clone(),
                op: "const".into(),
                msg: format!("unknown constant #{}", c.0),
            })?],
            op => {
                let ins = g.node_inputs(id);
                let args: Vec<Arc<Tensor>> = ins
                    .iter()
                    .map(|v| {
                        env.get(v).cloned().ok_or_else(|| IrError::Eval {
                            node: n.name.clone(),
                            op: op.name().into(),
                            msg: "operand not computed".into(),
                        })
                    })
                    .collect::<Result<_>>()?;
                for v in &ins {
                    let u = uses.get_mut(v).expect("counted");
                    *u -= 1;
                    if *u == 0 {
                        env.remove(v);
                    }
                }
                let refs: Vec<&Tensor> = args.iter().map(|a| a.as_ref()).collect();
                let res = op.eval(&refs).map_err(|msg| IrError::Eval {
                    node: n.name.clone(),
                    op: op.name().into(),
                    msg,
                })?;
                res.into_iter().map(Arc::new).collect()
            }
        };
        if outs.len() != n.outputs.len() || outs.iter().zip(&n.outputs).any(|(t, ty)| &t.ty() != ty)
        {
            return Err(IrError::Eval {
                node: n.name.clone(),
                op: n.op.name().into(),
                msg: "result does not match the declared types".into(),
            });
        }
        trace(id, &outs);
        for (p, t) in outs.into_iter().enumerate() {
            let v = Value::new(id, p as u32);
            if uses.get(&v).copied().unwrap_or(0) > 0 {
                env.insert(v, t);
            }
        }
    }
    g.outputs()
        .iter()
        .map(|o| {
            env.get(&o.value)
                .map(|t| t.as_ref().clone())
                .ok_or_else(|| IrError::Graph(format!("output `{}` was not computed", o.name)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{DType, TensorType};
    use crate::op::{BinaryOp, UnaryOp};

    #[test]
    fn runs_and_checks_inputs() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![3]));
        let c = g.add_const(
            Tensor::from_f32(vec![3], vec![1.0, -5.0, 2.0]).unwrap(),
            "c",
        );
        let s = g.add1(Op::Binary(BinaryOp::Add), &[x, c], "add").unwrap();
        let r = g.add1(Op::Unary(UnaryOp::Relu), &[s], "relu").unwrap();
        g.add_output(r, "y");
        g.add_output(s, "s");
        let x = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        let out = run(&g, &[x]).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[2.0, 0.0, 5.0]);
        assert_eq!(out[1].as_f32().unwrap(), &[2.0, -3.0, 5.0]);
        let bad = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
        assert_eq!(
            run(&g, &[bad]).unwrap_err().to_string(),
            "input 0 (`x`): expected f32[3], got f32[2]"
        );
    }
}
