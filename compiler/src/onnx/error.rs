//! Import errors. Each names what it is about: the file, the node and op,
//! the tensor or the input.

use std::path::PathBuf;

use thiserror::Error;

/// A node whose operator nnc does not support.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsupportedNode {
    pub node: String,
    pub op_type: String,
    pub domain: String,
    pub reason: String,
}

/// Errors from reading an ONNX model or tensor.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid ONNX file: {0}")]
    Decode(String),
    #[error("{0}")]
    Model(String),
    #[error("the model uses {} unsupported operator(s):\n{}", .0.len(), fmt_unsupported(.0))]
    Unsupported(Vec<UnsupportedNode>),
    #[error("node `{node}` ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    #[error(transparent)]
    Ir(#[from] nnc_ir::IrError),
}

fn fmt_unsupported(v: &[UnsupportedNode]) -> String {
    v.iter()
        .map(|u| {
            let dom = if u.domain.is_empty() || u.domain == "ai.onnx" {
                String::new()
            } else {
                format!("{}::", u.domain)
            };
            format!("  {dom}{} in node `{}`: {}", u.op_type, u.node, u.reason)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Result alias for the importer.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;
