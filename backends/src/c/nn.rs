//! C kernels for the compute-heavy ops: convolution (any spatial rank,
//! groups, dilation, padding, fused bias and activation), transposed
//! convolution, Gemm, MatMul, pooling, Softmax and LRN. Shapes are
//! constants; padding is handled by per-kernel-tap valid ranges computed at
//! generation time, so inner loops have no bounds checks.

use nnc_ir::op::{
    ConvAttrs, ConvTransposeAttrs, GemmAttrs, LrnAttrs, PoolAttrs, PoolKind, SoftmaxAttrs, UnaryOp,
};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::elementwise::unary_expr;
use super::writer::{W, ctype, flit, fsuf, lit};
use crate::tables::{scatter_range, tap_range};

fn table(w: &mut W, name: &str, v: &[usize]) {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    w.line(format!(
        "static const size_t {name}[{}] = {{{}}};",
        v.len().max(1),
        if items.is_empty() {
            "0".into()
        } else {
            items.join(", ")
        }
    ));
}

fn act_loop(w: &mut W, act: &Option<UnaryOp>, ptr: &str, n: usize, d: DType) {
    if let Some(a) = act {
        w.for_("p", 0, n);
        let e = unary_expr(a, &format!("{ptr}[p]"), d);
        w.line(format!("{ptr}[p] = {e};"));
        w.close();
    }
}

/// Convolution. Params: `in0` x, `in1` w, optional `in2` bias, `out0` y.
pub fn conv(w: &mut W, a: &ConvAttrs, x: &TensorType, wt: &TensorType, bias: bool, y: &TensorType) {
    let geo = (&a.strides[..], &a.dilations[..], &a.pads[..]);
    conv_general(w, Dir::Gather, geo, a.group, x, wt, bias, y, |w, osz| {
        act_loop(w, &a.act, "yo", osz, y.dtype)
    });
}

/// Transposed convolution (scatter form). Params as for [`conv`].
pub fn conv_transpose(
    w: &mut W,
    a: &ConvTransposeAttrs,
    x: &TensorType,
    wt: &TensorType,
    bias: bool,
    y: &TensorType,
) {
    let geo = (&a.strides[..], &a.dilations[..], &a.pads[..]);
    conv_general(w, Dir::Scatter, geo, a.group, x, wt, bias, y, |_, _| {});
}

/// Convolution (`Gather`: each output reads a window of the input) or
/// transposed convolution (`Scatter`: each input adds a window to the
/// output).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Gather,
    Scatter,
}

/// The loops both directions share: image, output channel (filled with its
/// bias), input channel of its group, every tap, then the positions the tap
/// reaches (from generation-time tables, so no bounds checks); `epilogue`
/// runs per output channel after the accumulation.
#[allow(clippy::too_many_arguments)]
fn conv_general(
    w: &mut W,
    dir: Dir,
    (strides_, dilations, pads): (&[usize], &[usize], &[usize]),
    group: usize,
    x: &TensorType,
    wt: &TensorType,
    bias: bool,
    y: &TensorType,
    mut epilogue: impl FnMut(&mut W, usize),
) {
    let t = ctype(y.dtype);
    let n = x.rank() - 2;
    let (batch, c, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let cg = c / group;
    let mg = m / group;
    let in_sp = &x.dims[2..];
    let out_sp = &y.dims[2..];
    let k_sp = &wt.dims[2..];
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let ist = strides(in_sp);
    let ost = strides(out_sp);
    let kst = strides(k_sp);
    let pointwise = dir == Dir::Gather
        && k_sp.iter().all(|&k| k == 1)
        && strides_.iter().all(|&s| s == 1)
        && pads.iter().all(|&p| p == 0);
    if !pointwise {
        for d in 0..n {
            let range = match dir {
                Dir::Gather => tap_range,
                Dir::Scatter => scatter_range,
            };
            let (lo, hi): (Vec<usize>, Vec<usize>) = (0..k_sp[d])
                .map(|k| range(k, strides_[d], dilations[d], pads[d], in_sp[d], out_sp[d]))
                .unzip();
            table(w, &format!("lo{d}"), &lo);
            table(w, &format!("hi{d}"), &hi);
        }
    }
    w.for_("n", 0, batch);
    w.for_("o", 0, m);
    match dir {
        Dir::Gather => w.line(format!("const size_t g = o / {mg};")),
        Dir::Scatter => w.line(format!("const size_t g = o / {mg}, oc = o % {mg};")),
    }
    w.line(format!("{t} *yo = out0 + (n * {m} + o) * {osz};"));
    w.for_("p", 0, osz);
    if bias {
        w.line("yo[p] = in2[o];");
    } else {
        w.line(format!("yo[p] = {};", lit(0.0, y.dtype)));
    }
    w.close();
    w.for_("ic", 0, cg);
    w.line(format!("const size_t ci = g * {cg} + ic;"));
    w.line(format!("const {t} *xi = in0 + (n * {c} + ci) * {isz};"));
    // Weights are [M, C/group, K...] for a convolution and
    // [C, M/group, K...] for a transposed one.
    let row = match dir {
        Dir::Gather => format!("o * {cg} + ic"),
        Dir::Scatter => format!("ci * {mg} + oc"),
    };
    w.line(format!("const {t} *wk = in1 + ({row}) * {ksz};"));
    if pointwise {
        w.line(format!("const {t} wv = wk[0];"));
        w.for_("p", 0, osz);
        w.line("yo[p] += wv * xi[p];");
        w.close();
    } else {
        for d in 0..n {
            w.for_(&format!("k{d}"), 0, k_sp[d]);
        }
        let kidx: Vec<String> = (0..n).map(|d| format!("k{d} * {}", kst[d])).collect();
        w.line(format!("const {t} wv = wk[{}];", kidx.join(" + ")));
        for d in 0..n {
            w.open(format!(
                "for (size_t i{d} = lo{d}[k{d}]; i{d} < hi{d}[k{d}]; ++i{d})"
            ));
        }
        // The iterated position indexes one side directly; the other side
        // is at `i * stride + k * dil - pad`.
        let direct =
            |st: &[usize]| -> Vec<String> { (0..n).map(|d| format!("i{d} * {}", st[d])).collect() };
        let windowed = |st: &[usize]| -> Vec<String> {
            (0..n)
                .map(|d| {
                    format!(
                        "(i{d} * {} + k{d} * {} - {}) * {}",
                        strides_[d], dilations[d], pads[d], st[d]
                    )
                })
                .collect()
        };
        let (yidx, xidx) = match dir {
            Dir::Gather => (direct(&ost), windowed(&ist)),
            Dir::Scatter => (windowed(&ost), direct(&ist)),
        };
        w.line(format!(
            "yo[{}] += wv * xi[{}];",
            yidx.join(" + "),
            xidx.join(" + ")
        ));
        for _ in 0..2 * n {
            w.close();
        }
    }
    w.close(); // ic
    epilogue(w, osz);
    w.close(); // o
    w.close(); // n
}

/// Gemm. Params: `in0` A, `in1` B, optional `in2` C, `out0` Y `[M, N]`.
pub fn gemm(w: &mut W, a: &GemmAttrs, at: &TensorType, ct: Option<&TensorType>, y: &TensorType) {
    let t = ctype(y.dtype);
    let (m, nn) = (y.dims[0], y.dims[1]);
    let k = if a.trans_a { at.dims[0] } else { at.dims[1] };
    let aidx = |i: &str, p: &str| {
        if a.trans_a {
            format!("{p} * {m} + {i}")
        } else {
            format!("{i} * {k} + {p}")
        }
    };
    let alpha = flit(a.alpha as f64, y.dtype);
    let beta = flit(a.beta as f64, y.dtype);
    if let Some(ct) = ct {
        // C broadcast to [M, N]: row and column strides.
        let (cs_row, cs_col) = crate::tables::gemm_c_strides(&ct.dims, m, nn);
        w.for_("i", 0, m);
        w.for_("j", 0, nn);
        w.line(format!(
            "out0[i * {nn} + j] = {beta} * in2[i * {cs_row} + j * {cs_col}];"
        ));
        w.close();
        w.close();
    } else {
        w.for_("i", 0, m * nn);
        w.line(format!("out0[i] = {};", lit(0.0, y.dtype)));
        w.close();
    }
    w.for_("i", 0, m);
    w.line(format!("{t} *yr = out0 + i * {nn};"));
    if a.trans_b {
        // B is [N, K]: dot products along contiguous rows.
        w.for_("j", 0, nn);
        w.line(format!("const {t} *br = in1 + j * {k};"));
        w.line(format!("{t} acc = {};", lit(0.0, y.dtype)));
        w.for_("p", 0, k);
        w.line(format!("acc += in0[{}] * br[p];", aidx("i", "p")));
        w.close();
        w.line(format!("yr[j] += {alpha} * acc;"));
        w.close();
    } else {
        w.for_("p", 0, k);
        w.line(format!("const {t} av = {alpha} * in0[{}];", aidx("i", "p")));
        w.line(format!("const {t} *br = in1 + p * {nn};"));
        w.for_("j", 0, nn);
        w.line("yr[j] += av * br[j];");
        w.close();
        w.close();
    }
    act_loop(w, &a.act, "yr", nn, y.dtype);
    w.close();
}

/// MatMul with numpy batching. Params: `in0` A, `in1` B, `out0` Y.
pub fn matmul(w: &mut W, at: &TensorType, bt: &TensorType, y: &TensorType) {
    let t = ctype(y.dtype);
    let mb = crate::tables::matmul_batches(at, bt);
    let (m, k, n) = (mb.m, mb.k, mb.n);
    let nb = mb.a_off.len();
    let int = !y.dtype.is_float();
    let acc_t = if int { "uint64_t" } else { t };
    let list = |v: &[usize]| {
        v.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    w.line(format!(
        "static const size_t aoff[{nb}] = {{{}}};",
        list(&mb.a_off)
    ));
    w.line(format!(
        "static const size_t boff[{nb}] = {{{}}};",
        list(&mb.b_off)
    ));
    w.for_("bi", 0, nb);
    w.line(format!("const {t} *a = in0 + aoff[bi];"));
    w.line(format!("const {t} *b = in1 + boff[bi];"));
    w.line(format!("{t} *yb = out0 + bi * {};", m * n));
    w.for_("i", 0, m);
    if int {
        w.for_("j", 0, n);
        w.line(format!("{acc_t} acc = 0;"));
        w.for_("p", 0, k);
        w.line(format!(
            "acc += (uint64_t)a[i * {k} + p] * (uint64_t)b[p * {n} + j];"
        ));
        w.close();
        w.line(format!("yb[i * {n} + j] = ({t})acc;"));
        w.close();
    } else {
        w.for_("j", 0, n);
        w.line(format!("yb[i * {n} + j] = {};", lit(0.0, y.dtype)));
        w.close();
        w.for_("p", 0, k);
        w.line(format!("const {t} av = a[i * {k} + p];"));
        w.for_("j", 0, n);
        w.line(format!("yb[i * {n} + j] += av * b[p * {n} + j];"));
        w.close();
        w.close();
    }
    w.close();
    w.close();
}

/// Max / average pooling over any spatial rank. Params: `in0`, `out0`.
pub fn pool(w: &mut W, a: &PoolAttrs, x: &TensorType, y: &TensorType) {
    let t = ctype(y.dtype);
    let n = a.kernel.len();
    let in_sp = &x.dims[2..];
    let out_sp = &y.dims[2..];
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ist = strides(in_sp);
    let ost = strides(out_sp);
    let planes = x.dims[0] * x.dims[1];
    w.for_("pl", 0, planes);
    w.line(format!("const {t} *xp = in0 + pl * {isz};"));
    w.line(format!("{t} *yp = out0 + pl * {osz};"));
    for d in 0..n {
        w.for_(&format!("o{d}"), 0, out_sp[d]);
    }
    let init = match a.kind {
        PoolKind::Max if y.dtype.is_float() => "(-INFINITY)".to_string(),
        PoolKind::Max => lit(y.dtype.int_range().expect("int").0 as f64, y.dtype),
        PoolKind::Avg => lit(0.0, y.dtype),
    };
    let acc_t = if y.dtype.is_float() { t } else { "int64_t" };
    w.line(format!("{acc_t} acc = {init};"));
    let avg = a.kind == PoolKind::Avg;
    if avg {
        w.line("long cnt = 0;");
    }
    if a.kind == PoolKind::Avg && a.count_include_pad {
        w.line("long full = 1;");
        for d in 0..n {
            w.open("");
            w.line("long c = 0;");
            w.for_(&format!("k{d}"), 0, a.kernel[d]);
            w.line(format!(
                "const long p = (long)(o{d} * {} + k{d} * {}) - {};",
                a.strides[d], a.dilations[d], a.pads[d]
            ));
            w.line(format!(
                "if (p >= -{} && p < {}) ++c;",
                a.pads[d],
                in_sp[d] + a.pads[n + d]
            ));
            w.close();
            w.line("full *= c;");
            w.close();
        }
    }
    for d in 0..n {
        w.for_(&format!("k{d}"), 0, a.kernel[d]);
        w.line(format!(
            "const long p{d} = (long)(o{d} * {} + k{d} * {}) - {};",
            a.strides[d], a.dilations[d], a.pads[d]
        ));
        w.line(format!("if (p{d} < 0 || p{d} >= {}) continue;", in_sp[d]));
    }
    let xidx: Vec<String> = (0..n)
        .map(|d| format!("(size_t)p{d} * {}", ist[d]))
        .collect();
    w.line(format!("const {t} v = xp[{}];", xidx.join(" + ")));
    match a.kind {
        PoolKind::Max if y.dtype.is_float() => w.line("if (v > acc || v != v) acc = v;"),
        PoolKind::Max => w.line("if (v > acc) acc = v;"),
        PoolKind::Avg => w.line("acc += v;"),
    }
    if avg {
        w.line("++cnt;");
    }
    for _ in 0..n {
        w.close();
    }
    let yidx: Vec<String> = (0..n).map(|d| format!("o{d} * {}", ost[d])).collect();
    let yidx = yidx.join(" + ");
    match a.kind {
        PoolKind::Max => w.line(format!("yp[{yidx}] = ({t})acc;")),
        PoolKind::Avg => {
            let div = if a.count_include_pad { "full" } else { "cnt" };
            w.line(format!(
                "yp[{yidx}] = cnt ? acc / ({t}){div} : {};",
                lit(0.0, y.dtype)
            ));
        }
    }
    for _ in 0..n {
        w.close();
    }
    w.close();
}

/// Global average / max pooling. Params: `in0`, `out0`.
pub fn global_pool(w: &mut W, kind: PoolKind, x: &TensorType) {
    let t = ctype(x.dtype);
    let inner: usize = x.dims[2..].iter().product();
    let planes = x.dims[0] * x.dims[1];
    w.for_("pl", 0, planes);
    w.line(format!("const {t} *xp = in0 + pl * {inner};"));
    match kind {
        PoolKind::Avg => {
            w.line(format!("{t} acc = {};", lit(0.0, x.dtype)));
            w.for_("p", 0, inner);
            w.line("acc += xp[p];");
            w.close();
            w.line(format!("out0[pl] = acc / ({t}){inner};"));
        }
        PoolKind::Max => {
            w.line(format!("{t} acc = (-INFINITY);"));
            w.for_("p", 0, inner);
            w.line("if (xp[p] > acc) acc = xp[p];");
            w.close();
            w.line("out0[pl] = acc;");
        }
    }
    w.close();
}

/// Softmax / LogSoftmax along one axis (safe in place). Params: `in0`, `out0`.
pub fn softmax(w: &mut W, a: &SoftmaxAttrs, x: &TensorType) {
    let t = ctype(x.dtype);
    let f = fsuf(x.dtype);
    let n = x.dims[a.axis];
    let inner: usize = x.dims[a.axis + 1..].iter().product();
    let outer: usize = x.dims[..a.axis].iter().product();
    w.for_("o", 0, outer);
    w.for_("i", 0, inner);
    w.line(format!("const size_t base = o * {} + i;", n * inner));
    w.line(format!("{t} mx = (-INFINITY), s = {};", lit(0.0, x.dtype)));
    w.for_("k", 0, n);
    w.line(format!("const {t} v = in0[base + k * {inner}];"));
    w.line("if (v > mx) mx = v;");
    w.close();
    if a.log {
        w.for_("k", 0, n);
        w.line(format!("s += exp{f}(in0[base + k * {inner}] - mx);"));
        w.close();
        w.line(format!("s = log{f}(s);"));
        w.for_("k", 0, n);
        w.line(format!(
            "out0[base + k * {inner}] = in0[base + k * {inner}] - mx - s;"
        ));
        w.close();
    } else {
        w.for_("k", 0, n);
        w.line(format!(
            "const {t} e = exp{f}(in0[base + k * {inner}] - mx);"
        ));
        w.line(format!("out0[base + k * {inner}] = e;"));
        w.line("s += e;");
        w.close();
        w.for_("k", 0, n);
        w.line(format!("out0[base + k * {inner}] /= s;"));
        w.close();
    }
    w.close();
    w.close();
}

/// Local response normalization across channels. Params: `in0`, `out0`.
pub fn lrn(w: &mut W, a: &LrnAttrs, x: &TensorType) {
    let t = ctype(x.dtype);
    let f = fsuf(x.dtype);
    let c = x.dims[1];
    let inner: usize = x.dims[2..].iter().product();
    let lo = (a.size - 1) / 2;
    let hi = a.size - 1 - lo;
    w.for_("n", 0, x.dims[0]);
    w.for_("ch", 0, c);
    w.line(format!("const size_t c0 = ch < {lo} ? 0 : ch - {lo};"));
    w.line(format!(
        "const size_t c1 = ch + {hi} > {} ? {} : ch + {hi};",
        c - 1,
        c - 1
    ));
    w.for_("i", 0, inner);
    w.line(format!("{t} sq = {};", lit(0.0, x.dtype)));
    w.open("for (size_t k = c0; k <= c1; ++k)");
    w.line(format!("const {t} v = in0[(n * {c} + k) * {inner} + i];"));
    w.line("sq += v * v;");
    w.close();
    w.line(format!("const size_t at = (n * {c} + ch) * {inner} + i;"));
    w.line(format!(
        "out0[at] = in0[at] / pow{f}({} + {} * sq, {});",
        flit(a.bias as f64, x.dtype),
        flit(a.alpha as f64 / a.size as f64, x.dtype),
        flit(a.beta as f64, x.dtype)
    ));
    w.close();
    w.close();
    w.close();
}
