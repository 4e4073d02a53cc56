//! Per-operator conversion from ONNX nodes to IR ops, with the differences
//! between opset versions handled here (attributes that became inputs,
//! legacy broadcasting, changed defaults). Everything static (shapes, axes,
//! pads) is resolved to attributes, so the IR never sees dynamic shapes.

mod elementwise;
mod nn;
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
];

/// `None` when the op is supported, else why not.
pub fn check_supported(op_type: &str) -> Option<String> {
    if SUPPORTED.contains(&op_type) {
        None
    } else {
        Some("not supported by nnc".into())
    }
}

/// Converts one node; returns one value per ONNX output that nnc produces.
pub fn convert(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let op = cx.node.op_type.clone();
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
