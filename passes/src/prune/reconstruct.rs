//! Post-training reconstruction after structured pruning: the layers that
//! lost input channels are refitted by least squares so that, on
//! calibration inputs, their outputs in the pruned graph come as close as
//! possible to their outputs in the original one (the layer-wise problem
//! of optimal brain compression, solved exactly with normal equations
//! rather than by its greedy weight-by-weight updates, since the pruning
//! itself is already decided). Layers are refitted in order, each on the
//! inputs the pruned graph computes with the layers before it already
//! refitted, so that later layers correct what earlier ones left.

use std::collections::HashMap;
use std::sync::Arc;

use nnc_ir::{DType, Graph, NodeId, Op, Tensor, Value};

use crate::pass::{PassError, Result};

/// Calibration inputs when none are given: this many seeded random sets.
pub const DEFAULT_CALIB: u64 = 64;

/// A layer to refit: its node, the value it reads, and its geometry.
struct Layer {
    id: NodeId,
    x: Value,
    /// Features per output position (input channels x taps, plus 1 for
    /// the bias) and output channels.
    d: usize,
    m: usize,
    bias: bool,
    /// Output channel `o` of the pruned layer is channel `keep[o]` of the
    /// original.
    keep: Vec<usize>,
    gram: Vec<f64>,
    rhs: Vec<f64>,
}

/// Float layers of `pruned` that read fewer input channels than in `orig`.
fn layers(orig: &Graph, pruned: &Graph, removal: &super::edit::Removal) -> Vec<Layer> {
    let mut v = vec![];
    let order = pruned.topo_order().unwrap_or_default();
    for id in order {
        if !orig.contains(id) {
            continue;
        }
        let n = pruned.node(id);
        let ins = pruned.node_inputs(id);
        let fits = match &n.op {
            Op::Conv(a) => a.group == 1 && a.act.is_none() && pruned.value_type(ins[0]).rank() == 4,
            Op::Gemm(a) => !a.trans_a && a.act.is_none() && a.alpha == 1.0 && a.beta == 1.0,
            Op::MatMul => pruned.value_type(ins[0]).rank() == 2,
            _ => false,
        };
        if !fits
            || pruned
                .const_value(ins[1])
                .is_none_or(|w| w.dtype() != DType::F32)
        {
            continue;
        }
        let before = orig.value_type(orig.node_inputs(id)[0]).dims[1];
        let after = pruned.value_type(ins[0]).dims[1];
        if after >= before {
            continue;
        }
        let w = pruned.value_type(ins[1]);
        let bias = ins.get(2).is_some_and(|b| {
            pruned
                .const_value(*b)
                .is_some_and(|t| t.dtype() == DType::F32 && t.len() == n.outputs[0].dims[1])
        });
        let (d0, m) = match &n.op {
            Op::Conv(_) => (w.dims[1..].iter().product::<usize>(), w.dims[0]),
            Op::Gemm(a) if a.trans_b => (w.dims[1], w.dims[0]),
            _ => (w.dims[0], w.dims[1]),
        };
        let d = d0 + bias as usize;
        let m0 = orig.node(id).outputs[0].dims[1];
        let gone = removal.get(&Value::new(id, 0)).cloned().unwrap_or_default();
        let keep: Vec<usize> = (0..m0).filter(|c| !gone.contains(c)).collect();
        if keep.len() != m {
            continue;
        }
        v.push(Layer {
            id,
            x: ins[0],
            d,
            m,
            bias,
            keep,
            gram: vec![0.0; d * d],
            rhs: vec![0.0; d * m],
        });
    }
    v
}

/// Rows of the layer's regression for one input: one row per output
/// position (features) and the target outputs (one per output channel).
fn rows(g: &Graph, l: &Layer, x: &Tensor, mut f: impl FnMut(&[f64], usize)) {
    let n = g.node(l.id);
    let xv = x.to_f64();
    let mut row = vec![0.0; l.d];
    match &n.op {
        Op::Conv(a) => {
            let w = g.value_type(g.node_inputs(l.id)[1]);
            let (c, h, wd) = (x.dims()[1], x.dims()[2], x.dims()[3]);
            let (kh, kw) = (w.dims[2], w.dims[3]);
            let out = &n.outputs[0].dims;
            let (oh, ow) = (out[2], out[3]);
            for b in 0..x.dims()[0] {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut i = 0;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * a.strides[0] + ky * a.dilations[0]) as isize
                                        - a.pads[0] as isize;
                                    let ix = (ox * a.strides[1] + kx * a.dilations[1]) as isize
                                        - a.pads[1] as isize;
                                    row[i] = if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < h
                                        && (ix as usize) < wd
                                    {
                                        xv[((b * c + ci) * h + iy as usize) * wd + ix as usize]
                                    } else {
                                        0.0
                                    };
                                    i += 1;
                                }
                            }
                        }
                        if l.bias {
                            row[i] = 1.0;
                        }
                        f(&row, (b * oh + oy) * ow + ox);
                    }
                }
            }
        }
        _ => {
            let k = x.dims()[1];
            for r in 0..x.dims()[0] {
                row[..k].copy_from_slice(&xv[r * k..(r + 1) * k]);
                if l.bias {
                    row[k] = 1.0;
                }
                f(&row, r);
            }
        }
    }
}

/// Target output of position `p`, channel `o`, in an NCHW or `[N, M]`
/// output whose positions number `pos` per image.
fn target(y: &[f64], dims: &[usize], p: usize, o: usize) -> f64 {
    let m = dims[1];
    let inner: usize = dims[2..].iter().product();
    let (b, q) = (p / inner.max(1), p % inner.max(1));
    y[(b * m + o) * inner + q]
}

/// Solves `(G + lambda I) X = R` for symmetric positive semidefinite `G`
/// (`d x d`) and `R` (`d x m`) by Cholesky; `None` if it is singular.
fn solve(gram: &[f64], rhs: &[f64], d: usize, m: usize) -> Option<Vec<f64>> {
    let tr: f64 = (0..d).map(|i| gram[i * d + i]).sum();
    let lambda = 1e-6 * tr / d as f64 + 1e-12;
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = gram[i * d + j] + if i == j { lambda } else { 0.0 };
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut x = rhs.to_vec();
    for c in 0..m {
        for i in 0..d {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= l[i * d + k] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = x[i * m + c];
            for k in i + 1..d {
                s -= l[k * d + i] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * d + i];
        }
    }
    Some(x)
}

/// Refits the layers of `pruned` that lost input channels so that their
/// outputs match those of `orig` on `calib` (seeded random inputs when
/// empty). `removal` says which output channels of each layer went.
/// Returns how many layers were refitted.
pub fn refit(
    orig: &Graph,
    pruned: &mut Graph,
    calib: &[Vec<Tensor>],
    removal: &super::edit::Removal,
) -> Result<usize> {
    let ls = layers(orig, pruned, removal);
    if ls.is_empty() {
        return Ok(0);
    }
    let sets: Vec<Vec<Tensor>> = if calib.is_empty() {
        (1..=DEFAULT_CALIB)
            .map(|s| crate::check::random_inputs(orig, s))
            .collect()
    } else {
        calib.to_vec()
    };
    // The original outputs of every layer, per set.
    let want_y: HashMap<NodeId, usize> = ls.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
    let mut ys: Vec<Vec<Option<Arc<Tensor>>>> = vec![];
    for inputs in &sets {
        let mut y: Vec<Option<Arc<Tensor>>> = vec![None; ls.len()];
        nnc_ir::interp::run_traced(orig, inputs, |id, outs| {
            if let Some(&i) = want_y.get(&id) {
                y[i] = Some(outs[0].clone());
            }
        })?;
        ys.push(y);
    }
    let mut fitted = 0;
    for (i, mut l) in ls.into_iter().enumerate() {
        for (inputs, y) in sets.iter().zip(&ys) {
            let mut x: Option<Arc<Tensor>> = None;
            nnc_ir::interp::run_traced(pruned, inputs, |id, outs| {
                if id == l.x.node {
                    x = Some(outs[l.x.port as usize].clone());
                }
            })?;
            let (Some(x), Some(y)) = (x, &y[i]) else {
                continue;
            };
            accumulate(pruned, &mut l, &x, y);
        }
        if install(pruned, &mut l)? {
            fitted += 1;
        }
    }
    pruned.remove_dead();
    pruned.compact_consts();
    Ok(fitted)
}

/// Adds one calibration input's rows to the normal equations.
fn accumulate(g: &Graph, l: &mut Layer, x: &Tensor, y: &Tensor) {
    let yv = y.to_f64();
    let ydims = y.dims().to_vec();
    let (d, m) = (l.d, l.m);
    let mut gram = std::mem::take(&mut l.gram);
    let mut rhs = std::mem::take(&mut l.rhs);
    let keep = l.keep.clone();
    rows(g, l, x, |row, p| {
        for a in 0..d {
            let ra = row[a];
            if ra == 0.0 {
                continue;
            }
            for b in 0..=a {
                gram[a * d + b] += ra * row[b];
            }
            for (o, &k) in keep.iter().enumerate() {
                rhs[a * m + o] += ra * target(&yv, &ydims, p, k);
            }
        }
    });
    l.gram = gram;
    l.rhs = rhs;
}

/// Solves for the layer's weights and puts them in the graph; false when
/// the system is singular (the layer is kept).
fn install(pruned: &mut Graph, l: &mut Layer) -> Result<bool> {
    let d = l.d;
    for a in 0..d {
        for b in a + 1..d {
            l.gram[a * d + b] = l.gram[b * d + a];
        }
    }
    let Some(sol) = solve(&l.gram, &l.rhs, d, l.m) else {
        log::info!(
            "reconstruct: `{}` is singular; kept",
            pruned.node(l.id).name
        );
        return Ok(false);
    };
    let ins = pruned.node_inputs(l.id);
    let wt = pruned.value_type(ins[1]).clone();
    let nf = d - l.bias as usize;
    let mut w = vec![0.0; wt.len()];
    match &pruned.node(l.id).op {
        Op::Conv(_) => {
            for o in 0..l.m {
                for f in 0..nf {
                    w[o * nf + f] = sol[f * l.m + o];
                }
            }
        }
        Op::Gemm(a) if a.trans_b => {
            for o in 0..l.m {
                for f in 0..nf {
                    w[o * nf + f] = sol[f * l.m + o];
                }
            }
        }
        _ => w[..nf * l.m].copy_from_slice(&sol[..nf * l.m]),
    }
    let name = pruned.node(ins[1].node).name.clone();
    let mut new_ins = ins.clone();
    let wt = Tensor::from_f64(DType::F32, wt.dims.clone(), w).map_err(PassError::Ir)?;
    new_ins[1] = pruned.add_const(wt, name);
    if l.bias {
        let bname = pruned.node(ins[2].node).name.clone();
        let bt = pruned.value_type(ins[2]).clone();
        let b: Vec<f64> = (0..l.m).map(|o| sol[nf * l.m + o]).collect();
        let bt = Tensor::from_f64(DType::F32, bt.dims.clone(), b).map_err(PassError::Ir)?;
        new_ins[2] = pruned.add_const(bt, bname);
    }
    pruned.set_node_inputs(l.id, &new_ins);
    Ok(true)
}
