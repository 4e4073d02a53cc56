//! Choosing what to prune: channel importance (L1 norm of the filters
//! producing a channel, or its BatchNorm scale), per layer or globally,
//! and magnitude pruning of single weights.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nnc_ir::{Graph, NodeId, Op, Tensor, Value};

use super::channels::{Channels, editable, real_const};
use super::{LayerPrune, Method, PruneReport, PruneSpec};
use crate::pass::Result;

/// A source layer's weights as real values, with their dimensions.
type Reals = HashMap<NodeId, (Vec<usize>, Vec<f64>)>;

/// The weights of filter `o` of a source layer, as real values. The layer's
/// weights are converted once and kept in `cache`.
fn filter(g: &Graph, id: NodeId, o: usize, cache: &mut Reals) -> Vec<f64> {
    let (d, v) = cache.entry(id).or_insert_with(|| {
        let w = real_const(g, g.node_inputs(id)[1]).expect("source weights");
        (w.dims().to_vec(), w.to_f64())
    });
    match &g.node(id).op {
        Op::Conv(_) => {
            let k: usize = d[1..].iter().product();
            v[o * k..(o + 1) * k].to_vec()
        }
        Op::Gemm(a) if a.trans_b => v[o * d[1]..(o + 1) * d[1]].to_vec(),
        _ => (0..d[0]).map(|k| v[k * d[1] + o]).collect(),
    }
}

/// Groups of prunable channel classes, keyed by the layers (source
/// nodes) producing them; each class as (root slot, importance,
/// importance normalized by the filter size), in no particular order.
pub type Groups = BTreeMap<Vec<NodeId>, Vec<(usize, f64, f64)>>;

/// The importance of every prunable class (not pinned, produced by a
/// layer) by `method`, grouped by the layers producing it, and notes for
/// the report.
pub fn rank(g: &Graph, ch: &Channels, method: Method) -> (Groups, Vec<String>) {
    let mut notes = vec![];
    let mut cache = HashMap::new();
    let mut fallback = 0usize;
    let mut groups: Groups = BTreeMap::new();
    let mut pinned = 0usize;
    for (root, slots) in ch.classes() {
        let src = ch.sources(&slots);
        if src.is_empty() {
            continue;
        }
        if ch.is_pinned(&slots) {
            pinned += 1;
            continue;
        }
        let mut key: Vec<NodeId> = src.iter().map(|s| s.node).collect();
        key.sort();
        key.dedup();
        let norms = ch.norms(&slots);
        let (imp, norm) = match method {
            Method::Slimming if !norms.is_empty() => {
                let s = norms
                    .iter()
                    .map(|&(bn, c)| {
                        let gamma = g.const_value(g.node_inputs(bn)[1]).expect("checked");
                        gamma.to_f64()[c].abs()
                    })
                    .fold(0.0, f64::max);
                (s, s)
            }
            Method::Slimming => {
                fallback += 1;
                let (mut sq, mut n) = (0.0, 0usize);
                for s in &src {
                    let f = filter(g, s.node, s.channel, &mut cache);
                    sq += f.iter().map(|x| x * x).sum::<f64>();
                    n += f.len();
                }
                (sq.sqrt(), (sq / n.max(1) as f64).sqrt())
            }
            _ => {
                let (mut l1, mut n) = (0.0, 0usize);
                for s in &src {
                    let f = filter(g, s.node, s.channel, &mut cache);
                    l1 += f.iter().map(|x| x.abs()).sum::<f64>();
                    n += f.len();
                }
                (l1, l1 / n.max(1) as f64)
            }
        };
        groups.entry(key).or_default().push((root, imp, norm));
    }
    if fallback > 0 {
        notes.push(format!(
            "slimming: {fallback} channel(s) have no BatchNormalization (the exporter folded it \
             into the convolution, scaling each filter by gamma / sqrt(var + eps)); they are \
             ranked by the L2 norm of their filters instead"
        ));
    }
    if pinned > 0 {
        notes.push(format!(
            "{pinned} channel(s) cannot be pruned (they reach a graph input or output, or an op \
             the pruner does not edit)"
        ));
    }
    (groups, notes)
}

/// The channels to remove for `spec`, and notes for the report.
pub fn choose(g: &Graph, ch: &Channels, spec: &PruneSpec) -> (BTreeSet<usize>, Vec<String>) {
    let (mut groups, notes) = rank(g, ch, spec.method);
    let mut chosen = BTreeSet::new();
    for v in groups.values_mut() {
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    }
    if spec.global {
        let total: usize = groups.values().map(Vec::len).sum();
        let want = (spec.ratio * total as f64).floor() as usize;
        let mut all: Vec<(f64, usize, &Vec<NodeId>)> = groups
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |c| (c.2, c.0, k)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut left: HashMap<&Vec<NodeId>, usize> =
            groups.iter().map(|(k, v)| (k, v.len())).collect();
        for (_, root, k) in all {
            if chosen.len() == want {
                break;
            }
            let l = left.get_mut(k).expect("group");
            if *l > 1 {
                *l -= 1;
                chosen.insert(root);
            }
        }
    } else {
        for v in groups.values() {
            let k = ((spec.ratio * v.len() as f64).floor() as usize).min(v.len() - 1);
            chosen.extend(v.iter().take(k).map(|c| c.0));
        }
    }
    (chosen, notes)
}

/// The convolutions and matrix products whose weights magnitude pruning
/// may zero.
fn weighted(g: &Graph) -> Vec<(NodeId, Value)> {
    let mut v = vec![];
    for id in g.node_ids() {
        if matches!(g.node(id).op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul) {
            let w = g.node_inputs(id)[1];
            if editable(g, w) {
                v.push((id, w));
            }
        }
    }
    v
}

/// Zeroes the `spec.ratio` smallest weights of each layer (or of all
/// layers together), keeping the tensors dense.
pub fn magnitude(g: &mut Graph, spec: &PruneSpec) -> Result<PruneReport> {
    let layers = weighted(g);
    let reals: Vec<Vec<f64>> = layers
        .iter()
        .map(|(_, w)| real_const(g, *w).expect("editable").to_f64())
        .collect();
    let thr_of = |mags: &mut Vec<f64>| -> (f64, usize) {
        let k = (spec.ratio * mags.len() as f64).floor() as usize;
        if k == 0 {
            return (f64::NEG_INFINITY, 0);
        }
        mags.sort_by(f64::total_cmp);
        (mags[k - 1], k)
    };
    let global = if spec.global {
        let mut all: Vec<f64> = reals.iter().flatten().map(|x| x.abs()).collect();
        Some(thr_of(&mut all).0)
    } else {
        None
    };
    let mut rep = PruneReport {
        pass: "magnitude".into(),
        ..Default::default()
    };
    for ((id, w), real) in layers.iter().zip(&reals) {
        let (thr, mut budget) = match global {
            Some(t) => (t, usize::MAX),
            None => thr_of(&mut real.iter().map(|x| x.abs()).collect()),
        };
        let mut zero = vec![false; real.len()];
        // Strictly below the threshold first, then ties, up to the count.
        for pass in 0..2 {
            for (i, x) in real.iter().enumerate() {
                let a = x.abs();
                let hit = if pass == 0 { a < thr } else { a == thr };
                if hit && !zero[i] && budget > 0 && *x != 0.0 {
                    zero[i] = true;
                    budget = budget.saturating_sub(1);
                }
            }
        }
        let nz_before = real.iter().filter(|x| **x != 0.0).count();
        let k = zero.iter().filter(|z| **z).count();
        if k == 0 {
            continue;
        }
        let nw = zeroed(g, *w, &zero)?;
        let mut ins = g.node_inputs(*id);
        ins[1] = nw;
        g.set_node_inputs(*id, &ins);
        rep.weights_zeroed += k;
        rep.layers.push(LayerPrune {
            layer: super::edit::producer_name(g, *id),
            before: nz_before,
            after: nz_before - k,
        });
    }
    g.remove_dead();
    g.compact_consts();
    rep.notes.push(
        "the weights stay dense: nnc has no sparse kernel measured faster or smaller than the \
         dense ones, so the zeros take the same flash and MACs (prune-dead removes filters that \
         became entirely zero)"
            .into(),
    );
    Ok(rep)
}

/// A copy of weight `w` (a constant or a dequantize of one) with the
/// marked elements zero (the zero point for quantized weights).
fn zeroed(g: &mut Graph, w: Value, zero: &[bool]) -> Result<Value> {
    if let Some(t) = g.const_value(w).cloned() {
        let v: Vec<f64> = t
            .to_f64()
            .iter()
            .zip(zero)
            .map(|(x, z)| if *z { 0.0 } else { *x })
            .collect();
        let t = Tensor::from_f64(t.dtype(), t.dims().to_vec(), v)?;
        let name = g.node(w.node).name.clone();
        return Ok(g.add_const(t, name));
    }
    let n = g.node(w.node).clone();
    let Op::Dequantize(a) = &n.op else {
        unreachable!("editable weights are constants or dequantized constants")
    };
    let ins = g.node_inputs(w.node);
    let q = g.const_value(ins[0]).cloned().expect("editable");
    let zp: Vec<i64> = match ins.get(2) {
        Some(z) => g.const_value(*z).expect("editable").to_i64(),
        None => vec![0],
    };
    let d = q.dims().to_vec();
    let inner: usize = d[a.axis + 1..].iter().product();
    let v: Vec<i64> = q
        .to_i64()
        .iter()
        .enumerate()
        .map(|(i, x)| {
            if zero[i] {
                zp[if zp.len() == 1 {
                    0
                } else {
                    (i / inner) % d[a.axis]
                }]
            } else {
                *x
            }
        })
        .collect();
    let t = Tensor::from_i64(q.dtype(), d, v)?;
    let name = g.node(ins[0].node).name.clone();
    let mut new_ins = ins.clone();
    new_ins[0] = g.add_const(t, name);
    Ok(g.add1(n.op.clone(), &new_ins, n.name.clone())?)
}
