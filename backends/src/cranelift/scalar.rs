//! Element semantics in Cranelift IR: unary and binary ops, casts and the
//! integer helpers, for every element type, as scalars and (where the op
//! allows it) as f32x4 vectors. The rules are the interpreter's and the C
//! backend's: wrapping integer arithmetic, division by zero giving zero,
//! float-to-integer casts that saturate with NaN as zero, NaN-propagating
//! max and min, and libm for the transcendental functions.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use nnc_ir::DType;
use nnc_ir::op::{BinaryOp, UnaryOp};

use super::kb::{F32X4, Kb};
use crate::error::Result;

/// The Cranelift type that holds one element (bool is a byte 0 or 1).
pub fn cl(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I8 | DType::U8 | DType::Bool => types::I8,
        DType::I16 | DType::U16 => types::I16,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 => types::I64,
    }
}

/// Loads element `idx` (a pointer-sized index) of a `d` buffer at `base`.
pub fn load_at(kb: &mut Kb, d: DType, base: Value, idx: Value) -> Value {
    let a = kb.at(base, idx, d.size() as i64);
    kb.load(cl(d), a, 0)
}

/// Stores element `idx` of a `d` buffer at `base`.
pub fn store_at(kb: &mut Kb, d: DType, base: Value, idx: Value, v: Value) {
    let a = kb.at(base, idx, d.size() as i64);
    kb.store(v, a, 0);
}

/// An integer (or bool) value widened to i64 with its type's signedness.
pub fn to_i64(kb: &mut Kb, v: Value, d: DType) -> Value {
    let t = cl(d);
    if t == types::I64 {
        v
    } else if d.is_signed() {
        kb.b.ins().sextend(types::I64, v)
    } else {
        kb.b.ins().uextend(types::I64, v)
    }
}

/// An i64 narrowed (wrapping) to `d`.
pub fn from_i64(kb: &mut Kb, v: Value, d: DType) -> Value {
    let t = cl(d);
    if t == types::I64 {
        v
    } else {
        kb.b.ins().ireduce(t, v)
    }
}

/// Any element converted to the float type `ft` (F32 or F64).
pub fn to_float(kb: &mut Kb, v: Value, d: DType, ft: Type) -> Value {
    match d {
        DType::F32 if ft == types::F64 => kb.b.ins().fpromote(types::F64, v),
        DType::F64 if ft == types::F32 => kb.b.ins().fdemote(types::F32, v),
        DType::F32 | DType::F64 => v,
        _ if d.is_signed() => {
            let w = to_i64(kb, v, d);
            kb.b.ins().fcvt_from_sint(ft, w)
        }
        _ => {
            let w = to_i64(kb, v, d);
            kb.b.ins().fcvt_from_uint(ft, w)
        }
    }
}

/// `(int64)clamp(x, lo, hi)` for an f64 `x`, NaN giving 0 (`nnc_f2i_range`).
pub fn f2i_range(kb: &mut Kb, x: Value, lo: i64, hi: i64) -> Value {
    // fcvt_to_sint_sat truncates, saturates at the i64 range and maps NaN
    // to zero; the clamp then narrows to the target range.
    let i = kb.b.ins().fcvt_to_sint_sat(types::I64, x);
    let l = kb.ci(lo);
    let h = kb.ci(hi);
    let i = kb.b.ins().smax(i, l);
    kb.b.ins().smin(i, h)
}

/// Converts `x` from `from` to `to` (Cast).
pub fn cast(kb: &mut Kb, x: Value, from: DType, to: DType) -> Value {
    if from == to {
        return x;
    }
    if to == DType::Bool {
        return nonzero(kb, x, from);
    }
    if to.is_float() {
        return to_float(kb, x, from, cl(to));
    }
    if from.is_float() {
        let (lo, hi) = to.int_range().expect("integer target");
        let d = to_float(kb, x, from, types::F64);
        let i = f2i_range(kb, d, lo, hi);
        return from_i64(kb, i, to);
    }
    let w = to_i64(kb, x, from);
    from_i64(kb, w, to)
}

/// `x != 0` as a bool byte (NaN counts as nonzero).
pub fn nonzero(kb: &mut Kb, x: Value, d: DType) -> Value {
    if d.is_float() {
        let z = kb.cf(cl(d), 0.0);
        kb.b.ins().fcmp(FloatCC::NotEqual, x, z)
    } else {
        kb.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
    }
}

/// True when [`unary`] has an f32x4 form.
pub fn unary_vectorizes(u: &UnaryOp) -> bool {
    nnc_ir::program::target::cranelift_vector_unary(u)
}

/// `lo <= x <= hi` clamp with the C kernels' order (NaN passes through).
fn clamp(kb: &mut Kb, x: Value, lo: f64, hi: f64) -> Value {
    let ty = kb.ty(x);
    let mut e = x;
    if hi.is_finite() || hi < 0.0 {
        let m = kb.cf(ty, hi);
        e = kb.fselect(FloatCC::GreaterThan, x, m, m, e);
    }
    if lo.is_finite() || lo > 0.0 {
        let m = kb.cf(ty, lo);
        e = kb.fselect(FloatCC::LessThan, x, m, m, e);
    }
    e
}

/// A unary op on a float scalar (F32/F64) or an f32x4 vector.
pub fn unary_float(kb: &mut Kb, u: &UnaryOp, x: Value) -> Result<Value> {
    let ty = kb.ty(x);
    let zero = kb.cf(ty, 0.0);
    let one = kb.cf(ty, 1.0);
    Ok(match *u {
        UnaryOp::Relu => kb.fselect(FloatCC::LessThan, x, zero, zero, x),
        UnaryOp::LeakyRelu { alpha } => {
            let a = kb.cf(ty, alpha as f64);
            let ax = kb.b.ins().fmul(a, x);
            kb.fselect(FloatCC::LessThan, x, zero, ax, x)
        }
        UnaryOp::Elu { alpha } => {
            let e = kb.libm1("exp", x)?;
            let e1 = kb.b.ins().fsub(e, one);
            let a = kb.cf(ty, alpha as f64);
            let ae = kb.b.ins().fmul(a, e1);
            kb.fselect(FloatCC::LessThan, x, zero, ae, x)
        }
        UnaryOp::Selu { alpha, gamma } => {
            let a = kb.cf(ty, alpha as f64);
            let g = kb.cf(ty, gamma as f64);
            let e = kb.libm1("exp", x)?;
            let ae = kb.b.ins().fmul(a, e);
            let neg = kb.b.ins().fsub(ae, a);
            let neg = kb.b.ins().fmul(g, neg);
            let pos = kb.b.ins().fmul(g, x);
            kb.fselect(FloatCC::LessThanOrEqual, x, zero, neg, pos)
        }
        UnaryOp::Clip { min, max } => clamp(kb, x, min, max),
        // sigmoid(x) = 1 / (1 + exp(-x)); silu(x) = x / (1 + exp(-x)).
        UnaryOp::Sigmoid | UnaryOp::Silu => {
            let n = kb.b.ins().fneg(x);
            let e = kb.libm1("exp", n)?;
            let d = kb.b.ins().fadd(one, e);
            let num = if matches!(u, UnaryOp::Silu) { x } else { one };
            kb.b.ins().fdiv(num, d)
        }
        UnaryOp::HardSigmoid { alpha, beta } => {
            let a = kb.cf(ty, alpha as f64);
            let b = kb.cf(ty, beta as f64);
            let v = kb.b.ins().fmul(a, x);
            let v = kb.b.ins().fadd(v, b);
            let hi = kb.fselect(FloatCC::GreaterThan, v, one, one, v);
            kb.fselect(FloatCC::LessThan, v, zero, zero, hi)
        }
        UnaryOp::HardSwish => {
            let six = kb.cf(ty, 6.0);
            let half = kb.cf(ty, 0.5);
            let v = kb.b.ins().fdiv(x, six);
            let v = kb.b.ins().fadd(v, half);
            let hi = kb.fselect(FloatCC::GreaterThan, v, one, one, v);
            let c = kb.fselect(FloatCC::LessThan, v, zero, zero, hi);
            kb.b.ins().fmul(x, c)
        }
        UnaryOp::Tanh => kb.libm1("tanh", x)?,
        UnaryOp::Softplus => {
            let e = kb.libm1("exp", x)?;
            let l = kb.libm1("log1p", e)?;
            let t = kb.cf(ty, 30.0);
            kb.fselect(FloatCC::GreaterThan, x, t, x, l)
        }
        UnaryOp::Softsign => {
            let a = kb.b.ins().fabs(x);
            let d = kb.b.ins().fadd(one, a);
            kb.b.ins().fdiv(x, d)
        }
        UnaryOp::Erf => kb.libm1("erf", x)?,
        UnaryOp::Exp => kb.libm1("exp", x)?,
        UnaryOp::Log => kb.libm1("log", x)?,
        UnaryOp::Sqrt => kb.b.ins().sqrt(x),
        UnaryOp::Abs => kb.b.ins().fabs(x),
        UnaryOp::Neg => kb.b.ins().fneg(x),
        UnaryOp::Reciprocal => kb.b.ins().fdiv(one, x),
        UnaryOp::Floor => kb.b.ins().floor(x),
        UnaryOp::Ceil => kb.b.ins().ceil(x),
        UnaryOp::Round => kb.b.ins().nearest(x),
        UnaryOp::Sign => {
            let m1 = kb.cf(ty, -1.0);
            let neg = kb.fselect(FloatCC::LessThan, x, zero, m1, x);
            kb.fselect(FloatCC::GreaterThan, x, zero, one, neg)
        }
        UnaryOp::Sin => kb.libm1("sin", x)?,
        UnaryOp::Cos => kb.libm1("cos", x)?,
        UnaryOp::Not => unreachable!("not is a bool op"),
    })
}

/// A unary op on one element of type `d`.
pub fn unary(kb: &mut Kb, u: &UnaryOp, x: Value, d: DType) -> Result<Value> {
    if d.is_float() {
        return unary_float(kb, u, x);
    }
    if d == DType::Bool {
        // Only Not is defined on bools.
        return Ok(kb.b.ins().icmp_imm_s(IntCC::Equal, x, 0));
    }
    let t = cl(d);
    let signed = d.is_signed();
    let zero = kb.cint(t, 0);
    Ok(match *u {
        UnaryOp::Relu if signed => kb.b.ins().smax(x, zero),
        UnaryOp::Abs if signed => kb.b.ins().iabs(x),
        UnaryOp::Relu | UnaryOp::Abs => x,
        UnaryOp::Neg => kb.b.ins().ineg(x),
        UnaryOp::Sign if signed => {
            let p = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
            let n = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
            let p = kb.b.ins().uextend(types::I64, p);
            let n = kb.b.ins().uextend(types::I64, n);
            let s = kb.b.ins().isub(p, n);
            from_i64(kb, s, d)
        }
        UnaryOp::Sign => {
            let p = kb.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, x, 0);
            let p = kb.b.ins().uextend(types::I64, p);
            from_i64(kb, p, d)
        }
        UnaryOp::Clip { min, max } => {
            let (lo, hi) = d.int_range().expect("integer type");
            let bound = |r: f64| -> i64 { r.max(lo as f64).min(hi as f64) as i64 };
            let (min, max) = (bound(min.ceil()), bound(max.floor()));
            let mut e = x;
            if max < hi {
                let m = kb.cint(t, max);
                e = if signed {
                    kb.b.ins().smin(e, m)
                } else {
                    kb.b.ins().umin(e, m)
                };
            }
            if min > lo {
                let m = kb.cint(t, min);
                e = if signed {
                    kb.b.ins().smax(e, m)
                } else {
                    kb.b.ins().umax(e, m)
                };
            }
            e
        }
        _ => x,
    })
}

/// True when [`binary`] has an f32x4 form for f32 operands.
pub fn binary_vectorizes(b: &BinaryOp) -> bool {
    nnc_ir::program::target::cranelift_vector_binary(b)
}

/// NaN-propagating max/min with the C kernels' results for ordered values.
fn fminmax(kb: &mut Kb, x: Value, y: Value, max: bool) -> Value {
    if kb.ty(x) == F32X4 {
        return if max {
            kb.b.ins().fmax(x, y)
        } else {
            kb.b.ins().fmin(x, y)
        };
    }
    let cc = if max {
        FloatCC::GreaterThan
    } else {
        FloatCC::LessThan
    };
    let pick = kb.fselect(cc, x, y, x, y);
    let nan = kb.b.ins().fcmp(FloatCC::Unordered, x, y);
    let sum = kb.b.ins().fadd(x, y);
    kb.b.ins().select(nan, sum, pick)
}

/// A binary op on float scalars of one type or on f32x4 vectors.
pub fn binary_float(kb: &mut Kb, b: &BinaryOp, x: Value, y: Value) -> Result<Value> {
    let ty = kb.ty(x);
    Ok(match b {
        BinaryOp::Add => kb.b.ins().fadd(x, y),
        BinaryOp::Sub => kb.b.ins().fsub(x, y),
        BinaryOp::Mul => kb.b.ins().fmul(x, y),
        BinaryOp::Div => kb.b.ins().fdiv(x, y),
        BinaryOp::Pow => kb.libm2("pow", x, y)?,
        BinaryOp::Max => fminmax(kb, x, y, true),
        BinaryOp::Min => fminmax(kb, x, y, false),
        BinaryOp::PRelu => {
            let zero = kb.cf(ty, 0.0);
            let p = kb.b.ins().fmul(x, y);
            kb.fselect(FloatCC::LessThan, x, zero, p, x)
        }
        BinaryOp::Mod { fmod: true } => kb.libm2("fmod", x, y)?,
        BinaryOp::Mod { fmod: false } => {
            // Python's %: the remainder takes the divisor's sign.
            let r = kb.libm2("fmod", x, y)?;
            let zero = kb.cf(ty, 0.0);
            let rneg = kb.b.ins().fcmp(FloatCC::LessThan, r, zero);
            let yneg = kb.b.ins().fcmp(FloatCC::LessThan, y, zero);
            let differ = kb.b.ins().bxor(rneg, yneg);
            let rnz = kb.b.ins().fcmp(FloatCC::NotEqual, r, zero);
            let fix = kb.b.ins().band(differ, rnz);
            let ry = kb.b.ins().fadd(r, y);
            kb.b.ins().select(fix, ry, r)
        }
        BinaryOp::Equal => kb.b.ins().fcmp(FloatCC::Equal, x, y),
        BinaryOp::Less => kb.b.ins().fcmp(FloatCC::LessThan, x, y),
        BinaryOp::Greater => kb.b.ins().fcmp(FloatCC::GreaterThan, x, y),
        BinaryOp::LessOrEqual => kb.b.ins().fcmp(FloatCC::LessThanOrEqual, x, y),
        BinaryOp::GreaterOrEqual => kb.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, y),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
            let a = nonzero_f(kb, x);
            let c = nonzero_f(kb, y);
            logical(kb, b, a, c)
        }
    })
}

fn nonzero_f(kb: &mut Kb, x: Value) -> Value {
    let ty = kb.ty(x);
    let z = kb.cf(ty, 0.0);
    kb.b.ins().fcmp(FloatCC::NotEqual, x, z)
}

fn logical(kb: &mut Kb, b: &BinaryOp, a: Value, c: Value) -> Value {
    match b {
        BinaryOp::And => kb.b.ins().band(a, c),
        BinaryOp::Or => kb.b.ins().bor(a, c),
        _ => kb.b.ins().bxor(a, c),
    }
}

/// A binary op on one element each: `x` of type `d`, `y` of type `yd`
/// (they differ only for Pow's exponent).
pub fn binary(kb: &mut Kb, b: &BinaryOp, x: Value, y: Value, d: DType, yd: DType) -> Result<Value> {
    if d.is_float() {
        let y = if yd == d {
            y
        } else {
            to_float(kb, y, yd, cl(d))
        };
        return binary_float(kb, b, x, y);
    }
    if d == DType::Bool || b.is_logical() {
        let a = kb.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0);
        let c = kb.b.ins().icmp_imm_s(IntCC::NotEqual, y, 0);
        return Ok(match b {
            BinaryOp::Equal => kb.b.ins().icmp(IntCC::Equal, x, y),
            BinaryOp::Less => kb.b.ins().icmp(IntCC::UnsignedLessThan, x, y),
            BinaryOp::Greater => kb.b.ins().icmp(IntCC::UnsignedGreaterThan, x, y),
            BinaryOp::LessOrEqual => kb.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, x, y),
            BinaryOp::GreaterOrEqual => kb.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, x, y),
            _ => logical(kb, b, a, c),
        });
    }
    let signed = d.is_signed();
    let cc = |s: IntCC, u: IntCC| if signed { s } else { u };
    Ok(match b {
        BinaryOp::Add => kb.b.ins().iadd(x, y),
        BinaryOp::Sub => kb.b.ins().isub(x, y),
        BinaryOp::Mul => kb.b.ins().imul(x, y),
        BinaryOp::Div => {
            let a = to_i64(kb, x, d);
            let c = to_i64(kb, y, d);
            let q = idiv(kb, a, c);
            from_i64(kb, q, d)
        }
        BinaryOp::Mod { fmod } => {
            let a = to_i64(kb, x, d);
            let c = to_i64(kb, y, d);
            let r = imod(kb, a, c, *fmod);
            from_i64(kb, r, d)
        }
        BinaryOp::Pow if !yd.is_float() => {
            let a = to_i64(kb, x, d);
            let c = to_i64(kb, y, yd);
            let r = ipow(kb, a, c)?;
            from_i64(kb, r, d)
        }
        BinaryOp::Pow => {
            let (lo, hi) = d.int_range().expect("integer type");
            let a = to_float(kb, x, d, types::F64);
            let c = to_float(kb, y, yd, types::F64);
            let p = kb.libm2("pow", a, c)?;
            let i = f2i_range(kb, p, lo, hi);
            from_i64(kb, i, d)
        }
        BinaryOp::Max if signed => kb.b.ins().smax(x, y),
        BinaryOp::Max => kb.b.ins().umax(x, y),
        BinaryOp::Min if signed => kb.b.ins().smin(x, y),
        BinaryOp::Min => kb.b.ins().umin(x, y),
        BinaryOp::PRelu if !signed => x,
        BinaryOp::PRelu => {
            let p = kb.b.ins().imul(x, y);
            let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
            kb.b.ins().select(neg, p, x)
        }
        BinaryOp::Equal => kb.b.ins().icmp(IntCC::Equal, x, y),
        BinaryOp::Less => {
            kb.b.ins()
                .icmp(cc(IntCC::SignedLessThan, IntCC::UnsignedLessThan), x, y)
        }
        BinaryOp::Greater => kb.b.ins().icmp(
            cc(IntCC::SignedGreaterThan, IntCC::UnsignedGreaterThan),
            x,
            y,
        ),
        BinaryOp::LessOrEqual => kb.b.ins().icmp(
            cc(IntCC::SignedLessThanOrEqual, IntCC::UnsignedLessThanOrEqual),
            x,
            y,
        ),
        BinaryOp::GreaterOrEqual => kb.b.ins().icmp(
            cc(
                IntCC::SignedGreaterThanOrEqual,
                IntCC::UnsignedGreaterThanOrEqual,
            ),
            x,
            y,
        ),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => unreachable!("handled above"),
    })
}

/// i64 division truncating toward zero; `/0` is 0 and `/-1` wraps.
fn idiv(kb: &mut Kb, a: Value, b: Value) -> Value {
    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
    let m1 = kb.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
    let bad = kb.b.ins().bor(zero, m1);
    let one = kb.ci(1);
    let safe = kb.b.ins().select(bad, one, b);
    let q = kb.b.ins().sdiv(a, safe);
    let na = kb.b.ins().ineg(a);
    let q = kb.b.ins().select(m1, na, q);
    let z = kb.ci(0);
    kb.b.ins().select(zero, z, q)
}

/// i64 remainder; Python's sign rule unless `fmod`. `%0` and `%-1` are 0.
fn imod(kb: &mut Kb, a: Value, b: Value, fmod: bool) -> Value {
    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
    let m1 = kb.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
    let bad = kb.b.ins().bor(zero, m1);
    let one = kb.ci(1);
    let safe = kb.b.ins().select(bad, one, b);
    let mut r = kb.b.ins().srem(a, safe);
    if !fmod {
        let rneg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
        let bneg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, b, 0);
        let differ = kb.b.ins().bxor(rneg, bneg);
        let rnz = kb.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let fix = kb.b.ins().band(differ, rnz);
        let rb = kb.b.ins().iadd(r, b);
        r = kb.b.ins().select(fix, rb, r);
    }
    let z = kb.ci(0);
    kb.b.ins().select(bad, z, r)
}

/// Integer power by squaring (wrapping); negative exponents as in C.
fn ipow(kb: &mut Kb, a: Value, b: Value) -> Result<Value> {
    // b < 0: 1 for a == 1, +-1 for a == -1 by parity, else 0.
    let one = kb.ci(1);
    let r = kb.var(types::I64, one);
    let base = kb.var(types::I64, a);
    let e = kb.var(types::I64, b);
    let head = kb.b.create_block();
    let body = kb.b.create_block();
    let done = kb.b.create_block();
    kb.b.ins().jump(head, &[]);
    kb.b.switch_to_block(head);
    let ev = kb.get(e);
    let more = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, ev, 0);
    kb.b.ins().brif(more, body, &[], done, &[]);
    kb.b.switch_to_block(body);
    kb.b.seal_block(body);
    let ev = kb.get(e);
    let bit = kb.b.ins().band_imm_s(ev, 1);
    let rv = kb.get(r);
    let bv = kb.get(base);
    let rm = kb.b.ins().imul(rv, bv);
    let rv = kb.b.ins().select(bit, rm, rv);
    kb.set(r, rv);
    let bb = kb.b.ins().imul(bv, bv);
    kb.set(base, bb);
    let e2 = kb.b.ins().sshr_imm_s(ev, 1);
    kb.set(e, e2);
    kb.b.ins().jump(head, &[]);
    kb.b.seal_block(head);
    kb.b.switch_to_block(done);
    kb.b.seal_block(done);
    let pos = kb.get(r);
    let is1 = kb.b.ins().icmp_imm_s(IntCC::Equal, a, 1);
    let ism1 = kb.b.ins().icmp_imm_s(IntCC::Equal, a, -1);
    let odd = kb.b.ins().band_imm_s(b, 1);
    let m1 = kb.ci(-1);
    let z = kb.ci(0);
    let pm = kb.b.ins().select(odd, m1, one);
    let neg = kb.b.ins().select(ism1, pm, z);
    let neg = kb.b.ins().select(is1, one, neg);
    let bneg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, b, 0);
    Ok(kb.b.ins().select(bneg, neg, pos))
}
