//! Clean-up rules: identities disappear, reshape chains collapse, casts to
//! the same type vanish, subtraction and division by constants become
//! addition and multiplication (so the fusion rules see one form), add and
//! mul commute, and MatMul + Add becomes Gemm.

use egg::rewrite as rw;
use nnc_ir::Op;
use nnc_ir::op::{BinaryOp, GemmAttrs, UnaryOp};

use super::{B, Build, Rw, tensor};

pub fn rules() -> Vec<Rw> {
    vec![
        rw!("identity"; "(identity ?a ?x)" => "?x"),
        rw!("reshape-reshape"; "(reshape ?a (reshape ?b ?x))" => "(reshape ?a ?x)"),
        rw!("reshape-noop"; "(reshape ?a ?x)" => { Build(same_type_as_x) }),
        rw!("cast-noop"; "(cast ?a ?x)" => { Build(same_type_as_x) }),
        rw!("expand-noop"; "(expand ?a ?x)" => { Build(same_type_as_x) }),
        rw!("add-comm"; "(add ?a ?x ?y)" => "(add ?a ?y ?x)"),
        rw!("mul-comm"; "(mul ?a ?x ?y)" => "(mul ?a ?y ?x)"),
        rw!("sub-const"; "(sub ?a ?x ?c)" => { Build(sub_const) }),
        rw!("div-const"; "(div ?a ?x ?c)" => { Build(div_const) }),
        rw!("matmul-add"; "(add ?a (matmul ?m ?x ?w) ?c)" => { Build(matmul_add) }),
    ]
}

/// `op(x)` is `x` when the types agree.
fn same_type_as_x(b: &mut B<'_>, class: egg::Id) -> Option<egg::Id> {
    let x = b.id("?x");
    (b.ty(x).is_some() && b.ty(x) == b.ty(class)).then_some(x)
}

fn sub_const(b: &mut B<'_>, _: egg::Id) -> Option<egg::Id> {
    let (x, c) = (b.id("?x"), b.id("?c"));
    let t = b.value(c)?;
    let n = Op::Unary(UnaryOp::Neg).eval(&[&t]).ok()?.remove(0);
    let nc = b.konst(n);
    b.add(&Op::Binary(BinaryOp::Add), &[x, nc])
}

fn div_const(b: &mut B<'_>, _: egg::Id) -> Option<egg::Id> {
    let (x, c) = (b.id("?x"), b.id("?c"));
    let t = b.value(c)?;
    if !t.dtype().is_float() {
        return None;
    }
    let r: Vec<f64> = t.to_f64().iter().map(|v| 1.0 / v).collect();
    let rc = b.konst(tensor(t.dtype(), t.dims().to_vec(), r)?);
    b.add(&Op::Binary(BinaryOp::Mul), &[x, rc])
}

fn matmul_add(b: &mut B<'_>, class: egg::Id) -> Option<egg::Id> {
    let (x, w, c) = (b.id("?x"), b.id("?w"), b.id("?c"));
    let (tx, tw) = (b.ty(x)?, b.ty(w)?);
    if tx.rank() != 2 || tw.rank() != 2 || !tx.dtype.is_float() {
        return None;
    }
    // Gemm's C broadcasts to the result; `add` type-checks that in `B::add`.
    let op = Op::Gemm(GemmAttrs::default());
    let id = b.add(&op, &[x, w, c])?;
    if let Some(host) = b.host_of(class, "add", "?a", "matmul") {
        b.fused_name(class, &op, &[host, class]);
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::{operands, rewrite, saturate, value};
    use crate::egraph::lang::{Leaf, TLang};

    #[test]
    fn identity_and_reshape_chains_collapse() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[2,3,4]) -> ("y": f32[24]) {
    v1 = identity v0 : f32[2,3,4]
    v2 = reshape v1 {shape=[6,4]} : f32[6,4]
    v3 = reshape v2 {shape=[4,6]} : f32[4,6]
    v4 = reshape v3 {shape=[24]} : f32[24]
    return v4
}"#,
            &[Group::Cleanup],
        );
        assert!(!out.contains("identity"), "{out}");
        assert_eq!(out.matches("reshape").count(), 1, "{out}");
        assert!(out.contains("reshape v0 {shape=[24]}"), "{out}");
    }

    #[test]
    fn matmul_add_becomes_gemm() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[2,3]) -> ("y": f32[2,2]) {
    c0 = const f32[3,2] [1, 2, 3, 4, 5, 6]
    c1 = const f32[2] [0.5, -0.5]
    v1 = matmul v0, c0 : f32[2,2]
    v2 = add v1, c1 : f32[2,2]
    return v2
}"#,
            &[Group::Cleanup],
        );
        assert!(out.contains("= gemm v0, c0, c1 : f32[2,2]"), "{out}");
        assert!(!out.contains("matmul"), "{out}");
    }

    const SRC: &str = r#"graph @t(v0 "x": f32[4]) -> ("y": f32[4]) {
    c0 = const f32[] [2]
    c1 = const f32[] [4]
    v1 = sub v0, c0 : f32[4]
    v2 = div v1, c1 : f32[4]
    return v2
}"#;

    #[test]
    fn sub_and_div_by_constants_canonicalize() {
        let out = rewrite(SRC, &[Group::Cleanup]);
        // Either form costs the same, so extraction may keep the original.
        assert!(out.contains("div") || out.contains("mul"), "{out}");
        // The point is that both forms are in the e-graph: `v1 / 4` is
        // also `v1 * 0.25`, and `x - 2` is also `x + -2` (either operand
        // order).
        let (eg, roots) = saturate(SRC, &[Group::Cleanup]);
        let muls = operands(&eg, roots[0], "mul");
        let v1 = muls
            .iter()
            .find_map(|m| match (value(&eg, m[0]), value(&eg, m[1])) {
                (_, Some(c)) if c == [0.25] => Some(m[0]),
                (Some(c), _) if c == [0.25] => Some(m[1]),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no mul by 0.25 in the div class: {muls:?}"));
        assert!(!operands(&eg, v1, "sub").is_empty(), "{v1:?} is not x - 2");
        let adds = operands(&eg, v1, "add");
        let x = eg.lookup(TLang::Leaf(Leaf::Input(0))).unwrap();
        assert!(
            adds.iter().any(|a| {
                let c = if a[0] == x { a[1] } else { a[0] };
                a.contains(&x) && value(&eg, c) == Some(vec![-2.0])
            }),
            "no x + -2 in the sub class: {adds:?}"
        );
    }

    #[test]
    fn integer_division_is_not_a_multiplication() {
        let src = r#"graph @t(v0 "x": i32[4]) -> ("y": i32[4]) {
    c0 = const i32[] [4]
    v1 = div v0, c0 : i32[4]
    return v1
}"#;
        let (eg, roots) = saturate(src, &[Group::Cleanup]);
        assert!(operands(&eg, roots[0], "mul").is_empty());
    }
}
