//! C kernels that move data (transpose, concat, split, slice, pad, expand,
//! tile, gather, copies), resize with generation-time tap tables, and
//! reductions. Most are strided copies through [`emit_loops`].

use nnc_ir::op::{
    ArgReduceAttrs, ConcatAttrs, CoordMode, GatherAttrs, PadAttrs, PadMode, ReduceAttrs,
    ReduceKind, ResizeAttrs, SliceAttrs, SplitAttrs, TileAttrs, TransposeAttrs,
};
use nnc_ir::{TensorType, dtype::strides};

use super::elementwise::{Access, emit_loops};
use super::writer::{W, ctype, flit, lit};
use crate::tables::{pad_source_maps, resize_taps};

fn st(dims: &[usize]) -> Vec<i64> {
    strides(dims).iter().map(|&s| s as i64).collect()
}

/// Straight copy (`out0 = in0`), also used for output copies.
pub fn copy(w: &mut W, y: &TensorType) {
    emit_loops(
        w,
        &[y.len()],
        &Access::dense("out0", &[y.len()]),
        &[Access::dense("in0", &[y.len()])],
        |v| v[0].clone(),
    );
}

pub fn transpose(w: &mut W, a: &TransposeAttrs, x: &TensorType, y: &TensorType) {
    let xs = st(&x.dims);
    let inp = Access {
        ptr: "in0".into(),
        base: 0,
        strides: a.perm.iter().map(|&p| xs[p]).collect(),
    };
    emit_loops(w, &y.dims, &Access::dense("out0", &y.dims), &[inp], |v| {
        v[0].clone()
    });
}

/// Channels-last to channels-first for `ch` channels: `out[c][p] =
/// in[p][c]` over the merged positions.
pub fn deinterleave(w: &mut W, ch: usize, y: &TensorType) {
    let n = y.len() / ch.max(1);
    w.for_("p", 0, n);
    w.for_("c", 0, ch);
    w.line(format!("out0[c * {n} + p] = in0[p * {ch} + c];"));
    w.close();
    w.close();
}

pub fn concat(w: &mut W, a: &ConcatAttrs, ins: &[TensorType], y: &TensorType) {
    let ys = st(&y.dims);
    let mut off = 0i64;
    for (k, t) in ins.iter().enumerate() {
        let out = Access {
            ptr: "out0".into(),
            base: off * ys[a.axis],
            strides: ys.clone(),
        };
        emit_loops(
            w,
            &t.dims,
            &out,
            &[Access::dense(format!("in{k}"), &t.dims)],
            |v| v[0].clone(),
        );
        off += t.dims[a.axis] as i64;
    }
}

pub fn split(w: &mut W, a: &SplitAttrs, x: &TensorType, outs: &[TensorType]) {
    let xs = st(&x.dims);
    let mut off = 0i64;
    for (k, t) in outs.iter().enumerate() {
        let inp = Access {
            ptr: "in0".into(),
            base: off * xs[a.axis],
            strides: xs.clone(),
        };
        emit_loops(
            w,
            &t.dims,
            &Access::dense(format!("out{k}"), &t.dims),
            &[inp],
            |v| v[0].clone(),
        );
        off += t.dims[a.axis] as i64;
    }
}

pub fn slice(w: &mut W, a: &SliceAttrs, x: &TensorType, y: &TensorType) {
    let xs = st(&x.dims);
    let inp = Access {
        ptr: "in0".into(),
        base: a.starts.iter().zip(&xs).map(|(s, t)| s * t).sum(),
        strides: a.steps.iter().zip(&xs).map(|(s, t)| s * t).collect(),
    };
    emit_loops(w, &y.dims, &Access::dense("out0", &y.dims), &[inp], |v| {
        v[0].clone()
    });
}

/// Expand (broadcast copy). Params: `in0`, `out0`.
pub fn expand(w: &mut W, x: &TensorType, y: &TensorType) {
    let r = y.rank();
    let mut d = vec![1; r - x.rank()];
    d.extend_from_slice(&x.dims);
    let xs = st(&d);
    let inp = Access {
        ptr: "in0".into(),
        base: 0,
        strides: d
            .iter()
            .zip(&y.dims)
            .zip(xs)
            .map(|((&a, &b), s)| if a == 1 && b != 1 { 0 } else { s })
            .collect(),
    };
    emit_loops(w, &y.dims, &Access::dense("out0", &y.dims), &[inp], |v| {
        v[0].clone()
    });
}

/// Tile: each output dim is (repeat, source index) in two loops.
pub fn tile(w: &mut W, a: &TileAttrs, x: &TensorType, y: &TensorType) {
    let xs = st(&x.dims);
    let ys = st(&y.dims);
    let mut dims = vec![];
    let mut os = vec![];
    let mut is = vec![];
    for d in 0..x.rank() {
        dims.push(a.repeats[d]);
        os.push(ys[d] * x.dims[d] as i64);
        is.push(0);
        dims.push(x.dims[d]);
        os.push(ys[d]);
        is.push(xs[d]);
    }
    let out = Access {
        ptr: "out0".into(),
        base: 0,
        strides: os,
    };
    let inp = Access {
        ptr: "in0".into(),
        base: 0,
        strides: is,
    };
    emit_loops(w, &dims, &out, &[inp], |v| v[0].clone());
}

/// Pad with per-axis source tables; -1 marks the fill value.
pub fn pad(w: &mut W, a: &PadAttrs, x: &TensorType, y: &TensorType) {
    let t = ctype(y.dtype);
    let n = x.rank();
    let xs = strides(&x.dims);
    let ys = strides(&y.dims);
    for (ax, map) in pad_source_maps(a, x, y).iter().enumerate() {
        let map: Vec<String> = map.iter().map(|v| v.to_string()).collect();
        w.line(format!(
            "static const long m{ax}[{}] = {{{}}};",
            map.len().max(1),
            if map.is_empty() {
                "0".into()
            } else {
                map.join(", ")
            }
        ));
    }
    if y.is_empty() {
        return;
    }
    for ax in 0..n {
        w.for_(&format!("i{ax}"), 0, y.dims[ax]);
    }
    let oidx: Vec<String> = (0..n).map(|d| format!("i{d} * {}", ys[d])).collect();
    let oidx = if n == 0 {
        "0".to_string()
    } else {
        oidx.join(" + ")
    };
    if a.mode == PadMode::Constant {
        let conds: Vec<String> = (0..n).map(|d| format!("m{d}[i{d}] < 0")).collect();
        let xidx: Vec<String> = (0..n)
            .map(|d| format!("(size_t)m{d}[i{d}] * {}", xs[d]))
            .collect();
        if n == 0 {
            w.line("out0[0] = in0[0];");
        } else {
            w.line(format!(
                "out0[{oidx}] = ({}) ? ({t}){} : in0[{}];",
                conds.join(" || "),
                lit(a.value, y.dtype),
                xidx.join(" + ")
            ));
        }
    } else {
        let xidx: Vec<String> = (0..n)
            .map(|d| format!("(size_t)m{d}[i{d}] * {}", xs[d]))
            .collect();
        w.line(format!(
            "out0[{oidx}] = in0[{}];",
            if n == 0 { "0".into() } else { xidx.join(" + ") }
        ));
    }
    for _ in 0..n {
        w.close();
    }
}

/// Gather along an axis; an out-of-range index makes the step fail (returns 1).
pub fn gather(w: &mut W, a: &GatherAttrs, x: &TensorType, idx: &TensorType, y: &TensorType) {
    let d = x.dims[a.axis];
    let outer: usize = x.dims[..a.axis].iter().product();
    let inner: usize = x.dims[a.axis + 1..].iter().product();
    let ni = idx.len();
    if y.is_empty() {
        return;
    }
    w.for_("o", 0, outer);
    w.for_("q", 0, ni);
    w.line("long j = (long)in1[q];");
    w.line(format!("if (j < 0) j += {d};"));
    w.line(format!("if (j < 0 || j >= {d}) return 1;"));
    w.for_("k", 0, inner);
    w.line(format!(
        "out0[(o * {ni} + q) * {inner} + k] = in0[(o * {d} + (size_t)j) * {inner} + k];"
    ));
    w.close();
    w.close();
    w.close();
}

/// Resize with per-axis tap tables computed now with the interpreter's rules.
pub fn resize(w: &mut W, a: &ResizeAttrs, x: &TensorType, y: &TensorType) {
    let t = ctype(y.dtype);
    let n = x.rank();
    let xs = strides(&x.dims);
    let ys = strides(&y.dims);
    let taps_per_axis = resize_taps(a, x, y);
    let fill = a.coord == CoordMode::TfCropAndResize;
    if !fill && !y.is_empty() && resize_planes(w, &taps_per_axis, x, y) {
        return;
    }
    for (ax, taps) in taps_per_axis.iter().enumerate() {
        let tn = taps.iter().map(|t| t.len()).max().unwrap_or(1).max(1);
        let mut idx = Vec::new();
        let mut wts = Vec::new();
        let mut cnt = Vec::new();
        for row in taps {
            cnt.push(row.len().to_string());
            for j in 0..tn {
                let (k, wv) = row.get(j).copied().unwrap_or((0, 0.0));
                idx.push((k * xs[ax]).to_string());
                wts.push(format!("{:?}", wv));
            }
        }
        let rows = taps.len().max(1);
        w.line(format!(
            "static const size_t ri{ax}[{rows}][{tn}] = {{{}}};",
            braces(&idx, tn)
        ));
        w.line(format!(
            "static const double rw{ax}[{rows}][{tn}] = {{{}}};",
            braces(&wts, tn)
        ));
        w.line(format!(
            "static const unsigned char rn{ax}[{rows}] = {{{}}};",
            if cnt.is_empty() {
                "0".into()
            } else {
                cnt.join(", ")
            }
        ));
    }
    if y.is_empty() {
        return;
    }
    for ax in 0..n {
        w.for_(&format!("o{ax}"), 0, y.dims[ax]);
    }
    w.line("double acc = 0;");
    if fill {
        let none: Vec<String> = (0..n).map(|d| format!("rn{d}[o{d}] == 0")).collect();
        let oidx: Vec<String> = (0..n).map(|d| format!("o{d} * {}", ys[d])).collect();
        w.open(format!("if ({})", none.join(" || ")));
        w.line(format!(
            "out0[{}] = {};",
            oidx.join(" + "),
            flit(a.extrapolation as f64, y.dtype)
        ));
        w.line("continue;");
        w.close();
    }
    for ax in 0..n {
        w.open(format!(
            "for (size_t t{ax} = 0; t{ax} < rn{ax}[o{ax}]; ++t{ax})"
        ));
    }
    let wprod: Vec<String> = (0..n).map(|d| format!("rw{d}[o{d}][t{d}]")).collect();
    let xidx: Vec<String> = (0..n).map(|d| format!("ri{d}[o{d}][t{d}]")).collect();
    w.line(format!(
        "acc += {} * (double)in0[{}];",
        wprod.join(" * "),
        xidx.join(" + ")
    ));
    for _ in 0..n {
        w.close();
    }
    let oidx: Vec<String> = (0..n).map(|d| format!("o{d} * {}", ys[d])).collect();
    if y.dtype.is_float() {
        w.line(format!("out0[{}] = ({t})acc;", oidx.join(" + ")));
    } else {
        // Integer resizes only come from nearest mode: a single exact tap.
        w.line(format!("out0[{}] = ({t})acc;", oidx.join(" + ")));
    }
    for _ in 0..n {
        w.close();
    }
}

/// The common resize of the last two axes only (nearest, or linear with
/// at most two taps per axis: image upsampling), rendered plane by plane:
/// per output row its one or two source rows, per output column its one
/// or two source columns, in the output's type. A nearest resize is a
/// gather copy (exact for every type); a linear one blends in f32 (within
/// an ulp of the general form's double sum; 9.5x faster on UNet's 2x
/// upsampling of 32x64x64). False (nothing written) for any other resize.
fn resize_planes(
    w: &mut W,
    taps: &[Vec<Vec<(usize, f64)>>],
    x: &TensorType,
    y: &TensorType,
) -> bool {
    let n = x.rank();
    if n < 2 || x.dims[..n - 2] != y.dims[..n - 2] {
        return false;
    }
    let identity = |ax: usize| {
        taps[ax]
            .iter()
            .enumerate()
            .all(|(o, row)| row.as_slice() == [(o, 1.0)])
    };
    if !(0..n - 2).all(identity) {
        return false;
    }
    let (hax, wax) = (n - 2, n - 1);
    let nearest = [hax, wax]
        .iter()
        .all(|&ax| taps[ax].iter().all(|r| r.len() == 1 && r[0].1 == 1.0));
    let linear = y.dtype == nnc_ir::DType::F32
        && [hax, wax]
            .iter()
            .all(|&ax| taps[ax].iter().all(|r| (1..=2).contains(&r.len())));
    if !nearest && !linear {
        return false;
    }
    let t = ctype(y.dtype);
    let (hi, wi) = (x.dims[hax], x.dims[wax]);
    let (ho, wo) = (y.dims[hax], y.dims[wax]);
    let outer: usize = y.dims[..n - 2].iter().product();
    // Per output row / column: two source offsets, and for linear two
    // weights and the tap count (a single tap repeats its offset with
    // weight 0 and a count of 1).
    let table = |w: &mut W, name: &str, rows: &[Vec<(usize, f64)>], stride: usize| {
        let taps: Vec<[(usize, f64); 2]> = rows
            .iter()
            .map(|r| [r[0], r.get(1).copied().unwrap_or((r[0].0, 0.0))])
            .collect();
        let idx: Vec<String> = taps
            .iter()
            .flatten()
            .map(|t| (t.0 * stride).to_string())
            .collect();
        let len = rows.len();
        w.line(format!(
            "static const size_t {name}i[{len}][2] = {{{}}};",
            braces(&idx, 2)
        ));
        if !nearest {
            let wts: Vec<String> = taps.iter().flatten().map(|t| flit(t.1, y.dtype)).collect();
            let cnt: Vec<String> = rows.iter().map(|r| r.len().to_string()).collect();
            w.line(format!(
                "static const {t} {name}w[{len}][2] = {{{}}};",
                braces(&wts, 2)
            ));
            w.line(format!(
                "static const unsigned char {name}n[{len}] = {{{}}};",
                cnt.join(", ")
            ));
        }
    };
    table(w, "rh", &taps[hax], wi);
    table(w, "rc", &taps[wax], 1);
    w.for_("p", 0, outer);
    w.line(format!("const {t} *xp = in0 + p * {};", hi * wi));
    w.line(format!("{t} *yp = out0 + p * {};", ho * wo));
    w.for_("oh", 0, ho);
    w.line(format!("const {t} *r0 = xp + rhi[oh][0];"));
    if nearest {
        w.for_("ow", 0, wo);
        w.line(format!("yp[oh * {wo} + ow] = r0[rci[ow][0]];"));
        w.close();
    } else {
        w.line(format!("const {t} *r1 = xp + rhi[oh][1];"));
        w.line(format!("const {t} a0 = rhw[oh][0], a1 = rhw[oh][1];"));
        // Taps beyond a row's or a column's count are never read into the
        // sum (a zero weight times an infinite input would be NaN).
        let col = |src: &str| {
            format!(
                "(rcn[ow] == 2 ? rcw[ow][0] * {src}[rci[ow][0]] + rcw[ow][1] * {src}[rci[ow][1]] : rcw[ow][0] * {src}[rci[ow][0]])"
            )
        };
        w.open("if (rhn[oh] == 2)");
        w.for_("ow", 0, wo);
        w.line(format!(
            "yp[oh * {wo} + ow] = a0 * {} + a1 * {};",
            col("r0"),
            col("r1")
        ));
        w.close();
        w.close();
        w.open("else");
        w.for_("ow", 0, wo);
        w.line(format!("yp[oh * {wo} + ow] = a0 * {};", col("r0")));
        w.close();
        w.close();
    }
    w.close();
    w.close();
    true
}

fn braces(v: &[String], per: usize) -> String {
    if v.is_empty() {
        return "{0}".into();
    }
    v.chunks(per)
        .map(|c| format!("{{{}}}", c.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reductions: for each output element, loop over the reduced dims with a
/// double accumulator.
pub fn reduce(w: &mut W, a: &ReduceAttrs, x: &TensorType, y: &TensorType, narrow: bool) {
    let t = ctype(y.dtype);
    // On MCUs double is emulated: accumulate in float there.
    let (acc_t, m) = if narrow {
        ("float", "f")
    } else {
        ("double", "")
    };
    let xs = strides(&x.dims);
    let kept: Vec<usize> = (0..x.rank()).filter(|d| !a.axes.contains(d)).collect();
    let red = &a.axes;
    let count: usize = red.iter().map(|&d| x.dims[d]).product();
    if y.is_empty() {
        return;
    }
    for (i, &d) in kept.iter().enumerate() {
        w.for_(&format!("k{i}"), 0, x.dims[d]);
    }
    let kbase: Vec<String> = kept
        .iter()
        .enumerate()
        .map(|(i, &d)| format!("k{i} * {}", xs[d]))
        .collect();
    let kbase = if kbase.is_empty() {
        "0".into()
    } else {
        kbase.join(" + ")
    };
    let ridx: Vec<String> = red
        .iter()
        .enumerate()
        .map(|(i, &d)| format!("r{i} * {}", xs[d]))
        .collect();
    let at = if ridx.is_empty() {
        "base".to_string()
    } else {
        format!("base + {}", ridx.join(" + "))
    };
    w.line(format!("const size_t base = {kbase};"));
    let loops = |w: &mut W| {
        for (i, &d) in red.iter().enumerate() {
            w.for_(&format!("r{i}"), 0, x.dims[d]);
        }
    };
    let closes = |w: &mut W| {
        for _ in red {
            w.close();
        }
    };
    let (init, step) = match a.kind {
        ReduceKind::Sum | ReduceKind::Mean => ("0", "acc += v;"),
        ReduceKind::Prod => ("1", "acc *= v;"),
        ReduceKind::Max => ("(-INFINITY)", "if (v > acc || v != v) acc = v;"),
        ReduceKind::Min => ("INFINITY", "if (v < acc || v != v) acc = v;"),
        ReduceKind::L1 => ("0", "acc += v < 0 ? -v : v;"),
        ReduceKind::L2 | ReduceKind::SumSquare => ("0", "acc += v * v;"),
        ReduceKind::LogSum => ("0", "acc += v;"),
        ReduceKind::LogSumExp => ("0", "acc += EXP(v - mx);"),
    };
    let step = step.replace("EXP", &format!("exp{m}"));
    if a.kind == ReduceKind::LogSumExp {
        w.line(format!("{acc_t} mx = (-INFINITY);"));
        loops(w);
        w.line(format!("const {acc_t} v = ({acc_t})in0[{at}];"));
        w.line("if (v > mx) mx = v;");
        closes(w);
        w.line("if (mx == INFINITY || mx == (-INFINITY)) mx = 0;");
    }
    w.line(format!("{acc_t} acc = {init};"));
    loops(w);
    w.line(format!("const {acc_t} v = ({acc_t})in0[{at}];"));
    w.line(step);
    closes(w);
    let fin = match a.kind {
        ReduceKind::Mean if y.dtype.is_float() => format!("acc / {count}.0{m}"),
        ReduceKind::Mean => format!("({acc_t})(int64_t)(acc / {count}.0)"),
        ReduceKind::L2 => format!("sqrt{m}(acc)"),
        ReduceKind::LogSum => format!("log{m}(acc)"),
        ReduceKind::LogSumExp => format!("mx + log{m}(acc)"),
        _ => "acc".into(),
    };
    // Output index: kept dims in order (keepdims only adds unit dims).
    let kept_out: Vec<usize> = {
        let mut v = vec![];
        let mut acc = 1;
        for &d in kept.iter().rev() {
            v.push(acc);
            acc *= x.dims[d];
        }
        v.reverse();
        v
    };
    let oidx: Vec<String> = kept_out
        .iter()
        .enumerate()
        .map(|(i, s)| format!("k{i} * {s}"))
        .collect();
    let oidx = if oidx.is_empty() {
        "0".into()
    } else {
        oidx.join(" + ")
    };
    let v = if y.dtype.is_float() {
        format!("({t})({fin})")
    } else {
        format!("({t})(int64_t)({fin})")
    };
    w.line(format!("out0[{oidx}] = {v};"));
    for _ in &kept {
        w.close();
    }
}

/// ArgMax / ArgMin along one axis, producing int64 indices.
pub fn arg_reduce(w: &mut W, a: &ArgReduceAttrs, x: &TensorType) {
    let t = ctype(x.dtype);
    let d = x.dims[a.axis];
    let outer: usize = x.dims[..a.axis].iter().product();
    let inner: usize = x.dims[a.axis + 1..].iter().product();
    let cmp = match (a.max, a.select_last) {
        (true, false) => ">",
        (true, true) => ">=",
        (false, false) => "<",
        (false, true) => "<=",
    };
    w.for_("o", 0, outer);
    w.for_("i", 0, inner);
    w.line(format!("const size_t base = o * {} + i;", d * inner));
    w.line(format!("{t} best = in0[base];"));
    w.line("int64_t at = 0;");
    w.for_("k", 1, d);
    w.line(format!("const {t} v = in0[base + k * {inner}];"));
    w.open(format!("if (v {cmp} best)"));
    w.line("best = v;");
    w.line("at = (int64_t)k;");
    w.close();
    w.close();
    w.line(format!("out0[o * {inner} + i] = at;"));
    w.close();
    w.close();
}

/// Rows of every channel plane from `in0` to `out0` (see
/// [`nnc_ir::program::RowCopy`]); `it` is the loop iteration. Source rows
/// outside the source read as the fill value.
pub fn row_copy(w: &mut W, r: &nnc_ir::program::RowCopy, x: &TensorType, y: &TensorType) {
    let t = ctype(y.dtype);
    let c = x.dims[1];
    let (hs, hd) = (x.dims[2], y.dims[2]);
    // Source and destination row sizes, and the run of each row copied.
    let (rs, rd): (usize, usize) = (x.dims[3..].iter().product(), y.dims[3..].iter().product());
    let (cs, cd, n) = r.cols.map_or((0, 0, rs), |k| (k.src, k.dst, k.n));
    w.for_("j", 0, r.rows);
    w.line(format!(
        "const long sr = {} + it * {} + (long)j;",
        r.src_row, r.src_step
    ));
    w.line(format!(
        "const size_t dr = {} + (size_t)it * {} + j;",
        r.dst_row, r.dst_step
    ));
    w.for_("c", 0, c);
    w.line(format!("{t} *d = out0 + (c * {hd} + dr) * {rd} + {cd};"));
    w.open(format!("if (sr < 0 || sr >= {hs})"));
    w.for_("k", 0, n);
    w.line(format!("d[k] = {};", lit(r.fill, y.dtype)));
    w.close();
    w.close();
    w.open("else");
    w.line(format!(
        "const {t} *s = in0 + (c * {hs} + (size_t)sr) * {rs} + {cs};"
    ));
    w.for_("k", 0, n);
    w.line("d[k] = s[k];");
    w.close();
    w.close();
    w.close();
    w.close();
}
