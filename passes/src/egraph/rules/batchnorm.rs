//! BatchNormalization (inference) folded into the preceding Conv,
//! ConvTranspose, Gemm or 2-D MatMul, and a standalone BatchNormalization
//! turned into a per-channel multiply and add. With
//! `k = scale / sqrt(var + eps)` and `shift = bias - mean * k`, a producer
//! `y = W x + b` becomes `y' = (k W) x + (k b + shift)`.

use egg::{Id, rewrite as rw};
use nnc_ir::op::{BinaryOp, GemmAttrs};
use nnc_ir::{Op, Tensor};

use super::{B, Build, Rw, tensor};

pub fn rules() -> Vec<Rw> {
    vec![
        rw!("bn-conv"; "(batch_norm ?a (conv ?ca ?x ?w ?b) ?s ?beta ?m ?v)" => { Build(bn_conv) }),
        rw!("bn-conv-transpose";
            "(batch_norm ?a (conv_transpose ?ca ?x ?w ?b) ?s ?beta ?m ?v)" => { Build(bn_conv_transpose) }),
        rw!("bn-gemm"; "(batch_norm ?a (gemm ?ga ?x ?w ?b) ?s ?beta ?m ?v)" => { Build(bn_gemm) }),
        rw!("bn-matmul"; "(batch_norm ?a (matmul ?ma ?x ?w) ?s ?beta ?m ?v)" => { Build(bn_matmul) }),
        rw!("bn-scale-shift"; "(batch_norm ?a ?x ?s ?beta ?m ?v)" => { Build(bn_scale_shift) }),
    ]
}

/// `(k, shift)` per channel from the matched batch_norm's parameters.
fn params(b: &mut B<'_>) -> Option<(Vec<f64>, Vec<f64>)> {
    let Op::BatchNorm(a) = b.op_at("batch_norm", "?a")? else {
        return None;
    };
    let [s, beta, m, v] = ["?s", "?beta", "?m", "?v"].map(|n| {
        let id = b.id(n);
        b.value(id).map(|t| t.to_f64())
    });
    let (s, beta, m, v) = (s?, beta?, m?, v?);
    let eps = a.epsilon as f64;
    let k: Vec<f64> = s
        .iter()
        .zip(&v)
        .map(|(s, v)| s / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(&m)
        .zip(&k)
        .map(|((b, m), k)| b - m * k)
        .collect();
    Some((k, shift))
}

/// The producer's bias (`none` means zeros) mapped through `k` and `shift`.
fn new_bias(b: &mut B<'_>, bias: Id, k: &[f64], shift: &[f64], like: &Tensor) -> Option<Id> {
    let old = if b.is_none(bias) {
        vec![0.0; k.len()]
    } else {
        let t = b.value(bias)?;
        if t.len() != k.len() {
            return None;
        }
        t.to_f64()
    };
    let v = old
        .iter()
        .zip(k)
        .zip(shift)
        .map(|((o, k), s)| o * k + s)
        .collect();
    let t = tensor(like.dtype(), vec![k.len()], v)?;
    Some(b.konst(t))
}

/// Multiplies every element of `w` by `k[channel(i)]`.
fn scale(w: &Tensor, k: &[f64], channel: impl Fn(usize) -> usize) -> Option<Tensor> {
    let v = w
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, x)| x * k[channel(i)])
        .collect();
    tensor(w.dtype(), w.dims().to_vec(), v)
}

fn bn_conv(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Conv(ca) = b.op_at("conv", "?ca")? else {
        return None;
    };
    if ca.act.is_some() {
        return None;
    }
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let wt = b.value(w)?;
    let (k, shift) = params(b)?;
    let inner = wt.len() / wt.dims()[0];
    let w2 = scale(&wt, &k, |i| i / inner)?;
    let b2 = new_bias(b, bias, &k, &shift, &wt)?;
    let w2 = b.konst(w2);
    let op = Op::Conv(ca);
    let conv = b.add(&op, &[x, w2, b2])?;
    if let Some(host) = b.host_of(class, "batch_norm", "?a", "conv") {
        b.fused_name(class, &op, &[host, class]);
    }
    Some(conv)
}

fn bn_conv_transpose(b: &mut B<'_>, _: Id) -> Option<Id> {
    let Op::ConvTranspose(ca) = b.op_at("conv_transpose", "?ca")? else {
        return None;
    };
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let wt = b.value(w)?;
    let (k, shift) = params(b)?;
    // Weight [C, M/g, K...]: output channel of element (c, j, ...) is
    // (c / (C/g)) * (M/g) + j.
    let (c, mpg) = (wt.dims()[0], wt.dims()[1]);
    let kk: usize = wt.dims()[2..].iter().product();
    let cpg = c / ca.group.max(1);
    let w2 = scale(&wt, &k, |i| {
        let ci = i / (mpg * kk);
        let j = (i / kk) % mpg;
        (ci / cpg) * mpg + j
    })?;
    let b2 = new_bias(b, bias, &k, &shift, &wt)?;
    let w2 = b.konst(w2);
    b.add(&Op::ConvTranspose(ca), &[x, w2, b2])
}

/// Gemm / MatMul output `[N, M]`: column `j` of `op(B)` scales by `k[j]`.
fn fold_columns(b: &mut B<'_>, ga: GemmAttrs, x: Id, w: Id, c: Option<Id>) -> Option<Id> {
    if ga.act.is_some() {
        return None;
    }
    let wt = b.value(w)?;
    let (k, shift) = params(b)?;
    let cols = k.len();
    let (r, cc) = (wt.dims()[0], wt.dims()[1]);
    let w2 = if ga.trans_b {
        if r != cols {
            return None;
        }
        scale(&wt, &k, |i| i / cc)?
    } else {
        if cc != cols {
            return None;
        }
        scale(&wt, &k, |i| i % cc)?
    };
    // New C: (beta * C - m) * k + beta_bn = beta*C*k + shift, per column.
    let old: Vec<f64> = match c {
        None => vec![0.0; cols],
        Some(c) => {
            let t = b.value(c)?;
            let v = t.to_f64();
            match v.len() {
                1 => vec![v[0]; cols],
                n if n == cols && t.dims().last() == Some(&cols) => v,
                _ => return None,
            }
        }
    };
    let bias: Vec<f64> = (0..cols)
        .map(|j| ga.beta as f64 * old[j] * k[j] + shift[j])
        .collect();
    let w2 = b.konst(w2);
    let c2 = b.konst(tensor(wt.dtype(), vec![cols], bias)?);
    let attrs = GemmAttrs { beta: 1.0, ..ga };
    b.add(&Op::Gemm(attrs), &[x, w2, c2])
}

fn bn_gemm(b: &mut B<'_>, _: Id) -> Option<Id> {
    let Op::Gemm(ga) = b.op_at("gemm", "?ga")? else {
        return None;
    };
    let (x, w, c) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let c = (!b.is_none(c)).then_some(c);
    fold_columns(b, ga, x, w, c)
}

fn bn_matmul(b: &mut B<'_>, _: Id) -> Option<Id> {
    let (x, w) = (b.id("?x"), b.id("?w"));
    if b.ty(x)?.rank() != 2 || b.ty(w)?.rank() != 2 {
        return None;
    }
    fold_columns(b, GemmAttrs::default(), x, w, None)
}

fn bn_scale_shift(b: &mut B<'_>, _: Id) -> Option<Id> {
    let x = b.id("?x");
    let tx = b.ty(x)?;
    let (k, shift) = params(b)?;
    if tx.rank() >= 3 {
        // A 1x1 depthwise convolution is exactly a per-channel scale and
        // shift, and activations fuse into it like into any conv.
        let c = k.len();
        let n = tx.rank() - 2;
        let mut wd = vec![c, 1];
        wd.extend(std::iter::repeat_n(1, n));
        let w = b.konst(tensor(tx.dtype, wd, k)?);
        let bias = b.konst(tensor(tx.dtype, vec![c], shift)?);
        let mut a = nnc_ir::op::ConvAttrs::new(n);
        a.group = c;
        return b.add(&Op::Conv(a), &[x, w, bias]);
    }
    let mut dims = vec![k.len()];
    dims.extend(std::iter::repeat_n(1, tx.rank().saturating_sub(2)));
    let kc = b.konst(tensor(tx.dtype, dims.clone(), k)?);
    let sc = b.konst(tensor(tx.dtype, dims, shift)?);
    let m = b.add(&Op::Binary(BinaryOp::Mul), &[x, kc])?;
    b.add(&Op::Binary(BinaryOp::Add), &[m, sc])
}

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::rewrite;

    const BN: &str = "c2 = const f32[2] [1.5, 0.5]
    c3 = const f32[2] [0.1, -0.2]
    c4 = const f32[2] [0.3, 0.7]
    c5 = const f32[2] [2, 0.25]";

    #[test]
    fn folds_into_conv() {
        let out = rewrite(
            &format!(
                r#"graph @t(v0 "x": f32[1,3,4,4]) -> ("y": f32[1,2,4,4]) {{
    c0 = const f32[2,3,1,1] [1, 2, 3, -1, -2, -3]
    c1 = const f32[2] [0.5, 1]
    {BN}
    v1 = conv v0, c0, c1 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,2,4,4]
    v2 = batch_norm v1, c2, c3, c4, c5 {{epsilon=0.001}} : f32[1,2,4,4]
    return v2
}}"#
            ),
            &[Group::BatchNorm],
        );
        assert!(!out.contains("batch_norm"), "{out}");
        assert_eq!(out.matches(" = conv ").count(), 1, "{out}");
    }

    #[test]
    fn folds_into_gemm_and_matmul() {
        for (op, ty) in [
            ("gemm v0, c0, c1", "f32[1,2]"),
            ("matmul v0, c0", "f32[1,2]"),
        ] {
            let out = rewrite(
                &format!(
                    r#"graph @t(v0 "x": f32[1,3]) -> ("y": f32[1,2]) {{
    c0 = const f32[3,2] [1, 2, 3, -1, -2, -3]
    c1 = const f32[2] [0.5, 1]
    {BN}
    v1 = {op} : {ty}
    v2 = batch_norm v1, c2, c3, c4, c5 {{epsilon=0.001}} : f32[1,2]
    return v2
}}"#
                ),
                &[Group::BatchNorm],
            );
            assert!(!out.contains("batch_norm") && out.contains("gemm"), "{out}");
        }
    }

    #[test]
    fn standalone_becomes_scale_and_shift() {
        let out = rewrite(
            &format!(
                r#"graph @t(v0 "x": f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {{
    {BN}
    v1 = batch_norm v0, c2, c3, c4, c5 {{epsilon=0.001}} : f32[1,2,3,3]
    return v1
}}"#
            ),
            &[Group::BatchNorm],
        );
        assert!(!out.contains("batch_norm"), "{out}");
        assert!(out.contains("group=2"), "{out}");
    }

    #[test]
    fn folds_into_grouped_conv_transpose() {
        let out = rewrite(
            &format!(
                r#"graph @t(v0 "x": f32[1,2,3,3]) -> ("y": f32[1,2,5,5]) {{
    c0 = const f32[2,1,3,3] [1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6, -7, -8, -9]
    {BN}
    v1 = conv_transpose v0, c0 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1] output_padding=[0,0] group=2}} : f32[1,2,5,5]
    v2 = batch_norm v1, c2, c3, c4, c5 {{epsilon=0.001}} : f32[1,2,5,5]
    return v2
}}"#
            ),
            &[Group::BatchNorm],
        );
        assert!(!out.contains("batch_norm"), "{out}");
    }
}
