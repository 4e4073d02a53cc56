//! Layout rules for models exported from NHWC frameworks: transpose pairs
//! cancel or merge, transposes that only move size-1 dims become reshapes,
//! transposes move through elementwise ops (both ways, so that pairs can
//! meet) and into Softmax, Gemm and MatMul, which absorb them.

use egg::{Id, Pattern, rewrite as rw};
use nnc_ir::op::{GemmAttrs, ReshapeAttrs, SoftmaxAttrs, TransposeAttrs};
use nnc_ir::{Op, Tensor};

use super::{B, Build, Rw};

/// Elementwise unary ops a transpose commutes with.
const UNARY: [&str; 24] = [
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "clip",
    "sigmoid",
    "silu",
    "hard_sigmoid",
    "hard_swish",
    "tanh",
    "softplus",
    "softsign",
    "erf",
    "exp",
    "log",
    "sqrt",
    "abs",
    "neg",
    "reciprocal",
    "floor",
    "ceil",
    "round",
    "sign",
    "cast",
];

/// Broadcasting binary ops a transpose commutes with.
const BINARY: [&str; 8] = ["add", "sub", "mul", "div", "pow", "max", "min", "prelu"];

pub fn rules() -> Vec<Rw> {
    let mut v = vec![
        rw!("transpose-transpose"; "(transpose ?a (transpose ?b ?x))" => { Build(compose) }),
        rw!("transpose-noop"; "(transpose ?a ?x)" => { Build(transpose_noop) }),
        rw!("transpose-as-reshape"; "(transpose ?a ?x)" => { Build(as_reshape) }),
        rw!("transpose-softmax"; "(softmax ?s (transpose ?a ?x))" => { Build(|b: &mut B<'_>, c| through_softmax(b, c, false)) }),
        rw!("transpose-log-softmax"; "(log_softmax ?s (transpose ?a ?x))" => { Build(|b: &mut B<'_>, c| through_softmax(b, c, true)) }),
        rw!("gemm-transpose-a"; "(gemm ?g (transpose ?a ?x) ?y ?c)" => { Build(|b: &mut B<'_>, c| gemm_absorb(b, c, true)) }),
        rw!("gemm-transpose-b"; "(gemm ?g ?y (transpose ?a ?x) ?c)" => { Build(|b: &mut B<'_>, c| gemm_absorb(b, c, false)) }),
        rw!("matmul-transpose-a"; "(matmul ?m (transpose ?a ?x) ?y)" => { Build(|b: &mut B<'_>, c| matmul_absorb(b, c, true)) }),
        rw!("matmul-transpose-b"; "(matmul ?m ?y (transpose ?a ?x))" => { Build(|b: &mut B<'_>, c| matmul_absorb(b, c, false)) }),
    ];
    for u in UNARY {
        let down: Pattern<_> = format!("({u} ?u (transpose ?a ?x))").parse().unwrap();
        let up: Pattern<_> = format!("(transpose ?a ({u} ?u ?x))").parse().unwrap();
        v.push(egg::Rewrite::new(format!("{u}-sink-transpose"), down.clone(), up.clone()).unwrap());
        v.push(egg::Rewrite::new(format!("{u}-lift-transpose"), up, down).unwrap());
    }
    for op in BINARY {
        let both: Pattern<_> = format!("({op} ?o (transpose ?a ?x) (transpose ?a ?y))")
            .parse()
            .unwrap();
        let out: Pattern<_> = format!("(transpose ?a ({op} ?o ?x ?y))").parse().unwrap();
        v.push(egg::Rewrite::new(format!("{op}-transposes"), both, out).unwrap());
        let lhs: Pattern<_> = format!("({op} ?o (transpose ?a ?x) ?c)").parse().unwrap();
        v.push(
            egg::Rewrite::new(
                format!("{op}-transpose-const"),
                lhs,
                Build(|b: &mut B<'_>, c| const_operand(b, c, true)),
            )
            .unwrap(),
        );
        let rhs: Pattern<_> = format!("({op} ?o ?c (transpose ?a ?x))").parse().unwrap();
        v.push(
            egg::Rewrite::new(
                format!("{op}-const-transpose"),
                rhs,
                Build(|b: &mut B<'_>, c| const_operand(b, c, false)),
            )
            .unwrap(),
        );
    }
    v
}

fn perm(b: &mut B<'_>, var: &str) -> Option<Vec<usize>> {
    match b.op_at("transpose", var)? {
        Op::Transpose(TransposeAttrs { perm }) => Some(perm),
        _ => None,
    }
}

fn transpose(b: &mut B<'_>, perm: Vec<usize>, x: Id) -> Option<Id> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Some(x);
    }
    b.add(&Op::Transpose(TransposeAttrs { perm }), &[x])
}

fn compose(b: &mut B<'_>, _: Id) -> Option<Id> {
    let (outer, inner) = (perm(b, "?a")?, perm(b, "?b")?);
    let p: Vec<usize> = outer.iter().map(|&o| inner[o]).collect();
    let x = b.id("?x");
    transpose(b, p, x)
}

fn transpose_noop(b: &mut B<'_>, _: Id) -> Option<Id> {
    let p = perm(b, "?a")?;
    let x = b.id("?x");
    p.iter().enumerate().all(|(i, &q)| i == q).then_some(x)
}

/// A transpose that keeps the order of the non-unit dims moves no data.
fn as_reshape(b: &mut B<'_>, class: Id) -> Option<Id> {
    let p = perm(b, "?a")?;
    let x = b.id("?x");
    let tx = b.ty(x)?;
    let moved: Vec<usize> = p.iter().copied().filter(|&i| tx.dims[i] != 1).collect();
    if moved.windows(2).any(|w| w[0] > w[1]) {
        return None;
    }
    let shape = b.ty(class)?.dims;
    b.add(&Op::Reshape(ReshapeAttrs { shape }), &[x])
}

fn through_softmax(b: &mut B<'_>, _: Id, log: bool) -> Option<Id> {
    let p = perm(b, "?a")?;
    let name = if log { "log_softmax" } else { "softmax" };
    let Op::Softmax(sa) = b.op_at(name, "?s")? else {
        return None;
    };
    let x = b.id("?x");
    let s = b.add(
        &Op::Softmax(SoftmaxAttrs {
            axis: p[sa.axis],
            log,
        }),
        &[x],
    )?;
    b.add(&Op::Transpose(TransposeAttrs { perm: p }), &[s])
}

fn gemm_absorb(b: &mut B<'_>, _: Id, first: bool) -> Option<Id> {
    if perm(b, "?a")? != [1, 0] {
        return None;
    }
    let Op::Gemm(mut ga) = b.op_at("gemm", "?g")? else {
        return None;
    };
    let (x, y, c) = (b.id("?x"), b.id("?y"), b.id("?c"));
    if first {
        ga.trans_a = !ga.trans_a;
        b.add(&Op::Gemm(ga), &[x, y, c])
    } else {
        ga.trans_b = !ga.trans_b;
        b.add(&Op::Gemm(ga), &[y, x, c])
    }
}

fn matmul_absorb(b: &mut B<'_>, _: Id, first: bool) -> Option<Id> {
    if perm(b, "?a")? != [1, 0] {
        return None;
    }
    let (x, y) = (b.id("?x"), b.id("?y"));
    if b.ty(y)?.rank() != 2 || !b.ty(x)?.dtype.is_float() {
        return None;
    }
    let none = b.none();
    let ga = GemmAttrs {
        trans_a: first,
        trans_b: !first,
        ..Default::default()
    };
    if first {
        b.add(&Op::Gemm(ga), &[x, y, none])
    } else {
        b.add(&Op::Gemm(ga), &[y, x, none])
    }
}

/// `op(transpose(x), c)` → `transpose(op(x, c'))` with `c'` the constant
/// laid out for the untransposed operand.
fn const_operand(b: &mut B<'_>, class: Id, transposed_first: bool) -> Option<Id> {
    let p = perm(b, "?a")?;
    let (x, c) = (b.id("?x"), b.id("?c"));
    let t = b.value(c)?;
    let n = p.len();
    if t.rank() > n {
        return None;
    }
    // Right-align c to rank n, then apply the inverse permutation.
    let mut dims = vec![1; n - t.rank()];
    dims.extend_from_slice(t.dims());
    let full: Tensor = t.reshaped(dims).ok()?;
    let mut inv = vec![0; n];
    for (i, &q) in p.iter().enumerate() {
        inv[q] = i;
    }
    let moved = Op::Transpose(TransposeAttrs { perm: inv })
        .eval(&[&full])
        .ok()?
        .remove(0);
    let c2 = b.konst(moved);
    let name = b.eg[class].nodes.iter().find_map(|n| match n {
        super::super::lang::TLang::Op(s, ch) if BINARY.contains(&s.as_str()) && ch.len() == 3 => {
            Some(*s)
        }
        _ => None,
    })?;
    let op = b.op_at(name.as_str(), "?o")?;
    let inner = if transposed_first {
        b.add(&op, &[x, c2])?
    } else {
        b.add(&op, &[c2, x])?
    };
    b.add(&Op::Transpose(TransposeAttrs { perm: p }), &[inner])
}

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::rewrite;

    #[test]
    fn transpose_pairs_cancel_through_elementwise_ops() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[1,4,4,3]) -> ("y": f32[1,4,4,3]) {
    c0 = const f32[3,1,1] [1, 2, 3]
    v1 = transpose v0 {perm=[0,3,1,2]} : f32[1,3,4,4]
    v2 = relu v1 : f32[1,3,4,4]
    v3 = add v2, c0 : f32[1,3,4,4]
    v4 = transpose v3 {perm=[0,2,3,1]} : f32[1,4,4,3]
    return v4
}"#,
            &[Group::Layout],
        );
        assert!(!out.contains("transpose"), "{out}");
    }

    #[test]
    fn transposes_merge_and_unit_moves_become_reshapes() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[2,1,3]) -> ("y": f32[1,3,2]) {
    v1 = transpose v0 {perm=[1,0,2]} : f32[1,2,3]
    v2 = transpose v1 {perm=[0,2,1]} : f32[1,3,2]
    return v2
}"#,
            &[Group::Layout],
        );
        assert_eq!(out.matches("transpose").count(), 1, "{out}");
        let out = rewrite(
            r#"graph @t(v0 "x": f32[1,5,1,3]) -> ("y": f32[1,1,5,3]) {
    v1 = transpose v0 {perm=[0,2,1,3]} : f32[1,1,5,3]
    return v1
}"#,
            &[Group::Layout],
        );
        assert!(
            out.contains("reshape") && !out.contains("transpose"),
            "{out}"
        );
    }

    #[test]
    fn gemm_absorbs_transposes() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[3,2]) -> ("y": f32[2,2]) {
    c0 = const f32[2,3] [1, 2, 3, 4, 5, 6]
    v1 = transpose v0 {perm=[1,0]} : f32[2,3]
    v2 = transpose c0 {perm=[1,0]} : f32[3,2]
    v3 = matmul v1, v2 : f32[2,2]
    return v3
}"#,
            &[Group::Layout],
        );
        assert!(!out.contains("transpose"), "{out}");
        assert!(out.contains("trans_a=true"), "{out}");
    }
}
