//! The verifier: checks structure and types of a whole graph and reports
//! every problem it finds, not just the first. Passes run it after each
//! rewrite in debug builds and under `--verify`.

use crate::error::{IrError, Result};
use crate::graph::{Graph, Value};
use crate::op::Op;

impl Graph {
    /// Checks the graph; on failure the error lists every problem found.
    pub fn verify(&self) -> Result<()> {
        let errs = self.verify_all();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(IrError::Verify(errs))
        }
    }

    /// All verifier findings (empty when the graph is well formed).
    pub fn verify_all(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = self.topo_order() {
            errs.push(e.to_string());
        }
        let value_ok =
            |v: Value| self.contains(v.node) && (v.port as usize) < self.node(v.node).outputs.len();
        for (i, &id) in self.inputs().iter().enumerate() {
            if !self.contains(id) || self.node(id).op != Op::Input {
                errs.push(format!("graph input {i} is not an input node"));
            }
        }
        for id in self.node_ids() {
            let n = self.node(id);
            let what = format!("node `{}` ({})", n.name, n.op.name());
            let mut raw = self.raw_inputs(id);
            raw.sort_by_key(|(s, _)| *s);
            for (k, (slot, _)) in raw.iter().enumerate() {
                if *slot as usize != k {
                    errs.push(format!("{what}: input slots are not contiguous"));
                    break;
                }
            }
            let mut inputs_ok = true;
            for (slot, v) in &raw {
                if !value_ok(*v) {
                    errs.push(format!("{what}: input {slot} refers to a missing value"));
                    inputs_ok = false;
                }
            }
            match &n.op {
                Op::Input => {
                    if !raw.is_empty() {
                        errs.push(format!("{what}: an input node has operands"));
                    }
                    if !self.inputs().contains(&id) {
                        errs.push(format!("{what}: input node missing from the signature"));
                    }
                    if n.outputs.len() != 1 {
                        errs.push(format!("{what}: must have exactly one output"));
                    }
                }
                Op::Const(c) => {
                    if !raw.is_empty() {
                        errs.push(format!("{what}: a constant has operands"));
                    }
                    match self.constant(*c) {
                        None => errs.push(format!("{what}: unknown constant #{}", c.0)),
                        Some(t) => {
                            if n.outputs.len() != 1 || n.outputs[0] != t.ty() {
                                errs.push(format!(
                                    "{what}: declared type does not match the constant {}",
                                    t.ty()
                                ));
                            }
                        }
                    }
                }
                op if inputs_ok => {
                    let tys: Vec<_> = raw.iter().map(|(_, v)| self.value_type(*v)).collect();
                    match op.infer(&tys) {
                        Err(msg) => errs.push(format!("{what}: {msg}")),
                        Ok(out) if out != n.outputs => {
                            let show = |v: &[crate::TensorType]| {
                                v.iter()
                                    .map(|t| t.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            };
                            errs.push(format!(
                                "{what}: declared output types ({}) differ from inferred ({})",
                                show(&n.outputs),
                                show(&out)
                            ));
                        }
                        Ok(_) => {
                            if let Some(msg) = self.constant_index_error(op, &raw) {
                                errs.push(format!("{what}: {msg}"));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if self.outputs().is_empty() {
            errs.push("the graph has no outputs".into());
        }
        for o in self.outputs() {
            if !value_ok(o.value) {
                errs.push(format!(
                    "graph output `{}` refers to a missing value",
                    o.name
                ));
            }
        }
        errs
    }
}

impl Graph {
    /// Gather with constant indices: every index must be in range now,
    /// not only when the compiled code runs (where the error names no node).
    fn constant_index_error(&self, op: &Op, raw: &[(u32, Value)]) -> Option<String> {
        let Op::Gather(a) = op else { return None };
        let data = raw.iter().find(|(s, _)| *s == 0)?.1;
        let idx = raw.iter().find(|(s, _)| *s == 1)?.1;
        let t = self.const_value(idx)?;
        let d = *self.value_type(data).dims.get(a.axis)? as i64;
        let bad = t.to_i64().into_iter().find(|&i| i < -d || i >= d)?;
        Some(format!(
            "constant index {bad} is out of range for axis {} of size {d} (valid: {} to {})",
            a.axis,
            -d,
            d - 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::dtype::{DType, TensorType};
    use crate::graph::Graph;
    use crate::op::{Op, UnaryOp};

    #[test]
    fn reports_every_error() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
        // Two nodes with wrong declared types.
        let a = g.add_node_typed(
            Op::Unary(UnaryOp::Relu),
            &[x],
            vec![TensorType::new(DType::F32, vec![3])],
            "a",
        );
        g.add_node_typed(
            Op::Unary(UnaryOp::Not),
            &[x],
            vec![TensorType::new(DType::Bool, vec![2])],
            "b",
        );
        g.add_output(crate::Value::new(a, 0), "y");
        let errs = g.verify_all();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains(
            "node `a` (relu): declared output types (f32[3]) differ from inferred (f32[2])"
        ));
        assert!(errs[1].contains("node `b` (not): expects a bool input"));
    }

    #[test]
    fn constant_gather_indices_are_checked() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![4, 2]));
        for (name, idx) in [("ok", vec![-4, 3]), ("bad", vec![0, 4]), ("neg", vec![-5])] {
            let n = idx.len();
            let i = g.add_const(crate::Tensor::from_i64s(vec![n], idx).unwrap(), "i");
            let v = g
                .add1(
                    Op::Gather(crate::op::GatherAttrs { axis: 0 }),
                    &[x, i],
                    name,
                )
                .unwrap();
            g.add_output(v, name);
        }
        let errs = g.verify_all();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains(
            "node `bad` (gather): constant index 4 is out of range for axis 0 of size 4"
        ));
        assert!(errs[1].contains("node `neg` (gather): constant index -5"));
    }
}
