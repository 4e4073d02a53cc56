//! The closed set of IR operations. Each variant carries its own attribute
//! struct; per-family modules hold the attributes, shape inference and the
//! reference evaluation, so adding an op means touching one family module
//! and the dispatch tables below, and every backend `match` then fails to
//! compile until it handles the new op.

pub mod attr;
pub mod conv;
pub mod elementwise;
pub mod integer;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod qlinear;
pub mod qmath;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod winograd;

pub use conv::{ConvAttrs, ConvTransposeAttrs};
pub use elementwise::{BinaryOp, CastAttrs, UnaryOp};
pub use layout::{
    ConcatAttrs, ExpandAttrs, GatherAttrs, PadAttrs, PadMode, ReshapeAttrs, SliceAttrs, SplitAttrs,
    TileAttrs, TransposeAttrs,
};
pub use matmul::GemmAttrs;
pub use norm::{BatchNormAttrs, LrnAttrs, SoftmaxAttrs};
pub use pool::{GlobalPoolAttrs, PoolAttrs, PoolKind};
pub use qlinear::{
    QBinaryAttrs, QBinaryKind, QConvAttrs, QGemmAttrs, QParams, QSoftmaxAttrs, RequantAttrs,
};
pub use quant::{DequantizeAttrs, QuantizeAttrs};
pub use reduce::{ArgReduceAttrs, ReduceAttrs, ReduceKind};
pub use resize::{CoordMode, NearestMode, ResizeAttrs, ResizeMode};
pub use winograd::WinogradAttrs;

use crate::dtype::TensorType;
use crate::graph::ConstId;
use crate::tensor::Tensor;
use attr::{AttrReader, AttrWriter};

type R<T> = Result<T, String>;

/// An IR operation. Inputs are always tensors produced by other nodes
/// (weights are `Const` nodes); everything static is an attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input (its index is its position in [`crate::Graph::inputs`]).
    Input,
    /// A constant from the graph's constant table.
    Const(ConstId),
    Identity,
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, x, y)`.
    Where,
    Cast(CastAttrs),
    Conv(ConvAttrs),
    /// Winograd F(m,3) convolution: x, transformed weight, optional bias.
    Winograd(WinogradAttrs),
    ConvTranspose(ConvTransposeAttrs),
    Gemm(GemmAttrs),
    MatMul,
    BatchNorm(BatchNormAttrs),
    Softmax(SoftmaxAttrs),
    Lrn(LrnAttrs),
    Pool(PoolAttrs),
    GlobalPool(GlobalPoolAttrs),
    Reshape(ReshapeAttrs),
    Transpose(TransposeAttrs),
    Concat(ConcatAttrs),
    Split(SplitAttrs),
    Slice(SliceAttrs),
    Pad(PadAttrs),
    Expand(ExpandAttrs),
    Tile(TileAttrs),
    Gather(GatherAttrs),
    Reduce(ReduceAttrs),
    ArgReduce(ArgReduceAttrs),
    Resize(ResizeAttrs),
    /// QuantizeLinear: inputs x, scale, optional zero point.
    Quantize(QuantizeAttrs),
    /// DequantizeLinear: inputs x, scale, optional zero point.
    Dequantize(DequantizeAttrs),
    /// Quantized convolution: x, w, bias, multiplier, shift.
    QConv(QConvAttrs),
    /// Quantized matrix product: a, b, bias, multiplier, shift.
    QGemm(QGemmAttrs),
    /// Quantized elementwise add or multiply.
    QBinary(QBinaryAttrs),
    /// Requantization to other quantization parameters.
    Requant(RequantAttrs),
    /// 256-entry table lookup: x, table.
    Lut,
    /// Softmax on quantized input and output.
    QSoftmax(QSoftmaxAttrs),
    /// ONNX ConvInteger: x, w, x zero point, w zero point; int32 out.
    ConvInteger(ConvAttrs),
    /// ONNX MatMulInteger: a, b, a zero point, b zero point; int32 out.
    MatMulInteger,
    /// Float requantization of an int32 accumulator (QLinearConv's and
    /// QLinearMatMul's last step): acc, multiplier, zero point.
    Rescale,
}

/// Reads the optional fused activation attribute `act`.
pub(crate) fn read_act(r: &mut AttrReader) -> R<Option<UnaryOp>> {
    let Some(n) = r.nested("act")? else {
        return Ok(None);
    };
    let mut inner = AttrReader::new(n.attrs);
    let op = UnaryOp::parse(&n.name, &mut inner)
        .ok_or_else(|| format!("`{}` is not an activation", n.name))??;
    inner.finish()?;
    Ok(Some(op))
}

impl Op {
    /// The text-format name of the op.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Const(_) => "const",
            Op::Identity => "identity",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => "where",
            Op::Cast(_) => "cast",
            Op::Conv(_) => "conv",
            Op::Winograd(_) => "winograd",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::Gemm(_) => "gemm",
            Op::MatMul => "matmul",
            Op::BatchNorm(_) => "batch_norm",
            Op::Softmax(s) => {
                if s.log {
                    "log_softmax"
                } else {
                    "softmax"
                }
            }
            Op::Lrn(_) => "lrn",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "max_pool",
                PoolKind::Avg => "avg_pool",
            },
            Op::GlobalPool(p) => match p.kind {
                PoolKind::Max => "global_max_pool",
                PoolKind::Avg => "global_avg_pool",
            },
            Op::Reshape(_) => "reshape",
            Op::Transpose(_) => "transpose",
            Op::Concat(_) => "concat",
            Op::Split(_) => "split",
            Op::Slice(_) => "slice",
            Op::Pad(_) => "pad",
            Op::Expand(_) => "expand",
            Op::Tile(_) => "tile",
            Op::Gather(_) => "gather",
            Op::Reduce(r) => r.kind.name(),
            Op::ArgReduce(a) => {
                if a.max {
                    "argmax"
                } else {
                    "argmin"
                }
            }
            Op::Resize(_) => "resize",
            Op::Quantize(_) => "quantize",
            Op::Dequantize(_) => "dequantize",
            Op::QConv(_) => "qconv",
            Op::QGemm(_) => "qgemm",
            Op::QBinary(b) => b.name(),
            Op::Requant(_) => "requant",
            Op::Lut => "lut",
            Op::QSoftmax(_) => "qsoftmax",
            Op::ConvInteger(_) => "conv_integer",
            Op::MatMulInteger => "matmul_integer",
            Op::Rescale => "rescale",
        }
    }

    /// Writes the attributes in text form.
    pub fn write_attrs(&self, w: &mut AttrWriter) {
        match self {
            Op::Input
            | Op::Const(_)
            | Op::Identity
            | Op::Binary(_)
            | Op::Where
            | Op::MatMul
            | Op::Lut
            | Op::MatMulInteger
            | Op::Rescale => {}
            Op::GlobalPool(_) => {}
            Op::Unary(u) => u.write_attrs(w),
            Op::Cast(a) => a.write(w),
            Op::Conv(a) => a.write(w),
            Op::Winograd(a) => a.write(w),
            Op::ConvTranspose(a) => a.write(w),
            Op::Gemm(a) => a.write(w),
            Op::BatchNorm(a) => a.write(w),
            Op::Softmax(a) => a.write(w),
            Op::Lrn(a) => a.write(w),
            Op::Pool(a) => a.write(w),
            Op::Reshape(a) => a.write(w),
            Op::Transpose(a) => a.write(w),
            Op::Concat(a) => a.write(w),
            Op::Split(a) => a.write(w),
            Op::Slice(a) => a.write(w),
            Op::Pad(a) => a.write(w),
            Op::Expand(a) => a.write(w),
            Op::Tile(a) => a.write(w),
            Op::Gather(a) => a.write(w),
            Op::Reduce(a) => a.write(w),
            Op::ArgReduce(a) => a.write(w),
            Op::Resize(a) => a.write(w),
            Op::Quantize(a) => a.write(w),
            Op::Dequantize(a) => a.write(w),
            Op::QConv(a) => a.write(w),
            Op::QGemm(a) => a.write(w),
            Op::QBinary(a) => a.write(w),
            Op::Requant(a) => a.write(w),
            Op::QSoftmax(a) => a.write(w),
            Op::ConvInteger(a) => a.write(w),
        }
    }

    /// Builds an op from its text name and attributes (`input` and `const`
    /// are handled by the parser, not here).
    pub fn parse(name: &str, r: &mut AttrReader) -> R<Op> {
        if let Some(u) = UnaryOp::parse(name, r) {
            return u.map(Op::Unary);
        }
        if let Some(b) = BinaryOp::from_name(name) {
            return Ok(Op::Binary(b));
        }
        if let Some(k) = ReduceKind::from_name(name) {
            return ReduceAttrs::read(r, k).map(Op::Reduce);
        }
        Ok(match name {
            "identity" => Op::Identity,
            "where" => Op::Where,
            "matmul" => Op::MatMul,
            "cast" => Op::Cast(CastAttrs::read(r)?),
            "conv" => Op::Conv(ConvAttrs::read(r)?),
            "winograd" => Op::Winograd(WinogradAttrs::read(r)?),
            "conv_transpose" => Op::ConvTranspose(ConvTransposeAttrs::read(r)?),
            "gemm" => Op::Gemm(GemmAttrs::read(r)?),
            "batch_norm" => Op::BatchNorm(BatchNormAttrs::read(r)?),
            "softmax" => Op::Softmax(SoftmaxAttrs::read(r, false)?),
            "log_softmax" => Op::Softmax(SoftmaxAttrs::read(r, true)?),
            "lrn" => Op::Lrn(LrnAttrs::read(r)?),
            "max_pool" => Op::Pool(PoolAttrs::read(r, PoolKind::Max)?),
            "avg_pool" => Op::Pool(PoolAttrs::read(r, PoolKind::Avg)?),
            "global_max_pool" => Op::GlobalPool(GlobalPoolAttrs {
                kind: PoolKind::Max,
            }),
            "global_avg_pool" => Op::GlobalPool(GlobalPoolAttrs {
                kind: PoolKind::Avg,
            }),
            "reshape" => Op::Reshape(ReshapeAttrs::read(r)?),
            "transpose" => Op::Transpose(TransposeAttrs::read(r)?),
            "concat" => Op::Concat(ConcatAttrs::read(r)?),
            "split" => Op::Split(SplitAttrs::read(r)?),
            "slice" => Op::Slice(SliceAttrs::read(r)?),
            "pad" => Op::Pad(PadAttrs::read(r)?),
            "expand" => Op::Expand(ExpandAttrs::read(r)?),
            "tile" => Op::Tile(TileAttrs::read(r)?),
            "gather" => Op::Gather(GatherAttrs::read(r)?),
            "argmax" => Op::ArgReduce(ArgReduceAttrs::read(r, true)?),
            "argmin" => Op::ArgReduce(ArgReduceAttrs::read(r, false)?),
            "resize" => Op::Resize(ResizeAttrs::read(r)?),
            "quantize" => Op::Quantize(QuantizeAttrs::read(r)?),
            "dequantize" => Op::Dequantize(DequantizeAttrs::read(r)?),
            "qconv" => Op::QConv(QConvAttrs::read(r)?),
            "qgemm" => Op::QGemm(QGemmAttrs::read(r)?),
            "qadd" => Op::QBinary(QBinaryAttrs::read(r, QBinaryKind::Add)?),
            "qmul" => Op::QBinary(QBinaryAttrs::read(r, QBinaryKind::Mul)?),
            "requant" => Op::Requant(RequantAttrs::read(r)?),
            "lut" => Op::Lut,
            "qsoftmax" => Op::QSoftmax(QSoftmaxAttrs::read(r)?),
            "conv_integer" => Op::ConvInteger(ConvAttrs::read(r)?),
            "matmul_integer" => Op::MatMulInteger,
            "rescale" => Op::Rescale,
            _ => return Err(format!("unknown op `{name}`")),
        })
    }

    /// Output types from input types. `Input` and `Const` have no inputs and
    /// their types come from the graph, so they are rejected here.
    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        match self {
            Op::Input | Op::Const(_) => Err("inputs and constants have no inference rule".into()),
            Op::Identity => match ins {
                [x] => Ok(vec![(*x).clone()]),
                _ => Err(format!("expects 1 input, got {}", ins.len())),
            },
            Op::Unary(u) => u.infer(ins),
            Op::Binary(b) => b.infer(ins),
            Op::Where => elementwise::infer_where(ins),
            Op::Cast(a) => a.infer(ins),
            Op::Conv(a) => a.infer(ins),
            Op::Winograd(a) => a.infer(ins),
            Op::ConvTranspose(a) => a.infer(ins),
            Op::Gemm(a) => a.infer(ins),
            Op::MatMul => matmul::infer_matmul(ins),
            Op::BatchNorm(a) => a.infer(ins),
            Op::Softmax(a) => a.infer(ins),
            Op::Lrn(a) => a.infer(ins),
            Op::Pool(a) => a.infer(ins),
            Op::GlobalPool(a) => a.infer(ins),
            Op::Reshape(a) => a.infer(ins),
            Op::Transpose(a) => a.infer(ins),
            Op::Concat(a) => a.infer(ins),
            Op::Split(a) => a.infer(ins),
            Op::Slice(a) => a.infer(ins),
            Op::Pad(a) => a.infer(ins),
            Op::Expand(a) => a.infer(ins),
            Op::Tile(a) => a.infer(ins),
            Op::Gather(a) => a.infer(ins),
            Op::Reduce(a) => a.infer(ins),
            Op::ArgReduce(a) => a.infer(ins),
            Op::Resize(a) => a.infer(ins),
            Op::Quantize(a) => a.infer(ins),
            Op::Dequantize(a) => a.infer(ins),
            Op::QConv(a) => a.infer(ins),
            Op::QGemm(a) => a.infer(ins),
            Op::QBinary(a) => a.infer(ins),
            Op::Requant(a) => a.infer(ins),
            Op::Lut => qlinear::infer_lut(ins),
            Op::QSoftmax(a) => a.infer(ins),
            Op::ConvInteger(a) => integer::infer_conv_integer(a, ins),
            Op::MatMulInteger => integer::infer_matmul_integer(ins),
            Op::Rescale => integer::infer_rescale(ins),
        }
    }

    /// Reference evaluation. Inputs must already satisfy [`Op::infer`].
    pub fn eval(&self, ins: &[&Tensor]) -> R<Vec<Tensor>> {
        let one = |t: R<Tensor>| t.map(|t| vec![t]);
        let x = || {
            ins.first()
                .copied()
                .ok_or_else(|| "missing input".to_string())
        };
        match self {
            Op::Input | Op::Const(_) => Err("inputs and constants are not evaluated".into()),
            Op::Identity => Ok(vec![x()?.clone()]),
            Op::Unary(u) => one(u.eval(x()?)),
            Op::Binary(b) => match ins {
                [a, c] => one(b.eval(a, c)),
                _ => Err("expects 2 inputs".into()),
            },
            Op::Where => match ins {
                [c, a, b] => one(elementwise::eval_where(c, a, b)),
                _ => Err("expects 3 inputs".into()),
            },
            Op::Cast(a) => Ok(vec![x()?.cast(a.to)]),
            Op::Conv(a) => one(a.eval(ins)),
            Op::Winograd(a) => one(a.eval(ins)),
            Op::ConvTranspose(a) => one(a.eval(ins)),
            Op::Gemm(a) => one(a.eval(ins)),
            Op::MatMul => match ins {
                [a, b] => one(matmul::eval_matmul(a, b)),
                _ => Err("expects 2 inputs".into()),
            },
            Op::BatchNorm(a) => one(a.eval(ins)),
            Op::Softmax(a) => one(a.eval(x()?)),
            Op::Lrn(a) => one(a.eval(x()?)),
            Op::Pool(a) => one(a.eval(x()?)),
            Op::GlobalPool(a) => one(a.eval(x()?)),
            Op::Reshape(a) => one(a.eval(x()?)),
            Op::Transpose(a) => one(a.eval(x()?)),
            Op::Concat(a) => one(a.eval(ins)),
            Op::Split(a) => a.eval(x()?),
            Op::Slice(a) => one(a.eval(x()?)),
            Op::Pad(a) => one(a.eval(x()?)),
            Op::Expand(a) => one(a.eval(x()?)),
            Op::Tile(a) => one(a.eval(x()?)),
            Op::Gather(a) => match ins {
                [d, i] => one(a.eval(d, i)),
                _ => Err("expects 2 inputs".into()),
            },
            Op::Reduce(a) => one(a.eval(x()?)),
            Op::ArgReduce(a) => one(a.eval(x()?)),
            Op::Resize(a) => one(a.eval(x()?)),
            Op::Quantize(a) => one(a.eval(ins)),
            Op::Dequantize(a) => one(a.eval(ins)),
            Op::QConv(a) => one(a.eval(ins)),
            Op::QGemm(a) => one(a.eval(ins)),
            Op::QBinary(a) => one(a.eval(ins)),
            Op::Requant(a) => one(a.eval(x()?)),
            Op::Lut => match ins {
                [v, t] => one(qlinear::eval_lut(v, t)),
                _ => Err("expects 2 inputs".into()),
            },
            Op::QSoftmax(a) => one(a.eval(x()?)),
            Op::ConvInteger(a) => one(integer::eval_conv_integer(a, ins)),
            Op::MatMulInteger => one(integer::eval_matmul_integer(ins)),
            Op::Rescale => one(integer::eval_rescale(ins)),
        }
    }

    /// True for ops whose output is a relabeling of the input bytes (no data
    /// movement): backends can alias the buffers.
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Identity | Op::Reshape(_))
    }

    /// Quantization boundaries: never folded, so quantized weights stay
    /// quantized until a pass decides otherwise.
    pub fn is_quantization(&self) -> bool {
        matches!(self, Op::Quantize(_) | Op::Dequantize(_))
    }

    /// True for elementwise ops (one output element per aligned input element).
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_))
    }

    /// True for the integer (quantized) compute ops.
    pub fn is_integer_kernel(&self) -> bool {
        matches!(
            self,
            Op::QConv(_)
                | Op::QGemm(_)
                | Op::QBinary(_)
                | Op::Requant(_)
                | Op::Lut
                | Op::QSoftmax(_)
                | Op::ConvInteger(_)
                | Op::MatMulInteger
                | Op::Rescale
        )
    }
}
