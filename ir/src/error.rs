//! The IR crate's error type: every error names what it is about.

use thiserror::Error;

/// Errors from building, verifying, parsing or interpreting a graph.
#[derive(Debug, Error)]
pub enum IrError {
    /// Shape or type inference rejected a node.
    #[error("node `{node}` ({op}): {msg}")]
    Shape {
        node: String,
        op: String,
        msg: String,
    },
    /// The interpreter could not evaluate a node.
    #[error("evaluating node `{node}` ({op}): {msg}")]
    Eval {
        node: String,
        op: String,
        msg: String,
    },
    /// A tensor whose data does not fit its type.
    #[error("bad tensor: {0}")]
    Tensor(String),
    /// Inputs given to the interpreter do not match the graph signature.
    #[error("input {index} (`{name}`): {msg}")]
    Input {
        index: usize,
        name: String,
        msg: String,
    },
    /// The text format could not be parsed.
    #[error("{line}:{col}: {msg}")]
    Parse {
        line: usize,
        col: usize,
        msg: String,
    },
    /// The verifier found problems; all of them are listed.
    #[error("graph verification failed with {} error(s):\n  {}", .0.len(), .0.join("\n  "))]
    Verify(Vec<String>),
    /// The program verifier found problems; all of them are listed.
    #[error("program verification failed with {} error(s):\n  {}", .0.len(), .0.join("\n  "))]
    ProgramVerify(Vec<String>),
    /// A graph-level structural problem (cycle, dangling value...).
    #[error("{0}")]
    Graph(String),
}

/// Result alias for the IR crate.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
