//! Integer kernels in C: quantized convolution and matrix product with an
//! int32 accumulator and the requantizing store, quantized softmax, and
//! the fixed-point helpers they share. The arithmetic is
//! [`nnc_ir::op::qmath`]'s, operation for operation, so the C kernels
//! reproduce the interpreter (and TFLite) bit for bit.

use nnc_ir::op::{QConvAttrs, QGemmAttrs, QParams, QSoftmaxAttrs};
use nnc_ir::program::Step;
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Helpers;
use super::epilogue::Epi;
use super::writer::{W, ctype};

/// Fixed-point helpers, all `static inline` (unused ones cost nothing and
/// draw no warning): single-rounding requantization, saturation to a
/// range, gemmlowp's doubling high multiply and rounding shift, and the
/// reciprocal the softmax divides by.
pub const QMATH_SOURCE: &str = r"static inline int32_t nnc_rq(int32_t acc, int32_t mult, int32_t shift) {
    const int total = 31 - (shift < -31 ? -31 : (shift > 30 ? 30 : shift));
    const int64_t r = ((int64_t)acc * mult + ((int64_t)1 << (total - 1))) >> total;
    return r > INT32_MAX ? INT32_MAX : (r < INT32_MIN ? INT32_MIN : (int32_t)r);
}

static inline int32_t nnc_sat(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

static inline int32_t nnc_wrap32(int64_t v) {
    return (int32_t)(uint32_t)(uint64_t)v;
}

static inline int32_t nnc_srdhm(int32_t a, int32_t b) {
    int64_t ab;
    if (a == b && a == INT32_MIN) return INT32_MAX;
    ab = (int64_t)a * b;
    return (int32_t)((ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)))) / ((int64_t)1 << 31));
}

static inline int32_t nnc_rdpot(int32_t x, int exponent) {
    int32_t mask, rem, th;
    if (exponent <= 0) return x;
    if (exponent > 31) exponent = 31;
    mask = (int32_t)(((int64_t)1 << exponent) - 1);
    rem = x & mask;
    th = (mask >> 1) + (x < 0);
    return (x >> exponent) + (rem > th);
}

static inline int32_t nnc_satshl(int32_t x, int exponent) {
    int32_t th;
    if (exponent <= 0) return nnc_rdpot(x, -exponent);
    th = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > th) return INT32_MAX;
    if (x < -th) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

static inline int32_t nnc_recip(int32_t x, int integer_digits, int *bits_over_unit) {
    int headroom = 0;
    uint32_t u = (uint32_t)x;
    int32_t half, xi;
    int it;
    int64_t sum;
    while (headroom < 32 && !(u & 0x80000000u)) {
        u <<= 1;
        ++headroom;
    }
    *bits_over_unit = integer_digits - headroom;
    xi = (int32_t)(u - 0x80000000u);
    sum = (int64_t)xi + INT32_MAX;
    half = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    {
        int32_t r = nnc_wrap32((int64_t)1515870810 + nnc_srdhm(half, -1010580540));
        for (it = 0; it < 3; ++it) {
            const int32_t one_minus = nnc_wrap32((int64_t)(1 << 29) - nnc_srdhm(half, r));
            r = nnc_wrap32((int64_t)r + nnc_satshl(nnc_srdhm(r, one_minus), 2));
        }
        return nnc_satshl(r, 1);
    }
}

static inline int64_t nnc_iavg(int64_t sum, int64_t count) {
    if (count <= 0) return 0;
    return sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
}
";

/// The requantizing store of an integer kernel: `acc` (an int32 C
/// expression) through the step's epilogue for output channel `ch`.
fn store(st: &Step, epi: &Epi, acc: &str, ch: &str, y: DType) -> String {
    format!("({}){}", ctype(y), epi.store_int(st, acc, ch))
}

fn q_load(v: &str, zp: i32) -> String {
    if zp == 0 {
        format!("(int32_t){v}")
    } else {
        format!("((int32_t){v} - {zp})")
    }
}

/// Quantized convolution of any spatial rank, output-stationary: per
/// output element an int32 accumulator starts at the bias, sums
/// `(x - x_zp) (w - w_zp)` over the taps inside the input (padding reads as
/// the zero point, contributing nothing), and is requantized once.
/// Params: `in0` x, `in1` w, `in2` bias, `in3` multipliers, `in4` shifts.
pub(super) fn qconv_direct(
    w: &mut W,
    st: &Step,
    a: &QConvAttrs,
    x: &TensorType,
    wt: &TensorType,
    y: &TensorType,
    epi: &Epi,
    h: &mut Helpers,
) {
    h.need("nnc_qmath");
    let c = &a.conv;
    let q: &QParams = &a.q;
    let n = x.rank() - 2;
    let (batch, ci, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let (cg, mg) = (ci / c.group, m / c.group);
    let in_sp = &x.dims[2..];
    let out_sp = &y.dims[2..];
    let k_sp = &wt.dims[2..];
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let (ist, ost, kst) = (strides(in_sp), strides(out_sp), strides(k_sp));
    let (tx, tw) = (ctype(x.dtype), ctype(wt.dtype));
    w.for_("n", 0, batch);
    w.for_("o", 0, m);
    w.line(format!("const size_t g = o / {mg};"));
    w.line(format!(
        "{} *yo = out0 + (n * {m} + o) * {osz};",
        ctype(y.dtype)
    ));
    for d in 0..n {
        w.for_(&format!("o{d}"), 0, out_sp[d]);
    }
    w.line(format!("int32_t acc = {};", epi.init_int("o")));
    w.for_("ic", 0, cg);
    w.line(format!(
        "const {tx} *xi = in0 + (n * {ci} + g * {cg} + ic) * {isz};"
    ));
    w.line(format!("const {tw} *wk = in1 + (o * {cg} + ic) * {ksz};"));
    for d in 0..n {
        w.for_(&format!("k{d}"), 0, k_sp[d]);
        w.line(format!(
            "const long p{d} = (long)(o{d} * {} + k{d} * {}) - {};",
            c.strides[d], c.dilations[d], c.pads[d]
        ));
        w.line(format!("if (p{d} < 0 || p{d} >= {}) continue;", in_sp[d]));
    }
    let xidx: Vec<String> = (0..n)
        .map(|d| format!("(size_t)p{d} * {}", ist[d]))
        .collect();
    let kidx: Vec<String> = (0..n).map(|d| format!("k{d} * {}", kst[d])).collect();
    w.line(format!(
        "acc += {} * {};",
        q_load(&format!("xi[{}]", xidx.join(" + ")), q.x_zp),
        q_load(&format!("wk[{}]", kidx.join(" + ")), q.w_zp)
    ));
    for _ in 0..n {
        w.close();
    }
    w.close(); // ic
    let yidx: Vec<String> = (0..n).map(|d| format!("o{d} * {}", ost[d])).collect();
    let yidx = if yidx.is_empty() {
        "0".to_string()
    } else {
        yidx.join(" + ")
    };
    w.line(format!(
        "yo[{yidx}] = {};",
        store(st, epi, "acc", "o", y.dtype)
    ));
    for _ in 0..n {
        w.close();
    }
    w.close(); // o
    w.close(); // n
}

/// Quantized matrix product: `[M, K]` times `[K, N]` (or `[N, K]`), one
/// int32 dot product per output. Params as [`qconv_direct`].
pub(super) fn qgemm_direct(
    w: &mut W,
    st: &Step,
    a: &QGemmAttrs,
    at: &TensorType,
    y: &TensorType,
    epi: &Epi,
    h: &mut Helpers,
) {
    h.need("nnc_qmath");
    let (m, n) = (y.dims[0], y.dims[1]);
    let k = at.dims[1];
    let bidx = if a.trans_b {
        format!("j * {k} + p")
    } else {
        format!("p * {n} + j")
    };
    w.for_("i", 0, m);
    w.for_("j", 0, n);
    w.line(format!("int32_t acc = {};", epi.init_int("j")));
    w.for_("p", 0, k);
    w.line(format!(
        "acc += {} * {};",
        q_load(&format!("in0[i * {k} + p]"), a.q.x_zp),
        q_load(&format!("in1[{bidx}]"), a.q.w_zp)
    ));
    w.close();
    w.line(format!(
        "out0[i * {n} + j] = {};",
        store(st, epi, "acc", "j", y.dtype)
    ));
    w.close();
    w.close();
}

/// Quantized softmax along one axis (TFLite's integer algorithm): the
/// exponential of every possible difference from the row maximum comes
/// from a generation-time table ([`nnc_ir::op::qmath::softmax_exp_table`]),
/// the sum is divided by a fixed-point reciprocal. Safe in place.
pub(super) fn qsoftmax(w: &mut W, a: &QSoftmaxAttrs, x: &TensorType, h: &mut Helpers) {
    h.need("nnc_qmath");
    let table = nnc_ir::op::qmath::softmax_exp_table(a.mult, a.shift, a.diff_min);
    let vals: Vec<String> = table.iter().map(|v| v.to_string()).collect();
    let t = h.global_array("qexp", "int32_t", &vals);
    let (lo, hi) = a.out.int_range().expect("i8 or u8");
    let n = x.dims[a.axis];
    let inner: usize = x.dims[a.axis + 1..].iter().product();
    let outer: usize = x.dims[..a.axis].iter().product();
    w.for_("o", 0, outer);
    w.for_("i", 0, inner);
    w.line(format!("const size_t base = o * {} + i;", n * inner));
    w.line("int32_t mx = in0[base], sum = 0, scale;");
    w.line("int bits;");
    w.for_("k", 1, n);
    w.line(format!(
        "if ((int32_t)in0[base + k * {inner}] > mx) mx = in0[base + k * {inner}];"
    ));
    w.close();
    w.for_("k", 0, n);
    w.line(format!(
        "sum = nnc_wrap32((int64_t)sum + nnc_rdpot({t}[mx - (int32_t)in0[base + k * {inner}]], 12));"
    ));
    w.close();
    w.line("scale = nnc_recip(sum, 12, &bits);");
    w.for_("k", 0, n);
    w.line(format!(
        "const int32_t e = {t}[mx - (int32_t)in0[base + k * {inner}]];"
    ));
    match a.y {
        None => w.line(format!(
            "out0[base + k * {inner}] = ({})nnc_sat((int64_t)nnc_rdpot(nnc_srdhm(scale, e), bits + 23) + {lo}, {lo}, {hi});",
            ctype(a.out)
        )),
        // qmath::softmax_scaled: one rounding to the output scale.
        Some(y) => {
            w.line(format!("const int t = bits + {};", 62 - y.shift));
            w.line(format!(
                "const int64_t v = t > 63 ? 0 : ((int64_t)nnc_srdhm(scale, e) * {} + ((int64_t)1 << (t - 1))) >> t;",
                y.mult
            ));
            w.line(format!(
                "out0[base + k * {inner}] = ({})nnc_sat(v + {}, {lo}, {hi});",
                ctype(a.out),
                y.zp
            ));
        }
    }
    w.close();
    w.close();
    w.close();
}
