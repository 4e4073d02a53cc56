//! The QOperator form to integer kernels: an ONNX integer product
//! (`conv_integer`, `matmul_integer`), an optional int32 bias add and the
//! float `rescale` that ends QLinearConv, QLinearMatMul and onnxruntime's
//! QGemm become one `qconv` / `qgemm` when the weights, zero points, bias
//! and multipliers are constants.
//!
//! The accumulator is the same; only the requantization changes, from
//! `round_half_even(acc * m + zp)` in double precision to TFLite's Q31
//! multiplier and shift with single rounding. The multiplier's relative
//! error is below 2^-31, so an output differs by at most one unit (at
//! ties and within 2^-31 of them).

use egg::{Id, Pattern};
use nnc_ir::op::{ConvAttrs, QConvAttrs, QGemmAttrs, QParams};
use nnc_ir::{DType, Op, Tensor};

use super::quant::requant_consts;
use super::{B, Build, Rw, per_channel};

pub fn rules() -> Vec<Rw> {
    let rule = |name: &str, pat: &str, bias: bool, conv: bool| {
        egg::Rewrite::new(
            name,
            pat.parse::<Pattern<_>>().unwrap(),
            Build(move |b: &mut B<'_>, c| integer_kernel(b, c, conv, bias)),
        )
        .unwrap()
    };
    vec![
        rule(
            "qop-conv-bias",
            "(rescale ?ra (add ?aa (conv_integer ?ca ?x ?w ?xz ?wz) ?b) ?m ?yz)",
            true,
            true,
        ),
        rule(
            "qop-conv",
            "(rescale ?ra (conv_integer ?ca ?x ?w ?xz ?wz) ?m ?yz)",
            false,
            true,
        ),
        rule(
            "qop-matmul-bias",
            "(rescale ?ra (add ?aa (matmul_integer ?ca ?x ?w ?xz ?wz) ?b) ?m ?yz)",
            true,
            false,
        ),
        rule(
            "qop-matmul",
            "(rescale ?ra (matmul_integer ?ca ?x ?w ?xz ?wz) ?m ?yz)",
            false,
            false,
        ),
    ]
}

/// The one value of a constant zero point (every element equal).
fn uniform(b: &B<'_>, v: &str) -> Option<i32> {
    let z = b.value(b.id(v))?.to_i64();
    let first = *z.first()?;
    z.iter().all(|&x| x == first).then_some(first as i32)
}

/// `rescale(acc + bias, m, yz)` with `acc` a convolution (`conv`) or a
/// matrix product of `x` and constant weights `w`.
fn integer_kernel(b: &mut B<'_>, class: Id, conv: bool, bias: bool) -> Option<Id> {
    let (x, w) = (b.id("?x"), b.id("?w"));
    let yt = b.ty(class)?;
    let out = yt.dtype;
    let (xt, wt) = (b.ty(x)?, b.ty(w)?);
    b.value(w)?;
    let (channels, rank) = if conv {
        (yt.dims[1], yt.rank())
    } else {
        if xt.rank() != 2 || wt.rank() != 2 {
            return None;
        }
        (yt.dims[1], 2)
    };
    let x_zp = uniform(b, "?xz")?;
    let w_zp = uniform(b, "?wz")?;
    let yz = b.value(b.id("?yz"))?;
    if yz.len() != 1 {
        return None;
    }
    let y_zp = yz.to_i64()[0] as i32;
    let m = b.value(b.id("?m"))?;
    let reals = per_channel(&m, channels, 1, rank)?;
    let bias_v: Vec<i64> = if bias {
        let bt = b.value(b.id("?b"))?;
        if bt.dtype() != DType::I32 {
            return None;
        }
        per_channel(&bt, channels, 1, rank)?
            .iter()
            .map(|&v| v as i64)
            .collect()
    } else {
        vec![0; channels]
    };
    let (mi, si) = requant_consts(b, &reals)?;
    let bt = b.konst(Tensor::from_i64(DType::I32, vec![channels], bias_v).ok()?);
    let (lo, hi) = out.int_range()?;
    let q = QParams {
        x_zp,
        w_zp,
        y_zp,
        lo: lo as i32,
        hi: hi as i32,
        out,
    };
    let op = if conv {
        let Op::ConvInteger(a) = b.op_at("conv_integer", "?ca")? else {
            return None;
        };
        Op::QConv(QConvAttrs {
            conv: ConvAttrs { act: None, ..a },
            q,
        })
    } else {
        Op::QGemm(QGemmAttrs { trans_b: false, q })
    };
    b.add(&op, &[x, w, bt, mi, si])
}
