//! Quantized operators in the QOperator form: ONNX's ConvInteger,
//! MatMulInteger, QLinearConv and QLinearMatMul, and the `com.microsoft`
//! operators onnxruntime.quantization writes (QGemm, QLinearAdd, ...).
//!
//! The default-domain ops become the integer IR ops with the arithmetic of
//! the ONNX reference: `conv_integer` / `matmul_integer` accumulate exactly
//! in int32, `rescale` multiplies by `x_scale * w_scale / y_scale` (f32)
//! in double precision and rounds half to even. QGemm, whose onnxruntime
//! kernel computes the same way, is built from the same ops. The other
//! `com.microsoft` ops are defined by onnxruntime as float arithmetic
//! between a dequantization and a quantization, so they import as that QDQ
//! graph; the e-graph's QDQ rules turn both forms into integer kernels.

use nnc_ir::op::{BinaryOp, DequantizeAttrs, QuantizeAttrs, ReshapeAttrs, TransposeAttrs};
use nnc_ir::{DType, Op, Tensor, Value};

use super::super::error::Result;
use super::super::import::Ctx;
use super::nn::conv_geometry;

/// The `com.microsoft` operators the importer converts.
pub const CONTRIB: &[&str] = &[
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
    "QLinearConcat",
    "QuantizeLinear",
    "DequantizeLinear",
];

pub(super) fn convert(cx: &mut Ctx<'_>, op: &str) -> Option<Result<Vec<Value>>> {
    Some(match op {
        "ConvInteger" => conv_integer(cx),
        "MatMulInteger" => matmul_integer(cx),
        "QLinearConv" => qlinear_conv(cx),
        "QLinearMatMul" => qlinear_matmul(cx),
        _ => return None,
    })
}

/// A `com.microsoft` operator.
pub(super) fn convert_contrib(cx: &mut Ctx<'_>, op: &str) -> Result<Vec<Value>> {
    match op {
        "QGemm" => qgemm(cx),
        "QLinearAdd" => binary(cx, "Add"),
        "QLinearMul" => binary(cx, "Mul"),
        "QLinearAveragePool" => unary(cx, "AveragePool"),
        "QLinearGlobalAveragePool" => unary(cx, "GlobalAveragePool"),
        "QLinearSigmoid" => unary(cx, "Sigmoid"),
        "QLinearLeakyRelu" => unary(cx, "LeakyRelu"),
        "QLinearSoftmax" => softmax(cx),
        "QLinearConcat" => concat(cx),
        "QuantizeLinear" | "DequantizeLinear" => super::convert_as(cx, op),
        _ => cx.err("not supported by nnc"),
    }
}

/// Optional zero point `i` of a value of type `d`: the input, or a zero.
fn zero_point(cx: &mut Ctx<'_>, i: usize, d: DType, what: &str) -> Result<Value> {
    match cx.opt(i) {
        Some(z) if cx.dtype(z) == d => Ok(z),
        Some(z) => cx.err(format!(
            "{what} zero point has type {}, expected {d}",
            cx.dtype(z)
        )),
        None => {
            let t = Tensor::from_i64(d, vec![], vec![0]).or_else(|e| cx.err(e.to_string()))?;
            cx.constant(t)
        }
    }
}

fn reshape(cx: &mut Ctx<'_>, v: Value, shape: Vec<usize>) -> Result<Value> {
    if cx.ty(v).dims == shape {
        return Ok(v);
    }
    cx.add(Op::Reshape(ReshapeAttrs { shape }), &[v])
}

/// A per-channel parameter (`[C]`, or one value) shaped to broadcast along
/// axis 1 of a rank-`rank` tensor.
fn along_channels(cx: &mut Ctx<'_>, v: Value, rank: usize) -> Result<Value> {
    let t = cx.ty(v);
    if t.len() == 1 {
        return Ok(v);
    }
    let mut shape = vec![t.len()];
    shape.resize(rank - 1, 1);
    reshape(cx, v, shape)
}

/// A 1-D per-row parameter of a `[..., M, K]` operand as a column `[M, 1]`
/// (numpy's broadcasting would line a 1-D tensor up with the columns).
fn per_row(cx: &mut Ctx<'_>, v: Value, rank: usize) -> Result<Value> {
    let t = cx.ty(v);
    if t.rank() == 1 && t.len() != 1 && rank >= 2 {
        return reshape(cx, v, vec![t.len(), 1]);
    }
    Ok(v)
}

/// The requantization multiplier `a_scale * b_scale / y_scale`, in f32 as
/// the reference computes it (folded when the scales are constants).
fn multiplier(cx: &mut Ctx<'_>, a_scale: Value, b_scale: Value, y_scale: Value) -> Result<Value> {
    for s in [a_scale, b_scale, y_scale] {
        if cx.dtype(s) != DType::F32 {
            return cx.err(format!(
                "scale type {} is not supported (nnc reads f32 scales)",
                cx.dtype(s)
            ));
        }
    }
    if cx.ty(y_scale).len() != 1 {
        return cx.err(format!("y_scale {} must be one value", cx.ty(y_scale)));
    }
    let ab = cx.add(Op::Binary(BinaryOp::Mul), &[a_scale, b_scale])?;
    cx.add(Op::Binary(BinaryOp::Div), &[ab, y_scale])
}

/// `saturate(round(acc * m + y_zp))` to the type of `y_zp` (or of `like`).
fn rescale(cx: &mut Ctx<'_>, acc: Value, m: Value, zp_input: usize, like: DType) -> Result<Value> {
    let like = cx.opt(zp_input).map_or(like, |z| cx.dtype(z));
    let zp = zero_point(cx, zp_input, like, "y")?;
    cx.add(Op::Rescale, &[acc, m, zp])
}

fn conv_integer(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, w, a) = conv_geometry(cx, 0, 1)?;
    let (xd, wd) = (cx.dtype(x), cx.dtype(w));
    let xz = zero_point(cx, 2, xd, "x")?;
    let wz = zero_point(cx, 3, wd, "w")?;
    Ok(vec![cx.add(Op::ConvInteger(a), &[x, w, xz, wz])?])
}

fn matmul_integer(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let (ad, bd) = (cx.dtype(a), cx.dtype(b));
    let az = zero_point(cx, 2, ad, "a")?;
    let az = per_row(cx, az, cx.ty(a).rank())?;
    let bz = zero_point(cx, 3, bd, "b")?;
    Ok(vec![cx.add(Op::MatMulInteger, &[a, b, az, bz])?])
}

/// QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias.
fn qlinear_conv(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, w, a) = conv_geometry(cx, 0, 3)?;
    let (xd, wd) = (cx.dtype(x), cx.dtype(w));
    let xz = zero_point(cx, 2, xd, "x")?;
    let wz = zero_point(cx, 5, wd, "w")?;
    let mut acc = cx.add(Op::ConvInteger(a), &[x, w, xz, wz])?;
    let rank = cx.ty(acc).rank();
    let m = cx.ty(acc).dims[1];
    if let Some(b) = cx.opt(8) {
        let tb = cx.ty(b);
        if tb.dtype != DType::I32 || tb.len() != m || tb.rank() != 1 {
            return cx.err(format!("bias {tb} must be i32[{m}]"));
        }
        let b = along_channels(cx, b, rank)?;
        acc = cx.add(Op::Binary(BinaryOp::Add), &[acc, b])?;
    }
    let (xs, ws, ys) = (cx.input(1)?, cx.input(4)?, cx.input(6)?);
    let n = cx.ty(ws).len();
    if n != 1 && (n != m || cx.ty(ws).rank() != 1) {
        return cx.err(format!(
            "w_scale {} must be one value or one per output channel ({m})",
            cx.ty(ws)
        ));
    }
    let mult = multiplier(cx, xs, ws, ys)?;
    let mult = along_channels(cx, mult, rank)?;
    Ok(vec![rescale(cx, acc, mult, 7, xd)?])
}

/// QLinearMatMul: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp.
fn qlinear_matmul(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (a, b) = (cx.input(0)?, cx.input(3)?);
    let (ad, bd) = (cx.dtype(a), cx.dtype(b));
    let rank = cx.ty(a).rank();
    let az = zero_point(cx, 2, ad, "a")?;
    let az = per_row(cx, az, rank)?;
    let bz = zero_point(cx, 5, bd, "b")?;
    let acc = cx.add(Op::MatMulInteger, &[a, b, az, bz])?;
    let a_scale = cx.input(1)?;
    let a_scale = per_row(cx, a_scale, rank)?;
    let (bs, ys) = (cx.input(4)?, cx.input(6)?);
    let mult = multiplier(cx, a_scale, bs, ys)?;
    Ok(vec![rescale(cx, acc, mult, 7, ad)?])
}

/// com.microsoft QGemm: A, a_scale, a_zp, B, b_scale, b_zp, C (int32 at
/// scale `alpha * a_scale * b_scale`), y_scale, y_zp; a float output when
/// y_scale is absent. onnxruntime computes it as an integer product and a
/// float requantization, which is what this builds.
fn qgemm(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (mut a, mut b) = (cx.input(0)?, cx.input(3)?);
    let alpha = cx.f("alpha", 1.0)?;
    for (v, what) in [(a, "A"), (b, "B")] {
        if cx.ty(v).rank() != 2 {
            return cx.err(format!("{what} {} must be a matrix", cx.ty(v)));
        }
    }
    let transpose =
        |cx: &mut Ctx<'_>, v| cx.add(Op::Transpose(TransposeAttrs { perm: vec![1, 0] }), &[v]);
    if cx.i("transA", 0)? != 0 {
        a = transpose(cx, a)?;
    }
    let trans_b = cx.i("transB", 0)? != 0;
    if trans_b {
        b = transpose(cx, b)?;
    }
    let (ad, bd) = (cx.dtype(a), cx.dtype(b));
    let az = zero_point(cx, 2, ad, "a")?;
    if cx.ty(az).len() != 1 {
        return cx.err("a_zero_point must be one value");
    }
    // Per-column zero points broadcast along the last axis of B [K, N]
    // (after the transposition, which keeps them per column).
    let bz = zero_point(cx, 5, bd, "b")?;
    let (bzt, n) = (cx.ty(bz), cx.ty(b).dims[1]);
    if bzt.len() != 1 && (bzt.rank() != 1 || bzt.len() != n) {
        return cx.err(format!(
            "b_zero_point {bzt} must be one value or one per column ({n})"
        ));
    }
    let mut acc = cx.add(Op::MatMulInteger, &[a, b, az, bz])?;
    if let Some(c) = cx.opt(6) {
        if cx.dtype(c) != DType::I32 {
            return cx.err(format!("C {} must be i32", cx.ty(c)));
        }
        acc = cx.add(Op::Binary(BinaryOp::Add), &[acc, c])?;
    }
    let (a_scale, b_scale) = (cx.input(1)?, cx.input(4)?);
    let alpha_t = cx.constant(Tensor::scalar_f32(alpha))?;
    let ab = cx.add(Op::Binary(BinaryOp::Mul), &[a_scale, b_scale])?;
    let scale = cx.add(Op::Binary(BinaryOp::Mul), &[alpha_t, ab])?;
    match cx.opt(7) {
        Some(ys) => {
            let one = cx.constant(Tensor::scalar_f32(1.0))?;
            let mult = multiplier(cx, scale, one, ys)?;
            Ok(vec![rescale(cx, acc, mult, 8, ad)?])
        }
        None => {
            // Float output: the accumulator at its scale.
            let n = cx.ty(scale).len();
            if n != 1 && cx.ty(scale).rank() != 1 {
                return cx.err("a_scale and b_scale must be per tensor or per column");
            }
            let axis = if n == 1 { 0 } else { 1 };
            Ok(vec![cx.add(
                Op::Dequantize(DequantizeAttrs { axis }),
                &[acc, scale],
            )?])
        }
    }
}

/// `dequantize(x, scale, zp)` with per-tensor parameters.
fn dequantize(cx: &mut Ctx<'_>, x: Value, s: usize, z: usize) -> Result<Value> {
    let scale = cx.input(s)?;
    if cx.ty(scale).len() != 1 {
        return cx.err(format!(
            "scale {} must be one value (per-tensor)",
            cx.ty(scale)
        ));
    }
    let zp = zero_point(cx, z, cx.dtype(x), "input")?;
    cx.add(Op::Dequantize(DequantizeAttrs { axis: 0 }), &[x, scale, zp])
}

/// `quantize(v, scale, zp)` to the type of the zero point (or `like`).
fn quantize(cx: &mut Ctx<'_>, v: Value, s: usize, z: usize, like: DType) -> Result<Value> {
    let scale = cx.input(s)?;
    if cx.ty(scale).len() != 1 {
        return cx.err(format!(
            "y_scale {} must be one value (per-tensor)",
            cx.ty(scale)
        ));
    }
    let to = cx.opt(z).map_or(like, |z| cx.dtype(z));
    let zp = zero_point(cx, z, to, "output")?;
    cx.add(Op::Quantize(QuantizeAttrs { axis: 0, to }), &[v, scale, zp])
}

/// Converts the float op `op` of this node's attributes on `ins`.
fn float_op(cx: &mut Ctx<'_>, op: &str, ins: Vec<Value>) -> Result<Value> {
    let saved = std::mem::replace(&mut cx.ins, ins.into_iter().map(Some).collect());
    let r = super::convert_as(cx, op);
    cx.ins = saved;
    match r?.first() {
        Some(v) => Ok(*v),
        None => cx.err(format!("{op} produced no value")),
    }
}

/// QLinearAdd / QLinearMul: A, A_scale, A_zp, B, B_scale, B_zp, C_scale,
/// C_zp.
fn binary(cx: &mut Ctx<'_>, op: &str) -> Result<Vec<Value>> {
    let (a, b) = (cx.input(0)?, cx.input(3)?);
    let fa = dequantize(cx, a, 1, 2)?;
    let fb = dequantize(cx, b, 4, 5)?;
    let y = float_op(cx, op, vec![fa, fb])?;
    Ok(vec![quantize(cx, y, 6, 7, cx.dtype(a))?])
}

/// Ops of one quantized input: X, X_scale, X_zp, Y_scale, Y_zp.
fn unary(cx: &mut Ctx<'_>, op: &str) -> Result<Vec<Value>> {
    if cx.i("channels_last", 0)? != 0 {
        return cx.err("channels_last=1 is not supported");
    }
    let x = cx.input(0)?;
    let fx = dequantize(cx, x, 1, 2)?;
    let y = float_op(cx, op, vec![fx])?;
    Ok(vec![quantize(cx, y, 3, 4, cx.dtype(x))?])
}

/// QLinearSoftmax: its `opset` attribute is the opset of the Softmax it
/// replaced (the axis semantics changed in opset 13).
fn softmax(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let opset = cx.i("opset", cx.opset)?;
    let saved = std::mem::replace(&mut cx.opset, opset);
    let r = unary(cx, "Softmax");
    cx.opset = saved;
    r
}

/// QLinearConcat: Y_scale, Y_zp, then (X, X_scale, X_zp) per input.
fn concat(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let n = cx.ins.len();
    if n < 5 || !(n - 2).is_multiple_of(3) {
        return cx.err(format!(
            "expects Y_scale, Y_zero_point and triples of inputs, got {n} inputs"
        ));
    }
    let mut parts = Vec::new();
    for k in (2..n).step_by(3) {
        let x = cx.input(k)?;
        parts.push(dequantize(cx, x, k + 1, k + 2)?);
    }
    let like = cx.dtype(cx.input(2)?);
    let y = float_op(cx, "Concat", parts)?;
    Ok(vec![quantize(cx, y, 0, 1, like)?])
}
