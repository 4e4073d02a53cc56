//! The map kernel: one broadcasting loop nest (see [`super::map`]) that
//! evaluates the step's map expression — unary and binary ops, Where, Cast,
//! inference BatchNormalization, QuantizeLinear and DequantizeLinear — on
//! scalars, and on f32x4 vectors where every operation of the expression
//! has a lane-wise form.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::program::{MapExpr, MapKernel, MapOp, Operand};
use nnc_ir::{DType, TensorType};

use super::Args;
use super::kb::Kb;
use super::map::{View, map};
use super::scalar::{self, cl, f2i_range, from_i64, to_float, to_i64};
use crate::error::Result;

/// Emits `out0 = expr(inputs)` over the output.
pub fn map_kernel(
    kb: &mut Kb,
    m: &MapKernel,
    ins: &[&TensorType],
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let mut views = Vec::with_capacity(ins.len());
    for (k, (t, o)) in ins.iter().zip(&m.operands).enumerate() {
        let base = a.x(kb, k)?;
        views.push(match o {
            Operand::Broadcast => View::broadcast(base, t.dtype, &t.dims, &y.dims),
            Operand::Along { axis } => View::along(base, t.dtype, t.len(), *axis, &y.dims),
        });
    }
    let dts: Vec<DType> = ins.iter().map(|t| t.dtype).collect();
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    let vectorizes = vector_form(&m.expr, &dts);
    let mut sf = |kb: &mut Kb, v: &[Value]| eval(kb, &m.expr, v, &dts).map(|r| r.0);
    let mut vf = |kb: &mut Kb, v: &[Value]| eval(kb, &m.expr, v, &dts).map(|r| r.0);
    map(
        kb,
        &y.dims,
        &out,
        &views,
        &mut sf,
        vectorizes.then_some(&mut vf as _),
    )
}

/// True when every operation of the expression has an f32x4 form (and
/// every value is f32).
fn vector_form(e: &MapExpr, dts: &[DType]) -> bool {
    match e {
        MapExpr::Input(k) => dts[*k] == DType::F32,
        MapExpr::Apply { op, args, dtype } => {
            let own = match op {
                MapOp::Unary(u) => scalar::unary_vectorizes(u),
                MapOp::Binary(b) => scalar::binary_vectorizes(b),
                MapOp::BatchNorm { .. } => true,
                MapOp::Where | MapOp::Cast | MapOp::Quantize(_) | MapOp::Dequantize(_) => false,
            };
            own && *dtype == DType::F32 && args.iter().all(|a| vector_form(a, dts))
        }
    }
}

/// Evaluates an expression on operand values (scalars, or f32x4 vectors
/// when [`vector_form`] holds), returning the value and its type.
fn eval(kb: &mut Kb, e: &MapExpr, v: &[Value], dts: &[DType]) -> Result<(Value, DType)> {
    let (op, args, dtype) = match e {
        MapExpr::Input(k) => return Ok((v[*k], dts[*k])),
        MapExpr::Apply { op, args, dtype } => (op, args, *dtype),
    };
    let mut a = Vec::with_capacity(args.len());
    for x in args {
        a.push(eval(kb, x, v, dts)?);
    }
    let r = match op {
        MapOp::Unary(u) => {
            if kb.ty(a[0].0).is_vector() {
                scalar::unary_float(kb, u, a[0].0)?
            } else {
                scalar::unary(kb, u, a[0].0, a[0].1)?
            }
        }
        MapOp::Binary(b) => {
            if kb.ty(a[0].0).is_vector() {
                scalar::binary_float(kb, b, a[0].0, a[1].0)?
            } else {
                scalar::binary(kb, b, a[0].0, a[1].0, a[0].1, a[1].1)?
            }
        }
        MapOp::Where => kb.b.ins().select(a[0].0, a[1].0, a[2].0),
        MapOp::Cast => scalar::cast(kb, a[0].0, a[0].1, dtype),
        MapOp::BatchNorm { epsilon } => {
            // (x - mean) / sqrt(var + eps) * scale + bias
            let (x, scale, bias, mean, var) = (a[0].0, a[1].0, a[2].0, a[3].0, a[4].0);
            let ty = kb.ty(x);
            let e = kb.cf(ty, *epsilon as f64);
            let ve = kb.b.ins().fadd(var, e);
            let s = kb.b.ins().sqrt(ve);
            let xm = kb.b.ins().fsub(x, mean);
            let q = kb.b.ins().fdiv(xm, s);
            let q = kb.b.ins().fmul(q, scale);
            kb.b.ins().fadd(q, bias)
        }
        MapOp::Quantize(q) => {
            // Round half to even in the input precision, add the zero
            // point, saturate; NaN quantizes to the zero point.
            let (lo, hi) = q.to.int_range().unwrap_or((0, 0));
            let (xd, sd) = (a[0].1, a[1].1);
            let ft = cl(xd);
            let s = to_float(kb, a[1].0, sd, ft);
            let r = kb.b.ins().fdiv(a[0].0, s);
            let r = kb.b.ins().nearest(r);
            let r = to_float(kb, r, xd, types::F64);
            let z = kb.cf(types::F64, 0.0);
            let nan = kb.b.ins().fcmp(FloatCC::Unordered, r, r);
            let r = kb.b.ins().select(nan, z, r);
            let r = match a.get(2) {
                Some(&(zv, zd)) => {
                    let zp = to_float(kb, zv, zd, types::F64);
                    kb.b.ins().fadd(r, zp)
                }
                None => r,
            };
            let i = f2i_range(kb, r, lo, hi);
            from_i64(kb, i, q.to)
        }
        MapOp::Dequantize(_) => {
            // (x - zero_point) * scale
            let xi = to_i64(kb, a[0].0, a[0].1);
            let d = match a.get(2) {
                Some(&(zv, zd)) => {
                    let z = to_i64(kb, zv, zd);
                    kb.b.ins().isub(xi, z)
                }
                None => xi,
            };
            let f = kb.b.ins().fcvt_from_sint(cl(dtype), d);
            kb.b.ins().fmul(f, a[1].0)
        }
    };
    Ok((r, dtype))
}
