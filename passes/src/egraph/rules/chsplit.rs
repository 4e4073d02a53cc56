//! Channel split: a chain "producer (convolution with C output channels)
//! -> channel-local ops (depthwise convolution, pooling, activations,
//! requantization, elementwise ops with per-channel constants) -> consumer"
//! gets k-sliced alternatives, for k = 2, 4 and 8 near-equal channel
//! ranges. Slice j is the producer with the weight / bias rows of its range
//! (new constants, folded here at compile time), the local ops on that
//! slice (their per-channel constants sliced the same way), and then
//!
//! - **placement**: the slices joined by a concatenation over the channels,
//!   an alternative of the chain's last local op (lowering writes each
//!   slice straight into its part of the concatenation); or
//! - **accumulation**: a consumer convolution (group 1) over input-channel
//!   range j (its weight columns of the range, its bias on slice 0 only),
//!   the partial sums added in slice order, the consumer's activation
//!   applied once after the sum.
//!
//! Either alternative computes what the unsplit chain computes, never
//! with more multiply-accumulates. Placement is exact for every type.
//! Accumulation changes float summation order (the sum over input
//! channels is taken range by range, then the ranges' partial sums are
//! added), within rounding of the unsplit result; int8 consumers would need
//! int32 partial sums, which no op has yet, so quantized chains are only
//! split by placement (bit-exact).
//!
//! The rules fire once (their results are not split again) and only for
//! lowering with a memory goal (`lower::chsplit`); the cost extraction
//! never prefers them, memory-aware extraction ([`crate::egraph::memextract`])
//! picks each class's alternative with the planner in the loop.

use std::sync::Arc;

use egg::{Id, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use nnc_ir::op::{BinaryOp, ConcatAttrs};
use nnc_ir::{Op, Tensor};

use super::{B, Build, EG, Rw};
use crate::egraph::analysis::TensorAnalysis;
use crate::egraph::lang::TLang;

/// Slice counts tried.
pub const FACTORS: [usize; 3] = [2, 4, 8];
/// Longest run of channel-local ops followed.
const MAX_LOCALS: usize = 8;

/// How slices are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// Concatenated over the channels.
    Place,
    /// Partial sums of the consumer added.
    Accumulate,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Place => "place",
            SplitKind::Accumulate => "accumulate",
        }
    }
}

/// A sliced alternative the rules added: `node` (in `class`) joins `k`
/// slices of the chain whose source names are `names`.
#[derive(Clone, Debug)]
pub struct SplitAlt {
    pub class: Id,
    pub node: TLang,
    pub k: usize,
    pub kind: SplitKind,
    pub names: Vec<String>,
    /// Bytes of the widest intermediate of the chain, unsplit.
    pub bytes: usize,
}

/// Matches every class holding an `op` node (the appliers read the node).
#[derive(Debug)]
struct OpSearcher(Symbol);

impl Searcher<TLang, TensorAnalysis> for OpSearcher {
    fn search_eclass_with_limit(
        &self,
        eg: &EG,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TLang>> {
        let hit = limit > 0
            && !eg[eclass].data.sliced
            && eg[eclass]
                .nodes
                .iter()
                .any(|n| matches!(n, TLang::Op(s, _) if *s == self.0));
        hit.then(|| SearchMatches {
            eclass,
            substs: vec![Subst::with_capacity(0)],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// Matches every class holding an op node.
#[derive(Debug)]
struct AnyOp;

impl Searcher<TLang, TensorAnalysis> for AnyOp {
    fn search_eclass_with_limit(
        &self,
        eg: &EG,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TLang>> {
        let hit = limit > 0
            && !eg[eclass].data.sliced
            && eg[eclass].nodes.iter().any(|n| matches!(n, TLang::Op(..)));
        hit.then(|| SearchMatches {
            eclass,
            substs: vec![Subst::with_capacity(0)],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// The channel-split rules.
pub fn rules() -> Vec<Rw> {
    vec![
        Rewrite::new(
            "chsplit-accumulate",
            OpSearcher(Symbol::from("conv")),
            Build(|b: &mut B<'_>, class: Id| accumulate(b, class)),
        )
        .expect("valid rule"),
        Rewrite::new(
            "chsplit-place",
            AnyOp,
            Build(|b: &mut B<'_>, class: Id| place(b, class)),
        )
        .expect("valid rule"),
    ]
}

/// One op of a chain: the op, its operands (the data input first, `None`
/// for the data input of the producer's slices to fill in).
#[derive(Clone, Debug)]
struct Link {
    op: Op,
    /// The operand classes; index 0 is the data input.
    operands: Vec<Id>,
    class: Id,
}

/// The decoded op nodes of `class` (named `op` if given) with their
/// operand classes.
fn nodes_of(b: &mut B<'_>, class: Id, op: Option<&str>) -> Vec<(Op, Vec<Id>)> {
    if b.data(class).value().is_some() || b.data(class).sliced {
        return vec![];
    }
    let nodes: Vec<TLang> = b.eg[class].nodes.clone();
    let mut v = Vec::new();
    for n in nodes {
        if let TLang::Op(s, ch) = &n {
            if op.is_some_and(|o| o != s.as_str()) || s.as_str() == crate::egraph::lang::OUT {
                continue;
            }
            let Some(decoded) = b.op(s.as_str(), ch[0]) else {
                continue;
            };
            let ops: Vec<Id> = ch[1..].iter().map(|c| b.eg.find(*c)).collect();
            v.push((decoded, ops));
        }
    }
    v
}

/// Channels of a rank-4 NCHW class.
fn channels(b: &B<'_>, class: Id) -> Option<usize> {
    let t = b.ty(class)?;
    (t.dims.len() == 4).then(|| t.dims[1])
}

/// Whether `op` over `operands` is channel-local on a C-channel input.
fn is_local(b: &B<'_>, op: &Op, operands: &[Id], c: usize) -> bool {
    let konst = |i: usize| {
        operands
            .get(i)
            .is_some_and(|&x| b.value(x).is_some() || b.is_none(x))
    };
    match op {
        Op::Unary(_) | Op::Requant(_) => operands.len() == 1,
        Op::Pool(_) => operands.len() == 1,
        Op::Lut => operands.len() == 2 && konst(1),
        Op::Conv(a) => {
            a.group == c
                && c > 1
                && operands.len() == 3
                && konst(1)
                && konst(2)
                && b.value(operands[1])
                    .is_some_and(|w| w.rank() == 4 && w.dims()[0] == c && w.dims()[1] == 1)
        }
        Op::QConv(a) => {
            a.conv.group == c
                && c > 1
                && operands.len() == 5
                && (1..5).all(konst)
                && b.value(operands[1])
                    .is_some_and(|w| w.rank() == 4 && w.dims()[0] == c && w.dims()[1] == 1)
        }
        Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div) => {
            operands.len() == 2
                && b.value(operands[0]).is_none()
                && b.value(operands[1])
                    .is_some_and(|t| channel_axis(&t, c).is_some())
        }
        _ => false,
    }
}

/// The axis of `t` that holds the channels when it broadcasts against an
/// NCHW tensor with `c` channels: `Some(None)` for a scalar, `None` when it
/// is not per-channel.
fn channel_axis(t: &Tensor, c: usize) -> Option<Option<usize>> {
    if t.len() == 1 {
        return Some(None);
    }
    let r = t.rank();
    if !(3..=4).contains(&r) {
        return None;
    }
    let ax = r - 3;
    let ok = t
        .dims()
        .iter()
        .enumerate()
        .all(|(i, &d)| if i == ax { d == c } else { d == 1 });
    ok.then_some(Some(ax))
}

/// Whether `op` produces output channels independently (group 1).
fn is_producer(b: &B<'_>, op: &Op, operands: &[Id]) -> bool {
    let konst = |i: usize| {
        operands
            .get(i)
            .is_some_and(|&x| b.value(x).is_some() || b.is_none(x))
    };
    match op {
        Op::Conv(a) => a.group == 1 && operands.len() == 3 && konst(1) && konst(2),
        Op::QConv(a) => a.conv.group == 1 && operands.len() == 5 && (1..5).all(konst),
        _ => false,
    }
}

/// The chain that ends at `class` (its last op first): channel-local ops
/// down to a producer. With `local_top`, `class` itself must be a local op.
fn chain(b: &mut B<'_>, class: Id, local_top: bool) -> Option<Vec<Link>> {
    let mut links = Vec::new();
    let mut cur = class;
    loop {
        let c = channels(b, cur)?;
        let nodes = nodes_of(b, cur, None);
        let local = nodes
            .iter()
            .position(|(op, ins)| links.len() < MAX_LOCALS && is_local(b, op, ins, c));
        let producer = nodes.iter().position(|(op, ins)| is_producer(b, op, ins));
        let (pick, is_prod) = match (local, producer) {
            (Some(i), _) => (i, false),
            (None, Some(i)) if !(local_top && links.is_empty()) => (i, true),
            _ => return None,
        };
        let (op, operands) = nodes.into_iter().nth(pick)?;
        if is_prod {
            links.push(Link {
                op,
                operands,
                class: cur,
            });
            return Some(links);
        }
        let next = operands[0];
        links.push(Link {
            op,
            operands,
            class: cur,
        });
        cur = next;
    }
}

/// Elements `lo..hi` of axis `axis` of `t`.
fn slice(t: &Tensor, axis: usize, lo: usize, hi: usize) -> Option<Tensor> {
    let d = t.dims();
    let outer: usize = d[..axis].iter().product();
    let inner: usize = d[axis + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * (hi - lo) * inner);
    for o in 0..outer {
        for k in lo..hi {
            let base = (o * d[axis] + k) * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut dims = d.to_vec();
    dims[axis] = hi - lo;
    Tensor::new(dims, t.data().gather(&idx)).ok()
}

/// A constant operand restricted to channels `lo..hi` along `axis` (kept
/// whole when it holds one value).
fn konst_slice(b: &mut B<'_>, id: Id, axis: Option<usize>, lo: usize, hi: usize) -> Option<Id> {
    if b.is_none(id) {
        return Some(id);
    }
    let t: Arc<Tensor> = b.value(id)?;
    match axis {
        Some(ax) if t.len() > 1 => {
            let s = slice(&t, ax, lo, hi)?;
            Some(b.konst(s))
        }
        _ => Some(id),
    }
}

/// Channels `lo..hi` of `link` applied to `x` (already that slice).
fn slice_link(b: &mut B<'_>, link: &Link, x: Id, lo: usize, hi: usize) -> Option<Id> {
    let c = channels(b, link.class)?;
    let mut op = link.op.clone();
    let mut ins = vec![x];
    match &mut op {
        Op::Conv(a) if a.group > 1 => a.group = hi - lo,
        Op::QConv(a) if a.conv.group > 1 => a.conv.group = hi - lo,
        _ => {}
    }
    for &o in &link.operands[1..] {
        let s = match &link.op {
            // Weights, bias, multipliers and shifts per output channel.
            Op::Conv(_) | Op::QConv(_) => konst_slice(b, o, Some(0), lo, hi)?,
            Op::Binary(_) => {
                let t = b.value(o)?;
                konst_slice(b, o, channel_axis(&t, c)?, lo, hi)?
            }
            _ => o,
        };
        ins.push(s);
    }
    let id = b.add(&op, &ins)?;
    let name = b.data(link.class).name.clone().unwrap_or_default();
    let d = &mut b.eg[id].data;
    d.sliced = true;
    if d.name.is_none() {
        d.name = Some(format!("{name}/ch{lo}-{hi}"));
    }
    Some(id)
}

/// Slice `lo..hi` of the whole chain (links last op first).
fn slice_chain(b: &mut B<'_>, links: &[Link], lo: usize, hi: usize) -> Option<Id> {
    let (producer, locals) = links.split_last()?;
    let mut x = slice_link(b, producer, producer.operands[0], lo, hi)?;
    for l in locals.iter().rev() {
        x = slice_link(b, l, x, lo, hi)?;
    }
    Some(x)
}

/// Names a class the rules built, unless it has a name.
fn name(b: &mut B<'_>, id: Id, n: String) {
    let d = &mut b.eg[id].data;
    if d.name.is_none() {
        d.name = Some(n);
    }
}

/// Near-equal ranges of `c` channels in `k` parts.
pub fn ranges(c: usize, k: usize) -> Vec<(usize, usize)> {
    (0..k).map(|j| (j * c / k, (j + 1) * c / k)).collect()
}

fn names(b: &B<'_>, links: &[Link], extra: Option<Id>) -> Vec<String> {
    links
        .iter()
        .rev()
        .map(|l| l.class)
        .chain(extra)
        .map(|c| b.data(c).name.clone().unwrap_or_default())
        .collect()
}

fn widest(b: &B<'_>, links: &[Link]) -> usize {
    links
        .iter()
        .filter_map(|l| b.ty(l.class).map(|t| t.bytes()))
        .max()
        .unwrap_or(0)
}

fn record(
    b: &mut B<'_>,
    class: Id,
    node: Id,
    k: usize,
    kind: SplitKind,
    names: Vec<String>,
    bytes: usize,
) {
    // Already an alternative of the class (a rule that fired again).
    if b.eg.find(class) == b.eg.find(node) {
        return;
    }
    // The alternative's node: the class `node` was built as holds one.
    let Some(n) = b.eg[node].nodes.first().cloned() else {
        return;
    };
    b.eg.analysis.splits.push(SplitAlt {
        class,
        node: n,
        k,
        kind,
        names,
        bytes,
    });
}

/// Placement alternatives for the chain that ends at `class` (a local op).
fn place(b: &mut B<'_>, class: Id) -> Option<Id> {
    let links = chain(b, class, true)?;
    if links.len() < 2 {
        return None;
    }
    let c = channels(b, class)?;
    let (nm, bytes) = (names(b, &links, None), widest(b, &links));
    let mut last = None;
    for k in FACTORS.into_iter().filter(|&k| 2 * k <= c) {
        let mut parts = Vec::with_capacity(k);
        for (lo, hi) in ranges(c, k) {
            parts.push(slice_chain(b, &links, lo, hi)?);
        }
        let cat = b.add(&Op::Concat(ConcatAttrs { axis: 1 }), &parts)?;
        offer(
            b,
            class,
            cat,
            (k, SplitKind::Place),
            (&nm, bytes),
            &mut last,
        )?;
    }
    last
}

/// Offers `alt`, an alternative built for `class` (split `k` ways, of
/// `kind`, over the ops `names` whose widest value is `bytes`): `None`
/// when its types are not the class's (the applier gives up), else
/// records it and keeps it in `last`, merging the previous one. Every
/// alternative but the last is merged here; the last is returned for the
/// applier to merge.
fn offer(
    b: &mut B<'_>,
    class: Id,
    alt: Id,
    (k, kind): (usize, SplitKind),
    (names, bytes): (&[String], usize),
    last: &mut Option<Id>,
) -> Option<()> {
    if b.eg[alt].data.types != b.eg[class].data.types {
        return None;
    }
    record(b, class, alt, k, kind, names.to_vec(), bytes);
    if let Some(prev) = last.replace(alt) {
        b.eg.union(class, prev);
    }
    Some(())
}

/// Accumulation alternatives for the consumer convolution `class`.
fn accumulate(b: &mut B<'_>, class: Id) -> Option<Id> {
    let (op, operands) = nodes_of(b, class, Some("conv")).into_iter().next()?;
    let Op::Conv(attrs) = &op else {
        return None;
    };
    if attrs.group != 1 || operands.len() != 3 || b.value(operands[0]).is_some() {
        return None;
    }
    let w2 = b.value(operands[1])?;
    let bias = operands[2];
    if !(b.is_none(bias) || b.value(bias).is_some()) {
        return None;
    }
    let y = operands[0];
    let links = chain(b, y, false)?;
    // Float only: int8 partial sums would need int32 values.
    if !b.ty(y)?.dtype.is_float() {
        return None;
    }
    let c = channels(b, y)?;
    let mut partial = attrs.clone();
    partial.act = None;
    let (nm, bytes) = (names(b, &links, Some(class)), widest(b, &links));
    let mut last = None;
    for k in FACTORS.into_iter().filter(|&k| 2 * k <= c) {
        let mut acc: Option<Id> = None;
        for (j, (lo, hi)) in ranges(c, k).into_iter().enumerate() {
            let xj = slice_chain(b, &links, lo, hi)?;
            let wj = slice(&w2, 1, lo, hi)?;
            let wj = b.konst(wj);
            let bj = if j == 0 { bias } else { b.none() };
            let pj = b.add(&Op::Conv(partial.clone()), &[xj, wj, bj])?;
            name(
                b,
                pj,
                format!("{}/ch{lo}-{hi}", nm.last().map_or("", String::as_str)),
            );
            acc = Some(match acc {
                None => pj,
                Some(a) => {
                    let s = b.add(&Op::Binary(BinaryOp::Add), &[a, pj])?;
                    name(
                        b,
                        s,
                        format!("{}/sum{j}", nm.last().map_or("", String::as_str)),
                    );
                    s
                }
            });
        }
        let mut out = acc?;
        if let Some(u) = &attrs.act {
            out = b.add(&Op::Unary(*u), &[out])?;
        }
        offer(
            b,
            class,
            out,
            (k, SplitKind::Accumulate),
            (&nm, bytes),
            &mut last,
        )?;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egraph::rules::Group;
    use crate::egraph::rules::testing::{operands, saturate};

    const PLACE: &str = "graph @t(v0 \"x\": f32[1,2,4,4]) -> (\"y\": f32[1,8,4,4]) {
    c1 = const f32[8,2,1,1] [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]
    c2 = const f32[8] [1,2,3,4,5,6,7,8]
    v3 = conv v0, c1, c2 {stride=[1,1] pad=[0,0,0,0] dilation=[1,1]} : f32[1,8,4,4]
    v4 = relu v3 : f32[1,8,4,4]
    return v4
}";

    /// relu(conv(x)) gains concat(relu(conv_j(x))) for k = 2 and 4, each
    /// slice a convolution with its weight rows.
    #[test]
    fn a_chain_gets_placed_slices() {
        let (eg, roots) = saturate(PLACE, &[Group::ChSplit]);
        let cats = operands(&eg, roots[0], "concat");
        let ks: Vec<usize> = cats.iter().map(Vec::len).collect();
        assert_eq!(ks, vec![2, 4], "{cats:?}");
        for part in &cats[0] {
            let t = eg[*part].data.ty().unwrap();
            assert_eq!(t.dims, vec![1, 4, 4, 4]);
            let relu = operands(&eg, *part, "relu");
            let conv = operands(&eg, relu[0][0], "conv");
            let w = eg[conv[0][1]].data.value().unwrap();
            assert_eq!(w.dims(), &[4, 2, 1, 1]);
        }
        let splits = &eg.analysis.splits;
        assert_eq!(splits.len(), 2);
        assert!(splits.iter().all(|s| s.kind == SplitKind::Place));
    }

    /// conv1x1(relu(dw(conv(x)))) gains sums of partial consumer
    /// convolutions, the bias on the first only.
    #[test]
    fn a_chain_gets_accumulated_slices() {
        let src = "graph @t(v0 \"x\": f32[1,2,4,4]) -> (\"y\": f32[1,3,4,4]) {
    c1 = const f32[4,2,1,1] [1,2,3,4,5,6,7,8]
    c2 = const f32[4,1,3,3] [1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9]
    c3 = const f32[3,4,1,1] [1,2,3,4,5,6,7,8,9,10,11,12]
    c4 = const f32[3] [1,2,3]
    v5 = conv v0, c1 {stride=[1,1] pad=[0,0,0,0] dilation=[1,1]} : f32[1,4,4,4]
    v6 = conv v5, c2 {stride=[1,1] pad=[1,1,1,1] dilation=[1,1] group=4} : f32[1,4,4,4]
    v7 = relu v6 : f32[1,4,4,4]
    v8 = conv v7, c3, c4 {stride=[1,1] pad=[0,0,0,0] dilation=[1,1]} : f32[1,3,4,4]
    return v8
}";
        let (eg, roots) = saturate(src, &[Group::ChSplit]);
        let adds = operands(&eg, roots[0], "add");
        assert_eq!(adds.len(), 1, "k = 2 only (4 channels)");
        let convs = |c: Id| operands(&eg, c, "conv");
        let (a, p1) = (adds[0][0], adds[0][1]);
        let p0 = convs(a)[0].clone();
        let p1 = convs(p1)[0].clone();
        // Bias once: on slice 0.
        assert!(eg[p0[2]].data.value().is_some());
        assert_eq!(eg[p1[2]].data.kind, crate::egraph::analysis::Kind::None);
        let w1 = eg[p1[1]].data.value().unwrap();
        assert_eq!(w1.dims(), &[3, 2, 1, 1]);
        assert_eq!(w1.to_f64(), vec![3.0, 4.0, 7.0, 8.0, 11.0, 12.0]);
        let s = &eg.analysis.splits;
        assert!(
            s.iter()
                .any(|s| s.kind == SplitKind::Accumulate && s.k == 2)
        );
    }

    /// A chain with a cross-channel op in the middle is not split.
    #[test]
    fn cross_channel_ops_end_chains() {
        let src = "graph @t(v0 \"x\": f32[1,2,4,4]) -> (\"y\": f32[1,8,4,4]) {
    c1 = const f32[8,2,1,1] [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]
    v3 = conv v0, c1 {stride=[1,1] pad=[0,0,0,0] dilation=[1,1]} : f32[1,8,4,4]
    v4 = softmax v3 {axis=1} : f32[1,8,4,4]
    v5 = relu v4 : f32[1,8,4,4]
    return v5
}";
        let (eg, roots) = saturate(src, &[Group::ChSplit]);
        assert!(operands(&eg, roots[0], "concat").is_empty());
        assert!(eg.analysis.splits.is_empty());
    }
}
