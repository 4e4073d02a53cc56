//! Elementwise steps: unary and binary ops, Where, Cast, inference
//! BatchNormalization, QuantizeLinear and DequantizeLinear, all through
//! the broadcasting loop nest of [`super::map`].

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::op::{BinaryOp, QuantizeAttrs, UnaryOp};
use nnc_ir::{DType, TensorType};

use super::Args;
use super::kb::Kb;
use super::map::{View, map};
use super::scalar::{self, cl, f2i_range, from_i64, to_float, to_i64};
use crate::error::Result;

pub fn unary(kb: &mut Kb, u: &UnaryOp, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    let d = x.dtype;
    let xin = View::broadcast(a.x(kb, 0)?, d, &x.dims, &y.dims);
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    let vec = d == DType::F32 && scalar::unary_vectorizes(u);
    let mut vf = |kb: &mut Kb, v: &[Value]| scalar::unary_float(kb, u, v[0]);
    map(
        kb,
        &y.dims,
        &out,
        &[xin],
        &mut |kb, v| scalar::unary(kb, u, v[0], d),
        vec.then_some(&mut vf as _),
    )
}

pub fn binary(
    kb: &mut Kb,
    b: &BinaryOp,
    x: &TensorType,
    z: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let (d, zd) = (x.dtype, z.dtype);
    let xin = View::broadcast(a.x(kb, 0)?, d, &x.dims, &y.dims);
    let zin = View::broadcast(a.x(kb, 1)?, zd, &z.dims, &y.dims);
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    let vec = d == DType::F32 && zd == DType::F32 && scalar::binary_vectorizes(b);
    let mut vf = |kb: &mut Kb, v: &[Value]| scalar::binary_float(kb, b, v[0], v[1]);
    map(
        kb,
        &y.dims,
        &out,
        &[xin, zin],
        &mut |kb, v| scalar::binary(kb, b, v[0], v[1], d, zd),
        vec.then_some(&mut vf as _),
    )
}

pub fn where_(kb: &mut Kb, ins: &[&TensorType], y: &TensorType, a: &Args) -> Result<()> {
    let views = (0..3)
        .map(|k| {
            Ok(View::broadcast(
                a.x(kb, k)?,
                ins[k].dtype,
                &ins[k].dims,
                &y.dims,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    map(
        kb,
        &y.dims,
        &out,
        &views,
        &mut |kb, v| Ok(kb.b.ins().select(v[0], v[1], v[2])),
        None,
    )
}

pub fn cast(kb: &mut Kb, to: DType, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    let from = x.dtype;
    let xin = View::dense(a.x(kb, 0)?, from, &x.dims);
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    map(
        kb,
        &y.dims,
        &out,
        &[xin],
        &mut |kb, v| Ok(scalar::cast(kb, v[0], from, to)),
        None,
    )
}

/// `(x - mean) / sqrt(var + eps) * scale + bias`, per channel (axis 1).
pub fn batch_norm(
    kb: &mut Kb,
    eps: f32,
    ins: &[&TensorType],
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let d = y.dtype;
    let c = y.dims.get(1).copied().unwrap_or(1);
    let mut views = vec![View::broadcast(a.x(kb, 0)?, d, &ins[0].dims, &y.dims)];
    for k in 1..5 {
        views.push(View::along(a.x(kb, k)?, d, c, 1, &y.dims));
    }
    let out = View::dense(a.outs[0], d, &y.dims);
    // The same body serves scalars and f32x4 vectors (the closure is Copy).
    let body = |kb: &mut Kb, v: &[Value]| {
        let ty = kb.ty(v[0]);
        let e = kb.cf(ty, eps as f64);
        let ve = kb.b.ins().fadd(v[4], e);
        let s = kb.b.ins().sqrt(ve);
        let xm = kb.b.ins().fsub(v[0], v[3]);
        let q = kb.b.ins().fdiv(xm, s);
        let q = kb.b.ins().fmul(q, v[1]);
        Ok(kb.b.ins().fadd(q, v[2]))
    };
    let (mut scalar_body, mut vector_body) = (body, body);
    map(
        kb,
        &y.dims,
        &out,
        &views,
        &mut scalar_body,
        (d == DType::F32).then_some(&mut vector_body as _),
    )
}

/// The operands of a quantize or dequantize: `x`, then the scale and the
/// optional zero point laid along `axis` (one value, or one per channel).
fn qdq_views(
    kb: &mut Kb,
    ins: &[&TensorType],
    axis: usize,
    y: &TensorType,
    a: &Args,
) -> Result<Vec<View>> {
    let n = ins[1].len();
    let mut views = vec![View::dense(a.x(kb, 0)?, ins[0].dtype, &ins[0].dims)];
    for k in 1..ins.len() {
        views.push(View::along(a.x(kb, k)?, ins[k].dtype, n, axis, &y.dims));
    }
    Ok(views)
}

/// QuantizeLinear: round half to even in the input precision, add the zero
/// point, saturate.
pub fn quantize(
    kb: &mut Kb,
    q: &QuantizeAttrs,
    ins: &[&TensorType],
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let x = ins[0];
    let views = qdq_views(kb, ins, q.axis, y, a)?;
    let zd = ins.get(2).map(|t| t.dtype);
    let (lo, hi) = q.to.int_range().expect("integer target");
    let (xd, sd, to) = (x.dtype, ins[1].dtype, q.to);
    let out = View::dense(a.outs[0], to, &y.dims);
    map(
        kb,
        &y.dims,
        &out,
        &views,
        &mut |kb, v| {
            let ft = cl(xd);
            let s = to_float(kb, v[1], sd, ft);
            let r = kb.b.ins().fdiv(v[0], s);
            let r = kb.b.ins().nearest(r);
            let r = to_float(kb, r, xd, types::F64);
            // NaN quantizes to the zero point.
            let z = kb.cf(types::F64, 0.0);
            let nan = kb.b.ins().fcmp(FloatCC::Unordered, r, r);
            let r = kb.b.ins().select(nan, z, r);
            let r = match zd {
                Some(zd) => {
                    let zp = to_float(kb, v[2], zd, types::F64);
                    kb.b.ins().fadd(r, zp)
                }
                None => r,
            };
            let i = f2i_range(kb, r, lo, hi);
            Ok(from_i64(kb, i, to))
        },
        None,
    )
}

/// DequantizeLinear: `(x - zero_point) * scale`.
pub fn dequantize(
    kb: &mut Kb,
    axis: usize,
    ins: &[&TensorType],
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let x = ins[0];
    let views = qdq_views(kb, ins, axis, y, a)?;
    let zd = ins.get(2).map(|t| t.dtype);
    let (xd, yd) = (x.dtype, y.dtype);
    let out = View::dense(a.outs[0], yd, &y.dims);
    map(
        kb,
        &y.dims,
        &out,
        &views,
        &mut |kb, v| {
            let xi = to_i64(kb, v[0], xd);
            let d = match zd {
                Some(zd) => {
                    let z = to_i64(kb, v[2], zd);
                    kb.b.ins().isub(xi, z)
                }
                None => xi,
            };
            let f = kb.b.ins().fcvt_from_sint(cl(yd), d);
            Ok(kb.b.ins().fmul(f, v[1]))
        },
        None,
    )
}
