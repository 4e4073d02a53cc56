//! Integer kernels for microcontrollers in C: `conv_im2col` and
//! `matmul_panels` (register tiles over 16-bit im2col columns and int8
//! weight panels) and `dw_pairs` (depthwise convolution over bands of
//! padded rows). With the Cortex-M DSP extension (`__ARM_FEATURE_DSP`) the
//! inner loops multiply-accumulate 16-bit pairs (`SMLAD`, `SXTB16`); on
//! other machines (Cortex-M0, hosts) the same layout runs as plain C, and
//! `-DNNC_DSP_EMULATE` compiles the DSP path anywhere with portable
//! definitions of the intrinsics (how the tests check it on the host).
//! The constants (packed weights, folded biases, requantization in the
//! form [`RqForm`] picks) come from `nnc_ir::program::tiles`, the layout
//! both backends share; every path is exact.

use nnc_ir::op::{QConvAttrs, QGemmAttrs};
use nnc_ir::program::tiles::{ChannelRq, DwBand, DwConsts, MatConsts, RqForm, panels_in_place};
use nnc_ir::program::{DepthwisePairs, Epilogue, IntTiles, Step, Window};
use nnc_ir::{DType, TensorType};

use super::writer::{W, ctype, ilit};
use super::{Helpers, StepWeights, unsupported, weight};
use crate::error::Result;

/// The intrinsics the kernels use, as `nnc_*` names: ACLE's on a
/// little-endian core with the DSP extension, portable definitions with
/// `NNC_DSP_EMULATE`, and without either only the plain helpers (the
/// kernels then take their plain-C path).
pub const DSP_SOURCE: &str = r#"#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_BIG_ENDIAN)
#define NNC_DSP 1
#define NNC_DSP_ACLE 1
#include <arm_acle.h>
#elif defined(NNC_DSP_EMULATE)
#define NNC_DSP 1
#endif
#if defined(NNC_DSP)
#include <string.h>
#endif

static inline int32_t nnc_lo16(uint32_t x) {
    return (int32_t)(x & 0xffffu) - (int32_t)((x & 0x8000u) << 1);
}

static inline int32_t nnc_hi16(uint32_t x) {
    return nnc_lo16(x >> 16);
}

static inline int32_t nnc_b8(uint32_t x, unsigned i) {
    x = (x >> (8u * i)) & 0xffu;
    return (int32_t)x - (int32_t)((x & 0x80u) << 1);
}

static inline int32_t nnc_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline uint32_t nnc_pack16(int32_t lo, int32_t hi) {
    return ((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16);
}

#if defined(NNC_DSP)
static inline uint32_t nnc_ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

#if defined(NNC_DSP_ACLE)
#define nnc_sxtb16(x) __sxtb16(x)
#define nnc_uxtb16(x) __uxtb16(x)
#if defined(__GNUC__)
static inline uint32_t nnc_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline uint32_t nnc_uxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
#define nnc_sxtb16_ror8(x) __sxtb16(__ror((x), 8))
#define nnc_uxtb16_ror8(x) __uxtb16(__ror((x), 8))
#endif
#define nnc_smlad(a, b, c) ((int32_t)__smlad((a), (b), (c)))
#define nnc_smlabb(a, b, c) ((int32_t)__smlabb((a), (b), (c)))
#define nnc_smlabt(a, b, c) ((int32_t)__smlabt((a), (b), (c)))
#define nnc_smlatb(a, b, c) ((int32_t)__smlatb((a), (b), (c)))
#define nnc_ssat8(x) ((int32_t)__ssat((x), 8))
#define nnc_usat8(x) ((int32_t)__usat((x), 8))
#else
static inline uint32_t nnc_sxtb16(uint32_t x) {
    return ((uint32_t)nnc_b8(x, 0) & 0xffffu) | ((uint32_t)nnc_b8(x, 2) << 16);
}
static inline uint32_t nnc_uxtb16(uint32_t x) {
    return x & 0x00ff00ffu;
}
static inline uint32_t nnc_sxtb16_ror8(uint32_t x) {
    return nnc_sxtb16(x >> 8 | x << 24);
}
static inline uint32_t nnc_uxtb16_ror8(uint32_t x) {
    return (x >> 8 | x << 24) & 0x00ff00ffu;
}
static inline int32_t nnc_smlad(uint32_t a, uint32_t b, int32_t c) {
    return (int32_t)((uint32_t)c + (uint32_t)(nnc_lo16(a) * nnc_lo16(b)) + (uint32_t)(nnc_hi16(a) * nnc_hi16(b)));
}
static inline int32_t nnc_smlabb(uint32_t a, uint32_t b, int32_t c) {
    return (int32_t)((uint32_t)c + (uint32_t)(nnc_lo16(a) * nnc_lo16(b)));
}
static inline int32_t nnc_smlabt(uint32_t a, uint32_t b, int32_t c) {
    return (int32_t)((uint32_t)c + (uint32_t)(nnc_lo16(a) * nnc_hi16(b)));
}
static inline int32_t nnc_smlatb(uint32_t a, uint32_t b, int32_t c) {
    return (int32_t)((uint32_t)c + (uint32_t)(nnc_hi16(a) * nnc_lo16(b)));
}
static inline int32_t nnc_ssat8(int32_t x) {
    return nnc_clamp(x, -128, 127);
}
static inline int32_t nnc_usat8(int32_t x) {
    return nnc_clamp(x, 0, 255);
}
#endif
"#;

/// The output side of an integer step: zero point, clamp and type.
struct Out {
    zp: i32,
    lo: i64,
    hi: i64,
    ty: DType,
}

impl Out {
    fn of(st: &Step) -> Result<Out> {
        let ty = st.outputs[0].ty.dtype;
        let (mut lo, mut hi) = ty.int_range().unwrap_or((i32::MIN as i64, i32::MAX as i64));
        let mut zp = None;
        for e in &st.epilogue {
            match e {
                Epilogue::Bias { .. } => {}
                Epilogue::Requantize { zero_point, .. } if zp.is_none() => zp = Some(*zero_point),
                Epilogue::Clamp { lo: l, hi: h } if zp.is_some() => {
                    lo = lo.max(*l as i64);
                    hi = hi.min(*h as i64);
                }
                _ => {
                    return Err(unsupported(
                        st,
                        "an integer kernel's epilogue other than bias, requantize, clamp",
                    ));
                }
            }
        }
        let zp = zp.ok_or_else(|| unsupported(st, "an integer kernel without a requantize"))?;
        Ok(Out { zp, lo, hi, ty })
    }

    /// `v` (an int32 C expression) clamped to the output range.
    fn clamp(&self, v: &str) -> String {
        match (self.lo, self.hi) {
            (-128, 127) => format!("nnc_ssat8({v})"),
            (0, 255) => format!("nnc_usat8({v})"),
            (lo, hi) => format!("nnc_clamp({v}, {}, {})", ilit(lo), ilit(hi)),
        }
    }
}

/// The per-channel records `{bias, mult, a, b}` of a kernel: `a, b` are
/// the rounding (with the output zero point) and right shift of
/// [`RqForm::High`], or the shift and 0 for [`RqForm::General`].
fn records(h: &mut Helpers, ch: &[ChannelRq], rq: &RqForm) -> String {
    let mut v = Vec::with_capacity(4 * ch.len());
    for (c, r) in ch.iter().enumerate() {
        let (a, b) = match rq {
            RqForm::High { round, rs } => (round[c], rs[c]),
            RqForm::General => (r.shift, 0),
        };
        for x in [r.bias, r.mult, a, b] {
            v.push(ilit(x as i64));
        }
    }
    h.global_array("qrec", "int32_t", &v)
}

/// Constant words as a `static const uint32_t` array.
fn words(h: &mut Helpers, what: &str, ws: &[u32]) -> String {
    h.global_u32(what, ws)
}

/// Loads the requantization constants of record `rec` (a C pointer
/// expression) into locals suffixed `sfx`.
fn rq_consts(w: &mut W, rec: &str, sfx: &str, rq: &RqForm) {
    match rq {
        RqForm::High { .. } => w.line(format!(
            "const int32_t rqm{sfx} = {rec}[1], rqr{sfx} = {rec}[2], rqs{sfx} = {rec}[3];"
        )),
        RqForm::General => w.line(format!(
            "const int32_t rqm{sfx} = {rec}[1], rqr{sfx} = {rec}[2];"
        )),
    }
}

/// The stored value of accumulator `acc` with the constants suffixed
/// `sfx`: requantized, with the output zero point, clamped, narrowed.
fn rq_value(acc: &str, sfx: &str, rq: &RqForm, o: &Out) -> String {
    let v = match rq {
        RqForm::High { .. } => o.clamp(&format!(
            "(((int32_t)(((int64_t){acc} * rqm{sfx}) >> 32) + rqr{sfx}) >> rqs{sfx})"
        )),
        RqForm::General => format!(
            "nnc_sat((int64_t){} + nnc_rq({acc}, rqm{sfx}, rqr{sfx}), {}, {})",
            o.zp,
            ilit(o.lo),
            ilit(o.hi)
        ),
    };
    format!("({}){v}", ctype(o.ty))
}

/// Where a tile's columns come from.
#[derive(Clone, Copy)]
enum Cols<'a> {
    /// The column buffer `col` (see [`column_buffer`]).
    Buffer,
    /// One row of `k` int8 or uint8 values (C type `tx`, widened with
    /// `ext`) read in place at `xr`, against panels in natural byte order.
    Row { tx: &'a str, ext: &'a str, k: usize },
}

/// A register tile of `rr` rows by `c` columns over `kp` reduction steps:
/// accumulators from the folded biases at `qr`, the reduction over the
/// panel words at `wp` (`rr` per group of four steps) and the columns
/// (from the buffer: `2 c` words per group, the pairs of steps `4g, 4g+1`
/// of every column, then those of `4g+2, 4g+3`; or one word of the row in
/// place, its pairs `4g, 4g+2` and `4g+1, 4g+3` made in registers), then
/// the requantizing store to `store(i, j)`; `valid(j)` (a C condition)
/// guards columns past the end.
#[allow(clippy::too_many_arguments)]
fn tile(
    w: &mut W,
    rr: usize,
    c: usize,
    kp: usize,
    unroll: usize,
    cols: Cols<'_>,
    rq: &RqForm,
    o: &Out,
    store: &dyn Fn(usize, usize) -> String,
    valid: &dyn Fn(usize) -> Option<String>,
) {
    // In place, the last group of a row whose length is not a multiple of
    // four is read byte by byte (a word would read past the row).
    let (groups, tail) = match cols {
        Cols::Buffer => (kp / 4, 0),
        Cols::Row { k, .. } => (k / 4, k % 4),
    };
    let u = unroll.clamp(1, groups.max(1));
    w.open("");
    let mut init = Vec::new();
    for i in 0..rr {
        for j in 0..c {
            init.push(format!("a{i}_{j} = qr[{}]", 4 * i));
        }
    }
    w.line(format!("int32_t {};", init.join(", ")));
    w.line("#if defined(NNC_DSP)");
    match cols {
        Cols::Buffer => w.line("const uint32_t *wk = wp, *xk = col;"),
        Cols::Row { tx, .. } => w.line(format!("const uint32_t *wk = wp;\nconst {tx} *xk = xr;")),
    }
    let group = |w: &mut W, g: usize, last: bool| {
        w.open("");
        match cols {
            Cols::Buffer => {
                let mut xs = Vec::new();
                for j in 0..c {
                    xs.push(format!("xe{j} = xk[{}]", 2 * c * g + j));
                    xs.push(format!("xo{j} = xk[{}]", 2 * c * g + c + j));
                }
                w.line(format!("const uint32_t {};", xs.join(", ")));
            }
            Cols::Row { ext, .. } => {
                let word = if last {
                    let bytes: Vec<String> = (0..tail)
                        .map(|b| format!("((uint32_t)(uint8_t)xk[{}] << {})", 4 * g + b, 8 * b))
                        .collect();
                    format!("({})", bytes.join(" | "))
                } else {
                    format!("nnc_ld32(xk + {})", 4 * g)
                };
                w.line(format!(
                    "const uint32_t xv = {word}, xe0 = nnc_{ext}(xv), xo0 = nnc_{ext}_ror8(xv);"
                ));
            }
        }
        for i in 0..rr {
            w.open("");
            w.line(format!(
                "const uint32_t wv = wk[{}], we = nnc_sxtb16(wv), wo = nnc_sxtb16_ror8(wv);",
                rr * g + i
            ));
            for j in 0..c {
                w.line(format!("a{i}_{j} = nnc_smlad(we, xe{j}, a{i}_{j});"));
            }
            for j in 0..c {
                w.line(format!("a{i}_{j} = nnc_smlad(wo, xo{j}, a{i}_{j});"));
            }
            w.close();
        }
        w.close();
    };
    let xstep = match cols {
        Cols::Buffer => 2 * c * u,
        Cols::Row { .. } => 4 * u,
    };
    let iters = groups / u;
    if iters > 1 {
        w.line("size_t u;");
        w.open(format!("for (u = 0; u < {iters}; ++u)"));
    }
    if iters > 0 {
        for g in 0..u {
            group(w, g, false);
        }
        if iters > 1 || !groups.is_multiple_of(u) || tail > 0 {
            w.line(format!("wk += {};", rr * u));
            w.line(format!("xk += {xstep};"));
        }
    }
    if iters > 1 {
        w.close();
    }
    for g in 0..groups % u {
        group(w, g, false);
    }
    if tail > 0 {
        group(w, groups % u, true);
    }
    w.line("(void)wk;");
    w.line("(void)xk;");
    w.line("#else");
    match cols {
        Cols::Buffer => {
            // Plain C over the same layout: the halves of the column words,
            // the bytes of the panel words (steps 4g, 4g+2, 4g+1, 4g+3).
            w.line("const uint32_t *wk = wp, *xk = col;");
            w.line("size_t u;");
            w.open(format!("for (u = 0; u < {groups}; ++u)"));
            for i in 0..rr {
                w.open("");
                w.line(format!(
                    "const uint32_t wv = wk[{i}];\nconst int32_t w0 = nnc_b8(wv, 0), w1 = nnc_b8(wv, 2), w2 = nnc_b8(wv, 1), w3 = nnc_b8(wv, 3);"
                ));
                for j in 0..c {
                    w.line(format!(
                        "a{i}_{j} += nnc_lo16(xk[{j}]) * w0 + nnc_hi16(xk[{j}]) * w1 + nnc_lo16(xk[{cj}]) * w2 + nnc_hi16(xk[{cj}]) * w3;",
                        cj = c + j
                    ));
                }
                w.close();
            }
            w.line(format!("wk += {rr};"));
            w.line(format!("xk += {};", 2 * c));
            w.close();
        }
        Cols::Row { k, .. } => {
            // Plain C: the row's values against the panel bytes in
            // natural order (step e in byte e % 4 of its group's word).
            w.line("size_t e;");
            w.open(format!("for (e = 0; e < {k}; ++e)"));
            w.line("const int32_t xv = xr[e];");
            for i in 0..rr {
                w.line(format!(
                    "a{i}_0 += xv * nnc_b8(wp[(e >> 2) * {rr} + {i}], (unsigned)(e & 3u));"
                ));
            }
            w.close();
        }
    }
    w.line("#endif");
    for i in 0..rr {
        rq_consts(w, &format!("(qr + {})", 4 * i), &format!("{i}"), rq);
        for j in 0..c {
            let s = format!(
                "{} = {};",
                store(i, j),
                rq_value(&format!("a{i}_{j}"), &format!("{i}"), rq, o)
            );
            match valid(j) {
                Some(cond) => w.line(format!("if ({cond}) {s}")),
                None => w.line(s),
            }
        }
    }
    w.close();
}

/// The tiles of one column block: full tiles of `r` rows over the `rows`
/// of the panels at `wp0` (records at `qr0`), then the remaining rows.
/// `store(i, j)` names output `i` of the current tile (relative to `m0`).
#[allow(clippy::too_many_arguments)]
fn tiles(
    w: &mut W,
    k: &IntTiles,
    m: &MatConsts,
    rq: &RqForm,
    o: &Out,
    wp0: &str,
    qr0: &str,
    cols: Cols<'_>,
    store: &dyn Fn(usize, usize) -> String,
    valid: &dyn Fn(usize) -> Option<String>,
) {
    let (rows, kp) = (m.rows, m.kp());
    let r = k.rows.min(rows).max(1);
    let full = rows / r;
    let kw = kp / 4;
    w.open("");
    w.line(format!("const uint32_t *wp = {wp0};"));
    w.line(format!("const int32_t *qr = {qr0};"));
    w.line("size_t m0 = 0;");
    if full > 0 {
        w.open(format!("for (m0 = 0; m0 < {}; m0 += {r})", full * r));
        tile(w, r, k.cols, kp, k.unroll, cols, rq, o, store, valid);
        w.line(format!("wp += {};", r * kw));
        w.line(format!("qr += {};", 4 * r));
        w.close();
    }
    if !rows.is_multiple_of(r) {
        if full > 0 {
            w.line(format!("m0 = {};", full * r));
        }
        tile(w, rows % r, k.cols, kp, k.unroll, cols, rq, o, store, valid);
    }
    w.line("(void)m0;");
    w.close();
}

/// The column buffer: `c` columns of `kp` 16-bit values as words, each
/// the pair of steps `2p, 2p+1` of one column (word `p c + j` for column
/// `j`; the first step in the low half), zeroed once so the padding steps
/// past `k` are zero. Gathers write whole words (`nnc_pack16`), so the
/// buffer is only ever accessed as `uint32_t`.
fn column_buffer(w: &mut W, c: usize, kp: usize) {
    w.line(format!("uint32_t col[{}] = {{0}};", c * kp / 2));
}

/// `conv_im2col`: per batch and group, blocks of `c` output positions are
/// gathered into the column buffer (interior columns with constant
/// offsets, border columns tap by tap with the input zero point for
/// padding), then every tile of `r` output channels reduces over them.
/// Params: `in0` x, the weights, bias and requantization (read only at
/// generation time), `out0` y.
pub(super) fn conv_im2col(
    w: &mut W,
    st: &Step,
    k: &IntTiles,
    a: &QConvAttrs,
    win: &Window,
    ws: &StepWeights<'_>,
    h: &mut Helpers,
) -> Result<()> {
    let (wt, b, mt, sht) = (
        weight(st, ws, 1)?,
        weight(st, ws, 2)?,
        weight(st, ws, 3)?,
        weight(st, ws, 4)?,
    );
    let m = MatConsts::for_qconv(a, wt, b, mt, sht, k.rows).map_err(|e| unsupported(st, &e))?;
    let o = Out::of(st)?;
    let rq = RqForm::of(&m.ch, o.zp);
    let (hx, cx) = win
        .hw()
        .ok_or_else(|| unsupported(st, "conv_im2col on a 3-D window"))?;
    h.need("nnc_dsp");
    if rq == RqForm::General {
        h.need("nnc_qmath");
    }
    let panel = words(h, "panel", &m.panels);
    let qrec = records(h, &m.ch, &rq);
    let x = &st.inputs[0].ty;
    let tx = ctype(x.dtype);
    let (cg, mg, groups) = (win.cg(), win.mg(), win.groups);
    let (ih, iw) = (hx.input, cx.input);
    let (oh, ow) = (hx.output, cx.output);
    let (kh, kw) = (hx.k, cx.k);
    let taps = kh * kw;
    let (kk, kp) = (m.k, m.kp());
    let c = k.cols;
    let (hw, p) = (ih * iw, oh * ow);
    let xzp = a.q.x_zp;
    column_buffer(w, c, kp);
    w.line("size_t n, g, p0, j;");
    w.open(format!("for (n = 0; n < {}; ++n)", win.batch));
    w.open(format!("for (g = 0; g < {groups}; ++g)"));
    w.line(format!(
        "const {tx} *xg = in0 + (n * {} + g * {cg}) * {hw};",
        win.channels
    ));
    w.line(format!(
        "{} *yg = out0 + (n * {} + g * {mg}) * {p};",
        ctype(o.ty),
        win.out_channels
    ));
    w.open(format!("for (p0 = 0; p0 < {p}; p0 += {c})"));
    // Gather the columns.
    w.open(format!("for (j = 0; j < {c}; ++j)"));
    w.line(format!(
        "const size_t q = p0 + j < {p} ? p0 + j : {};",
        p - 1
    ));
    w.line(format!("const size_t oy = q / {ow}, ox = q % {ow};"));
    w.line("uint32_t *cp = col + j;");
    let (hlo, hhi) = hx.interior();
    let (wlo, whi) = cx.interior();
    let mut conds = Vec::new();
    for (v, lo, hi, n) in [("oy", hlo, hhi, oh), ("ox", wlo, whi, ow)] {
        if lo > 0 {
            conds.push(format!("{v} >= {lo}"));
        }
        if hi < n {
            conds.push(format!("{v} < {hi}"));
        }
    }
    let interior = hlo < hhi && wlo < whi;
    if interior {
        if conds.is_empty() {
            w.open("");
        } else {
            w.open(format!("if ({})", conds.join(" && ")));
        }
        w.line(format!(
            "const {tx} *xp = xg + (oy * {} - {}) * {iw} + ox * {} - {};",
            hx.stride, hx.pad, cx.stride, cx.pad
        ));
        // Bodies of `bc` channels start at an even reduction step, so
        // every value's half in the column is a constant offset.
        let mut bc = if taps % 2 == 1 { 2 } else { 1 };
        while bc * taps < 16 && bc * 2 <= cg {
            bc *= 2;
        }
        let body = |w: &mut W, chans: usize| {
            let src = |e: usize| {
                let (ci, t) = (e / taps, e % taps);
                let (ky, kx) = (t / kw, t % kw);
                ci * hw + ky * hx.dil * iw + kx * cx.dil
            };
            let n = chans * taps;
            for e in (0..n).step_by(2) {
                let hi = if e + 1 < n {
                    format!("xp[{}]", src(e + 1))
                } else {
                    "0".into()
                };
                w.line(format!(
                    "cp[{}] = nnc_pack16(xp[{}], {hi});",
                    (e / 2) * c,
                    src(e)
                ));
            }
        };
        if cg / bc > 0 {
            w.line("size_t ci;");
            w.open(format!("for (ci = 0; ci < {}; ci += {bc})", cg / bc * bc));
            body(w, bc);
            w.line(format!("xp += {};", bc * hw));
            w.line(format!("cp += {};", bc * taps / 2 * c));
            w.close();
        }
        if !cg.is_multiple_of(bc) {
            body(w, cg % bc);
        }
        w.close();
        if !conds.is_empty() {
            w.open("else");
        }
    } else {
        w.open("");
    }
    if !interior || !conds.is_empty() {
        // Tap by tap, padding as the input zero point.
        w.line(format!(
            "const long iy0 = (long)(oy * {}) - {}, ix0 = (long)(ox * {}) - {};",
            hx.stride, hx.pad, cx.stride, cx.pad
        ));
        w.line("size_t ci, ky, kx, e = 0;");
        w.line("int32_t lo = 0;");
        w.open(format!("for (ci = 0; ci < {cg}; ++ci)"));
        w.open(format!("for (ky = 0; ky < {kh}; ++ky)"));
        w.line(format!("const long iy = iy0 + (long)(ky * {});", hx.dil));
        w.line(format!("const int row = iy >= 0 && iy < {ih};"));
        w.open(format!("for (kx = 0; kx < {kw}; ++kx, ++e)"));
        w.line(format!("const long ix = ix0 + (long)(kx * {});", cx.dil));
        w.line(format!(
            "const int32_t v = row && ix >= 0 && ix < {iw} ? (int32_t)xg[ci * {hw} + (size_t)iy * {iw} + (size_t)ix] : {xzp};"
        ));
        w.line(format!(
            "if (e & 1) cp[(e >> 1) * {c}] = nnc_pack16(lo, v); else lo = v;"
        ));
        w.close();
        w.close();
        w.close();
        if kk % 2 == 1 {
            w.line(format!("cp[{}] = nnc_pack16(lo, 0);", (kk / 2) * c));
        }
        w.close();
    }
    w.close(); // j
    let store = |i: usize, j: usize| format!("yg[(m0 + {i}) * {p} + p0 + {j}]");
    let ragged = !p.is_multiple_of(c);
    let valid = |j: usize| (ragged && j > 0).then(|| format!("p0 + {j} < {p}"));
    tiles(
        w,
        k,
        &m,
        &rq,
        &o,
        &format!("{panel} + g * {}", mg * kp / 4),
        &format!("{qrec} + g * {}", 4 * mg),
        Cols::Buffer,
        &store,
        &valid,
    );
    w.close(); // p0
    w.close(); // g
    w.close(); // n
    Ok(())
}

/// `matmul_panels`: blocks of `c` rows of the left-hand side are widened
/// into the column buffer, then every tile of `r` output columns reduces
/// over them. Params: `in0` a, the weights, bias and requantization (read
/// at generation time), `out0` y.
pub(super) fn matmul_panels(
    w: &mut W,
    st: &Step,
    k: &IntTiles,
    a: &QGemmAttrs,
    at: &TensorType,
    ws: &StepWeights<'_>,
    h: &mut Helpers,
) -> Result<()> {
    let (bt, bias, mt, sht) = (
        weight(st, ws, 1)?,
        weight(st, ws, 2)?,
        weight(st, ws, 3)?,
        weight(st, ws, 4)?,
    );
    let in_place = panels_in_place(k.cols);
    let m = MatConsts::for_qgemm(a, bt, bias, mt, sht, k.rows).map_err(|e| unsupported(st, &e))?;
    let m = if in_place { m.natural() } else { m };
    let o = Out::of(st)?;
    let rq = RqForm::of(&m.ch, o.zp);
    h.need("nnc_dsp");
    if rq == RqForm::General {
        h.need("nnc_qmath");
    }
    let panel = words(h, "panel", &m.panels);
    let qrec = records(h, &m.ch, &rq);
    let (rows_a, kk) = (at.dims[0], at.dims[1]);
    let (n, kp, c) = (m.rows, m.kp(), k.cols);
    let tx = ctype(at.dtype);
    let ext = if at.dtype == DType::U8 {
        "uxtb16"
    } else {
        "sxtb16"
    };
    if in_place {
        // One row per tile, read where it is.
        w.line("size_t i0;");
        w.open(format!("for (i0 = 0; i0 < {rows_a}; ++i0)"));
        w.line(format!("const {tx} *xr = in0 + i0 * {kk};"));
        let store = |i: usize, _: usize| format!("out0[i0 * {n} + m0 + {i}]");
        let cols = Cols::Row { tx, ext, k: kk };
        tiles(w, k, &m, &rq, &o, &panel, &qrec, cols, &store, &|_| None);
        w.close();
        return Ok(());
    }
    column_buffer(w, c, kp);
    w.line("size_t i0, j, e;");
    w.open(format!("for (i0 = 0; i0 < {rows_a}; i0 += {c})"));
    w.open(format!("for (j = 0; j < {c}; ++j)"));
    w.line(format!(
        "const {tx} *ar = in0 + (i0 + j < {rows_a} ? i0 + j : {}) * {kk};",
        rows_a - 1
    ));
    w.line("uint32_t *cp = col + j;");
    w.open(format!("for (e = 0; e + 1 < {kk}; e += 2)"));
    w.line(format!(
        "cp[(e >> 1) * {c}] = nnc_pack16(ar[e], ar[e + 1]);"
    ));
    w.close();
    if kk % 2 == 1 {
        w.line(format!(
            "cp[{}] = nnc_pack16(ar[{}], 0);",
            (kk / 2) * c,
            kk - 1
        ));
    }
    w.close();
    let store = |i: usize, j: usize| format!("out0[(i0 + {j}) * {n} + m0 + {i}]");
    let ragged = !rows_a.is_multiple_of(c);
    let valid = |j: usize| (ragged && j > 0).then(|| format!("i0 + {j} < {rows_a}"));
    tiles(
        w,
        k,
        &m,
        &rq,
        &o,
        &panel,
        &qrec,
        Cols::Buffer,
        &store,
        &valid,
    );
    w.close();
    w.line("(void)e;");
    Ok(())
}

/// `dw_pairs`: per batch and channel, bands of `rows` output rows: the
/// input rows they read are copied into a band padded with the input
/// zero point, then strips of `p` outputs along each row accumulate their
/// taps (with the DSP extension: words of four input bytes sign-extended
/// into the pairs of taps two columns apart, multiplied with weight pairs
/// held in registers per channel; at column stride 1 two neighbouring
/// outputs share their words). Params: `in0` x, the constants (read at
/// generation time), `out0` y.
pub(super) fn dw_pairs(
    w: &mut W,
    st: &Step,
    k: &DepthwisePairs,
    a: &QConvAttrs,
    win: &Window,
    ws: &StepWeights<'_>,
    h: &mut Helpers,
) -> Result<()> {
    let band = DwBand::of(win).ok_or_else(|| unsupported(st, "dw_pairs on a 3-D window"))?;
    let d = DwConsts::for_qconv(
        a,
        &band,
        weight(st, ws, 1)?,
        weight(st, ws, 2)?,
        weight(st, ws, 3)?,
        weight(st, ws, 4)?,
    )
    .map_err(|e| unsupported(st, &e))?;
    let o = Out::of(st)?;
    let rq = RqForm::of(&d.ch, o.zp);
    h.need("nnc_dsp");
    if rq == RqForm::General {
        h.need("nnc_qmath");
    }
    let dww = words(h, "dww", &d.words);
    let qrec = records(h, &d.ch, &rq);
    let x = &st.inputs[0].ty;
    let tx = ctype(x.dtype);
    let ext = if x.dtype == DType::U8 {
        "uxtb16"
    } else {
        "sxtb16"
    };
    let (rax, cax) = (band.rows, band.cols);
    let (kh, kw) = (rax.k, cax.k);
    let (ih, iw, oh, ow) = (rax.input, cax.input, rax.output, cax.output);
    let wp = band.width();
    let chans = win.channels;
    let rows = k.rows.clamp(1, oh.max(1));
    let bytes = band.bytes(rows);
    let nq = kw.div_ceil(4);
    let rw = d.row_words;
    let xzp = a.q.x_zp;
    // Zeroed once: the slack after the last row is read (with zero
    // weights) but never written by the copies.
    w.line(format!("{tx} band[{bytes}] = {{0}};"));
    w.line("size_t n, ch, r0;");
    w.open(format!("for (n = 0; n < {}; ++n)", win.batch));
    w.open(format!("for (ch = 0; ch < {chans}; ++ch)"));
    w.line(format!(
        "const {tx} *xc = in0 + (n * {chans} + ch) * {};",
        ih * iw
    ));
    w.line(format!(
        "{} *yc = out0 + (n * {chans} + ch) * {};",
        ctype(o.ty),
        oh * ow
    ));
    w.line(format!("const uint32_t *wc = {dww} + ch * {};", kh * rw));
    w.line(format!("const int32_t *qc = {qrec} + 4 * ch;"));
    w.line("const int32_t bias = qc[0];");
    rq_consts(w, "qc", "", &rq);
    w.line("#if defined(NNC_DSP)");
    for ky in 0..kh {
        for q in 0..nq {
            let i = ky * rw + q;
            if 4 * q + 1 < kw {
                w.line(format!(
                    "const uint32_t we{ky}_{q} = nnc_sxtb16(wc[{i}]), wo{ky}_{q} = nnc_sxtb16_ror8(wc[{i}]);"
                ));
            } else {
                w.line(format!("const uint32_t we{ky}_{q} = nnc_sxtb16(wc[{i}]);"));
            }
        }
    }
    w.line("#else");
    w.line(format!("int32_t wt[{}];", kh * kw));
    w.line("size_t i;");
    w.open(format!("for (i = 0; i < {}; ++i)", kh * kw));
    w.line(format!(
        "wt[i] = nnc_b8(wc[(i / {kw}) * {rw} + (i % {kw}) / 4], (unsigned)((i % {kw}) % 4));"
    ));
    w.close();
    w.line("#endif");
    w.open(format!("for (r0 = 0; r0 < {oh}; r0 += {rows})"));
    w.line(format!(
        "const size_t nr = r0 + {rows} <= {oh} ? {rows} : {oh} - r0;"
    ));
    w.line(format!(
        "const size_t nb = (nr - 1) * {} + {};",
        rax.stride,
        rax.span() + 1
    ));
    w.line("size_t u, oy;");
    // The band: padded rows r0 * stride ... of the plane.
    w.open("for (u = 0; u < nb; ++u)");
    w.line(format!(
        "const long iy = (long)(r0 * {} + u) - {};",
        rax.stride, rax.pad
    ));
    w.line(format!("{tx} *dst = band + u * {wp};"));
    w.line("size_t v;");
    w.open(format!("if (iy < 0 || iy >= {ih})"));
    w.open(format!("for (v = 0; v < {wp}; ++v)"));
    w.line(format!("dst[v] = ({tx}){xzp};"));
    w.close();
    w.close();
    w.open("else");
    w.line(format!("const {tx} *src = xc + (size_t)iy * {iw};"));
    if cax.pad > 0 {
        w.open(format!("for (v = 0; v < {}; ++v)", cax.pad));
        w.line(format!("dst[v] = ({tx}){xzp};"));
        w.close();
    }
    w.open(format!("for (v = 0; v < {iw}; ++v)"));
    w.line(format!("dst[{} + v] = src[v];", cax.pad));
    w.close();
    if wp > cax.pad + iw {
        w.open(format!("for (v = {}; v < {wp}; ++v)", cax.pad + iw));
        w.line(format!("dst[v] = ({tx}){xzp};"));
        w.close();
    }
    w.close();
    w.close();
    w.open("for (oy = 0; oy < nr; ++oy)");
    w.line(format!("const {tx} *rp = band + oy * {};", rax.stride * wp));
    w.line(format!("{} *yr = yc + (r0 + oy) * {ow};", ctype(o.ty)));
    let pos = k.positions.clamp(1, ow.max(1));
    let full = ow / pos;
    let strip = |w: &mut W, cnt: usize, base: &str| {
        // Outputs of the strip: pairs sharing words at stride 1.
        w.open("");
        let accs: Vec<String> = (0..cnt).map(|j| format!("a{j} = bias")).collect();
        w.line(format!("int32_t {};", accs.join(", ")));
        w.line("#if defined(NNC_DSP)");
        let mut j = 0;
        while j < cnt {
            let pair = cax.stride == 1 && j + 1 < cnt;
            for ky in 0..kh {
                w.open("");
                w.line(format!(
                    "const {tx} *rk = rp + {} + ({base} + {j}) * {};",
                    ky * rax.dil * wp,
                    cax.stride
                ));
                // The second output of a pair reads tap 4q+3 from the
                // word after its group.
                let words = if pair && kw % 4 == 0 { nq + 1 } else { nq };
                for q in 0..words {
                    w.line(format!(
                        "const uint32_t v{q} = nnc_ld32(rk + {}), e{q} = nnc_{ext}(v{q}), o{q} = nnc_{ext}_ror8(v{q});",
                        4 * q
                    ));
                }
                for q in 0..nq {
                    w.line(format!("a{j} = nnc_smlad(e{q}, we{ky}_{q}, a{j});"));
                    if 4 * q + 1 < kw {
                        w.line(format!("a{j} = nnc_smlad(o{q}, wo{ky}_{q}, a{j});"));
                    }
                    if pair {
                        let j1 = j + 1;
                        w.line(format!("a{j1} = nnc_smlad(o{q}, we{ky}_{q}, a{j1});"));
                        if 4 * q + 1 < kw {
                            w.line(format!("a{j1} = nnc_smlatb(e{q}, wo{ky}_{q}, a{j1});"));
                        }
                        if 4 * q + 3 < kw {
                            w.line(format!(
                                "a{j1} = nnc_smlabt(e{}, wo{ky}_{q}, a{j1});",
                                q + 1
                            ));
                        }
                    }
                }
                for q in 0..words {
                    w.line(format!("(void)e{q};"));
                    w.line(format!("(void)o{q};"));
                }
                w.close();
            }
            j += if pair { 2 } else { 1 };
        }
        w.line("#else");
        w.open("");
        w.line("size_t ky, kx;");
        w.open(format!("for (ky = 0; ky < {kh}; ++ky)"));
        for j in 0..cnt {
            w.line(format!(
                "const {tx} *rk{j} = rp + ky * {} + ({base} + {j}) * {};",
                rax.dil * wp,
                cax.stride
            ));
        }
        w.open(format!("for (kx = 0; kx < {kw}; ++kx)"));
        w.line(format!("const int32_t wv = wt[ky * {kw} + kx];"));
        for j in 0..cnt {
            w.line(format!("a{j} += (int32_t)rk{j}[kx] * wv;"));
        }
        w.close();
        w.close();
        w.close();
        w.line("#endif");
        for j in 0..cnt {
            w.line(format!(
                "yr[{base} + {j}] = {};",
                rq_value(&format!("a{j}"), "", &rq, &o)
            ));
        }
        w.close();
    };
    if full > 0 {
        w.line("size_t ox;");
        w.open(format!("for (ox = 0; ox < {}; ox += {pos})", full * pos));
        strip(w, pos, "ox");
        w.close();
    }
    if !ow.is_multiple_of(pos) {
        strip(w, ow % pos, &format!("{}", full * pos));
    }
    w.close(); // oy
    w.close(); // r0
    w.close(); // ch
    w.close(); // n
    Ok(())
}
