//! C kernels for the normalizations: Softmax / LogSoftmax along one axis
//! and local response normalization across channels.

use nnc_ir::TensorType;
use nnc_ir::op::{LrnAttrs, SoftmaxAttrs};

use super::writer::{W, ctype, flit, fsuf, lit};

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
    // `ch < 0` on a size_t is a -Wtype-limits error (size 1 and 2).
    if lo == 0 {
        w.line("const size_t c0 = ch;");
    } else {
        w.line(format!("const size_t c0 = ch < {lo} ? 0 : ch - {lo};"));
    }
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
