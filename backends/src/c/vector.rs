//! Explicit vectors for the C host kernels: a GNU C vector type of the
//! target's lane count and a fused multiply-add on it.
//!
//! Most kernels leave vectorization to the C compiler, which keeps
//! fixed-size accumulator arrays in registers only when little else
//! happens in the loop. The channel-blocked convolution
//! ([`super::conv::blocked`]) keeps its accumulators as vector values
//! instead, allocated to registers by construction: 1.4-1.5x the array
//! form on MobileNetV2's pointwise convolutions at 7x7 (GCC 12, AVX-512).
//! The vector type needs GCC or Clang; the fused multiply-add is the
//! target's intrinsic where the compiler provides one (`-std=c99` turns off
//! contraction of `a * b + c`), else a multiply and an add.
//!
//! Microcontroller targets never use these (no vector registers).

/// The vector type `nnc_vf` of `lanes` floats (unaligned, aliasing float
/// memory), `NNC_VFMA(a, b, c)` (a * b + c) and `NNC_VSPLAT(s)`.
pub(super) fn prelude(lanes: usize) -> String {
    let fma = match lanes {
        16 => {
            "#if defined(__AVX512F__)\n#include <immintrin.h>\n#define NNC_VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))\n"
        }
        8 => {
            "#if defined(__FMA__) && defined(__AVX__)\n#include <immintrin.h>\n#define NNC_VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))\n"
        }
        4 => {
            "#if defined(__FMA__) && defined(__SSE__)\n#include <immintrin.h>\n#define NNC_VFMA(a, b, c) _mm_fmadd_ps((a), (b), (c))\n"
        }
        _ => "#if 0\n",
    };
    // The splat is a compound literal of `lanes` copies (the argument is
    // evaluated once per lane: callers pass plain values), one broadcast
    // from memory. `(nnc_vf){0} + s` compiles to a scalar add and a
    // broadcast from a register on GCC 12 (0.93 ms against 0.53 ms on
    // MobileNetV2's last pointwise convolution, AVX2) and turns -0.0 into
    // +0.0. A function returning the vector would change the ABI where
    // the compiler has no such registers enabled (-Wpsabi).
    let copies = vec!["(float)(s)"; lanes.max(1)].join(", ");
    format!(
        "#if !defined(__GNUC__)\n#error \"nnc host kernels need GCC or Clang vector extensions\"\n#endif\n\
         __extension__ typedef float nnc_vf __attribute__((vector_size({}), aligned(4), may_alias));\n\
         #define NNC_VSPLAT(s) ((nnc_vf){{{copies}}})\n\
         {fma}#else\n#define NNC_VFMA(a, b, c) ((a) * (b) + (c))\n#endif\n\n",
        lanes * 4
    )
}

/// `nnc_tr(s, ss, d, ds)`: transposes a `lanes x lanes` block of floats,
/// row `r` of the source (`s + r * ss`) into column `r` of the
/// destination (`d[c * ds + r]`). In vectors: `log2(lanes)` rounds that
/// swap the off-diagonal sub-blocks of every diagonal block, each a
/// two-source shuffle per vector (`vpermt2ps` on AVX-512: 64 for 256
/// floats, against 256 scalar stores, or loads, at a stride). Compilers
/// without `__builtin_shufflevector` (GCC before 12) copy element by element.
pub(super) fn transpose(lanes: usize) -> String {
    let l = lanes.max(1);
    let mut v = String::new();
    let rows: Vec<String> = (0..l).map(|r| format!("r{r}")).collect();
    v.push_str(&format!(
        "    nnc_vf {};\n",
        (0..l)
            .map(|r| format!("r{r} = *(const nnc_vf *)(s + {r} * ss)"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut b = l / 2;
    while b >= 1 {
        let lo: Vec<String> = (0..l)
            .map(|c| if c & b == 0 { c } else { l + c - b })
            .map(|i| i.to_string())
            .collect();
        let hi: Vec<String> = (0..l)
            .map(|c| if c & b == 0 { c + b } else { l + c })
            .map(|i| i.to_string())
            .collect();
        for i in (0..l).filter(|i| i & b == 0) {
            let (x, y) = (&rows[i], &rows[i + b]);
            v.push_str(&format!(
                "    {{ const nnc_vf a = {x}, b = {y}; {x} = __builtin_shufflevector(a, b, {}); {y} = __builtin_shufflevector(a, b, {}); }}\n",
                lo.join(", "),
                hi.join(", ")
            ));
        }
        b /= 2;
    }
    for (c, r) in rows.iter().enumerate() {
        v.push_str(&format!("    *(nnc_vf *)(d + {c} * ds) = {r};\n"));
    }
    format!(
        "static inline void nnc_tr(const float *restrict s, size_t ss, float *restrict d, size_t ds) {{\n\
         #if defined(__has_builtin)\n#if __has_builtin(__builtin_shufflevector)\n#define NNC_HAVE_SHUFFLE 1\n#endif\n#endif\n\
         #if defined(NNC_HAVE_SHUFFLE)\n{v}#else\n\
         for (size_t r = 0; r < {l}; ++r) {{\n        for (size_t c = 0; c < {l}; ++c) {{\n            d[c * ds + r] = s[r * ss + c];\n        }}\n    }}\n\
         #endif\n}}\n\n"
    )
}

/// Emits one reduction step of a register tile of vector accumulators
/// `{acc}{r}_{v}` (`rows` by `nv`): loads vector `u{v}` from `vector(v)`
/// (an address), broadcasts `s{r}` from `scalar(r)` (a value) and adds
/// their products. Every tile kernel with vector accumulators steps this
/// way.
pub(super) fn fma_step(
    w: &mut super::writer::W,
    acc: &str,
    rows: usize,
    nv: usize,
    vector: impl Fn(usize) -> String,
    scalar: impl Fn(usize) -> String,
) {
    for v in 0..nv {
        w.line(format!(
            "const nnc_vf u{v} = *(const nnc_vf *)({});",
            vector(v)
        ));
    }
    for r in 0..rows {
        w.line(format!("const nnc_vf s{r} = NNC_VSPLAT({});", scalar(r)));
        for v in 0..nv {
            w.line(format!(
                "{acc}{r}_{v} = NNC_VFMA(u{v}, s{r}, {acc}{r}_{v});"
            ));
        }
    }
}
