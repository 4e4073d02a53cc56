//! A small builder for ONNX models, for tests, fuzz seeds and tools that
//! need a model without an exporter: inputs, initializers, nodes with
//! attributes and outputs, serialized with the same prost messages the
//! importer decodes.

use nnc_ir::{DType, Tensor};
use prost::Message;

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, attr_type,
};
use super::tensor::{code_of, to_proto};

/// An ONNX model under construction.
#[derive(Clone, Debug)]
pub struct ModelBuilder {
    /// The model proto; edit it directly for anything the builder lacks.
    pub model: ModelProto,
}

/// An attribute value for [`ModelBuilder::node`].
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Tensor),
}

/// A value info of `dtype` with fixed `dims`.
pub fn value_info(name: &str, dtype: DType, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: code_of(dtype),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d as i64),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl ModelBuilder {
    /// An empty model: IR version 8, default-domain opset `opset`.
    pub fn new(name: &str, opset: i64) -> Self {
        ModelBuilder {
            model: ModelProto {
                ir_version: 8,
                opset_import: vec![OperatorSetIdProto {
                    domain: String::new(),
                    version: opset,
                }],
                graph: Some(GraphProto {
                    name: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    /// The graph proto.
    pub fn graph(&mut self) -> &mut GraphProto {
        self.model.graph.get_or_insert_with(Default::default)
    }

    /// Adds a graph input.
    pub fn input(mut self, name: &str, dtype: DType, dims: &[usize]) -> Self {
        self.graph().input.push(value_info(name, dtype, dims));
        self
    }

    /// Adds an initializer (raw data).
    pub fn init(mut self, name: &str, t: &Tensor) -> Self {
        self.graph().initializer.push(to_proto(t, name));
        self
    }

    /// Adds an initializer given as a proto (any storage form).
    pub fn init_proto(mut self, t: TensorProto) -> Self {
        self.graph().initializer.push(t);
        self
    }

    /// Adds a node; its name is `name`.
    pub fn node(
        mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> Self {
        let attribute = attrs
            .iter()
            .map(|(k, v)| {
                let mut a = AttributeProto {
                    name: (*k).into(),
                    ..Default::default()
                };
                match v {
                    Attr::Int(i) => (a.r#type, a.i) = (attr_type::INT, *i),
                    Attr::Float(f) => (a.r#type, a.f) = (attr_type::FLOAT, *f),
                    Attr::Ints(v) => (a.r#type, a.ints) = (attr_type::INTS, v.clone()),
                    Attr::Floats(v) => (a.r#type, a.floats) = (attr_type::FLOATS, v.clone()),
                    Attr::Str(s) => (a.r#type, a.s) = (attr_type::STRING, s.as_bytes().to_vec()),
                    Attr::Tensor(t) => (a.r#type, a.t) = (attr_type::TENSOR, Some(to_proto(t, k))),
                }
                a
            })
            .collect();
        self.graph().node.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
        self
    }

    /// Adds a graph output.
    pub fn output(mut self, name: &str, dtype: DType, dims: &[usize]) -> Self {
        self.graph().output.push(value_info(name, dtype, dims));
        self
    }

    /// The serialized model.
    pub fn bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }
}
