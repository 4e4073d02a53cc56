//! QDQ patterns to integer ops: `dequantize -> op -> quantize` becomes the
//! integer op that TensorFlow Lite Micro and CMSIS-NN run, with the
//! requantization multipliers and shifts computed now (TFLite's formulas,
//! so its reference outputs are met bit for bit), the fused activation
//! folded into the output clamp, and quantize(dequantize(x)) cancelled or
//! turned into one requantization. Layout ops move to the integer side.
//!
//! These rules change the arithmetic on purpose: the QDQ graph means float
//! math rounded to integers at every quantize, the integer ops mean what
//! the deployed model computes. The two differ by at most an output unit
//! in a few places; passes that use these rules report the difference.

use egg::{Id, Pattern, rewrite as rw};
use nnc_ir::op::qmath::{SoftmaxOut, checked_multiplier, softmax_params};
use nnc_ir::op::{
    ConvAttrs, PoolKind, QBinaryAttrs, QBinaryKind, QConvAttrs, QGemmAttrs, QParams, QSoftmaxAttrs,
    RequantAttrs, UnaryOp,
};
use nnc_ir::{DType, Op, Tensor, TensorType};

use super::super::lang::TLang;
use super::{B, Build, Rw};

/// Unary ops that become a table between a dequantize and a quantize.
const LUT_OPS: [&str; 15] = [
    "relu",
    "clip",
    "leaky_relu",
    "sigmoid",
    "silu",
    "hard_sigmoid",
    "hard_swish",
    "tanh",
    "elu",
    "selu",
    "softplus",
    "gelu",
    "exp",
    "abs",
    "neg",
];

pub fn rules() -> Vec<Rw> {
    let dq = |v: &str| format!("(dequantize ?{v}a ?{v} ?{v}s ?{v}z)");
    let mut v = vec![
        egg::Rewrite::new(
            "qdq-conv",
            format!(
                "(quantize ?qa (conv ?ca {} {} ?b) ?ys ?yz)",
                dq("x"),
                dq("w")
            )
            .parse::<Pattern<_>>()
            .unwrap(),
            Build(qconv),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-gemm",
            format!(
                "(quantize ?qa (gemm ?ga {} {} ?b) ?ys ?yz)",
                dq("x"),
                dq("w")
            )
            .parse::<Pattern<_>>()
            .unwrap(),
            Build(qgemm),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-matmul",
            format!(
                "(quantize ?qa (matmul ?ga {} {}) ?ys ?yz)",
                dq("x"),
                dq("w")
            )
            .parse::<Pattern<_>>()
            .unwrap(),
            Build(qmatmul),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-add",
            format!("(quantize ?qa (add ?aa {} {}) ?ys ?yz)", dq("x"), dq("w"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(|b: &mut B<'_>, c| qbinary(b, c, QBinaryKind::Add, None)),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-add-relu",
            format!(
                "(quantize ?qa (relu ?ra (add ?aa {} {})) ?ys ?yz)",
                dq("x"),
                dq("w")
            )
            .parse::<Pattern<_>>()
            .unwrap(),
            Build(|b: &mut B<'_>, c| qbinary(b, c, QBinaryKind::Add, Some(UnaryOp::Relu))),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-mul",
            format!("(quantize ?qa (mul ?aa {} {}) ?ys ?yz)", dq("x"), dq("w"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(|b: &mut B<'_>, c| qbinary(b, c, QBinaryKind::Mul, None)),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-softmax",
            format!("(quantize ?qa (softmax ?sa {}) ?ys ?yz)", dq("x"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(qsoftmax),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-requant",
            format!("(quantize ?qa {} ?ys ?yz)", dq("x"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(requant),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-avg-pool",
            format!("(quantize ?qa (avg_pool ?pa {}) ?ys ?yz)", dq("x"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(|b: &mut B<'_>, c| qpool(b, c, "avg_pool")),
        )
        .unwrap(),
        egg::Rewrite::new(
            "qdq-global-avg-pool",
            format!("(quantize ?qa (global_avg_pool ?pa {}) ?ys ?yz)", dq("x"))
                .parse::<Pattern<_>>()
                .unwrap(),
            Build(|b: &mut B<'_>, c| qpool(b, c, "global_avg_pool")),
        )
        .unwrap(),
    ];
    for op in LUT_OPS {
        v.push(
            egg::Rewrite::new(
                format!("qdq-lut-{op}"),
                format!("(quantize ?qa ({op} ?ua {}) ?ys ?yz)", dq("x"))
                    .parse::<Pattern<_>>()
                    .unwrap(),
                Build(lut),
            )
            .unwrap(),
        );
    }
    // Ops that commute with a per-tensor dequantize: move them to the
    // integer side, where quantize(dequantize(x)) then cancels.
    for op in [
        "reshape",
        "transpose",
        "slice",
        "max_pool",
        "global_max_pool",
    ] {
        v.push(
            egg::Rewrite::new(
                format!("dequantize-{op}"),
                format!("({op} ?oa (dequantize ?da ?x ?s ?z))")
                    .parse::<Pattern<_>>()
                    .unwrap(),
                Build(move |b: &mut B<'_>, c| through(b, c, op)),
            )
            .unwrap(),
        );
    }
    // The same ops before a per-tensor quantize (a float model input that
    // is transposed or reshaped, then quantized): quantize first.
    for op in [
        "reshape",
        "transpose",
        "slice",
        "max_pool",
        "global_max_pool",
    ] {
        v.push(
            egg::Rewrite::new(
                format!("{op}-quantize"),
                format!("(quantize ?qa ({op} ?oa ?x) ?s ?z)")
                    .parse::<Pattern<_>>()
                    .unwrap(),
                Build(move |b: &mut B<'_>, c| quantize_first(b, c, op)),
            )
            .unwrap(),
        );
    }
    v.push(rw!("qdq-concat2";
        "(quantize ?qa (concat ?oa (dequantize ?da ?x ?as ?az) (dequantize ?db ?y ?bs ?bz)) ?s ?z)" =>
        { Build(qconcat2) }));
    v.push(rw!("dequantize-concat2";
        "(concat ?oa (dequantize ?da ?x ?s ?z) (dequantize ?db ?y ?s ?z))" =>
        { Build(concat2) }));
    v
}

/// Two dequantized inputs with the same per-tensor parameters concatenate
/// on the integer side.
fn concat2(b: &mut B<'_>, _class: Id) -> Option<Id> {
    let (x, y) = (b.id("?x"), b.id("?y"));
    if q8(b, x)? != q8(b, y)? {
        return None;
    }
    scalar_q(b, "?s", "?z")?;
    let op = b.op_at("concat", "?oa")?;
    let joined = b.add(&op, &[x, y])?;
    let dq = b.op_at("dequantize", "?da")?;
    let (s, z) = (b.id("?s"), b.id("?z"));
    b.add(&dq, &[joined, s, z])
}

/// Two dequantized inputs with their own parameters concatenated and
/// quantized (onnxruntime's QLinearConcat): each input requantized to the
/// output's parameters (one rounding, as in the float form), then joined.
fn qconcat2(b: &mut B<'_>, _class: Id) -> Option<Id> {
    let out = quantize_to(b)?;
    let (sy, zy) = scalar_q(b, "?s", "?z")?;
    let (lo, hi) = clamp_range(None, out, sy, zy)?;
    let mut parts = Vec::new();
    for (v, s, z) in [("?x", "?as", "?az"), ("?y", "?bs", "?bz")] {
        let x = b.id(v);
        let xd = q8(b, x)?;
        let (sx, zx) = scalar_q(b, s, z)?;
        if sx == sy && zx == zy && xd == out {
            parts.push(x);
            continue;
        }
        let (mult, shift) = checked_multiplier(sx as f64 / sy as f64)?;
        let rq = Op::Requant(RequantAttrs {
            q: QParams {
                x_zp: zx,
                w_zp: 0,
                y_zp: zy,
                lo,
                hi,
                out,
            },
            mult,
            shift,
        });
        parts.push(b.add(&rq, &[x])?);
    }
    let op = b.op_at("concat", "?oa")?;
    b.add(&op, &parts)
}

/// A per-tensor quantization: the scale and zero point of a dequantize or
/// quantize, both constants with one element.
fn scalar_q(b: &B<'_>, s: &str, z: &str) -> Option<(f32, i32)> {
    let st = b.value(b.id(s))?;
    let zid = b.id(z);
    let zp = if b.is_none(zid) {
        0
    } else {
        let zt = b.value(zid)?;
        if zt.len() != 1 {
            return None;
        }
        zt.to_i64()[0] as i32
    };
    if st.len() != 1 || st.dtype() != DType::F32 {
        return None;
    }
    let s = st.to_f64()[0] as f32;
    (s > 0.0 && s.is_finite()).then_some((s, zp))
}

/// The quantized type of a class (i8 or u8).
fn q8(b: &B<'_>, id: Id) -> Option<DType> {
    let d = b.ty(id)?.dtype;
    matches!(d, DType::I8 | DType::U8).then_some(d)
}

/// The output type of the matched quantize.
fn quantize_to(b: &mut B<'_>) -> Option<DType> {
    match b.op_at("quantize", "?qa")? {
        Op::Quantize(q) => Some(q.to),
        _ => None,
    }
}

/// TFLite's activation range: the type's range narrowed by a fused
/// activation, in the output's integer domain.
fn clamp_range(act: Option<&UnaryOp>, out: DType, s: f32, zp: i32) -> Option<(i32, i32)> {
    let (lo, hi) = out.int_range()?;
    let (lo, hi) = (lo as i32, hi as i32);
    let quantize = |v: f64| zp + ((v as f32) / s).round() as i32;
    Some(match act {
        None => (lo, hi),
        Some(UnaryOp::Relu) => (lo.max(quantize(0.0)), hi),
        Some(UnaryOp::Clip { min, max }) => (
            lo.max(if min.is_finite() { quantize(*min) } else { lo }),
            hi.min(if max.is_finite() { quantize(*max) } else { hi }),
        ),
        Some(_) => return None,
    })
}

/// Per-channel weight scales (and zero points, which must be one value).
/// Per-channel scales must run along `axis`, the weight's output-channel
/// axis (a square matrix would otherwise pass with scales per input row).
fn weight_q(b: &mut B<'_>, channels: usize, axis: usize) -> Option<(Vec<f32>, i32)> {
    let st = b.value(b.id("?ws"))?;
    if st.dtype() != DType::F32 || (st.len() != 1 && st.len() != channels) {
        return None;
    }
    if st.len() != 1 {
        let Op::Dequantize(d) = b.op_at("dequantize", "?wa")? else {
            return None;
        };
        if d.axis != axis {
            return None;
        }
    }
    let s: Vec<f32> = st.to_f64().iter().map(|&v| v as f32).collect();
    if s.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
        return None;
    }
    let zid = b.id("?wz");
    let zp = if b.is_none(zid) {
        0
    } else {
        let z = b.value(zid)?.to_i64();
        if z.iter().any(|&v| v != z[0]) {
            return None;
        }
        z[0] as i32
    };
    Some((s, zp))
}

/// The integer bias of a kernel with output scale `sx * sw[c]`: the int32
/// values of a dequantized constant bias, rescaled if its scale differs; a
/// missing bias is zero.
fn int_bias(b: &mut B<'_>, bias: Id, sx: f32, sw: &[f32], n: usize) -> Option<Vec<i64>> {
    if b.is_none(bias) {
        return Some(vec![0; n]);
    }
    // The bias class holds a dequantize of an int32 constant.
    let found = b.eg[bias].nodes.iter().find_map(|node| match node {
        TLang::Op(s, ch) if s.as_str() == "dequantize" => Some((
            b.eg.find(ch[1]),
            b.eg.find(ch[2]),
            ch.get(3).map(|c| b.eg.find(*c)),
        )),
        _ => None,
    });
    let (bv, bs, bz) = match found {
        Some(f) => f,
        None => {
            // A float constant bias: quantize it at the accumulator scale.
            let v = b.value(bias)?.to_f64();
            if v.len() != n {
                return None;
            }
            return Some(
                (0..n)
                    .map(|c| {
                        let s = sx as f64 * sw[c.min(sw.len() - 1)] as f64;
                        (v[c] / s).round_ties_even() as i64
                    })
                    .collect(),
            );
        }
    };
    let (bt, st) = (b.value(bv)?, b.value(bs)?);
    if bt.dtype() != DType::I32 || bt.len() != n {
        return None;
    }
    if let Some(z) = bz
        && !b.is_none(z)
        && b.value(z)?.to_i64().iter().any(|&v| v != 0)
    {
        return None;
    }
    let (raw, scale) = (bt.to_i64(), st.to_f64());
    Some(
        (0..n)
            .map(|c| {
                let bsc = scale[c.min(scale.len() - 1)];
                let acc = sx as f64 * sw[c.min(sw.len() - 1)] as f64;
                if (bsc as f32) == (acc as f32) {
                    raw[c]
                } else {
                    (raw[c] as f64 * bsc / acc).round_ties_even() as i64
                }
            })
            .collect(),
    )
}

/// Multipliers and shifts for real scales, as i32 tensors (one element when
/// every channel shares it).
pub(super) fn requant_consts(b: &mut B<'_>, reals: &[f64]) -> Option<(Id, Id)> {
    let q: Vec<(i32, i32)> = reals
        .iter()
        .map(|&r| checked_multiplier(r))
        .collect::<Option<_>>()?;
    let same = q.iter().all(|v| *v == q[0]);
    let q = if same { vec![q[0]] } else { q };
    let n = q.len();
    let m = Tensor::from_i64(DType::I32, vec![n], q.iter().map(|v| v.0 as i64).collect())
        .expect("sized");
    let s = Tensor::from_i64(DType::I32, vec![n], q.iter().map(|v| v.1 as i64).collect())
        .expect("sized");
    Some((b.konst(m), b.konst(s)))
}

fn qconv(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Conv(ca) = b.op_at("conv", "?ca")? else {
        return None;
    };
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let (xd, _) = (q8(b, x)?, q8(b, w)?);
    let _ = xd;
    b.value(w)?;
    let out = quantize_to(b)?;
    let (sx, zx) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    let m = b.ty(class)?.dims[1];
    let (sw, zw) = weight_q(b, m, 0)?;
    let (lo, hi) = clamp_range(ca.act.as_ref(), out, sy, zy)?;
    let bias_v = int_bias(b, bias, sx, &sw, m)?;
    // TFLite: double(input_scale) * double(filter_scale) / double(output_scale).
    let reals: Vec<f64> = (0..m)
        .map(|c| sx as f64 * sw[c.min(sw.len() - 1)] as f64 / sy as f64)
        .collect();
    let (mi, si) = requant_consts(b, &reals)?;
    let bt = b.konst(Tensor::from_i64(DType::I32, vec![m], bias_v).ok()?);
    let op = Op::QConv(QConvAttrs {
        conv: ConvAttrs { act: None, ..ca },
        q: QParams {
            x_zp: zx,
            w_zp: zw,
            y_zp: zy,
            lo,
            hi,
            out,
        },
    });
    b.add(&op, &[x, w, bt, mi, si])
}

/// A Gemm or MatMul `x [M, K] * w` with a constant integer `w`.
fn qmatrix(b: &mut B<'_>, trans_b: bool, bias: Option<Id>, act: Option<&UnaryOp>) -> Option<Id> {
    let (x, w) = (b.id("?x"), b.id("?w"));
    let (wt, xt) = (b.ty(w)?, b.ty(x)?);
    q8(b, x)?;
    q8(b, w)?;
    if xt.rank() != 2 || wt.rank() != 2 {
        return None;
    }
    b.value(w)?;
    let out = quantize_to(b)?;
    let n = if trans_b { wt.dims[0] } else { wt.dims[1] };
    let (sx, zx) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    let (sw, zw) = weight_q(b, n, if trans_b { 0 } else { 1 })?;
    let (lo, hi) = clamp_range(act, out, sy, zy)?;
    let bias_v = match bias {
        Some(bid) => int_bias(b, bid, sx, &sw, n)?,
        None => vec![0; n],
    };
    // TFLite's fully connected layer: a float product for one weight
    // scale, the convolution's double product per channel.
    let reals: Vec<f64> = if sw.len() == 1 {
        vec![(sx * sw[0]) as f64 / sy as f64]
    } else {
        sw.iter()
            .map(|&s| sx as f64 * s as f64 / sy as f64)
            .collect()
    };
    let (mi, si) = requant_consts(b, &reals)?;
    let bt = b.konst(Tensor::from_i64(DType::I32, vec![n], bias_v).ok()?);
    let op = Op::QGemm(QGemmAttrs {
        trans_b,
        q: QParams {
            x_zp: zx,
            w_zp: zw,
            y_zp: zy,
            lo,
            hi,
            out,
        },
    });
    b.add(&op, &[x, w, bt, mi, si])
}

fn qgemm(b: &mut B<'_>, _class: Id) -> Option<Id> {
    let Op::Gemm(g) = b.op_at("gemm", "?ga")? else {
        return None;
    };
    if g.alpha != 1.0 || g.trans_a || (g.beta != 1.0 && !b.is_none(b.id("?b"))) {
        return None;
    }
    let bias = b.id("?b");
    // C must be a per-column vector.
    if !b.is_none(bias) {
        let n = b.ty(bias)?.len();
        let cols = b.ty(_class)?.dims[1];
        if n != cols {
            return None;
        }
    }
    qmatrix(b, g.trans_b, Some(bias), g.act.as_ref())
}

fn qmatmul(b: &mut B<'_>, _class: Id) -> Option<Id> {
    qmatrix(b, false, None, None)
}

fn qbinary(b: &mut B<'_>, _class: Id, kind: QBinaryKind, act: Option<UnaryOp>) -> Option<Id> {
    let (x, w) = (b.id("?x"), b.id("?w"));
    q8(b, x)?;
    q8(b, w)?;
    let out = quantize_to(b)?;
    let (sa, za) = scalar_q(b, "?xs", "?xz")?;
    let (sb, zb) = scalar_q(b, "?ws", "?wz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    let (lo, hi) = clamp_range(act.as_ref(), out, sy, zy)?;
    let q = QParams {
        x_zp: za,
        w_zp: zb,
        y_zp: zy,
        lo,
        hi,
        out,
    };
    let attrs = match kind {
        QBinaryKind::Add => {
            // TFLite's Add: both inputs rescaled to twice the larger scale
            // with 20 bits of headroom (float arithmetic, as TFLite's).
            let left_shift = 20;
            let twice = (2.0f32 * sa.max(sb)) as f64;
            let (am, ash) = checked_multiplier(sa as f64 / twice)?;
            let (bm, bsh) = checked_multiplier(sb as f64 / twice)?;
            let (ym, ysh) = checked_multiplier(twice / (((1 << left_shift) as f32 * sy) as f64))?;
            QBinaryAttrs {
                kind,
                q,
                left_shift,
                a_mult: am,
                a_shift: ash,
                b_mult: bm,
                b_shift: bsh,
                y_mult: ym,
                y_shift: ysh,
            }
        }
        QBinaryKind::Mul => {
            let (ym, ysh) = checked_multiplier((sa * sb / sy) as f64)?;
            QBinaryAttrs {
                kind,
                q,
                left_shift: 0,
                a_mult: 0,
                a_shift: 0,
                b_mult: 0,
                b_shift: 0,
                y_mult: ym,
                y_shift: ysh,
            }
        }
    };
    b.add(&Op::QBinary(attrs), &[x, w])
}

fn requant(b: &mut B<'_>, _class: Id) -> Option<Id> {
    let x = b.id("?x");
    let xd = q8(b, x)?;
    let out = quantize_to(b)?;
    let (sx, zx) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    if sx == sy && zx == zy && xd == out {
        // quantize(dequantize(x)) with the same parameters is x.
        return Some(x);
    }
    let (lo, hi) = clamp_range(None, out, sy, zy)?;
    let (mult, shift) = checked_multiplier(sx as f64 / sy as f64)?;
    let op = Op::Requant(RequantAttrs {
        q: QParams {
            x_zp: zx,
            w_zp: 0,
            y_zp: zy,
            lo,
            hi,
            out,
        },
        mult,
        shift,
    });
    b.add(&op, &[x])
}

/// Average pooling on integers (TFLite's rounding), followed by a
/// requantization when the output parameters differ.
fn qpool(b: &mut B<'_>, _class: Id, name: &str) -> Option<Id> {
    let x = b.id("?x");
    let xd = q8(b, x)?;
    let out = quantize_to(b)?;
    let op = b.op_at(name, "?pa")?;
    if let Op::Pool(p) = &op
        && (p.kind != PoolKind::Avg || (p.count_include_pad && p.pads.iter().any(|&v| v > 0)))
    {
        // Padding counted in the divisor reads as the zero point: not an
        // integer average of the raw values.
        return None;
    }
    let (sx, zx) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    if sx == sy && zx == zy && xd == out {
        return b.add(&op, &[x]);
    }
    let (lo, hi) = clamp_range(None, out, sy, zy)?;
    // New output parameters: the window sum requantized once, as a
    // depthwise convolution with unit weights (averaging first and
    // requantizing the average would round twice).
    if let Some(conv) = pool_as_qconv(b, x, &op, sx, zx, sy, zy, out) {
        return Some(conv);
    }
    let pooled = b.add(&op, &[x])?;
    let (mult, shift) = checked_multiplier(sx as f64 / sy as f64)?;
    let rq = Op::Requant(RequantAttrs {
        q: QParams {
            x_zp: zx,
            w_zp: 0,
            y_zp: zy,
            lo,
            hi,
            out,
        },
        mult,
        shift,
    });
    b.add(&rq, &[pooled])
}

/// Average pooling of `x` (parameters `sx`, `zx`) requantized to (`sy`,
/// `zy`) as one integer depthwise convolution: weights 1, multiplier `sx /
/// (count * sy)`. Only when every window has the same count: no padding,
/// or padding counted in the divisor (it reads as the zero point, which
/// adds nothing), and no ceil-mode overhang.
fn pool_as_qconv(
    b: &mut B<'_>,
    x: Id,
    op: &Op,
    sx: f32,
    zx: i32,
    sy: f32,
    zy: i32,
    out: DType,
) -> Option<Id> {
    let xt = b.ty(x)?;
    if xt.rank() < 3 {
        return None;
    }
    let c = xt.dims[1];
    let n = xt.rank() - 2;
    let conv = match op {
        Op::Pool(p) if p.kind == PoolKind::Avg => {
            if p.pads.iter().any(|&v| v > 0) && !p.count_include_pad {
                return None;
            }
            ConvAttrs {
                strides: p.strides.clone(),
                pads: p.pads.clone(),
                dilations: p.dilations.clone(),
                group: c,
                act: None,
            }
        }
        Op::GlobalPool(g) if g.kind == PoolKind::Avg => ConvAttrs {
            group: c,
            ..ConvAttrs::new(n)
        },
        _ => return None,
    };
    let kernel: Vec<usize> = match op {
        Op::Pool(p) => p.kernel.clone(),
        _ => xt.dims[2..].to_vec(),
    };
    let count: usize = kernel.iter().product();
    let mut dims = vec![c, 1];
    dims.extend(&kernel);
    let ones = Tensor::from_i64(DType::I8, dims, vec![1; c * count]).ok()?;
    let w = b.konst(ones);
    let bias = b.konst(Tensor::from_i64(DType::I32, vec![c], vec![0; c]).ok()?);
    let (mi, si) = requant_consts(b, &[sx as f64 / (count as f64 * sy as f64)])?;
    let (lo, hi) = out.int_range()?;
    let q = Op::QConv(QConvAttrs {
        conv,
        q: QParams {
            x_zp: zx,
            w_zp: 0,
            y_zp: zy,
            lo: lo as i32,
            hi: hi as i32,
            out,
        },
    });
    // The convolution must cover the pooling's windows exactly (ceil mode
    // can add a partial window).
    let pooled = op.infer(&[&xt]).ok()?.remove(0);
    let tys: Vec<TensorType> = [w, bias, mi, si]
        .iter()
        .map(|&i| b.ty(i))
        .collect::<Option<_>>()?;
    let conv_out = q
        .infer(&[&xt, &tys[0], &tys[1], &tys[2], &tys[3]])
        .ok()?
        .remove(0);
    if conv_out.dims != pooled.dims {
        return None;
    }
    b.add(&q, &[x, w, bias, mi, si])
}

fn qsoftmax(b: &mut B<'_>, _class: Id) -> Option<Id> {
    let x = b.id("?x");
    q8(b, x)?;
    let out = quantize_to(b)?;
    let Op::Softmax(sa) = b.op_at("softmax", "?sa")? else {
        return None;
    };
    if sa.log {
        return None;
    }
    let (sx, _) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    // TFLite's integer softmax writes probabilities in units of 1/256 from
    // the type's minimum. Other output parameters (onnxruntime's QDQ
    // softmax has scale 1/255) divide the same fixed-point probabilities
    // by the output scale and round once, instead of rounding at 1/256 and
    // requantizing (which costs up to a unit more).
    let (lo, _) = out.int_range()?;
    let (mult, shift, diff_min) = softmax_params(sx as f64, 1.0);
    let y = if sy == 1.0 / 256.0 && zy as i64 == lo {
        None
    } else {
        let (m, s) = checked_multiplier(1.0 / sy as f64)?;
        Some(SoftmaxOut {
            mult: m,
            shift: s,
            zp: zy,
        })
    };
    let op = Op::QSoftmax(QSoftmaxAttrs {
        axis: sa.axis,
        mult,
        shift,
        diff_min,
        out,
        y,
    });
    b.add(&op, &[x])
}

/// Any unary function between a dequantize and a quantize: a table of its
/// value at each of the 256 inputs, computed now with the interpreter.
fn lut(b: &mut B<'_>, class: Id) -> Option<Id> {
    let x = b.id("?x");
    let xd = q8(b, x)?;
    let out = quantize_to(b)?;
    let ua = b.id("?ua");
    // The unary node under the quantize: its name is not in the pattern's
    // variables, so find it in the quantize's input class.
    let inner = b.eg[class].nodes.iter().find_map(|n| match n {
        TLang::Op(s, ch) if s.as_str() == "quantize" => Some(b.eg.find(ch[1])),
        _ => None,
    })?;
    let name = b.eg[inner].nodes.iter().find_map(|n| match n {
        TLang::Op(s, ch) if LUT_OPS.contains(&s.as_str()) && b.eg.find(ch[0]) == ua => Some(*s),
        _ => None,
    })?;
    let Op::Unary(unary) = b.op(name.as_str(), ua)? else {
        return None;
    };
    let (sx, zx) = scalar_q(b, "?xs", "?xz")?;
    let (sy, zy) = scalar_q(b, "?ys", "?yz")?;
    let (lo, _) = xd.int_range()?;
    let xs: Vec<i64> = (0..256).map(|i| lo + i).collect();
    let xt = Tensor::from_i64(xd, vec![256], xs).ok()?;
    let st = Tensor::scalar_f32(sx);
    let zt = Tensor::from_i64(xd, vec![], vec![zx as i64]).ok()?;
    let deq = nnc_ir::op::DequantizeAttrs { axis: 0 }
        .eval(&[&xt, &st, &zt])
        .ok()?;
    let f = unary.eval(&deq).ok()?;
    let sy_t = Tensor::scalar_f32(sy);
    let zy_t = Tensor::from_i64(out, vec![], vec![zy as i64]).ok()?;
    let table = nnc_ir::op::QuantizeAttrs { axis: 0, to: out }
        .eval(&[&f, &sy_t, &zy_t])
        .ok()?;
    let t = b.konst(table);
    b.add(&Op::Lut, &[x, t])
}

/// `quantize(op(x))` as `op(quantize(x))` for a per-tensor quantize: it is
/// elementwise and monotonic, so it commutes with data movement and maxima.
fn quantize_first(b: &mut B<'_>, _class: Id, name: &str) -> Option<Id> {
    let x = b.id("?x");
    if !b.ty(x)?.dtype.is_float() {
        return None;
    }
    scalar_q(b, "?s", "?z")?;
    let q = b.op_at("quantize", "?qa")?;
    let (s, z) = (b.id("?s"), b.id("?z"));
    let quantized = b.add(&q, &[x, s, z])?;
    let op = b.op_at(name, "?oa")?;
    b.add(&op, &[quantized])
}

/// `op(dequantize(x))` as `dequantize(op(x))` for an op that commutes with
/// a per-tensor affine map (moves data, or takes maxima with a positive
/// scale).
fn through(b: &mut B<'_>, _class: Id, name: &str) -> Option<Id> {
    let x = b.id("?x");
    q8(b, x)?;
    scalar_q(b, "?s", "?z")?;
    let op = b.op_at(name, "?oa")?;
    let moved = b.add(&op, &[x])?;
    let dq = b.op_at("dequantize", "?da")?;
    let (s, z) = (b.id("?s"), b.id("?z"));
    b.add(&dq, &[moved, s, z])
}
