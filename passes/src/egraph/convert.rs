//! Graph → e-graph and back. The conversion keeps shared subexpressions
//! shared and graphs with several outputs whole; extraction rebuilds a DAG
//! from the cheapest node of each needed class, so unused alternatives and
//! dead code simply disappear.

use std::collections::HashMap;

use egg::{EGraph, Id, Symbol};
use nnc_ir::{Graph, NodeId, Op, TensorType, Value};

use super::analysis::{Kind, TensorAnalysis, attr_of};
use super::cost::CostModel;
use super::extract::Extracted;
use super::lang::{AttrKey, Leaf, OUT, TLang, padded_arity};
use crate::pass::{PassError, Result};

/// An e-graph built from a graph, with the classes of the graph outputs.
#[derive(Debug)]
pub struct Built {
    pub egraph: EGraph<TLang, TensorAnalysis>,
    pub roots: Vec<Id>,
}

fn fail(msg: impl Into<String>) -> PassError {
    PassError::Failed {
        pass: "egraph".into(),
        msg: msg.into(),
    }
}

/// Builds the e-graph of a graph.
pub fn to_egraph(g: &Graph) -> Result<Built> {
    let inputs: Vec<TensorType> = (0..g.inputs().len())
        .map(|i| g.input_type(i).clone())
        .collect();
    let mut analysis = TensorAnalysis::new(inputs, vec![]);
    analysis.fold_budget = crate::basic::fold_budget(g);
    let mut eg = EGraph::new(analysis);
    let none = eg.add(TLang::None);
    let mut ids: HashMap<Value, Id> = HashMap::new();
    let mut const_leaf: HashMap<nnc_ir::ConstId, u32> = HashMap::new();
    for id in g.topo_order()? {
        let n = g.node(id);
        let class = match &n.op {
            Op::Input => {
                let k = g
                    .inputs()
                    .iter()
                    .position(|&x| x == id)
                    .expect("input listed");
                eg.add(TLang::Leaf(Leaf::Input(k as u32)))
            }
            Op::Const(c) => {
                let k = *const_leaf.entry(*c).or_insert_with(|| {
                    let t = g.constant(*c).expect("verified constant").clone();
                    eg.analysis.intern(t)
                });
                eg.add(TLang::Leaf(Leaf::Const(k)))
            }
            op => {
                let attr = eg.add(TLang::Attr(AttrKey::of(op)));
                let mut ch = vec![attr];
                for v in g.node_inputs(id) {
                    ch.push(*ids.get(&v).ok_or_else(|| fail("operand missing"))?);
                }
                if let Some(a) = padded_arity(op) {
                    while ch.len() < a + 1 {
                        ch.push(none);
                    }
                }
                eg.add(TLang::Op(Symbol::from(op.name()), ch))
            }
        };
        if n.outputs.len() == 1 {
            ids.insert(Value::new(id, 0), class);
            let d = &mut eg[class].data;
            if d.name.is_none() {
                d.name = Some(n.name.clone());
            }
        } else {
            for p in 0..n.outputs.len() {
                let attr = eg.add(TLang::Attr(AttrKey::from_text(&format!("index={p}"))));
                let o = eg.add(TLang::Op(Symbol::from(OUT), vec![attr, class]));
                ids.insert(Value::new(id, p as u32), o);
                let d = &mut eg[o].data;
                if d.name.is_none() {
                    d.name = Some(n.name.clone());
                }
            }
        }
    }
    eg.rebuild();
    let roots = g
        .outputs()
        .iter()
        .map(|o| {
            ids.get(&o.value)
                .copied()
                .ok_or_else(|| fail("output missing"))
        })
        .collect::<Result<_>>()?;
    Ok(Built { egraph: eg, roots })
}

/// Extracts the cheapest graph for `roots`, keeping the signature of `template`.
pub fn from_egraph(
    eg: &EGraph<TLang, TensorAnalysis>,
    roots: &[Id],
    template: &Graph,
    memory_cost: bool,
) -> Result<Graph> {
    let ex = Extracted::new(eg, CostModel::new(eg, memory_cost));
    build(eg, &ex, roots, template)
}

/// The graph of the nodes `ex` chose for `roots`, keeping the signature of
/// `template`.
pub fn build(
    eg: &EGraph<TLang, TensorAnalysis>,
    ex: &Extracted<'_>,
    roots: &[Id],
    template: &Graph,
) -> Result<Graph> {
    let mut g = Graph::new(template.name.clone());
    let mut inputs = Vec::new();
    for i in 0..template.inputs().len() {
        inputs.push(g.add_input(template.input_name(i), template.input_type(i).clone()));
    }
    let fused: HashMap<(Id, Symbol), String> = eg
        .analysis
        .fused_names
        .iter()
        .map(|((id, s), n)| ((eg.find(*id), *s), n.clone()))
        .collect();
    let mut memo: HashMap<Id, Value> = HashMap::new();
    let mut consts: HashMap<u32, Value> = HashMap::new();
    for &root in roots {
        if !ex.cost(root).is_finite() {
            return Err(fail("no valid form of an output survived the rewrites"));
        }
        let mut stack = vec![(eg.find(root), false)];
        while let Some((id, ready)) = stack.pop() {
            if memo.contains_key(&id) {
                continue;
            }
            let node = ex
                .node(id)
                .ok_or_else(|| fail("a needed value has no valid form"))?;
            let operands: Vec<Id> = match node {
                TLang::Op(_, ch) => ch[1..]
                    .iter()
                    .map(|c| eg.find(*c))
                    .filter(|c| eg[*c].data.kind != Kind::None)
                    .collect(),
                _ => vec![],
            };
            if !ready {
                stack.push((id, true));
                for c in operands.iter().rev() {
                    if !memo.contains_key(c) {
                        stack.push((*c, false));
                    }
                }
                continue;
            }
            let data = &eg[id].data;
            let name = data.name.clone().unwrap_or_default();
            let v = match node {
                TLang::Leaf(Leaf::Input(k)) => inputs[*k as usize],
                TLang::Leaf(Leaf::Const(k)) => *consts.entry(*k).or_insert_with(|| {
                    g.add_const(eg.analysis.consts[*k as usize].clone(), name.clone())
                }),
                TLang::Op(s, ch) if s.as_str() == OUT => {
                    let idx: u32 = attr_of(eg, ch[0])
                        .and_then(|a| a.text().strip_prefix("index=").and_then(|s| s.parse().ok()))
                        .ok_or_else(|| fail("bad projection"))?;
                    let tuple = memo[&eg.find(ch[1])];
                    Value::new(tuple.node, idx)
                }
                TLang::Op(s, ch) => {
                    let attr = attr_of(eg, ch[0]).ok_or_else(|| fail("missing attributes"))?;
                    let op = nnc_ir::parse::parse_op(s.as_str(), &attr.text()).map_err(fail)?;
                    let ins: Vec<Value> = operands.iter().map(|c| memo[c]).collect();
                    let name = fused.get(&(id, *s)).cloned().unwrap_or(name);
                    let nid: NodeId = g.add_node_typed(op, &ins, data.types.clone(), name);
                    Value::new(nid, 0)
                }
                TLang::None | TLang::Attr(_) => return Err(fail("extracted a non-tensor")),
            };
            memo.insert(id, v);
        }
    }
    for (o, &root) in template.outputs().iter().zip(roots) {
        g.add_output(memo[&eg.find(root)], o.name.clone());
    }
    Ok(g)
}
