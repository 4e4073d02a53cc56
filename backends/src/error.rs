//! Backend errors.

use thiserror::Error;

/// Errors from lowering, planning and code generation.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error(transparent)]
    Ir(#[from] nnc_ir::IrError),
    /// A step the backend has no kernel for (names the node and op).
    #[error("node `{node}` ({op}): the {backend} backend does not support {what}")]
    Unsupported {
        backend: &'static str,
        node: String,
        op: String,
        what: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Result alias for backends.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;
