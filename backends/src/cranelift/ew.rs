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
use super::integer;
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
    // Tables are indexed by value, not by position: they are passed to
    // the expression as their base address.
    let mut views = Vec::with_capacity(ins.len());
    // pos[k]: the table's address, or the index of input k's loaded value.
    let mut pos: Vec<std::result::Result<Value, usize>> = Vec::with_capacity(ins.len());
    for (k, (t, o)) in ins.iter().zip(&m.operands).enumerate() {
        let base = a.x(kb, k)?;
        match o {
            Operand::Broadcast => {
                pos.push(Err(views.len()));
                views.push(View::broadcast(base, t.dtype, &t.dims, &y.dims));
            }
            Operand::Along { axis } => {
                pos.push(Err(views.len()));
                views.push(View::along(base, t.dtype, t.len(), *axis, &y.dims));
            }
            Operand::Table => pos.push(Ok(base)),
        }
    }
    let all = |v: &[Value]| -> Vec<Value> {
        pos.iter()
            .map(|p| match p {
                Ok(b) => *b,
                Err(i) => v[*i],
            })
            .collect()
    };
    let dts: Vec<DType> = ins.iter().map(|t| t.dtype).collect();
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    let vectorizes = vector_form(&m.expr, &dts) && pos.iter().all(|p| p.is_err());
    let mut sf = |kb: &mut Kb, v: &[Value]| eval(kb, &m.expr, &all(v), &dts).map(|r| r.0);
    let mut vf = |kb: &mut Kb, v: &[Value]| eval(kb, &m.expr, &all(v), &dts).map(|r| r.0);
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
                MapOp::Where
                | MapOp::Cast
                | MapOp::Quantize(_)
                | MapOp::Dequantize(_)
                | MapOp::QBinary(_)
                | MapOp::Requant(_)
                | MapOp::Lut => false,
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
        MapOp::Lut => {
            // table[x - min(x's type)]: a[1] is the table's address.
            let base = a[0].1.int_range().map(|(lo, _)| lo).unwrap_or(0);
            let x = to_i64(kb, a[0].0, a[0].1);
            let i = kb.b.ins().iadd_imm_s(x, -base);
            let addr = kb.at(a[1].0, i, dtype.size() as i64);
            kb.load(cl(dtype), addr, 0)
        }
        MapOp::Requant(q) => {
            let x = zp_sub(kb, a[0], q.q.x_zp);
            let m = kb.cint(types::I64, q.mult as i64);
            let s = kb.cint(types::I64, q.shift as i64);
            let r = integer::rq(kb, x, m, s);
            let r = kb.b.ins().iadd_imm_s(r, q.q.y_zp as i64);
            let r = integer::sat(kb, r, q.q.lo as i64, q.q.hi as i64);
            from_i64(kb, r, dtype)
        }
        MapOp::QBinary(q) if is_byte(a[0].1) && is_byte(a[1].1) && is_byte(dtype) => {
            // Every pair of 8-bit operands: one 64 KiB table of results,
            // computed by the interpreter's own arithmetic.
            let (la, lb) = (lowest(a[0].1), lowest(a[1].1));
            let table: Vec<u8> = (0..256 * 256)
                .map(|i| q.apply(la + i / 256, lb + i % 256) as u8)
                .collect();
            let t = kb.table(table, 64)?;
            let x = to_i64(kb, a[0].0, a[0].1);
            let w = to_i64(kb, a[1].0, a[1].1);
            let x = kb.b.ins().iadd_imm_s(x, -(la as i64));
            let w = kb.b.ins().iadd_imm_s(w, -(lb as i64));
            let x = kb.b.ins().ishl_imm_s(x, 8);
            let i = kb.b.ins().iadd(x, w);
            let addr = kb.b.ins().iadd(t, i);
            kb.load(cl(dtype), addr, 0)
        }
        MapOp::QBinary(q) => {
            use nnc_ir::op::QBinaryKind;
            let x = zp_sub(kb, a[0], q.q.x_zp);
            let y = zp_sub(kb, a[1], q.q.w_zp);
            let c = |kb: &mut Kb, v: i32| kb.cint(types::I64, v as i64);
            let raw = match q.kind {
                QBinaryKind::Add => {
                    let scaled = |kb: &mut Kb, v: Value, m: i32, s: i32| {
                        let sh = kb.b.ins().ishl_imm_s(v, q.left_shift as i64);
                        let sh = integer::wrap32(kb, sh);
                        let (m, s) = (c(kb, m), c(kb, s));
                        integer::rq(kb, sh, m, s)
                    };
                    let sa = scaled(kb, x, q.a_mult, q.a_shift);
                    let sb = scaled(kb, y, q.b_mult, q.b_shift);
                    let sum = kb.b.ins().iadd(sa, sb);
                    let sum = integer::wrap32(kb, sum);
                    let (m, s) = (c(kb, q.y_mult), c(kb, q.y_shift));
                    integer::rq(kb, sum, m, s)
                }
                QBinaryKind::Mul => {
                    let p = kb.b.ins().imul(x, y);
                    let p = integer::wrap32(kb, p);
                    let (m, s) = (c(kb, q.y_mult), c(kb, q.y_shift));
                    integer::rq(kb, p, m, s)
                }
            };
            let r = kb.b.ins().iadd_imm_s(raw, q.q.y_zp as i64);
            let r = integer::sat(kb, r, q.q.lo as i64, q.q.hi as i64);
            from_i64(kb, r, dtype)
        }
    };
    Ok((r, dtype))
}

fn is_byte(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

/// The smallest value of an 8-bit type.
fn lowest(d: DType) -> i32 {
    if d == DType::I8 { -128 } else { 0 }
}

/// An integer operand minus its zero point, as an i64.
fn zp_sub(kb: &mut Kb, (v, d): (Value, DType), zp: i32) -> Value {
    let x = to_i64(kb, v, d);
    if zp == 0 {
        x
    } else {
        kb.b.ins().iadd_imm_s(x, -(zp as i64))
    }
}
