//! Register-blocked 2-D f32 convolution kernels.

use nnc_ir::TensorType;
use nnc_ir::op::ConvAttrs;

use super::Args;
use super::kb::Kb;
use crate::error::Result;
use crate::program::Program;

/// Emits a fast kernel when the convolution has one; false otherwise.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    _kb: &mut Kb,
    _a: &ConvAttrs,
    _x: &TensorType,
    _w: &TensorType,
    _bias: bool,
    _y: &TensorType,
    _args: &Args,
    _p: &Program,
) -> Result<bool> {
    Ok(false)
}
