//! Integer dot-product kernels in C: `qconv_dot`, `qdw_dot` and
//! `qgemm_dot` (layouts in [`nnc_ir::program::qdot`]).
//!
//! Why intrinsics: the register tiles here keep one 32-bit lane per
//! output position and sum `dot` products into it per instruction
//! (`vpdpbusd`, `pmaddwd`). gcc 12 forms those instructions only from
//! reduction loops (`s += a[i] * b[i]`, one output per loop, a horizontal
//! sum at the end); from the lane-per-output form it emits byte permutes
//! and 16-bit multiplies instead (checked with objdump at `-O3
//! -march=native`). So the tile's inner loop is written once with
//! intrinsics for the (dot, lanes) the step was planned with, guarded by
//! the compiler's feature macros, and once in portable C that computes
//! the same sums; copies, requantization and stores are portable C the
//! compiler vectorizes.

use nnc_ir::op::{QConvAttrs, QGemmAttrs};
use nnc_ir::program::qdot::{self, Grid, Slide};
use nnc_ir::program::{QConvDot, QDwDot, QGemmDot, Step, Window};
use nnc_ir::{DType, Tensor, TensorType};

use super::Helpers;
use super::writer::{W, ctype};

mod rest;
pub(super) use rest::{depthwise, gemm};

/// Intrinsic support the dot kernels share (emitted once per source).
pub const IDOT_SOURCE: &str = r"#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define NNC_DPBUSD256(a, x, w) _mm256_dpbusd_epi32((a), (x), (w))
#define NNC_DPBUSD128(a, x, w) _mm_dpbusd_epi32((a), (x), (w))
#elif defined(__AVXVNNI__)
#define NNC_DPBUSD256(a, x, w) _mm256_dpbusd_avx_epi32((a), (x), (w))
#define NNC_DPBUSD128(a, x, w) _mm_dpbusd_avx_epi32((a), (x), (w))
#endif
";

/// The intrinsics of one (dot, lanes) form.
struct Isa {
    guard: &'static str,
    vt: &'static str,
    load: &'static str,
    store: &'static str,
    set1: &'static str,
    /// `acc + dot(x, w)` with `{a}`, `{x}`, `{w}` placeholders.
    dot: &'static str,
}

fn isa(dot: usize, lanes: usize) -> Isa {
    let (vt, load, store, set1) = match lanes {
        16 => (
            "__m512i",
            "_mm512_loadu_si512((const void *)({p}))",
            "_mm512_storeu_si512((void *)({p}), {v})",
            "_mm512_set1_epi32",
        ),
        8 => (
            "__m256i",
            "_mm256_loadu_si256((const __m256i *)(const void *)({p}))",
            "_mm256_storeu_si256((__m256i *)(void *)({p}), {v})",
            "_mm256_set1_epi32",
        ),
        _ => (
            "__m128i",
            "_mm_loadu_si128((const __m128i *)(const void *)({p}))",
            "_mm_storeu_si128((__m128i *)(void *)({p}), {v})",
            "_mm_set1_epi32",
        ),
    };
    let (guard, dotf) = match (dot, lanes) {
        (4, 16) => (
            "defined(__AVX512VNNI__) && defined(__AVX512BW__)",
            "_mm512_dpbusd_epi32({a}, {x}, {w})",
        ),
        (4, 8) => ("defined(NNC_DPBUSD256)", "NNC_DPBUSD256({a}, {x}, {w})"),
        (4, _) => ("defined(NNC_DPBUSD128)", "NNC_DPBUSD128({a}, {x}, {w})"),
        (_, 16) => (
            "defined(__AVX512BW__)",
            "_mm512_add_epi32({a}, _mm512_madd_epi16({x}, {w}))",
        ),
        (_, 8) => (
            "defined(__AVX2__)",
            "_mm256_add_epi32({a}, _mm256_madd_epi16({x}, {w}))",
        ),
        _ => (
            "defined(__SSE2__)",
            "_mm_add_epi32({a}, _mm_madd_epi16({x}, {w}))",
        ),
    };
    Isa {
        guard,
        vt,
        load,
        store,
        set1,
        dot: dotf,
    }
}

fn fill(t: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = t.to_string();
    for (k, v) in pairs {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// The C type of a dot copy's elements.
fn etype(dot: usize) -> &'static str {
    if dot == 4 { "uint8_t" } else { "int16_t" }
}

/// Element `t` of a packed word, sign-extended (portable decoding).
fn decode(word: &str, t: usize, dot: usize) -> String {
    if dot == 4 {
        format!(
            "((int32_t)((((uint32_t){word} >> {}) & 0xffu) ^ 0x80u) - 0x80)",
            8 * t
        )
    } else {
        format!(
            "((int32_t)((((uint32_t){word} >> {}) & 0xffffu) ^ 0x8000u) - 0x8000)",
            16 * t
        )
    }
}

/// How a tile walks the reduction: `outer` iterations `stride` elements
/// apart, each reading the vectors at every inner offset (elements of the
/// copy) in order; then `tail` offsets once more after the loop.
struct Walk {
    outer: usize,
    stride: usize,
    inner: Vec<usize>,
    tail: Vec<usize>,
}

/// One register tile: `cb` channels by `tv` vectors at position `q0` (a
/// C expression), weights from `wk0` (a C pointer expression to the
/// block's `[group][channel]` words), bias from `bias` at channel `m0`,
/// results into `acc[cb][tv * lanes]`.
#[allow(clippy::too_many_arguments)]
fn tile(
    w: &mut W,
    dot: usize,
    lanes: usize,
    cb: usize,
    tv: usize,
    copy: &str,
    q0: &str,
    walk: &Walk,
    wk0: &str,
    bias: &str,
    m0: &str,
    out: &Out,
) {
    let et = etype(dot);
    let t = tv * lanes;
    let is = isa(dot, lanes);
    let load = |p: String| fill(is.load, &[("p", &p)]);
    let acc = |r: usize, v: usize| format!("a{r}_{v}");
    w.line(format!("#if {}", is.guard));
    w.block();
    let inits: Vec<String> = (0..cb)
        .flat_map(|r| (0..tv).map(move |v| (r, v)))
        .map(|(r, v)| format!("{} = {}({bias}[{m0} + {r}])", acc(r, v), is.set1))
        .collect();
    for c in inits.chunks(4) {
        w.line(format!("{} {};", is.vt, c.join(", ")));
    }
    w.line(format!("const int32_t *wk = {wk0};"));
    w.line(format!("const {et} *xt = {copy} + ({q0}) * {dot};"));
    let group = |w: &mut W, base: &str, off: usize| {
        w.block();
        w.line(format!("const {et} *xa = {base} + {off};"));
        let xs: Vec<String> = (0..tv)
            .map(|v| format!("x{v} = {}", load(format!("xa + {}", v * lanes * dot))))
            .collect();
        w.line(format!("const {} {};", is.vt, xs.join(", ")));
        for r in 0..cb {
            w.line(format!("const {} w{r} = {}(wk[{r}]);", is.vt, is.set1));
            for v in 0..tv {
                let a = acc(r, v);
                let x = format!("x{v}");
                let wr = format!("w{r}");
                w.line(format!(
                    "{a} = {};",
                    fill(is.dot, &[("a", &a), ("x", &x), ("w", &wr)])
                ));
            }
        }
        w.line(format!("wk += {cb};"));
        w.close();
    };
    if walk.outer > 0 && !walk.inner.is_empty() {
        w.for_("o", 0, walk.outer);
        w.line(format!("const {et} *xo = xt + o * {};", walk.stride));
        for &off in &walk.inner {
            group(w, "xo", off);
        }
        w.close();
    }
    if !walk.tail.is_empty() {
        w.block();
        w.line(format!(
            "const {et} *xo = xt + {};",
            walk.outer * walk.stride
        ));
        for &off in &walk.tail {
            group(w, "xo", off);
        }
        w.close();
    }
    if lanes == 16 || lanes == 8 {
        for r in 0..cb {
            let accs: Vec<String> = (0..tv).map(|v| acc(r, v)).collect();
            if lanes == 16 {
                out.vector(w, r, &accs);
            } else {
                out.vector8(w, r, &accs);
            }
        }
    } else {
        for r in 0..cb {
            for v in 0..tv {
                let p = format!("acc + {}", r * t + v * lanes);
                w.line(format!(
                    "{};",
                    fill(is.store, &[("p", &p), ("v", &acc(r, v))])
                ));
            }
        }
    }
    w.close();
    w.line("#else");
    // Portable: the same sums in the same lanes.
    w.block();
    w.for_("r", 0, cb);
    w.for_("j", 0, t);
    w.line(format!("acc[r * {t} + j] = {bias}[{m0} + r];"));
    w.close();
    w.close();
    w.line(format!("const int32_t *wk = {wk0};"));
    w.line(format!("const {et} *xt = {copy} + ({q0}) * {dot};"));
    let group = |w: &mut W, base: &str, off: usize| {
        w.block();
        w.line(format!("const {et} *xa = {base} + {off};"));
        w.for_("r", 0, cb);
        w.line("const int32_t wv = wk[r];");
        let ws: Vec<String> = (0..dot)
            .map(|k| format!("w{k} = {}", decode("wv", k, dot)))
            .collect();
        w.line(format!("const int32_t {};", ws.join(", ")));
        w.line(format!("int32_t *ar = acc + r * {t};"));
        w.for_("j", 0, t);
        let terms: Vec<String> = (0..dot)
            .map(|k| format!("(int32_t)xa[{dot} * j + {k}] * w{k}"))
            .collect();
        w.line(format!("ar[j] += {};", terms.join(" + ")));
        w.close();
        w.close();
        w.line(format!("wk += {cb};"));
        w.close();
    };
    if walk.outer > 0 && !walk.inner.is_empty() {
        w.for_("o", 0, walk.outer);
        w.line(format!("const {et} *xo = xt + o * {};", walk.stride));
        for &off in &walk.inner {
            group(w, "xo", off);
        }
        w.close();
    }
    if !walk.tail.is_empty() {
        w.block();
        w.line(format!(
            "const {et} *xo = xt + {};",
            walk.outer * walk.stride
        ));
        for &off in &walk.tail {
            group(w, "xo", off);
        }
        w.close();
    }
    w.close();
    if lanes == 16 || lanes == 8 {
        out.portable(w, cb, t);
        w.line("#endif");
    } else {
        w.line("#endif");
        out.portable(w, cb, t);
    }
}

/// Where a tile's results go: channel row `r` to `dst(r)` (a pointer
/// expression), `nj` of them (a C expression), requantized with channel
/// `ch(r)`'s multiplier and shift.
struct Out<'a> {
    st: &'a Step,
    qm: &'a str,
    qs: &'a str,
    y: DType,
    ch: Vec<String>,
    dst: Vec<String>,
    nj: String,
}

impl Out<'_> {
    /// The portable requantizing store of `acc[r][t]`.
    fn portable(&self, w: &mut W, cb: usize, t: usize) {
        for r in 0..cb {
            requant(
                w,
                self.st,
                (self.qm, self.qs),
                &format!("acc + {}", r * t),
                &self.ch[r],
                &self.dst[r],
                &self.nj,
                self.y,
            );
        }
    }

    /// The requantizing store of channel row `r` from 8-lane registers
    /// (AVX2, which every 8-lane form's guard implies), with the
    /// arithmetic of [`REQUANT_Q`]: the products with the Q31 multiplier
    /// in 64 bits (even and odd lanes), bits 31..62 of each by logical
    /// shifts, the remaining right shift rounded half up from the bit
    /// below it, the clamp, the zero point, and a narrow to bytes of
    /// which the valid lanes are stored.
    fn vector8(&self, w: &mut W, r: usize, accs: &[String]) {
        let (zp, lo, hi) = out_range(self.st, self.y);
        let (qm, qs, ch) = (self.qm, self.qs, &self.ch[r]);
        w.block();
        w.line(format!("const __m256i rm = _mm256_set1_epi32({qm}[{ch}]);"));
        w.line(format!("const int k = {qs}[{ch}] - 31;"));
        w.line("const __m256i r0 = _mm256_set1_epi64x(k == 0 ? (long long)1 << 30 : 0);");
        w.line(
            "const __m128i rk = _mm_cvtsi32_si128(k), rk1 = _mm_cvtsi32_si128(k == 0 ? 0 : k - 1);",
        );
        w.line("const __m256i b1 = _mm256_set1_epi32(k == 0 ? 0 : 1);");
        w.line(format!(
            "const __m256i zp = _mm256_set1_epi32({zp}), lo = _mm256_set1_epi32({}), hi = _mm256_set1_epi32({});",
            lo - zp,
            hi - zp
        ));
        w.line("const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);");
        w.line(format!("const int nj = (int)({});", self.nj));
        w.line(format!("{} *d = {};", ctype(self.y), self.dst[r]));
        let pack = if self.y == DType::U8 {
            "_mm256_packus_epi16"
        } else {
            "_mm256_packs_epi16"
        };
        for (v, a) in accs.iter().enumerate() {
            w.block();
            w.line(format!(
                "const __m256i e = _mm256_add_epi64(_mm256_mul_epi32({a}, rm), r0);"
            ));
            w.line(format!(
                "const __m256i o = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64({a}, 32), rm), r0);"
            ));
            w.line("const __m256i q = _mm256_blend_epi32(_mm256_srli_epi64(e, 31), _mm256_slli_epi64(o, 1), 0xAA);");
            w.line("__m256i y = _mm256_add_epi32(_mm256_sra_epi32(q, rk), _mm256_and_si256(_mm256_sra_epi32(q, rk1), b1));");
            w.line("y = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(y, lo), hi), zp);");
            // Two packs leave lanes 0-3 in bytes 0-3 and lanes 4-7 in
            // bytes 16-19; the permute brings them to bytes 0-7.
            w.line("const __m256i y16 = _mm256_packs_epi32(y, y);");
            w.line(format!(
                "const __m256i y8 = _mm256_permutevar8x32_epi32({pack}(y16, y16), order);"
            ));
            w.line(format!("const int nv = nj - {};", v * 8));
            w.open("if (nv >= 8)");
            w.line(format!(
                "_mm_storel_epi64((__m128i *)(void *)(d + {}), _mm256_castsi256_si128(y8));",
                v * 8
            ));
            w.close();
            w.open("else if (nv > 0)");
            w.line("uint8_t b[16];");
            w.line("_mm_storeu_si128((__m128i *)(void *)b, _mm256_castsi256_si128(y8));");
            w.line(format!(
                "for (int j = 0; j < 8 && j < nv; ++j) d[{} + j] = ({})b[j];",
                v * 8,
                ctype(self.y)
            ));
            w.close();
            w.close();
        }
        w.close();
    }

    /// The requantizing store of channel row `r` from 16-lane registers
    /// (AVX-512F, which every 16-lane form's guard implies): the products
    /// with the Q31 multiplier in 64 bits (even and odd lanes), the
    /// rounding constant added, the top bits from bit 31 up (exact, the
    /// result fitting 32 bits for shifts of at most zero), the remaining
    /// right shift, zero point, clamp, and a saturating narrow store of
    /// the valid lanes.
    fn vector(&self, w: &mut W, r: usize, accs: &[String]) {
        let (zp, lo, hi) = out_range(self.st, self.y);
        let (qm, qs, ch) = (self.qm, self.qs, &self.ch[r]);
        w.block();
        w.line(format!("const __m512i rm = _mm512_set1_epi32({qm}[{ch}]);"));
        w.line(format!("const int sq = {qs}[{ch}];"));
        w.line("const __m512i rr = _mm512_set1_epi64((long long)((int64_t)1 << (sq - 1)));");
        w.line("const __m128i rs = _mm_cvtsi32_si128(sq - 31);");
        w.line(format!(
            "const __m512i zp = _mm512_set1_epi32({zp}), lo = _mm512_set1_epi32({lo}), hi = _mm512_set1_epi32({hi});"
        ));
        w.line(format!("const int nj = (int)({});", self.nj));
        w.line(format!("{} *d = {};", ctype(self.y), self.dst[r]));
        let narrow = if self.y == DType::U8 {
            "_mm512_mask_cvtusepi32_storeu_epi8"
        } else {
            "_mm512_mask_cvtsepi32_storeu_epi8"
        };
        for (v, a) in accs.iter().enumerate() {
            w.block();
            w.line(format!(
                "const __m512i e = _mm512_add_epi64(_mm512_mul_epi32({a}, rm), rr);"
            ));
            w.line(format!(
                "const __m512i o = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64({a}, 32), rm), rr);"
            ));
            w.line("__m512i q = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(e, 31), _mm512_slli_epi64(o, 1));");
            w.line("q = _mm512_add_epi32(_mm512_sra_epi32(q, rs), zp);");
            w.line("q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);");
            w.line(format!("const int nv = nj - {};", v * 16));
            w.line(format!(
                "{narrow}((void *)(d + {}), (__mmask16)(nv >= 16 ? 0xFFFFu : (nv <= 0 ? 0u : (1u << nv) - 1u)), q);",
                v * 16
            ));
            w.close();
        }
        w.close();
    }
}

/// Per-channel requantization tables: multipliers and total right shifts
/// (`31 - shift`, at least 31 since shifts are at most zero).
fn rq_tables(st: &Step, ws: &[Option<&Tensor>], n: usize, h: &mut Helpers) -> (String, String) {
    let get = |k: usize| -> Vec<i64> {
        let v = ws[k].map(|t| t.to_i64()).unwrap_or_default();
        (0..n)
            .map(|i| if v.len() == 1 { v[0] } else { v[i] })
            .collect()
    };
    let (mi, si) = st.requantize().map(|(m, s, _)| (m, s)).unwrap_or((3, 4));
    let m: Vec<String> = get(mi).iter().map(|v| v.to_string()).collect();
    let s: Vec<String> = get(si)
        .iter()
        .map(|&v| (31 - v.clamp(-31, 30)).to_string())
        .collect();
    (
        h.global_array("qm", "int32_t", &m),
        h.global_array("qs", "int32_t", &s),
    )
}

/// The requantizing store of `nj` results of channel row `r` of `acc`
/// (rows `t` apart) to `dst` (a pointer expression), channel `ch`.
#[allow(clippy::too_many_arguments)]
fn requant(
    w: &mut W,
    st: &Step,
    (qm, qs): (&str, &str),
    acc: &str,
    ch: &str,
    dst: &str,
    nj: &str,
    y: DType,
) {
    let (zp, lo, hi) = out_range(st, y);
    w.block();
    w.line(format!("const int32_t mq = {qm}[{ch}];"));
    w.line(format!("const int k = {qs}[{ch}] - 31;"));
    w.line(REQUANT_CONSTS);
    w.line(format!("{} *d = {dst};", ctype(y)));
    w.line(format!("const int32_t *s = {acc};"));
    w.open(format!("for (size_t j = 0; j < {nj}; ++j)"));
    w.line(REQUANT_Q);
    w.line(format!(
        "d[j] = ({})((v < {} ? {} : (v > {} ? {} : v)) + {zp});",
        ctype(y),
        lo - zp,
        lo - zp,
        hi - zp,
        hi - zp
    ));
    w.close();
    w.close();
}

/// The per-channel constants of [`REQUANT_Q`], from the multiplier `mq`
/// and `k`, the total right shift minus 31 (at least 0).
pub(super) const REQUANT_CONSTS: &str = "const int64_t r0 = k == 0 ? (int64_t)1 << 30 : 0; const int k1 = k == 0 ? 0 : k - 1; const int32_t b1 = k == 0 ? 0 : 1;";

/// `v`, the requantized `s[j]` before its zero point: `round(s * mq /
/// 2^(31 + k))`, half up, exactly as `((int64_t)s * mq + 2^(30 + k)) >>
/// (31 + k)`, written so that C compilers vectorize it without 64-bit
/// arithmetic shifts (AVX2 has none): `q = floor((s * mq + r0) / 2^31)`
/// is bits 31..62 of the product (it fits 32 bits: `|s * mq| < 2^62`),
/// a logical shift; then `floor((q + 2^(k - 1)) / 2^k)` (equal to the
/// rounded quotient, the fraction dropped from `q` being below one) is
/// `(q >> k)` plus bit `k - 1` of `q`, which cannot overflow. For `k =
/// 0` the rounding constant `2^30` goes into the product instead. The
/// clamp comes before the zero point, so `v + zp` cannot overflow.
pub(super) const REQUANT_Q: &str = "const int32_t q = (int32_t)(uint32_t)((uint64_t)((int64_t)s[j] * mq + r0) >> 31); const int32_t v = (q >> k) + ((q >> k1) & b1);";

/// Zero point and clamp of an integer step's store.
fn out_range(st: &Step, y: DType) -> (i64, i64, i64) {
    let zp = st.requantize().map_or(0, |(_, _, z)| z as i64);
    let (mut lo, mut hi) = y.int_range().unwrap_or((-128, 127));
    for e in &st.epilogue {
        if let nnc_ir::program::Epilogue::Clamp { lo: l, hi: h } = e {
            lo = lo.max(*l as i64);
            hi = hi.min(*h as i64);
        }
    }
    (zp, lo, hi)
}

/// Fills `n` elements of `buf` from `at` with `v`.
fn fill_loop(w: &mut W, buf: &str, at: usize, n: usize, v: i32) {
    if n == 0 {
        return;
    }
    w.for_("i", 0, n);
    w.line(format!("{buf}[{at} + i] = {v};"));
    w.close();
}

/// The padded, phase-split byte planes of `cg` channels of the image at
/// `xg` (a pointer into `in0`) into `xp`, unsigned (`x + shift`).
fn phase_planes(w: &mut W, g: &Grid, cg: usize, xt: DType, pad: i32) {
    let shift = qdot::unsigned_shift(xt);
    let plane = g.plane();
    let np = g.phases();
    fill_loop(w, "xp", 0, cg * np * plane, pad);
    let (sh, sw) = (g.h.stride.max(1), g.w.stride.max(1));
    let in_plane = g.h.input * g.w.input;
    w.for_("c", 0, cg);
    for ph in 0..sh {
        let (r0, r1) = g.src_rows(ph);
        for pw in 0..sw {
            let (j0, j1) = g.src_cols(pw);
            if r0 >= r1 || j0 >= j1 {
                continue;
            }
            let p = ph * sw + pw;
            let row0 = r0 * sh + ph - g.h.pad;
            let col0 = j0 * sw + pw - g.w.pad;
            w.for_("r", 0, r1 - r0);
            w.line(format!(
                "const {} *s = xg + c * {in_plane} + (r * {sh} + {row0}) * {} + {col0};",
                ctype(xt),
                g.w.input
            ));
            w.line(format!(
                "uint8_t *d = xp + (c * {np} + {p}) * {plane} + (r + {r0}) * {} + {j0};",
                g.width
            ));
            w.for_("j", 0, j1 - j0);
            w.line(format!("d[j] = (uint8_t)(s[j * {sw}] + {shift});"));
            w.close();
            w.close();
        }
    }
    w.close();
}

/// The source of channel `c`'s phase plane `p` element `i` for the dot
/// copy: the phase planes, or the input itself.
struct Src<'a> {
    g: &'a Grid,
    direct: bool,
    shift: i32,
    xt: DType,
}

impl Src<'_> {
    fn ptr(&self, c: usize, p: usize) -> String {
        if self.direct {
            format!("(xg + {})", c * self.g.h.input * self.g.w.input)
        } else {
            format!("(xp + {})", (c * self.g.phases() + p) * self.g.plane())
        }
    }

    /// [`Src::ptr`] of channel `c`, a C expression.
    fn ptr_at(&self, c: &str, p: usize) -> String {
        if self.direct {
            format!("(xg + ({c}) * {})", self.g.h.input * self.g.w.input)
        } else {
            format!(
                "(xp + (({c}) * {} + {p}) * {})",
                self.g.phases(),
                self.g.plane()
            )
        }
    }

    /// Elements of a plane that hold data (the rest read as padding).
    fn len(&self) -> usize {
        if self.direct {
            self.g.h.input * self.g.w.input
        } else {
            self.g.plane()
        }
    }

    fn value(&self, ptr: &str, i: &str) -> String {
        if self.direct && self.xt == DType::I8 {
            format!("(uint8_t)({ptr}[{i}] + {})", self.shift)
        } else {
            format!("{ptr}[{i}]")
        }
    }
}

/// Renders `qconv_dot`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv(
    w: &mut W,
    st: &Step,
    k: &QConvDot,
    q: &QConvAttrs,
    win: &Window,
    ws: &[Option<&Tensor>],
    h: &mut Helpers,
) -> Option<()> {
    h.need("nnc_idot");
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let (dot, l) = (k.dot, k.lanes);
    let g = Grid::new(win, l, 0)?;
    let (cg, mg, groups) = (win.cg(), win.mg(), win.groups);
    let taps = g.taps.len();
    let ng = qdot::conv_groups(cg, taps, dot, k.im2col);
    let wt = ws.get(1).copied().flatten()?;
    let words = qdot::conv_words(wt, q.q.w_zp, cg, taps, dot, k.im2col);
    // Blocks of `c` channels per group: [group][block]([group][channel]).
    let c = k.channels.min(mg).max(1);
    let mut packed = Vec::new();
    for gr in 0..groups {
        let mut b = 0;
        while b < mg {
            let e = (b + c).min(mg);
            packed.extend(qdot::conv_tile_words(&words, gr * mg + b, gr * mg + e));
            b = e;
        }
    }
    let wname = h.global_i32("qw", &packed);
    let bias = qdot::folded_bias(
        st.bias().and_then(|b| ws.get(b).copied().flatten()),
        wt,
        q.q.w_zp,
        x.dtype,
        q.q.x_zp,
        cg * taps,
    );
    let bv: Vec<String> = bias.iter().map(|v| v.to_string()).collect();
    let bname = h.global_array("qb", "int32_t", &bv);
    let m_total = win.out_channels;
    let (qm, qs) = rq_tables(st, ws, m_total, h);
    let pad = qdot::pad_value(x.dtype, q.q.x_zp);
    let shift = qdot::unsigned_shift(x.dtype);
    let et = etype(dot);
    let scratch = qdot::conv_scratch(&g, cg, dot, k.im2col, c, k.vectors, l);
    let plane = g.plane();
    let np = g.phases();
    let t_pos = k.vectors * l;
    let in_img = win.channels * g.h.input * g.w.input;
    let oplane = g.h.output * g.w.output;
    if scratch.planes > 0 {
        w.line(format!("uint8_t xp[{}];", scratch.planes));
    }
    w.line(format!(
        "{et} xq[{}];",
        scratch.copy / qdot::elem_bytes(dot)
    ));
    w.line(format!("int32_t acc[{}];", c * t_pos));
    w.line("(void)acc;");
    if scratch.out > 0 {
        w.line(format!("{} yg[{}];", ctype(y.dtype), scratch.out));
    }
    w.for_("n", 0, win.batch);
    w.for_("g", 0, groups);
    w.line(format!(
        "const {} *xg = in0 + n * {in_img} + g * {};",
        ctype(x.dtype),
        cg * g.h.input * g.w.input
    ));
    let direct = scratch.planes == 0;
    if !direct {
        phase_planes(w, &g, cg, x.dtype, pad);
    }
    let src = Src {
        g: &g,
        direct,
        shift,
        xt: x.dtype,
    };
    // The dot copy.
    let walk = if k.im2col {
        // [group][position][dot] from the phase planes at each tap.
        let per = g.computed * dot;
        for gi in 0..ng {
            w.block();
            w.line(format!("{et} *d = xq + {};", gi * per));
            let mut vals = Vec::new();
            for t in 0..dot {
                match qdot::conv_element(gi, t, cg, taps, dot, true) {
                    Some((ci, tap)) => {
                        let tp = g.taps[tap];
                        let p = src.ptr(ci, tp.phase);
                        w.line(format!("const uint8_t *s{t} = {p} + {};", tp.off));
                        vals.push(format!("({et})s{t}[i]"));
                    }
                    None => vals.push(pad.to_string()),
                }
            }
            w.for_("i", 0, g.computed);
            for (t, v) in vals.iter().enumerate() {
                w.line(format!("d[{dot} * i + {t}] = {v};"));
            }
            w.close();
            w.close();
        }
        let unroll = 4usize.min(ng.max(1));
        Walk {
            outer: ng / unroll,
            stride: unroll * per,
            inner: (0..unroll).map(|u| u * per).collect(),
            tail: (0..ng % unroll).map(|u| u * per).collect(),
        }
    } else {
        // [channel group][phase][element][dot]: the full groups in a loop
        // (one copy of the code whatever the channel count), then the
        // partial one.
        let nq = cg.div_ceil(dot);
        let n_src = src.len();
        let full = cg / dot;
        let groups_at: Vec<Option<usize>> = if full > 0 {
            std::iter::once(None).chain((full..nq).map(Some)).collect()
        } else {
            (0..nq).map(Some).collect()
        };
        for cq in groups_at {
            if cq.is_none() {
                w.for_("cq", 0, full);
            }
            for p in 0..np {
                w.block();
                match cq {
                    Some(cq) => w.line(format!("{et} *d = xq + {};", (cq * np + p) * plane * dot)),
                    None => w.line(format!(
                        "{et} *d = xq + (cq * {np} + {p}) * {};",
                        plane * dot
                    )),
                }
                let mut srcs = Vec::new();
                for t in 0..dot {
                    let ci = cq.map(|cq| cq * dot + t);
                    if ci.is_none_or(|ci| ci < cg) {
                        let sp = match ci {
                            Some(ci) => src.ptr(ci, p),
                            None => src.ptr_at(&format!("cq * {dot} + {t}"), p),
                        };
                        w.line(format!(
                            "const {} *s{t} = {sp};",
                            if direct { ctype(x.dtype) } else { "uint8_t" }
                        ));
                        srcs.push(Some(format!("s{t}")));
                    } else {
                        srcs.push(None);
                    }
                }
                let n_data = n_src.min(plane);
                w.for_("i", 0, n_data);
                for (t, s) in srcs.iter().enumerate() {
                    let v = match s {
                        Some(s) => format!("({et}){}", src.value(s, "i")),
                        None => pad.to_string(),
                    };
                    w.line(format!("d[{dot} * i + {t}] = {v};"));
                }
                w.close();
                if n_data < plane {
                    w.open(format!(
                        "for (size_t i = {}; i < {}; ++i)",
                        n_data * dot,
                        plane * dot
                    ));
                    w.line(format!("d[i] = {pad};"));
                    w.close();
                }
                w.close();
            }
            if cq.is_none() {
                w.close();
            }
        }
        Walk {
            outer: nq,
            stride: np * plane * dot,
            inner: g
                .taps
                .iter()
                .map(|tp| (tp.phase * plane + tp.off) * dot)
                .collect(),
            tail: vec![],
        }
    };
    // Channel blocks, position tiles.
    let vecs = g.computed / l;
    let (nfull, vrem) = (vecs / k.vectors, vecs % k.vectors);
    let block = |w: &mut W, cb: usize, b0: &str| {
        w.line(format!("const size_t m0 = g * {mg} + {b0};"));
        w.line(format!("const int32_t *wb = {wname} + m0 * {ng};"));
        let body = |w: &mut W, tv: usize, q0: &str| {
            let t = tv * l;
            let out = Out {
                st,
                qm: &qm,
                qs: &qs,
                y: y.dtype,
                ch: (0..cb).map(|r| format!("m0 + {r}")).collect(),
                dst: (0..cb)
                    .map(|r| {
                        if g.dense() {
                            format!("out0 + (n * {m_total} + m0 + {r}) * {oplane} + ({q0})")
                        } else {
                            format!("yg + {} + ({q0})", r * g.computed)
                        }
                    })
                    .collect(),
                nj: if g.dense() {
                    format!(
                        "(({q0}) + {t} <= {len} ? {t} : {len} - ({q0}))",
                        len = g.len
                    )
                } else {
                    t.to_string()
                },
            };
            tile(w, dot, l, cb, tv, "xq", q0, &walk, "wb", &bname, "m0", &out);
        };
        if nfull > 0 {
            w.for_("tq", 0, nfull);
            w.line(format!("const size_t q0 = tq * {t_pos};"));
            body(w, k.vectors, "q0");
            w.close();
        }
        if vrem > 0 {
            w.block();
            body(w, vrem, &(nfull * t_pos).to_string());
            w.close();
        }
        if !g.dense() {
            // Drop the grid's extra columns.
            w.for_("r", 0, cb);
            w.for_("oh", 0, g.h.output);
            w.line(format!(
                "{} *d = out0 + (n * {m_total} + m0 + r) * {oplane} + oh * {};",
                ctype(y.dtype),
                g.w.output
            ));
            w.line(format!(
                "const {} *s = yg + r * {} + oh * {};",
                ctype(y.dtype),
                g.computed,
                g.width
            ));
            w.for_("j", 0, g.w.output);
            w.line("d[j] = s[j];");
            w.close();
            w.close();
            w.close();
        }
    };
    let (bfull, crem) = (mg / c, mg % c);
    if bfull > 0 {
        w.for_("b", 0, bfull);
        block(w, c, &format!("b * {c}"));
        w.close();
    }
    if crem > 0 {
        w.block();
        block(w, crem, &(bfull * c).to_string());
        w.close();
    }
    w.close(); // g
    w.close(); // n
    Some(())
}
