//! Graphviz output for `nnc dump --format dot`.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::graph::{Graph, Value};
use crate::op::Op;
use crate::op::attr::AttrWriter;

/// A Graphviz quoted-string body: quotes and backslashes escaped, line
/// breaks as `\n`, other control characters dropped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Renders the graph as a Graphviz digraph: one box per op (constants are
/// folded into their consumers' labels to keep the picture readable), edges
/// labelled with the value type.
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", esc(&g.name));
    out.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let mut ids: HashMap<petgraph::stable_graph::NodeIndex<u32>, usize> = HashMap::new();
    for id in &order {
        let n = g.node(*id);
        if matches!(n.op, Op::Const(_)) {
            continue;
        }
        let k = ids.len();
        ids.insert(*id, k);
        let mut w = AttrWriter::new();
        n.op.write_attrs(&mut w);
        let consts: Vec<String> = g
            .node_inputs(*id)
            .iter()
            .filter(|v| g.const_value(**v).is_some())
            .map(|v| g.value_type(*v).to_string())
            .collect();
        let mut label = n.op.name().to_string();
        if !w.is_empty() {
            let _ = write!(label, "\\n{}", esc(&w.join()));
        }
        if !consts.is_empty() {
            let _ = write!(label, "\\nconst {}", consts.join(", "));
        }
        if !n.name.is_empty() {
            let _ = write!(label, "\\n({})", esc(&n.name));
        }
        let style = match n.op {
            Op::Input => ", shape=ellipse, style=filled, fillcolor=\"#d0e8ff\"",
            _ => "",
        };
        let _ = writeln!(out, "  n{k} [label=\"{label}\"{style}];");
    }
    for id in &order {
        let Some(&dst) = ids.get(id) else { continue };
        for v in g.node_inputs(*id) {
            if let Some(&src) = ids.get(&v.node) {
                let _ = writeln!(out, "  n{src} -> n{dst} [label=\"{}\"];", g.value_type(v));
            }
        }
    }
    for (i, o) in g.outputs().iter().enumerate() {
        let Value { node, .. } = o.value;
        let _ = writeln!(
            out,
            "  out{i} [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#d8f5d0\"];",
            esc(&o.name)
        );
        if let Some(&src) = ids.get(&node) {
            let _ = writeln!(
                out,
                "  n{src} -> out{i} [label=\"{}\"];",
                g.value_type(o.value)
            );
        }
    }
    out.push_str("}\n");
    out
}
