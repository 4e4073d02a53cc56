//! Pooling kernels in C: the direct kernel of any spatial rank, the 2-D
//! row kernel (tiles of output columns with every tap inside the input,
//! checked columns at the borders) and global pooling with a given number
//! of partial results (which fixes the summation order).

use nnc_ir::op::{PoolAttrs, PoolKind};
use nnc_ir::program::{GlobalPool, PoolRows, Window};
use nnc_ir::{TensorType, dtype::strides};

use super::conv::tile_start;
use super::writer::{W, ctype, lit};

/// Max / average pooling over any spatial rank. Params: `in0`, `out0`.
pub(super) fn direct(w: &mut W, a: &PoolAttrs, x: &TensorType, y: &TensorType) {
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
        PoolKind::Avg if !y.dtype.is_float() => {
            // Rounded to nearest, ties away from zero (TFLite).
            let div = if a.count_include_pad { "full" } else { "cnt" };
            w.line(format!(
                "yp[{yidx}] = cnt ? ({t})(acc > 0 ? (acc + {div} / 2) / {div} : (acc - {div} / 2) / {div}) : 0;"
            ));
        }
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

fn list(v: &[usize]) -> String {
    if v.is_empty() {
        return "0".into();
    }
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// 2-D f32 pooling, `W` interior output columns per tile. Params: `in0`,
/// `out0`.
pub(super) fn rows(w: &mut W, k: &PoolRows, a: &PoolAttrs, win: &Window) {
    let [ha, wa] = win.axes[..] else {
        return;
    };
    let max = a.kind == PoolKind::Max;
    // Divisors of an average, per output row and per output column.
    let count = |ax: &nnc_ir::program::Axis| -> Vec<usize> {
        (0..ax.output)
            .map(|o| {
                if a.count_include_pad {
                    ax.padded_taps(o)
                } else {
                    let (lo, hi) = ax.valid_taps(o);
                    hi - lo
                }
            })
            .collect()
    };
    if !max {
        w.line(format!(
            "static const unsigned hcnt[{}] = {{{}}};",
            ha.output.max(1),
            list(&count(&ha))
        ));
        w.line(format!(
            "static const unsigned wcnt[{}] = {{{}}};",
            wa.output.max(1),
            list(&count(&wa))
        ));
    }
    let (isz, osz) = (ha.input * wa.input, ha.output * wa.output);
    let init = if max { "(-INFINITY)" } else { "0.0f" };
    let combine = |acc: &str, v: &str| -> String {
        if max {
            format!("if ({v} > {acc} || {v} != {v}) {acc} = {v};")
        } else {
            format!("{acc} += {v};")
        }
    };
    let finish = |acc: &str, cnt: &str| -> String {
        if max {
            acc.to_string()
        } else {
            format!("({cnt} != 0 ? {acc} / (float)({cnt}) : 0.0f)")
        }
    };
    let (lo, hi) = wa.interior();
    let vw = k.width;
    let tiled = hi - lo >= vw;
    w.for_("pl", 0, win.batch * win.channels);
    w.line(format!("const float *xp = in0 + pl * {isz};"));
    w.line(format!("float *yp = out0 + pl * {osz};"));
    w.for_("oh", 0, ha.output);
    let open_rows = |w: &mut W| {
        w.for_("kh", 0, ha.k);
        w.line(format!(
            "const long ih = (long)(oh * {} + kh * {}) - {};",
            ha.stride, ha.dil, ha.pad
        ));
        w.line(format!("if (ih < 0 || ih >= {}) continue;", ha.input));
    };
    if tiled {
        w.for_("blk", 0, (hi - lo).div_ceil(vw));
        tile_start(w, vw, lo, hi);
        w.line(format!("float acc[{vw}];"));
        w.for_("j", 0, vw);
        w.line(format!("acc[j] = {init};"));
        w.close();
        open_rows(w);
        w.line(format!(
            "const float *xr = xp + (size_t)ih * {} + ow0 * {} - {};",
            wa.input, wa.stride, wa.pad
        ));
        w.for_("kw", 0, wa.k);
        w.for_("j", 0, vw);
        w.line(format!(
            "const float v = xr[kw * {} + j * {}];",
            wa.dil, wa.stride
        ));
        w.line(combine("acc[j]", "v"));
        w.close();
        w.close();
        w.close();
        w.for_("j", 0, vw);
        w.line(format!(
            "yp[oh * {} + ow0 + j] = {};",
            wa.output,
            finish("acc[j]", "hcnt[oh] * wcnt[ow0 + j]")
        ));
        w.close();
        w.close();
    }
    let ranges: Vec<(usize, usize)> = if tiled {
        vec![(0, lo), (hi, wa.output)]
    } else {
        vec![(0, wa.output)]
    };
    for (from, to) in ranges {
        if from >= to {
            continue;
        }
        w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
        w.line(format!("float acc = {init};"));
        open_rows(w);
        w.for_("kw", 0, wa.k);
        w.line(format!(
            "const long iw = (long)(ow * {} + kw * {}) - {};",
            wa.stride, wa.dil, wa.pad
        ));
        w.line(format!("if (iw < 0 || iw >= {}) continue;", wa.input));
        w.line(format!(
            "const float v = xp[(size_t)ih * {} + (size_t)iw];",
            wa.input
        ));
        w.line(combine("acc", "v"));
        w.close();
        w.close();
        w.line(format!(
            "yp[oh * {} + ow] = {};",
            wa.output,
            finish("acc", "hcnt[oh] * wcnt[ow]")
        ));
        w.close();
    }
    w.close(); // oh
    w.close(); // pl
}

/// Global average / max pooling over each plane, with `partials` partial
/// results combined at the end (vectors of four folded together, then
/// their lanes left to right, then the tail). Params: `in0`, `out0`.
pub(super) fn global(w: &mut W, k: &GlobalPool, kind: PoolKind, x: &TensorType) {
    let t = ctype(x.dtype);
    let inner: usize = x.dims[2..].iter().product();
    let planes = x.dims[0] * x.dims[1];
    if !x.dtype.is_float() {
        // Integers: a 64-bit sum or the running maximum, one accumulator
        // (check() allows partials only for f32), the average rounded as
        // TFLite rounds it.
        w.for_("pl", 0, planes);
        w.line(format!("const {t} *xp = in0 + pl * {inner};"));
        match kind {
            _ if inner == 0 => w.line("out0[pl] = 0;"),
            PoolKind::Avg => {
                w.line("int64_t acc = 0;");
                w.for_("p", 0, inner);
                w.line("acc += xp[p];");
                w.close();
                w.line(format!(
                    "out0[pl] = ({t})(acc > 0 ? (acc + {h}) / {inner} : (acc - {h}) / {inner});",
                    h = inner / 2
                ));
            }
            PoolKind::Max => {
                w.line(format!("{t} acc = xp[0];"));
                w.for_("p", 1, inner);
                w.line("if (xp[p] > acc) acc = xp[p];");
                w.close();
                w.line("out0[pl] = acc;");
            }
        }
        w.close();
        return;
    }
    let (init, step) = match kind {
        PoolKind::Avg => (lit(0.0, x.dtype), "{a} += {v};"),
        PoolKind::Max => ("(-INFINITY)".to_string(), "if ({v} > {a}) {a} = {v};"),
    };
    let step = |a: &str, v: &str| step.replace("{a}", a).replace("{v}", v);
    w.for_("pl", 0, planes);
    w.line(format!("const {t} *xp = in0 + pl * {inner};"));
    let pp = k.partials.max(1);
    let head = if pp > 1 { inner / pp * pp } else { 0 };
    if pp > 1 && head > 0 {
        w.line(format!("{t} part[{pp}];"));
        w.for_("j", 0, pp);
        w.line(format!("part[j] = {init};"));
        w.close();
        w.for_("i", 0, inner / pp);
        w.for_("j", 0, pp);
        w.line(step("part[j]", &format!("xp[i * {pp} + j]")));
        w.close();
        w.close();
        // Fold the vectors of four into the first, then its lanes.
        for v in 1..pp / 4 {
            for l in 0..4 {
                w.line(step(&format!("part[{l}]"), &format!("part[{}]", 4 * v + l)));
            }
        }
        w.line(format!("{t} acc = part[0];"));
        for l in 1..4 {
            w.line(step("acc", &format!("part[{l}]")));
        }
    } else {
        w.line(format!("{t} acc = {init};"));
    }
    w.for_("p", head, inner);
    w.line(step("acc", "xp[p]"));
    w.close();
    match kind {
        PoolKind::Avg => w.line(format!("out0[pl] = acc / ({t}){inner};")),
        PoolKind::Max => w.line("out0[pl] = acc;"),
    }
    w.close();
}
