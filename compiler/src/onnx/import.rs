//! Model-level import: decoding, version checks, graph inputs with their
//! static shapes, node ordering, and graph outputs. Per-op conversion lives
//! in `ops/`; the [`Ctx`] handed to it wraps the node and the graph being built.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nnc_ir::{DType, Graph, Op, Tensor, TensorType, Value, dtype::checked_numel};
use prost::Message;

use super::error::{ImportError, Result, UnsupportedNode};
use super::ops;
use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, ValueInfoProto, attr_type};
use super::tensor::{dtype_of, from_proto, from_sparse};

/// Newest default-domain opset whose semantics nnc implements.
pub const MAX_OPSET: i64 = 27;
/// Oldest IR version accepted.
pub const MIN_IR_VERSION: i64 = 3;
/// Newest IR version accepted (the ONNX backend suites in ../shared are at 13).
pub const MAX_IR_VERSION: i64 = 13;

/// Folding at import stops at constants of this many elements; larger
/// results stay computed at run time.
const FOLD_LIMIT: usize = 1 << 24;

/// Nor does import fold a node that costs more than this many
/// multiply-accumulates (a convolution over constant inputs could take
/// minutes in the interpreter); it runs with the model instead.
pub const FOLD_MACS: u64 = 1 << 26;

/// Constants created at import (what folding adds beyond its inputs, and
/// ConstantOfShape, Range...) may total this many bytes plus twice the
/// model's own data: a tiny model must not fold into gigabytes of weights
/// and generated C.
pub const FOLD_BUDGET_BASE: u64 = 32 << 20;

/// The running total of constant bytes created at import, against the
/// model's budget.
#[derive(Debug)]
pub(crate) struct FoldBudget {
    used: std::cell::Cell<u64>,
    max: u64,
}

impl FoldBudget {
    /// `model_len`: the size of the encoded model (its inline data).
    fn for_model(model_len: u64, gp: &GraphProto) -> Self {
        let data: u64 = gp
            .initializer
            .iter()
            .map(|t| {
                let n = t
                    .dims
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(u64::try_from(d).ok()?))
                    .unwrap_or(0);
                let size = dtype_of(t.data_type).map_or(1, |d| d.size() as u64);
                n.saturating_mul(size)
            })
            .fold(model_len, u64::saturating_add);
        FoldBudget {
            used: std::cell::Cell::new(0),
            max: FOLD_BUDGET_BASE.saturating_add(data.saturating_mul(2)),
        }
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// Options for import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Shapes for inputs with symbolic or unknown dims, by input name
    /// (`--input-shape`); a dim that contradicts the model is an error.
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Shapes of the tensors that will be fed (from input files): they fill
    /// unknown dims only and never override the model.
    pub shape_hints: HashMap<String, Vec<usize>>,
    /// Folder for external tensor data (the model's folder).
    pub base_dir: Option<PathBuf>,
}

/// Reads and imports an ONNX file.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut opts = opts.clone();
    if opts.base_dir.is_none() {
        opts.base_dir = Some(
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        );
    }
    let mut g = import(&bytes, &opts)?;
    if g.name.is_empty() {
        g.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    Ok(g)
}

/// Decodes the protobuf of a model without converting it.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(ImportError::Decode("the file is empty".into()));
    }
    let m = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    if m.ir_version == 0 && m.graph.is_none() {
        return Err(ImportError::Decode(
            "no IR version and no graph: this is not an ONNX model".into(),
        ));
    }
    Ok(m)
}

/// Imports a serialized ONNX model.
pub fn import(bytes: &[u8], opts: &ImportOptions) -> Result<Graph> {
    import_model(&decode(bytes)?, opts)
}

/// The names of a decoded model's graph inputs that are not initializers
/// (the tensors a caller feeds).
pub fn input_names(m: &ModelProto) -> Vec<String> {
    let Some(g) = &m.graph else {
        return vec![];
    };
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect()
}

/// Imports a decoded ONNX model.
pub fn import_model(m: &ModelProto, opts: &ImportOptions) -> Result<Graph> {
    if !(MIN_IR_VERSION..=MAX_IR_VERSION).contains(&m.ir_version) {
        return Err(ImportError::Model(format!(
            "IR version {} is not supported (nnc reads IR versions {MIN_IR_VERSION} to {MAX_IR_VERSION})",
            m.ir_version
        )));
    }
    let mut opset = None;
    for o in &m.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset = match opset {
        // IR version 3 models may omit the import; they mean opset 1.
        None if m.opset_import.is_empty() => 1,
        None => 1,
        Some(v) if !(1..=MAX_OPSET).contains(&v) => {
            return Err(ImportError::Model(format!(
                "default-domain opset {v} is not supported (nnc supports opsets 1 to {MAX_OPSET})"
            )));
        }
        Some(v) => v,
    };
    let Some(gp) = &m.graph else {
        return Err(ImportError::Model("the model has no graph".into()));
    };
    let functions: HashSet<(String, String)> = m
        .functions
        .iter()
        .map(|f| (f.domain.clone(), f.name.clone()))
        .collect();
    Importer {
        opset,
        opts,
        functions,
        budget: FoldBudget::for_model(m.encoded_len() as u64, gp),
    }
    .graph(gp)
}

struct Importer<'a> {
    opset: i64,
    opts: &'a ImportOptions,
    functions: HashSet<(String, String)>,
    budget: FoldBudget,
}

/// Node name used in the IR and in messages (ONNX names are optional).
pub(crate) fn node_label(n: &NodeProto, index: usize) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else if let Some(o) = n.output.iter().find(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("{}_{index}", n.op_type)
    }
}

impl Importer<'_> {
    fn graph(&self, gp: &GraphProto) -> Result<Graph> {
        let mut g = Graph::new(gp.name.clone());
        let base = self.opts.base_dir.as_deref();

        // Unsupported operators are reported all at once, before any work.
        let mut unsupported = Vec::new();
        for (i, n) in gp.node.iter().enumerate() {
            let reason = if !ops::is_known_domain(&n.domain) {
                if self
                    .functions
                    .contains(&(n.domain.clone(), n.op_type.clone()))
                {
                    Some("model-local functions are not supported".to_string())
                } else {
                    Some(format!("operator domain `{}` is not supported", n.domain))
                }
            } else {
                let domain = if n.domain == ops::MS_DOMAIN {
                    ops::MS_DOMAIN
                } else {
                    ""
                };
                ops::check_supported(domain, &n.op_type)
            };
            if let Some(reason) = reason {
                unsupported.push(UnsupportedNode {
                    node: node_label(n, i),
                    op_type: n.op_type.clone(),
                    domain: n.domain.clone(),
                    reason,
                });
            }
        }
        if !unsupported.is_empty() {
            return Err(ImportError::Unsupported(unsupported));
        }

        let mut inits: HashMap<&str, Init<'_>> = HashMap::new();
        let dup_init =
            |name: &str| ImportError::Model(format!("initializer `{name}` is given twice"));
        for t in &gp.initializer {
            if inits.insert(&t.name, Init::Dense(t)).is_some() {
                return Err(dup_init(&t.name));
            }
        }
        for s in &gp.sparse_initializer {
            if let Some(v) = &s.values
                && inits.insert(&v.name, Init::Sparse(s)).is_some()
            {
                return Err(dup_init(&v.name));
            }
        }
        check_names(gp, &inits)?;

        let mut env: HashMap<String, Value> = HashMap::new();
        for name in self.opts.input_shapes.keys() {
            if !gp.input.iter().any(|i| &i.name == name) || inits.contains_key(name.as_str()) {
                let names: Vec<&str> = gp
                    .input
                    .iter()
                    .filter(|i| !inits.contains_key(i.name.as_str()))
                    .map(|i| i.name.as_str())
                    .collect();
                return Err(ImportError::Input {
                    name: name.clone(),
                    msg: format!("no such model input (inputs: {})", names.join(", ")),
                });
            }
        }
        for vi in &gp.input {
            if inits.contains_key(vi.name.as_str()) || env.contains_key(&vi.name) {
                continue;
            }
            let ty = self.input_type(vi)?;
            let v = g.add_input(vi.name.clone(), ty);
            env.insert(vi.name.clone(), v);
        }

        // Outputs a converter does not produce (BatchNormalization statistics,
        // MaxPool indices...) are fine until something reads them.
        let mut unproduced: HashMap<String, String> = HashMap::new();
        for i in order_nodes(gp, &env, &inits)? {
            let n = &gp.node[i];
            let label = node_label(n, i);
            let mut ins = Vec::with_capacity(n.input.len());
            for name in &n.input {
                if name.is_empty() {
                    ins.push(None);
                    continue;
                }
                if let Some(what) = unproduced.get(name) {
                    return Err(ImportError::Node {
                        node: label,
                        op: n.op_type.clone(),
                        msg: format!("reads `{name}`, {what}"),
                    });
                }
                if !env.contains_key(name) {
                    let Some(init) = inits.get(name.as_str()) else {
                        return Err(ImportError::Node {
                            node: label,
                            op: n.op_type.clone(),
                            msg: format!("input `{name}` is not produced by any node"),
                        });
                    };
                    let t = match init {
                        Init::Dense(t) => from_proto(t, base)?,
                        Init::Sparse(s) => from_sparse(s, base)?,
                    };
                    let v = g.add_const(t, name.clone());
                    env.insert(name.clone(), v);
                }
                ins.push(Some(env[name]));
            }
            let mut cx = Ctx {
                g: &mut g,
                node: n,
                opset: self.opset,
                name: label.clone(),
                ins,
                base,
                budget: &self.budget,
            };
            let outs = ops::convert(&mut cx)?;
            for (k, oname) in n.output.iter().enumerate() {
                if oname.is_empty() {
                    continue;
                }
                match outs.get(k) {
                    Some(v) => {
                        env.insert(oname.clone(), *v);
                    }
                    None => {
                        unproduced.insert(
                            oname.clone(),
                            format!(
                                "output {k} of node `{label}` ({}), which nnc does not support",
                                n.op_type
                            ),
                        );
                    }
                }
            }
        }

        for o in &gp.output {
            if let Some(what) = unproduced.get(&o.name) {
                return Err(ImportError::Model(format!(
                    "graph output `{}` is {what}",
                    o.name
                )));
            }
            let v = match env.get(&o.name) {
                Some(v) => *v,
                None => match inits.get(o.name.as_str()) {
                    Some(Init::Dense(t)) => g.add_const(from_proto(t, base)?, o.name.clone()),
                    Some(Init::Sparse(s)) => g.add_const(from_sparse(s, base)?, o.name.clone()),
                    None => {
                        return Err(ImportError::Model(format!(
                            "graph output `{}` is not produced by any node",
                            o.name
                        )));
                    }
                },
            };
            check_declared(&o.name, &o.r#type, g.value_type(v))?;
            g.add_output(v, o.name.clone());
        }
        if g.outputs().is_empty() {
            return Err(ImportError::Model("the graph has no outputs".into()));
        }
        g.remove_dead();
        g.compact_consts();
        g.verify()?;
        Ok(g)
    }

    /// The static type of a graph input, with unknown dims filled from the options.
    fn input_type(&self, vi: &ValueInfoProto) -> Result<TensorType> {
        let ierr = |msg: String| ImportError::Input {
            name: vi.name.clone(),
            msg,
        };
        let Some(tp) = &vi.r#type else {
            return Err(ierr("has no type".into()));
        };
        let Some(tt) = &tp.tensor_type else {
            return Err(ierr(
                "only tensor inputs are supported (sequence, map and optional are not)".into(),
            ));
        };
        let dtype = dtype_of(tt.elem_type).map_err(ierr)?;
        let given = self.opts.input_shapes.get(&vi.name);
        let hint = self.opts.shape_hints.get(&vi.name);
        let dims: Vec<usize> = match (&tt.shape, given.or(hint)) {
            (None, Some(g)) => g.clone(),
            (None, None) => {
                return Err(ierr(
                    "has an unknown rank; give its shape with --input-shape NAME=D1,D2,...".into(),
                ));
            }
            (Some(s), _) => {
                let hint = hint.filter(|h| h.len() == s.dim.len());
                if let Some(g) = given
                    && g.len() != s.dim.len()
                {
                    return Err(ierr(format!(
                        "has rank {}, --input-shape gives {} dims",
                        s.dim.len(),
                        g.len()
                    )));
                }
                let mut dims = Vec::with_capacity(s.dim.len());
                for (i, d) in s.dim.iter().enumerate() {
                    let known = concrete_dim(d).map(|v| v as usize);
                    let d_out = match (known, given.or(hint).map(|g| g[i])) {
                        (Some(k), Some(o)) if k != o && given.is_some() => {
                            return Err(ierr(format!(
                                "dim {i} is fixed at {k} by the model, --input-shape gives {o}"
                            )));
                        }
                        (Some(k), _) => k,
                        (None, Some(o)) => o,
                        (None, None) => {
                            let what = d
                                .dim_param
                                .as_deref()
                                .filter(|p| !p.is_empty())
                                .map(|p| format!("symbolic dim `{p}`"))
                                .or_else(|| d.dim_value.map(|v| format!("dynamic ({v})")))
                                .unwrap_or_else(|| "an unknown dim".into());
                            return Err(ierr(format!(
                                "dim {i} is {what}; fix it with --input-shape {}=D1,D2,...",
                                vi.name
                            )));
                        }
                    };
                    dims.push(d_out);
                }
                dims
            }
        };
        if checked_numel(&dims).is_none() {
            return Err(ierr(format!("shape {dims:?} is too large")));
        }
        Ok(TensorType::new(dtype, dims))
    }
}

enum Init<'a> {
    Dense(&'a super::proto::TensorProto),
    Sparse(&'a super::proto::SparseTensorProto),
}

/// The value of a dim the model fixes. Exporters write a dynamic dim as a
/// `dim_param`, as nothing, or (Paddle's, among others) as a `dim_value`
/// of -1 or 0: a non-positive value is a symbolic dim, not a size.
fn concrete_dim(d: &super::proto::Dimension) -> Option<i64> {
    d.dim_value.filter(|&v| v > 0)
}

/// Checks an output's declared type against the inferred one: element
/// types must agree, and so must every concrete dim.
fn check_declared(
    name: &str,
    declared: &Option<super::proto::TypeProto>,
    actual: &TensorType,
) -> Result<()> {
    let Some(tt) = declared.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Ok(());
    };
    let mism = |what: String| {
        Err(ImportError::Model(format!(
            "graph output `{name}`: the model declares {what}, nnc infers {actual}"
        )))
    };
    if tt.elem_type != 0 {
        match dtype_of(tt.elem_type) {
            Ok(d) if d == actual.dtype => {}
            Ok(d) => return mism(format!("element type {d}")),
            Err(m) => return mism(m),
        }
    }
    if let Some(s) = &tt.shape {
        let concrete: Vec<Option<i64>> = s.dim.iter().map(concrete_dim).collect();
        let ok = concrete.len() == actual.rank()
            && concrete
                .iter()
                .zip(&actual.dims)
                .all(|(c, a)| c.is_none_or(|c| c == *a as i64));
        if !ok {
            let shown: Vec<String> = s
                .dim
                .iter()
                .map(|d| match (&d.dim_value, &d.dim_param) {
                    (Some(v), _) => v.to_string(),
                    (None, Some(p)) if !p.is_empty() => p.clone(),
                    _ => "?".into(),
                })
                .collect();
            return mism(format!("shape [{}]", shown.join(",")));
        }
    }
    Ok(())
}

/// Every tensor has one writer, as ONNX requires (ONNX Runtime rejects the
/// rest): graph inputs are listed once, no node writes a graph input, an
/// initializer or another node's output, and an initializer that is also
/// a graph input agrees with the input's declared type.
fn check_names(gp: &GraphProto, inits: &HashMap<&str, Init<'_>>) -> Result<()> {
    let mut writer: HashMap<&str, String> = HashMap::new();
    for vi in &gp.input {
        if writer.insert(&vi.name, "a graph input".into()).is_some() {
            return Err(ImportError::Model(format!(
                "graph input `{}` is listed twice",
                vi.name
            )));
        }
        if let Some(init) = inits.get(vi.name.as_str()) {
            check_init_declared(vi, init)?;
        }
    }
    for name in inits.keys() {
        writer
            .entry(name)
            .or_insert_with(|| "an initializer".into());
    }
    for (i, n) in gp.node.iter().enumerate() {
        let label = node_label(n, i);
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let me = format!("node `{label}` ({})", n.op_type);
            if let Some(first) = writer.insert(o, me.clone()) {
                return Err(ImportError::Model(format!(
                    "tensor `{o}` is written by {first} and by {me}; every tensor must have one writer"
                )));
            }
        }
    }
    Ok(())
}

/// An initializer that is also a graph input must match its declared
/// element type and every concrete dim.
fn check_init_declared(vi: &ValueInfoProto, init: &Init<'_>) -> Result<()> {
    let Some(tt) = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Ok(());
    };
    let (dims, code): (Vec<i64>, i32) = match init {
        Init::Dense(t) => (t.dims.clone(), t.data_type),
        Init::Sparse(s) => (s.dims.clone(), s.values.as_ref().map_or(0, |v| v.data_type)),
    };
    let declared: Option<Vec<Option<i64>>> = tt
        .shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect());
    let shape_ok = declared.as_ref().is_none_or(|d| {
        d.len() == dims.len() && d.iter().zip(&dims).all(|(a, b)| a.is_none_or(|a| a == *b))
    });
    let type_ok = tt.elem_type == 0 || code == 0 || tt.elem_type == code;
    if !shape_ok || !type_ok {
        let shown = |d: &Option<Vec<Option<i64>>>| match d {
            None => "?".to_string(),
            Some(d) => d
                .iter()
                .map(|x| x.map_or("?".into(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(","),
        };
        return Err(ImportError::Model(format!(
            "initializer `{}` ({} [{}]) contradicts the graph input of that name ({} [{}])",
            vi.name,
            super::tensor::type_name(code),
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(","),
            super::tensor::type_name(tt.elem_type),
            shown(&declared)
        )));
    }
    Ok(())
}

/// Orders nodes so that every input is produced before use (ONNX requires
/// sorted graphs, but exporters get it wrong). Reports a missing value or cycle.
fn order_nodes(
    gp: &GraphProto,
    env: &HashMap<String, Value>,
    inits: &HashMap<&str, Init<'_>>,
) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in gp.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
    }
    let mut deps: Vec<usize> = vec![0; gp.node.len()];
    let mut users: Vec<Vec<usize>> = vec![vec![]; gp.node.len()];
    for (i, n) in gp.node.iter().enumerate() {
        for name in n.input.iter().filter(|s| !s.is_empty()) {
            if env.contains_key(name) {
                continue;
            }
            if let Some(&p) = producer.get(name.as_str()) {
                deps[i] += 1;
                users[p].push(i);
            } else if !inits.contains_key(name.as_str()) {
                return Err(ImportError::Node {
                    node: node_label(n, i),
                    op: n.op_type.clone(),
                    msg: format!("input `{name}` is not a graph input, initializer or node output"),
                });
            }
        }
    }
    // A min-heap keeps the file's order wherever it is already valid.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..gp.node.len())
        .filter(|&i| deps[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(gp.node.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            deps[u] -= 1;
            if deps[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() != gp.node.len() {
        let stuck = (0..gp.node.len()).find(|&i| deps[i] > 0).unwrap_or(0);
        return Err(ImportError::Model(format!(
            "the graph has a cycle through node `{}`",
            node_label(&gp.node[stuck], stuck)
        )));
    }
    Ok(order)
}

/// What an op converter sees: the ONNX node, its resolved inputs, and the
/// graph under construction.
pub(crate) struct Ctx<'a> {
    pub g: &'a mut Graph,
    pub node: &'a NodeProto,
    pub opset: i64,
    pub name: String,
    pub ins: Vec<Option<Value>>,
    pub base: Option<&'a Path>,
    pub(crate) budget: &'a FoldBudget,
}

impl Ctx<'_> {
    /// An error about this node.
    pub fn err<T>(&self, msg: impl Into<String>) -> Result<T> {
        Err(ImportError::Node {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            msg: msg.into(),
        })
    }

    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn typed(&self, name: &str, want: i32, label: &str) -> Result<Option<&AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type == want || a.r#type == 0 => Ok(Some(a)),
            Some(_) => self.err(format!("attribute `{name}` must be {label}")),
        }
    }

    pub fn i_opt(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.typed(name, attr_type::INT, "an int")?.map(|a| a.i))
    }

    pub fn i(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.i_opt(name)?.unwrap_or(default))
    }

    pub fn f_opt(&self, name: &str) -> Result<Option<f32>> {
        Ok(self.typed(name, attr_type::FLOAT, "a float")?.map(|a| a.f))
    }

    pub fn f(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.f_opt(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, attr_type::INTS, "a list of ints")?
            .map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .typed(name, attr_type::FLOATS, "a list of floats")?
            .map(|a| a.floats.clone()))
    }

    pub fn s(&self, name: &str) -> Result<Option<String>> {
        match self.typed(name, attr_type::STRING, "a string")? {
            None => Ok(None),
            Some(a) => match String::from_utf8(a.s.clone()) {
                Ok(s) => Ok(Some(s)),
                Err(_) => self.err(format!("attribute `{name}` is not UTF-8")),
            },
        }
    }

    /// A string attribute with a default.
    pub fn s_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.s(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn t(&self, name: &str) -> Result<Option<Tensor>> {
        match self.typed(name, attr_type::TENSOR, "a tensor")? {
            None => Ok(None),
            Some(a) => match &a.t {
                Some(t) => Ok(Some(from_proto(t, self.base)?)),
                None => self.err(format!("attribute `{name}` has no tensor")),
            },
        }
    }

    /// Required input `i`.
    pub fn input(&self, i: usize) -> Result<Value> {
        match self.ins.get(i) {
            Some(Some(v)) => Ok(*v),
            _ => self.err(format!("missing input {i}")),
        }
    }

    /// Optional input `i`.
    pub fn opt(&self, i: usize) -> Option<Value> {
        self.ins.get(i).copied().flatten()
    }

    pub fn ty(&self, v: Value) -> TensorType {
        self.g.value_type(v).clone()
    }

    /// Optional input `i` that must be a constant at import time.
    pub fn konst(&self, i: usize, what: &str) -> Result<Option<Arc<Tensor>>> {
        match self.opt(i) {
            None => Ok(None),
            Some(v) => match self.g.const_value(v) {
                Some(t) => Ok(Some(t.clone())),
                None => self.err(format!(
                    "{what} (input {i}) must be a constant; nnc needs static shapes"
                )),
            },
        }
    }

    /// Optional constant integer input as a list.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        match self.konst(i, what)? {
            None => Ok(None),
            Some(t) if t.dtype().is_int() => Ok(Some(t.to_i64())),
            Some(t) => self.err(format!("{what} must be integers, got {}", t.dtype())),
        }
    }

    /// Adds a constant the model gives as data (a Constant node).
    pub fn model_constant(&mut self, t: Tensor) -> Value {
        let name = self.name.clone();
        self.g.add_const(t, name)
    }

    /// Adds a constant this node creates (folded or computed at import),
    /// counted against the model's budget.
    pub fn constant(&mut self, t: Tensor) -> Result<Value> {
        self.charge(t.ty().bytes() as u64)?;
        Ok(self.model_constant(t))
    }

    /// Counts `bytes` of created constants; an error naming the node once
    /// the model's budget is exceeded.
    fn charge(&self, bytes: u64) -> Result<()> {
        let b = self.budget;
        let total = b.used.get().saturating_add(bytes);
        if total > b.max {
            return self.err(format!(
                "folding constants here would add {}, {} in all, over this model's budget of {} ({} plus twice the model's own data)",
                mib(bytes),
                mib(total),
                mib(b.max),
                mib(FOLD_BUDGET_BASE)
            ));
        }
        b.used.set(total);
        Ok(())
    }

    /// Adds a single-output op, folding it when all inputs are constants.
    pub fn add(&mut self, op: Op, ins: &[Value]) -> Result<Value> {
        let mut v = self.add_multi(op, ins)?;
        if v.len() != 1 {
            return self.err("internal: expected a single output");
        }
        Ok(v.remove(0))
    }

    /// Adds an op with several outputs, folding when all inputs are constants.
    pub fn add_multi(&mut self, op: Op, ins: &[Value]) -> Result<Vec<Value>> {
        let name = self.name.clone();
        let consts: Option<Vec<Arc<Tensor>>> = ins
            .iter()
            .map(|v| self.g.const_value(*v).cloned())
            .collect();
        if let Some(consts) = consts.filter(|c| !c.is_empty() && !op.is_quantization()) {
            let tys: Vec<&TensorType> = ins.iter().map(|v| self.g.value_type(*v)).collect();
            let out = op.infer(&tys).map_err(|msg| ImportError::Node {
                node: name.clone(),
                op: self.node.op_type.clone(),
                msg,
            })?;
            let macs = nnc_ir::stats::op_macs(&op, &tys, &out);
            if out.iter().all(|t| t.len() <= FOLD_LIMIT) && macs <= FOLD_MACS {
                // Only growth counts: folding a weight's transpose or scale
                // into it creates as much as it makes dead.
                let out_bytes: u64 = out.iter().map(|t| t.bytes() as u64).sum();
                let in_bytes: u64 = consts.iter().map(|t| t.ty().bytes() as u64).sum();
                self.charge(out_bytes.saturating_sub(in_bytes))?;
                let refs: Vec<&Tensor> = consts.iter().map(|t| t.as_ref()).collect();
                let res = op.eval(&refs).map_err(|msg| ImportError::Node {
                    node: name.clone(),
                    op: self.node.op_type.clone(),
                    msg: format!("while folding constants: {msg}"),
                })?;
                return Ok(res
                    .into_iter()
                    .map(|t| self.g.add_const(t, name.clone()))
                    .collect());
            }
        }
        self.g.add_op(op, ins, name).map_err(|e| match e {
            nnc_ir::IrError::Shape { msg, .. } => ImportError::Node {
                node: self.name.clone(),
                op: self.node.op_type.clone(),
                msg,
            },
            e => e.into(),
        })
    }

    /// Element type of a value.
    pub fn dtype(&self, v: Value) -> DType {
        self.g.value_type(v).dtype
    }
}
