//! Fusion into Conv and Gemm: activations (Relu, Clip/Relu6, LeakyRelu,
//! Sigmoid, SiLU, HardSigmoid, HardSwish, Tanh) become the kernel's `act`; a
//! per-channel constant add becomes the bias; a per-channel constant
//! multiply after (or a per-input-channel multiply before) scales the
//! weights. 2-D MatMuls join through Gemm.

use egg::{Id, Pattern, rewrite as rw};
use nnc_ir::op::{GemmAttrs, UnaryOp};
use nnc_ir::{Op, Tensor};

use super::{B, Build, Rw, per_channel, tensor};

/// Activations a kernel can apply to its result.
pub const ACTS: [&str; 8] = [
    "relu",
    "clip",
    "leaky_relu",
    "sigmoid",
    "silu",
    "hard_sigmoid",
    "hard_swish",
    "tanh",
];

pub fn rules() -> Vec<Rw> {
    let mut v = Vec::new();
    for act in ACTS {
        for (host, f) in [
            ("conv", fuse_conv_act as fn(&mut B<'_>, Id) -> Option<Id>),
            ("gemm", fuse_gemm_act),
        ] {
            let lhs: Pattern<_> = format!("({act} ?a ({host} ?ha ?x ?w ?b))").parse().unwrap();
            let name = format!("{host}-{act}");
            v.push(egg::Rewrite::new(name, lhs, Build(f)).unwrap());
        }
        let lhs: Pattern<_> = format!("({act} ?a (matmul ?ha ?x ?w))").parse().unwrap();
        v.push(egg::Rewrite::new(format!("matmul-{act}"), lhs, Build(fuse_matmul_act)).unwrap());
    }
    v.extend([
        rw!("conv-add-bias"; "(add ?aa (conv ?ha ?x ?w ?b) ?c)" => { Build(conv_add_bias) }),
        rw!("gemm-add-bias"; "(add ?aa (gemm ?ha ?x ?w ?b) ?c)" => { Build(gemm_add_bias) }),
        rw!("conv-mul-scale"; "(mul ?ma (conv ?ha ?x ?w ?b) ?c)" => { Build(conv_mul_scale) }),
        rw!("gemm-mul-scale"; "(mul ?ma (gemm ?ha ?x ?w ?b) ?c)" => { Build(gemm_mul_scale) }),
        rw!("mul-conv-input"; "(conv ?ha (mul ?ma ?x ?c) ?w ?b)" => { Build(mul_conv_input) }),
        // SiLU written out, as PyTorch exports it: one op, so that a
        // kernel applies it as its activation instead of computing its
        // input twice (once plain for the Mul, once fused with Sigmoid).
        rw!("mul-sigmoid-silu"; "(mul ?m ?x (sigmoid ?s ?x))" => { Build(silu) }),
        rw!("sigmoid-mul-silu"; "(mul ?m (sigmoid ?s ?x) ?x)" => { Build(silu) }),
    ]);
    v
}

/// The matched activation as a unary op, with the class of the kernel it
/// applies to. The pattern binds the act's attributes (`?a`); the act node
/// itself is found among the class's nodes.
fn matched_act(b: &mut B<'_>, class: Id) -> Option<(UnaryOp, Id)> {
    let a = b.id("?a");
    let found = b.eg[class].nodes.iter().find_map(|n| match n {
        super::super::lang::TLang::Op(s, ch)
            if ACTS.contains(&s.as_str()) && ch.len() == 2 && b.eg.find(ch[0]) == a =>
        {
            Some((*s, b.eg.find(ch[1])))
        }
        _ => None,
    });
    let (name, host) = found?;
    match b.op(name.as_str(), a)? {
        Op::Unary(u) => Some((u, host)),
        _ => None,
    }
}

fn fuse_conv_act(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Conv(mut ca) = b.op_at("conv", "?ha")? else {
        return None;
    };
    if ca.act.is_some() {
        return None;
    }
    let (act, host) = matched_act(b, class)?;
    ca.act = Some(act);
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let op = Op::Conv(ca);
    let id = b.add(&op, &[x, w, bias])?;
    b.fused_name(class, &op, &[host, class]);
    Some(id)
}

fn fuse_gemm_act(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Gemm(mut ga) = b.op_at("gemm", "?ha")? else {
        return None;
    };
    if ga.act.is_some() {
        return None;
    }
    let (act, host) = matched_act(b, class)?;
    ga.act = Some(act);
    let (x, w, c) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let op = Op::Gemm(ga);
    let id = b.add(&op, &[x, w, c])?;
    b.fused_name(class, &op, &[host, class]);
    Some(id)
}

fn fuse_matmul_act(b: &mut B<'_>, class: Id) -> Option<Id> {
    let (x, w) = (b.id("?x"), b.id("?w"));
    if b.ty(x)?.rank() != 2 || b.ty(w)?.rank() != 2 || !b.ty(x)?.dtype.is_float() {
        return None;
    }
    let (act, host) = matched_act(b, class)?;
    let ga = GemmAttrs {
        act: Some(act),
        ..Default::default()
    };
    let none = b.none();
    let op = Op::Gemm(ga);
    let id = b.add(&op, &[x, w, none])?;
    b.fused_name(class, &op, &[host, class]);
    Some(id)
}

fn silu(b: &mut B<'_>, class: Id) -> Option<Id> {
    let x = b.id("?x");
    if !b.ty(x)?.dtype.is_float() {
        return None;
    }
    let op = Op::Unary(UnaryOp::Silu);
    let id = b.add(&op, &[x])?;
    let sig = b.host_of(class, "mul", "?m", "sigmoid")?;
    b.fused_name(class, &op, &[sig, class]);
    Some(id)
}

/// Per-channel values of `?c` for a result of type `out` with channels on `axis`.
fn channel_values(b: &B<'_>, out: Id, axis: usize) -> Option<(Vec<f64>, Tensor)> {
    let t = b.value(b.id("?c"))?;
    let ty = b.ty(out)?;
    let ch = *ty.dims.get(axis)?;
    let v = per_channel(&t, ch, axis, ty.rank())?;
    Some((v, (*t).clone()))
}

fn bias_values(b: &B<'_>, bias: Id, n: usize) -> Option<Vec<f64>> {
    if b.is_none(bias) {
        return Some(vec![0.0; n]);
    }
    let v = b.value(bias)?.to_f64();
    (v.len() == n).then_some(v)
}

fn conv_add_bias(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Conv(ca) = b.op_at("conv", "?ha")? else {
        return None;
    };
    if ca.act.is_some() {
        return None;
    }
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let (c, _) = channel_values(b, class, 1)?;
    let old = bias_values(b, bias, c.len())?;
    let dt = b.ty(x)?.dtype;
    let nb = tensor(
        dt,
        vec![c.len()],
        old.iter().zip(&c).map(|(o, c)| o + c).collect(),
    )?;
    let nb = b.konst(nb);
    let op = Op::Conv(ca);
    let id = b.add(&op, &[x, w, nb])?;
    if let Some(host) = b.host_of(class, "add", "?aa", "conv") {
        b.fused_name(class, &op, &[host, class]);
    }
    Some(id)
}

fn gemm_add_bias(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Gemm(ga) = b.op_at("gemm", "?ha")? else {
        return None;
    };
    if ga.act.is_some() {
        return None;
    }
    let (x, w, old, c) = (b.id("?x"), b.id("?w"), b.id("?b"), b.id("?c"));
    let out = b.ty(class)?;
    let new_c = if b.is_none(old) {
        c
    } else {
        // Both constant: C' = beta * C + c, computed now.
        let (ot, ct) = (b.value(old)?, b.value(c)?);
        let dims = nnc_ir::op::elementwise::broadcast_dims(ot.dims(), ct.dims())?;
        let oi = nnc_ir::op::elementwise::broadcast_offsets(ot.dims(), &dims);
        let ci = nnc_ir::op::elementwise::broadcast_offsets(ct.dims(), &dims);
        let (ov, cv) = (ot.to_f64(), ct.to_f64());
        let v = oi
            .iter()
            .zip(&ci)
            .map(|(i, j)| ga.beta as f64 * ov[*i] + cv[*j])
            .collect();
        b.konst(tensor(out.dtype, dims, v)?)
    };
    let op = Op::Gemm(GemmAttrs { beta: 1.0, ..ga });
    let id = b.add(&op, &[x, w, new_c])?;
    if let Some(host) = b.host_of(class, "add", "?aa", "gemm") {
        b.fused_name(class, &op, &[host, class]);
    }
    Some(id)
}

fn conv_mul_scale(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Conv(ca) = b.op_at("conv", "?ha")? else {
        return None;
    };
    if ca.act.is_some() {
        return None;
    }
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let (s, _) = channel_values(b, class, 1)?;
    let wt = b.value(w)?;
    let inner = wt.len() / wt.dims()[0];
    let wv: Vec<f64> = wt
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, v)| v * s[i / inner])
        .collect();
    let w2 = b.konst(tensor(wt.dtype(), wt.dims().to_vec(), wv)?);
    let b2 = if b.is_none(bias) {
        bias
    } else {
        let old = bias_values(b, bias, s.len())?;
        let t = tensor(
            wt.dtype(),
            vec![s.len()],
            old.iter().zip(&s).map(|(o, s)| o * s).collect(),
        )?;
        b.konst(t)
    };
    b.add(&Op::Conv(ca), &[x, w2, b2])
}

fn gemm_mul_scale(b: &mut B<'_>, class: Id) -> Option<Id> {
    let Op::Gemm(ga) = b.op_at("gemm", "?ha")? else {
        return None;
    };
    if ga.act.is_some() {
        return None;
    }
    let (x, w, old) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let (s, _) = channel_values(b, class, 1)?;
    let wt = b.value(w)?;
    let (r, cc) = (wt.dims()[0], wt.dims()[1]);
    let cols = s.len();
    let wv: Vec<f64> = wt
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, v)| v * if ga.trans_b { s[i / cc] } else { s[i % cc] })
        .collect();
    if (ga.trans_b && r != cols) || (!ga.trans_b && cc != cols) {
        return None;
    }
    let w2 = b.konst(tensor(wt.dtype(), wt.dims().to_vec(), wv)?);
    let c2 = if b.is_none(old) {
        old
    } else {
        let ct = b.value(old)?;
        let dims = nnc_ir::op::elementwise::broadcast_dims(ct.dims(), &[cols])?;
        let ci = nnc_ir::op::elementwise::broadcast_offsets(ct.dims(), &dims);
        let cv = ct.to_f64();
        let n = dims.len();
        let v = ci
            .iter()
            .enumerate()
            .map(|(k, i)| cv[*i] * s[k % dims[n - 1]])
            .collect();
        b.konst(tensor(wt.dtype(), dims, v)?)
    };
    b.add(&Op::Gemm(ga), &[x, w2, c2])
}

fn mul_conv_input(b: &mut B<'_>, _: Id) -> Option<Id> {
    let Op::Conv(ca) = b.op_at("conv", "?ha")? else {
        return None;
    };
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let tx = b.ty(x)?;
    let t = b.value(b.id("?c"))?;
    // The scale must apply per input channel only (it must not broadcast x up).
    let s = per_channel(&t, tx.dims[1], 1, tx.rank())?;
    let wt = b.value(w)?;
    let (m, cin_g) = (wt.dims()[0], wt.dims()[1]);
    let kk: usize = wt.dims()[2..].iter().product();
    let m_g = m / ca.group.max(1);
    let wv: Vec<f64> = wt
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let o = i / (cin_g * kk);
            let ic = (i / kk) % cin_g;
            v * s[(o / m_g) * cin_g + ic]
        })
        .collect();
    let w2 = b.konst(tensor(wt.dtype(), wt.dims().to_vec(), wv)?);
    b.add(&Op::Conv(ca), &[x, w2, bias])
}

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::rewrite;

    fn conv_graph(tail: &str, out_ty: &str) -> String {
        format!(
            r#"graph @t(v0 "x": f32[1,2,5,5]) -> ("y": {out_ty}) {{
    c0 = const f32[3,2,3,3] [1, 0, -1, 2, 0, -2, 1, 0, -1, 0.5, 0.5, 0.5, 0, 0, 0, -0.5, -0.5, -0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, -1, 1, -1, 1, -1, 1, -1, 1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    v1 = conv v0, c0 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1]}} : f32[1,3,5,5]   ; Conv_0
{tail}
}}"#
        )
    }

    #[test]
    fn relu6_clip_fuses_into_conv() {
        let out = rewrite(
            &conv_graph(
                "    v2 = clip v1 {min=0 max=6} : f32[1,3,5,5]   ; Clip_1\n    return v2",
                "f32[1,3,5,5]",
            ),
            &[Group::Fusion],
        );
        assert!(out.contains("act=clip(min=0 max=6)"), "{out}");
        assert!(!out.contains("= clip"), "{out}");
        assert!(out.contains("; Conv_0+Clip_1"), "{out}");
    }

    #[test]
    fn silu_written_out_fuses_into_conv_once() {
        for mul in ["mul v1, v2", "mul v2, v1"] {
            let out = rewrite(
                &conv_graph(
                    &format!(
                        "    v2 = sigmoid v1 : f32[1,3,5,5]   ; Sigmoid_1\n    v3 = {mul} : f32[1,3,5,5]   ; Mul_2\n    return v3"
                    ),
                    "f32[1,3,5,5]",
                ),
                &[Group::Fusion],
            );
            assert!(out.contains("act=silu"), "{out}");
            // One convolution: the SiLU's input is not computed twice.
            assert_eq!(out.matches("= conv").count(), 1, "{out}");
            assert!(
                !out.contains("= sigmoid") && !out.contains("= mul"),
                "{out}"
            );
            assert!(out.contains("; Conv_0+Sigmoid_1+Mul_2"), "{out}");
        }
    }

    #[test]
    fn bias_add_then_relu_fuse() {
        let out = rewrite(
            &conv_graph(
                "    c1 = const f32[1,3,1,1] [0.5, -1, 2]\n    v2 = add v1, c1 : f32[1,3,5,5]\n    v3 = relu v2 : f32[1,3,5,5]\n    return v3",
                "f32[1,3,5,5]",
            ),
            &[Group::Fusion, Group::Cleanup],
        );
        assert!(out.contains("act=relu"), "{out}");
        assert_eq!(
            out.lines()
                .filter(|l| l.contains(" = ") && !l.contains("const"))
                .count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn constant_scale_folds_into_weights() {
        let out = rewrite(
            &conv_graph(
                "    c1 = const f32[3,1,1] [2, 3, 4]\n    v2 = mul v1, c1 : f32[1,3,5,5]\n    return v2",
                "f32[1,3,5,5]",
            ),
            &[Group::Fusion],
        );
        assert!(!out.contains("mul"), "{out}");
    }

    #[test]
    fn input_scale_folds_into_weights() {
        let out = rewrite(
            &conv_graph("    return v1", "f32[1,3,5,5]").replace(
                "v1 = conv v0, c0",
                "c9 = const f32[1,2,1,1] [2, -3]\n    v9 = mul v0, c9 : f32[1,2,5,5]\n    v1 = conv v9, c0",
            ),
            &[Group::Fusion],
        );
        assert!(!out.contains("mul"), "{out}");
    }

    #[test]
    fn matmul_relu_becomes_gemm() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[1,3]) -> ("y": f32[1,2]) {
    c0 = const f32[3,2] [1, -2, 3, -4, 5, -6]
    c1 = const f32[2] [0.5, -0.5]
    v1 = matmul v0, c0 : f32[1,2]
    v2 = add v1, c1 : f32[1,2]
    v3 = relu v2 : f32[1,2]
    return v3
}"#,
            &[Group::Fusion, Group::Cleanup],
        );
        assert!(out.contains("gemm v0, c0, c1 {act=relu}"), "{out}");
    }
}
