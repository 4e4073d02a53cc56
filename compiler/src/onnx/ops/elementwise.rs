//! Elementwise operators: activations, arithmetic, comparisons, variadic
//! reductions over inputs (Sum, Mean, Max, Min), Clip, Where and casts.
//! Activations that have no IR op (Celu, Mish, Gelu, ThresholdedRelu) are
//! expanded into IR ops here.

use nnc_ir::op::{BinaryOp, CastAttrs, ReshapeAttrs, UnaryOp};
use nnc_ir::{DType, Op, Tensor, Value};

use super::super::error::Result;
use super::super::import::Ctx;
use super::super::tensor::dtype_of;

pub(super) fn convert(cx: &mut Ctx<'_>, op: &str) -> Option<Result<Vec<Value>>> {
    let simple = match op {
        "Relu" => Some(UnaryOp::Relu),
        "Sigmoid" => Some(UnaryOp::Sigmoid),
        "HardSwish" => Some(UnaryOp::HardSwish),
        "Tanh" => Some(UnaryOp::Tanh),
        "Softplus" => Some(UnaryOp::Softplus),
        "Softsign" => Some(UnaryOp::Softsign),
        "Erf" => Some(UnaryOp::Erf),
        "Exp" => Some(UnaryOp::Exp),
        "Log" => Some(UnaryOp::Log),
        "Sqrt" => Some(UnaryOp::Sqrt),
        "Abs" => Some(UnaryOp::Abs),
        "Neg" => Some(UnaryOp::Neg),
        "Reciprocal" => Some(UnaryOp::Reciprocal),
        "Floor" => Some(UnaryOp::Floor),
        "Ceil" => Some(UnaryOp::Ceil),
        "Round" => Some(UnaryOp::Round),
        "Sign" => Some(UnaryOp::Sign),
        "Sin" => Some(UnaryOp::Sin),
        "Cos" => Some(UnaryOp::Cos),
        "Not" => Some(UnaryOp::Not),
        _ => None,
    };
    if let Some(u) = simple {
        return Some(unary(cx, u));
    }
    let bin = match op {
        "Add" => Some(BinaryOp::Add),
        "Sub" => Some(BinaryOp::Sub),
        "Mul" => Some(BinaryOp::Mul),
        "Div" => Some(BinaryOp::Div),
        "Pow" => Some(BinaryOp::Pow),
        "Equal" => Some(BinaryOp::Equal),
        "Less" => Some(BinaryOp::Less),
        "Greater" => Some(BinaryOp::Greater),
        "LessOrEqual" => Some(BinaryOp::LessOrEqual),
        "GreaterOrEqual" => Some(BinaryOp::GreaterOrEqual),
        "And" => Some(BinaryOp::And),
        "Or" => Some(BinaryOp::Or),
        "Xor" => Some(BinaryOp::Xor),
        _ => None,
    };
    if let Some(b) = bin {
        return Some(binary(cx, b));
    }
    Some(match op {
        "LeakyRelu" => (|| {
            let alpha = cx.f("alpha", 0.01)?;
            unary(cx, UnaryOp::LeakyRelu { alpha })
        })(),
        "Elu" => (|| {
            let alpha = cx.f("alpha", 1.0)?;
            unary(cx, UnaryOp::Elu { alpha })
        })(),
        "Selu" => (|| {
            let alpha = cx.f("alpha", 1.673_263_2)?;
            let gamma = cx.f("gamma", 1.050_701)?;
            unary(cx, UnaryOp::Selu { alpha, gamma })
        })(),
        "HardSigmoid" => (|| {
            let alpha = cx.f("alpha", 0.2)?;
            let beta = cx.f("beta", 0.5)?;
            unary(cx, UnaryOp::HardSigmoid { alpha, beta })
        })(),
        "Mod" => (|| {
            let fmod = cx.i("fmod", 0)? != 0;
            if !fmod && cx.ty(cx.input(0)?).dtype.is_float() {
                return cx.err("Mod with fmod=0 requires integer inputs");
            }
            binary(cx, BinaryOp::Mod { fmod })
        })(),
        "PRelu" => prelu(cx),
        "Clip" => clip(cx),
        "Sum" => variadic(cx, BinaryOp::Add, false),
        "Mean" => variadic(cx, BinaryOp::Add, true),
        "Max" => variadic(cx, BinaryOp::Max, false),
        "Min" => variadic(cx, BinaryOp::Min, false),
        "Where" => (|| {
            let ins = [cx.input(0)?, cx.input(1)?, cx.input(2)?];
            Ok(vec![cx.add(Op::Where, &ins)?])
        })(),
        "Cast" => cast(cx),
        "CastLike" => (|| {
            let x = cx.input(0)?;
            let to = cx.dtype(cx.input(1)?);
            Ok(vec![cx.add(Op::Cast(CastAttrs { to }), &[x])?])
        })(),
        "Identity" => (|| {
            let x = cx.input(0)?;
            Ok(vec![cx.add(Op::Identity, &[x])?])
        })(),
        "Dropout" => dropout(cx),
        "Celu" => celu(cx),
        "ThresholdedRelu" => thresholded_relu(cx),
        "Mish" => mish(cx),
        "Gelu" => gelu(cx),
        _ => return None,
    })
}

fn unary(cx: &mut Ctx<'_>, u: UnaryOp) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    Ok(vec![cx.add(Op::Unary(u), &[x])?])
}

/// A scalar constant of the given element type.
pub(super) fn scalar(cx: &mut Ctx<'_>, dtype: DType, v: f64) -> Result<Value> {
    let t = Tensor::from_f64(dtype, vec![], vec![v]).or_else(|e| cx.err(e.to_string()))?;
    cx.constant(t)
}

/// Opset < 7 `broadcast=1, axis=k`: B's dims line up with A's dims starting
/// at axis k. Reshape B so that numpy's right-aligned rule says the same.
fn legacy_broadcast(cx: &mut Ctx<'_>, a: Value, b: Value) -> Result<Value> {
    let (ta, tb) = (cx.ty(a), cx.ty(b));
    let Some(axis) = cx.i_opt("axis")? else {
        return Ok(b);
    };
    let axis = super::norm_axis(cx, axis, ta.rank())?;
    if axis + tb.rank() > ta.rank() {
        return cx.err(format!("cannot broadcast {tb} into {ta} at axis {axis}"));
    }
    let mut shape = tb.dims.clone();
    shape.extend(std::iter::repeat_n(1, ta.rank() - axis - tb.rank()));
    if shape == tb.dims {
        return Ok(b);
    }
    cx.add(Op::Reshape(ReshapeAttrs { shape }), &[b])
}

fn binary(cx: &mut Ctx<'_>, op: BinaryOp) -> Result<Vec<Value>> {
    let a = cx.input(0)?;
    let mut b = cx.input(1)?;
    if cx.opset < 7 && cx.i("broadcast", 0)? != 0 {
        b = legacy_broadcast(cx, a, b)?;
    }
    Ok(vec![cx.add(Op::Binary(op), &[a, b])?])
}

fn prelu(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let mut s = cx.input(1)?;
    let (tx, ts) = (cx.ty(x), cx.ty(s));
    // A 1-D slope with one value per channel is per-channel (Caffe2-era
    // exporters), which numpy's rule would misread when W == C.
    let per_channel =
        ts.rank() == 1 && tx.rank() >= 3 && ts.dims[0] == tx.dims[1] && ts.dims[0] > 1;
    let numpy_ok = nnc_ir::op::elementwise::broadcast_dims(&tx.dims, &ts.dims).as_deref()
        == Some(&tx.dims[..]);
    if per_channel && (cx.opset < 7 || !numpy_ok) {
        let mut shape = vec![ts.dims[0]];
        shape.extend(std::iter::repeat_n(1, tx.rank() - 2));
        s = cx.add(Op::Reshape(ReshapeAttrs { shape }), &[s])?;
    }
    Ok(vec![cx.add(Op::Binary(BinaryOp::PRelu), &[x, s])?])
}

fn clip(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let dt = cx.dtype(x);
    if cx.opset < 11 {
        let min = cx.f("min", f32::MIN)? as f64;
        let max = cx.f("max", f32::MAX)? as f64;
        return unary(cx, UnaryOp::Clip { min, max });
    }
    let bound = |cx: &Ctx<'_>, i: usize| -> Result<Option<Result<f64, Value>>> {
        let Some(v) = cx.opt(i) else { return Ok(None) };
        match cx.g.const_value(v) {
            Some(t) => match t.scalar_f64() {
                Some(b) => Ok(Some(Ok(b))),
                None => cx.err("Clip bounds must be scalars"),
            },
            None => Ok(Some(Err(v))),
        }
    };
    let lo = bound(cx, 1)?;
    let hi = bound(cx, 2)?;
    match (lo, hi) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            // Bounds computed at run time: max(x, lo) then min(., hi).
            let mut y = x;
            if let Some(v) = cx.opt(1) {
                y = cx.add(Op::Binary(BinaryOp::Max), &[y, v])?;
            }
            if let Some(v) = cx.opt(2) {
                y = cx.add(Op::Binary(BinaryOp::Min), &[y, v])?;
            }
            Ok(vec![y])
        }
        (lo, hi) => {
            let (dmin, dmax) = match dt.int_range() {
                Some((a, b)) => (a as f64, b as f64),
                None => (f64::NEG_INFINITY, f64::INFINITY),
            };
            let min = lo.map_or(dmin, |r| r.unwrap_or(dmin));
            let max = hi.map_or(dmax, |r| r.unwrap_or(dmax));
            unary(cx, UnaryOp::Clip { min, max })
        }
    }
}

fn variadic(cx: &mut Ctx<'_>, op: BinaryOp, mean: bool) -> Result<Vec<Value>> {
    let ins: Vec<Value> = (0..cx.ins.len())
        .map(|i| cx.input(i))
        .collect::<Result<_>>()?;
    let Some((&first, rest)) = ins.split_first() else {
        return cx.err("needs at least one input");
    };
    let mut acc = first;
    for &v in rest {
        acc = cx.add(Op::Binary(op), &[acc, v])?;
    }
    if mean && ins.len() > 1 {
        let dt = cx.dtype(acc);
        let n = scalar(cx, dt, ins.len() as f64)?;
        acc = cx.add(Op::Binary(BinaryOp::Div), &[acc, n])?;
    } else if rest.is_empty() {
        acc = cx.add(Op::Identity, &[acc])?;
    }
    Ok(vec![acc])
}

fn cast(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let to = match cx.attr("to") {
        None => return cx.err("missing attribute `to`"),
        Some(a) if a.r#type == super::super::proto::attr_type::STRING => {
            let s = String::from_utf8_lossy(&a.s).to_ascii_uppercase();
            match s.as_str() {
                "FLOAT" => DType::F32,
                "DOUBLE" => DType::F64,
                "INT8" => DType::I8,
                "UINT8" => DType::U8,
                "INT16" => DType::I16,
                "UINT16" => DType::U16,
                "INT32" => DType::I32,
                "UINT32" => DType::U32,
                "INT64" => DType::I64,
                "BOOL" => DType::Bool,
                _ => return cx.err(format!("cannot cast to {s}")),
            }
        }
        Some(a) => match dtype_of(a.i as i32) {
            Ok(d) => d,
            Err(m) => return cx.err(format!("cannot cast: {m}")),
        },
    };
    Ok(vec![cx.add(Op::Cast(CastAttrs { to }), &[x])?])
}

fn dropout(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    if let Some(t) = cx.konst(2, "training_mode")?
        && t.scalar_f64().unwrap_or(0.0) != 0.0
    {
        return cx.err("training mode is not supported (nnc compiles for inference)");
    }
    let y = cx.add(Op::Identity, &[x])?;
    // In inference the mask keeps everything.
    let ty = cx.ty(x);
    let mask = Tensor::new(ty.dims.clone(), nnc_ir::Data::Bool(vec![true; ty.len()]))
        .or_else(|e| cx.err(e.to_string()))?;
    let m = cx.constant(mask)?;
    Ok(vec![y, m])
}

fn celu(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    // max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    let x = cx.input(0)?;
    let alpha = cx.f("alpha", 1.0)?;
    let dt = cx.dtype(x);
    let a = scalar(cx, dt, alpha as f64)?;
    let xa = cx.add(Op::Binary(BinaryOp::Div), &[x, a])?;
    let e = cx.add(Op::Unary(UnaryOp::Elu { alpha: 1.0 }), &[xa])?;
    let y = cx.add(Op::Binary(BinaryOp::Mul), &[e, a])?;
    Ok(vec![y])
}

fn thresholded_relu(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let alpha = cx.f("alpha", 1.0)?;
    let dt = cx.dtype(x);
    let a = scalar(cx, dt, alpha as f64)?;
    let zero = scalar(cx, dt, 0.0)?;
    let c = cx.add(Op::Binary(BinaryOp::Greater), &[x, a])?;
    Ok(vec![cx.add(Op::Where, &[c, x, zero])?])
}

fn mish(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let sp = cx.add(Op::Unary(UnaryOp::Softplus), &[x])?;
    let t = cx.add(Op::Unary(UnaryOp::Tanh), &[sp])?;
    Ok(vec![cx.add(Op::Binary(BinaryOp::Mul), &[x, t])?])
}

fn gelu(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let dt = cx.dtype(x);
    let approx = cx.s_or("approximate", "none")?;
    let inner = match approx.as_str() {
        "none" => {
            // erf(x / sqrt(2))
            let r = scalar(cx, dt, std::f64::consts::FRAC_1_SQRT_2)?;
            let s = cx.add(Op::Binary(BinaryOp::Mul), &[x, r])?;
            cx.add(Op::Unary(UnaryOp::Erf), &[s])?
        }
        "tanh" => {
            // tanh(sqrt(2/pi) * (x + 0.044715 x^3))
            let c = scalar(cx, dt, 0.044715)?;
            let k = scalar(cx, dt, (2.0 / std::f64::consts::PI).sqrt())?;
            let x2 = cx.add(Op::Binary(BinaryOp::Mul), &[x, x])?;
            let x3 = cx.add(Op::Binary(BinaryOp::Mul), &[x2, x])?;
            let cx3 = cx.add(Op::Binary(BinaryOp::Mul), &[x3, c])?;
            let s = cx.add(Op::Binary(BinaryOp::Add), &[x, cx3])?;
            let ks = cx.add(Op::Binary(BinaryOp::Mul), &[s, k])?;
            cx.add(Op::Unary(UnaryOp::Tanh), &[ks])?
        }
        other => return cx.err(format!("unknown approximation `{other}`")),
    };
    let one = scalar(cx, dt, 1.0)?;
    let half = scalar(cx, dt, 0.5)?;
    let p = cx.add(Op::Binary(BinaryOp::Add), &[inner, one])?;
    let hx = cx.add(Op::Binary(BinaryOp::Mul), &[x, half])?;
    Ok(vec![cx.add(Op::Binary(BinaryOp::Mul), &[hx, p])?])
}
