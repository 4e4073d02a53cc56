//! The text format printer. The format is an API: [`crate::parse`] reads back
//! exactly what this writes. Example:
//!
//! ```text
//! graph @kws(v0 "input": f32[1,49,10,1]) -> ("output": f32[1,12]) {
//!     c0 = const f32[64,1,10,4] ...                              ; conv1.weight
//!     v1 = conv v0, c0, c1 {stride=[2,2] pad=[5,1,4,2] dilation=[1,1] act=relu} : f32[1,64,25,5]  ; Conv__3
//!     ...
//!     return v9
//! }
//! ```
//!
//! Values are numbered in print order (`v` for computed values, `c` for
//! constants); the text after `;` is the source (ONNX) name of the node.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::graph::{Graph, NodeId, Value};
use crate::op::Op;
use crate::op::attr::{AttrWriter, fmt_f32, fmt_f64};
use crate::tensor::{Data, Tensor};

/// How constant data is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstMode {
    /// Constants up to this many elements are written inline; larger ones as
    /// `...` (such a dump is for reading and cannot be parsed back).
    Elide(usize),
    /// Every constant inline: self-contained, and large for real models.
    Inline,
    /// Constants up to `inline_max` elements inline, the rest as `@offset`
    /// into a little-endian weights blob returned next to the text and
    /// named by a `weights "file"` line.
    External { file: String, inline_max: usize },
}

/// Printer options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    pub consts: ConstMode,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions {
            consts: ConstMode::Elide(8),
        }
    }
}

/// Column where `; name` comments start.
const COMMENT_COL: usize = 60;

/// Quotes a string for the text format.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{{{:x}}}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A node name as a `;` comment: as it is when it reads back unchanged
/// (one line, no edge spaces), else quoted.
fn comment_safe(s: &str) -> String {
    let plain = !s.starts_with('"') && s.trim() == s && !s.chars().any(|c| c.is_control());
    if plain { s.to_string() } else { quote(s) }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Writes a tensor's elements as a bracketed list.
pub fn fmt_data(t: &Tensor) -> String {
    let items: Vec<String> = match t.data() {
        Data::F32(v) => v.iter().map(|&x| fmt_f32(x)).collect(),
        Data::F64(v) => v.iter().map(|&x| fmt_f64(x)).collect(),
        Data::Bool(v) => v.iter().map(|&x| (x as u8).to_string()).collect(),
        d => d.to_i64().iter().map(|x| x.to_string()).collect(),
    };
    format!("[{}]", items.join(", "))
}

/// Prints with default options (small constants inline, others elided).
pub fn print(g: &Graph) -> String {
    print_with(g, &PrintOptions::default()).0
}

/// Prints every constant inline, so that the text parses back to an
/// equivalent graph.
pub fn print_full(g: &Graph) -> String {
    print_with(
        g,
        &PrintOptions {
            consts: ConstMode::Inline,
        },
    )
    .0
}

/// Prints the graph; the second result is the weights blob in
/// [`ConstMode::External`] mode.
pub fn print_with(g: &Graph, opts: &PrintOptions) -> (String, Option<Vec<u8>>) {
    let mut names: HashMap<Value, String> = HashMap::new();
    let (mut nv, mut nc) = (0usize, 0usize);
    let mut fresh = |is_const: bool| {
        if is_const {
            nc += 1;
            format!("c{}", nc - 1)
        } else {
            nv += 1;
            format!("v{}", nv - 1)
        }
    };
    let mut out = String::new();
    let gname = if is_ident(&g.name) {
        g.name.clone()
    } else {
        quote(&g.name)
    };
    let mut params = Vec::new();
    for (i, &id) in g.inputs().iter().enumerate() {
        let v = Value::new(id, 0);
        let n = fresh(false);
        params.push(format!(
            "{n} {}: {}",
            quote(g.input_name(i)),
            g.value_type(v)
        ));
        names.insert(v, n);
    }
    let results: Vec<String> = g
        .outputs()
        .iter()
        .map(|o| format!("{}: {}", quote(&o.name), g.value_type(o.value)))
        .collect();
    let _ = writeln!(
        out,
        "graph @{gname}({}) -> ({}) {{",
        params.join(", "),
        results.join(", ")
    );
    let mut blob: Option<Vec<u8>> = None;
    if let ConstMode::External { file, .. } = &opts.consts {
        let _ = writeln!(out, "    weights {}", quote(file));
        blob = Some(Vec::new());
    }
    let order: Vec<NodeId> = match g.topo_order() {
        Ok(o) => o,
        // A cyclic graph cannot be printed in order; print by index so the
        // verifier's complaint can be read next to the graph.
        Err(_) => g.node_ids(),
    };
    for id in order {
        let n = g.node(id);
        if n.op == Op::Input {
            continue;
        }
        let mut line = String::from("    ");
        if let Op::Const(c) = &n.op {
            let name = fresh(true);
            names.insert(Value::new(id, 0), name.clone());
            let ty = &n.outputs[0];
            let _ = write!(line, "{name} = const {ty}");
            match g.constant(*c) {
                None => line.push_str(" ?"),
                Some(t) => {
                    let small = |max: usize| t.len() <= max;
                    match &opts.consts {
                        ConstMode::Inline => {
                            let _ = write!(line, " {}", fmt_data(t));
                        }
                        ConstMode::Elide(max) if small(*max) => {
                            let _ = write!(line, " {}", fmt_data(t));
                        }
                        ConstMode::Elide(_) => line.push_str(" ..."),
                        ConstMode::External { inline_max, .. } if small(*inline_max) => {
                            let _ = write!(line, " {}", fmt_data(t));
                        }
                        ConstMode::External { .. } => {
                            let b = blob.as_mut().expect("external mode has a blob");
                            // Keep every tensor 16-byte aligned in the blob.
                            while !b.len().is_multiple_of(16) {
                                b.push(0);
                            }
                            let _ = write!(line, " @{}", b.len());
                            b.extend_from_slice(&t.data().to_le_bytes());
                        }
                    }
                }
            }
        } else {
            let ins: Vec<String> = g
                .node_inputs(id)
                .iter()
                .map(|v| names.get(v).cloned().unwrap_or_else(|| "?".into()))
                .collect();
            let outs: Vec<String> = (0..n.outputs.len())
                .map(|p| {
                    let name = fresh(false);
                    names.insert(Value::new(id, p as u32), name.clone());
                    name
                })
                .collect();
            let _ = write!(line, "{} = {}", outs.join(", "), n.op.name());
            if !ins.is_empty() {
                let _ = write!(line, " {}", ins.join(", "));
            }
            let mut w = AttrWriter::new();
            n.op.write_attrs(&mut w);
            if !w.is_empty() {
                let _ = write!(line, " {{{}}}", w.join());
            }
            let tys: Vec<String> = n.outputs.iter().map(|t| t.to_string()).collect();
            let _ = write!(line, " : {}", tys.join(", "));
        }
        if !n.name.is_empty() {
            while line.len() < COMMENT_COL {
                line.push(' ');
            }
            let _ = write!(line, "  ; {}", comment_safe(&n.name));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let rets: Vec<String> = g
        .outputs()
        .iter()
        .map(|o| names.get(&o.value).cloned().unwrap_or_else(|| "?".into()))
        .collect();
    let _ = writeln!(out, "    return {}", rets.join(", "));
    out.push_str("}\n");
    (out, blob)
}
