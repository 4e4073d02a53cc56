//! Writing a graph back as ONNX (opset 13, prost-encoded), so that a pruned
//! model can be fine-tuned in a framework and compiled again. It covers
//! the ops of the graph as imported, float and QDQ: convolutions, matrix
//! products, BatchNorm, activations, elementwise arithmetic, pooling,
//! layout ops, softmax, QuantizeLinear/DequantizeLinear. The integer ops
//! the e-graph makes (`qconv`, `qgemm`, ...) have no ONNX form here: export
//! the graph before they appear (`nnc prune` does).

use std::collections::HashMap;

use nnc_ir::op::{PoolKind, UnaryOp};
use nnc_ir::{DType, Graph, Op, Tensor, Value};
use prost::Message;

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, attr_type, data_type as dt,
};

/// The opset the exporter writes.
pub const EXPORT_OPSET: i64 = 13;

/// Why a graph cannot be written as ONNX.
#[derive(Debug, thiserror::Error)]
#[error("cannot write node `{node}` ({op}) as ONNX: {msg}")]
pub struct ExportError {
    pub node: String,
    pub op: String,
    pub msg: String,
}

fn code(d: DType) -> Option<i32> {
    Some(match d {
        DType::F32 => dt::FLOAT,
        DType::F64 => dt::DOUBLE,
        DType::I8 => dt::INT8,
        DType::U8 => dt::UINT8,
        DType::I16 => dt::INT16,
        DType::U16 => dt::UINT16,
        DType::I32 => dt::INT32,
        DType::U32 => dt::UINT32,
        DType::I64 => dt::INT64,
        DType::Bool => dt::BOOL,
    })
}

fn tensor_proto(t: &Tensor, name: &str) -> Option<TensorProto> {
    Some(TensorProto {
        dims: t.dims().iter().map(|d| *d as i64).collect(),
        data_type: code(t.dtype())?,
        name: name.to_string(),
        raw_data: t.data().to_le_bytes(),
        ..Default::default()
    })
}

fn value_info(name: &str, ty: &nnc_ir::TensorType) -> Option<ValueInfoProto> {
    Some(ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: code(ty.dtype)?,
                shape: Some(TensorShapeProto {
                    dim: ty
                        .dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: Some(*d as i64),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn ints(name: &str, v: impl IntoIterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.into_iter().collect(),
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f,
        ..Default::default()
    }
}

fn us(v: &[usize]) -> Vec<i64> {
    v.iter().map(|x| *x as i64).collect()
}

struct Writer {
    g: GraphProto,
    names: HashMap<Value, String>,
    fresh: usize,
}

impl Writer {
    fn fresh(&mut self, base: &str) -> String {
        self.fresh += 1;
        format!("{base}__{}", self.fresh)
    }

    fn init(&mut self, t: &Tensor, base: &str) -> String {
        let name = self.fresh(base);
        let p = tensor_proto(t, &name).expect("numeric constant");
        self.g.initializer.push(p);
        name
    }

    fn node(
        &mut self,
        op: &str,
        ins: Vec<String>,
        outs: Vec<String>,
        attrs: Vec<AttributeProto>,
        name: &str,
    ) {
        let name = self.fresh(name);
        self.g.node.push(NodeProto {
            input: ins,
            output: outs,
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Appends an activation node after `x`, returning its output.
    fn act(&mut self, u: &UnaryOp, x: String, out: String, name: &str) -> Result<(), String> {
        let (op, attrs, extra): (&str, Vec<AttributeProto>, Vec<String>) = match *u {
            UnaryOp::Relu => ("Relu", vec![], vec![]),
            UnaryOp::LeakyRelu { alpha } => ("LeakyRelu", vec![float("alpha", alpha)], vec![]),
            UnaryOp::Elu { alpha } => ("Elu", vec![float("alpha", alpha)], vec![]),
            UnaryOp::Selu { alpha, gamma } => (
                "Selu",
                vec![float("alpha", alpha), float("gamma", gamma)],
                vec![],
            ),
            UnaryOp::Clip { min, max } => {
                let lo = self.init(&Tensor::scalar_f32(min as f32), "clip_min");
                let hi = self.init(&Tensor::scalar_f32(max as f32), "clip_max");
                ("Clip", vec![], vec![lo, hi])
            }
            UnaryOp::Sigmoid => ("Sigmoid", vec![], vec![]),
            UnaryOp::Silu => {
                // No ONNX op before opset 24's Swish: x * Sigmoid(x).
                let s = self.fresh(&format!("{out}_sigmoid"));
                self.node("Sigmoid", vec![x.clone()], vec![s.clone()], vec![], name);
                self.node("Mul", vec![x, s], vec![out], vec![], name);
                return Ok(());
            }
            UnaryOp::HardSigmoid { alpha, beta } => (
                "HardSigmoid",
                vec![float("alpha", alpha), float("beta", beta)],
                vec![],
            ),
            UnaryOp::HardSwish => return Err("HardSwish needs opset 14".into()),
            UnaryOp::Tanh => ("Tanh", vec![], vec![]),
            UnaryOp::Softplus => ("Softplus", vec![], vec![]),
            UnaryOp::Softsign => ("Softsign", vec![], vec![]),
            UnaryOp::Erf => ("Erf", vec![], vec![]),
            UnaryOp::Exp => ("Exp", vec![], vec![]),
            UnaryOp::Log => ("Log", vec![], vec![]),
            UnaryOp::Sqrt => ("Sqrt", vec![], vec![]),
            UnaryOp::Abs => ("Abs", vec![], vec![]),
            UnaryOp::Neg => ("Neg", vec![], vec![]),
            UnaryOp::Reciprocal => ("Reciprocal", vec![], vec![]),
            UnaryOp::Floor => ("Floor", vec![], vec![]),
            UnaryOp::Ceil => ("Ceil", vec![], vec![]),
            UnaryOp::Round => ("Round", vec![], vec![]),
            UnaryOp::Sign => ("Sign", vec![], vec![]),
            UnaryOp::Sin => ("Sin", vec![], vec![]),
            UnaryOp::Cos => ("Cos", vec![], vec![]),
            UnaryOp::Not => ("Not", vec![], vec![]),
        };
        let mut ins = vec![x];
        ins.extend(extra);
        self.node(op, ins, vec![out], attrs, name);
        Ok(())
    }
}

/// Encodes `g` as an ONNX model.
pub fn export(g: &Graph) -> Result<Vec<u8>, ExportError> {
    let mut w = Writer {
        g: GraphProto {
            name: g.name.clone(),
            ..Default::default()
        },
        names: HashMap::new(),
        fresh: 0,
    };
    let fail = |n: &nnc_ir::NodeData, msg: &str| ExportError {
        node: n.name.clone(),
        op: n.op.name().to_string(),
        msg: msg.to_string(),
    };
    for (i, &id) in g.inputs().iter().enumerate() {
        let name = g.input_name(i).to_string();
        w.names.insert(Value::new(id, 0), name.clone());
        let vi = value_info(&name, g.input_type(i))
            .ok_or_else(|| fail(g.node(id), "unsupported input type"))?;
        w.g.input.push(vi);
    }
    // Values that are a graph output take its name (the first output
    // naming a value that is not a graph input).
    let mut out_name: HashMap<Value, String> = HashMap::new();
    for o in g.outputs() {
        if !g.inputs().contains(&o.value.node) {
            out_name.entry(o.value).or_insert_with(|| o.name.clone());
        }
    }
    let order = g.topo_order().map_err(|e| ExportError {
        node: g.name.clone(),
        op: "graph".into(),
        msg: e.to_string(),
    })?;
    for id in order {
        let n = g.node(id);
        if matches!(n.op, Op::Input) {
            continue;
        }
        let outs: Vec<String> = (0..n.outputs.len() as u32)
            .map(|p| {
                let v = Value::new(id, p);
                out_name
                    .get(&v)
                    .cloned()
                    .unwrap_or_else(|| format!("v{}_{p}", id.index()))
            })
            .collect();
        for (p, o) in outs.iter().enumerate() {
            w.names.insert(Value::new(id, p as u32), o.clone());
        }
        if let Op::Const(c) = n.op {
            let t = g.constant(c).ok_or_else(|| fail(n, "unknown constant"))?;
            let p =
                tensor_proto(t, &outs[0]).ok_or_else(|| fail(n, "unsupported constant type"))?;
            w.g.initializer.push(p);
            continue;
        }
        let ins: Vec<String> = g
            .node_inputs(id)
            .iter()
            .map(|v| w.names[v].clone())
            .collect();
        let name = n.name.as_str();
        let y = outs[0].clone();
        // An op with a fused activation writes the op, then the activation.
        let with_act = |w: &mut Writer, act: &Option<UnaryOp>, y: &str| -> String {
            match act {
                Some(_) => w.fresh(&format!("{y}_pre")),
                None => y.to_string(),
            }
        };
        match &n.op {
            Op::Conv(a) => {
                let t = with_act(&mut w, &a.act, &y);
                let wt = g.value_type(g.node_inputs(id)[1]);
                w.node(
                    "Conv",
                    ins,
                    vec![t.clone()],
                    vec![
                        ints("kernel_shape", us(&wt.dims[2..])),
                        ints("strides", us(&a.strides)),
                        ints("pads", us(&a.pads)),
                        ints("dilations", us(&a.dilations)),
                        int("group", a.group as i64),
                    ],
                    name,
                );
                if let Some(u) = &a.act {
                    w.act(u, t, y, name).map_err(|m| fail(n, &m))?;
                }
            }
            Op::Gemm(a) => {
                let t = with_act(&mut w, &a.act, &y);
                w.node(
                    "Gemm",
                    ins,
                    vec![t.clone()],
                    vec![
                        float("alpha", a.alpha),
                        float("beta", a.beta),
                        int("transA", a.trans_a as i64),
                        int("transB", a.trans_b as i64),
                    ],
                    name,
                );
                if let Some(u) = &a.act {
                    w.act(u, t, y, name).map_err(|m| fail(n, &m))?;
                }
            }
            Op::MatMul => w.node("MatMul", ins, outs, vec![], name),
            Op::Identity => w.node("Identity", ins, outs, vec![], name),
            Op::Unary(u) => w.act(u, ins[0].clone(), y, name).map_err(|m| fail(n, &m))?,
            Op::Binary(b) => {
                use nnc_ir::op::BinaryOp as B;
                let op = match b {
                    B::Add => "Add",
                    B::Sub => "Sub",
                    B::Mul => "Mul",
                    B::Div => "Div",
                    B::Pow => "Pow",
                    B::Max => "Max",
                    B::Min => "Min",
                    B::PRelu => "PRelu",
                    _ => return Err(fail(n, "no ONNX form in the exporter")),
                };
                w.node(op, ins, outs, vec![], name);
            }
            Op::BatchNorm(a) => w.node(
                "BatchNormalization",
                ins,
                outs,
                vec![float("epsilon", a.epsilon)],
                name,
            ),
            Op::Softmax(a) => w.node(
                if a.log { "LogSoftmax" } else { "Softmax" },
                ins,
                outs,
                vec![int("axis", a.axis as i64)],
                name,
            ),
            Op::Pool(p) => {
                let mut attrs = vec![
                    ints("kernel_shape", us(&p.kernel)),
                    ints("strides", us(&p.strides)),
                    ints("pads", us(&p.pads)),
                    int("ceil_mode", p.ceil_mode as i64),
                ];
                let op = match p.kind {
                    PoolKind::Max => {
                        attrs.push(ints("dilations", us(&p.dilations)));
                        "MaxPool"
                    }
                    PoolKind::Avg => {
                        if p.dilations.iter().any(|d| *d != 1) {
                            return Err(fail(n, "dilated average pooling needs opset 19"));
                        }
                        attrs.push(int("count_include_pad", p.count_include_pad as i64));
                        "AveragePool"
                    }
                };
                w.node(op, ins, outs, attrs, name);
            }
            Op::GlobalPool(p) => w.node(
                match p.kind {
                    PoolKind::Max => "GlobalMaxPool",
                    PoolKind::Avg => "GlobalAveragePool",
                },
                ins,
                outs,
                vec![],
                name,
            ),
            Op::Reshape(a) => {
                let shape = Tensor::from_i64s(vec![a.shape.len()], us(&a.shape))
                    .map_err(|e| fail(n, &e.to_string()))?;
                let s = w.init(&shape, "shape");
                w.node("Reshape", vec![ins[0].clone(), s], outs, vec![], name);
            }
            Op::Transpose(a) => w.node(
                "Transpose",
                ins,
                outs,
                vec![ints("perm", us(&a.perm))],
                name,
            ),
            Op::Concat(a) => w.node("Concat", ins, outs, vec![int("axis", a.axis as i64)], name),
            Op::Split(a) => {
                let sizes = Tensor::from_i64s(vec![a.sizes.len()], us(&a.sizes))
                    .map_err(|e| fail(n, &e.to_string()))?;
                let s = w.init(&sizes, "split");
                w.node(
                    "Split",
                    vec![ins[0].clone(), s],
                    outs,
                    vec![int("axis", a.axis as i64)],
                    name,
                );
            }
            Op::Slice(a) => {
                let r = a.starts.len();
                let mk = |w: &mut Writer, v: &[i64], b: &str| {
                    w.init(&Tensor::from_i64s(vec![r], v.to_vec()).expect("sizes"), b)
                };
                // A negative-step end of -1 means "through index 0"; ONNX
                // spells that as a very negative end.
                let ends: Vec<i64> = a
                    .ends
                    .iter()
                    .zip(&a.steps)
                    .map(|(e, s)| if *s < 0 && *e == -1 { i64::MIN } else { *e })
                    .collect();
                let axes: Vec<i64> = (0..r as i64).collect();
                let st = mk(&mut w, &a.starts, "starts");
                let en = mk(&mut w, &ends, "ends");
                let ax = mk(&mut w, &axes, "axes");
                let sp = mk(&mut w, &a.steps, "steps");
                w.node(
                    "Slice",
                    vec![ins[0].clone(), st, en, ax, sp],
                    outs,
                    vec![],
                    name,
                );
            }
            Op::Quantize(a) => {
                let mut ins = ins;
                if ins.len() == 2 {
                    let z = Tensor::zeros(&nnc_ir::TensorType::new(a.to, vec![]));
                    ins.push(w.init(&z, "zero_point"));
                }
                w.node(
                    "QuantizeLinear",
                    ins,
                    outs,
                    vec![int("axis", a.axis as i64)],
                    name,
                );
            }
            Op::Dequantize(a) => w.node(
                "DequantizeLinear",
                ins,
                outs,
                vec![int("axis", a.axis as i64)],
                name,
            ),
            _ => return Err(fail(n, "no ONNX form in the exporter")),
        }
    }
    for o in g.outputs() {
        let ty = g.value_type(o.value);
        let have = &w.names[&o.value];
        if have != &o.name {
            w.node(
                "Identity",
                vec![have.clone()],
                vec![o.name.clone()],
                vec![],
                &o.name,
            );
        }
        let vi = value_info(&o.name, ty).ok_or_else(|| ExportError {
            node: o.name.clone(),
            op: "output".into(),
            msg: "unsupported output type".into(),
        })?;
        w.g.output.push(vi);
    }
    let m = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "nnc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(w.g),
        ..Default::default()
    };
    Ok(m.encode_to_vec())
}
