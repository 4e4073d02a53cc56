//! Register-blocked f32 Gemm kernels.

use nnc_ir::TensorType;
use nnc_ir::op::GemmAttrs;

use super::Args;
use super::kb::Kb;
use crate::error::Result;
use crate::program::Program;

/// Emits a fast kernel when the Gemm has one; false otherwise.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    _kb: &mut Kb,
    _g: &GemmAttrs,
    _a: &TensorType,
    _b: &TensorType,
    _c: Option<&TensorType>,
    _y: &TensorType,
    _args: &Args,
    _p: &Program,
) -> Result<bool> {
    Ok(false)
}
