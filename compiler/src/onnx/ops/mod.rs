//! Per-operator conversion from ONNX nodes to IR ops, with the differences
//! between opset versions handled here (attributes that became inputs,
//! legacy broadcasting, changed defaults). Everything static (shapes, axes,
//! pads) is resolved to attributes, so the IR never sees dynamic shapes.

mod elementwise;
mod nn;
mod quantized;
mod shape;
mod tensors;

use nnc_ir::Value;

use super::error::Result;
use super::import::Ctx;

/// Every default-domain operator the importer converts.
pub const SUPPORTED: &[&str] = &[
    // elementwise
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "ThresholdedRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Mish",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Not",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Mod",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Where",
    "Cast",
    "CastLike",
    "Identity",
    "Dropout",
    // neural network
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LRN",
    // shapes and data movement
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Pad",
    "Expand",
    "Tile",
    "Gather",
    "Shape",
    "Size",
    "ConstantOfShape",
    "Constant",
    "Range",
    "DepthToSpace",
    "SpaceToDepth",
    "Resize",
    "Upsample",
    // reductions
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
    // quantization
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// The `com.microsoft` operators the importer converts (onnxruntime's
/// quantized operators).
pub use quantized::CONTRIB;

/// The domain of onnxruntime's operators.
pub const MS_DOMAIN: &str = "com.microsoft";

/// `None` when the op of a default-domain (`domain` empty) or
/// `com.microsoft` node is supported, else why not.
pub fn check_supported(domain: &str, op_type: &str) -> Option<String> {
    let known = if domain == MS_DOMAIN {
        CONTRIB
    } else {
        SUPPORTED
    };
    if known.contains(&op_type) {
        None
    } else {
        Some("not supported by nnc".into())
    }
}

/// True for the domains of [`check_supported`].
pub fn is_known_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx" || domain == MS_DOMAIN
}

/// Converts one node; returns one value per ONNX output that nnc produces.
pub fn convert(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let op = cx.node.op_type.clone();
    if cx.node.domain == MS_DOMAIN {
        return quantized::convert_contrib(cx, &op);
    }
    convert_as(cx, &op)
}

/// Converts the node as the default-domain operator `op` (which may differ
/// from its own type: onnxruntime's quantized operators wrap float ones).
pub(crate) fn convert_as(cx: &mut Ctx<'_>, op: &str) -> Result<Vec<Value>> {
    let op = op.to_string();
    if let Some(r) = quantized::convert(cx, &op) {
        return r;
    }
    if let Some(r) = elementwise::convert(cx, &op) {
        return r;
    }
    if let Some(r) = nn::convert(cx, &op) {
        return r;
    }
    if let Some(r) = shape::convert(cx, &op) {
        return r;
    }
    cx.err("not supported by nnc")
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(cx: &Ctx<'_>, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        cx.err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Converts a list of ints to non-negative sizes.
pub(crate) fn to_usizes(cx: &Ctx<'_>, v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| {
            usize::try_from(x).or_else(|_| cx.err(format!("{what} must not be negative, got {x}")))
        })
        .collect()
}
