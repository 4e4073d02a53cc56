//! The native integer kernels' requantization against the interpreter (and
//! the C dot kernels' on the same convolutions): the
//! exact f64 forms (taken where a channel's accumulator bound times its
//! multiplier stays below 2^53; with a positive offset and truncation
//! where there is room for it, else an explicit floor) on rounding ties,
//! narrow clamps and uint8 outputs, and the integer form where the bound
//! or the shift is too large for it; the byte transposes that take an
//! image channels-first; and the vector mean of whole int8 planes.

use nnc::cbuild::{CFlags, run_c};
use nnc::driver::{self, Backend};
use nnc_tests::graphs::Rng;

/// `n` pseudo-random integers in `[lo, hi]` as an IR constant list.
fn values(n: usize, seed: u64, lo: i64, hi: i64) -> String {
    let mut r = Rng::new(seed);
    let v: Vec<String> = (0..n).map(|_| r.int_in(lo, hi).to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// Native code and C on the host (its vector requantization: AVX2's or
/// AVX-512's, whichever this CPU has) equal the interpreter on random
/// inputs.
fn check(name: &str, src: &str) {
    let g = nnc_ir::parse(src).unwrap_or_else(|e| panic!("{name}: {e}\n{src}"));
    for seed in [3, 11, 29] {
        let inputs = nnc_passes::check::random_inputs(&g, seed);
        let want = nnc_ir::interp::run(&g, &inputs).unwrap();
        let got =
            driver::execute(&g, Backend::Native, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name} seed {seed} native");
        let got = run_c(&g, &inputs, &native_flags()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name} seed {seed} C -march=native");
    }
}

/// C flags that enable this CPU's intrinsics (the kernels' vector paths).
fn native_flags() -> CFlags {
    CFlags {
        opt: vec!["-O2".into(), "-march=native".into()],
        ..Default::default()
    }
}

/// A quantized convolution of `x` (NCHW dims) to `m` channels, stride 1.
fn qconv(
    name: &str,
    x: (&str, [usize; 4]),
    shape: (usize, usize, usize),
    rq: (&str, &str),
    out: (i64, i64, i64, i64, &str),
    wmag: i64,
) {
    qconv_s(name, x, shape, 1, rq, out, wmag)
}

/// A quantized convolution with `k x k` taps, padding `k / 2` and stride
/// `s`.
fn qconv_s(
    name: &str,
    (xt, x): (&str, [usize; 4]),
    (m, k, group): (usize, usize, usize),
    s: usize,
    (mult, shift): (&str, &str),
    (x_zp, y_zp, lo, hi, yt): (i64, i64, i64, i64, &str),
    wmag: i64,
) {
    let [n, c, h, w] = x;
    let cg = c / group;
    let pad = k / 2;
    let nw = m * cg * k * k;
    let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
    let src = format!(
        "graph @{name}(v0 \"x\": {xt}[{n},{c},{h},{w}]) -> (\"y\": {yt}[{n},{m},{oh},{ow}]) {{\n\
         c0 = const i8[{m},{cg},{k},{k}] {wv}\n\
         c1 = const i32[{m}] {bv}\n\
         c2 = const i32[{mn}] {mult}\n\
         c3 = const i32[{mn}] {shift}\n\
         v1 = qconv v0, c0, c1, c2, c3 {{stride=[{s},{s}] pad=[{pad},{pad},{pad},{pad}] dilation=[1,1]{g} \
         x_zp={x_zp} w_zp=0 y_zp={y_zp} lo={lo} hi={hi} out={yt}}} : {yt}[{n},{m},{oh},{ow}]\n\
         return v1\n}}\n",
        wv = values(nw, nw as u64, -wmag, wmag),
        bv = values(m, 7, -3000, 3000),
        mn = mult.matches(',').count() + 1,
        g = if group > 1 {
            format!(" group={group}")
        } else {
            String::new()
        },
    );
    check(name, &src);
}

#[test]
fn f64_requantization_rounds_ties_away_as_the_integer_form() {
    // 2^30 * 2^-31 halves the accumulator: every odd one is a tie.
    qconv(
        "ties_dw",
        ("i8", [1, 5, 6, 7]),
        (5, 3, 5),
        ("[1073741824]", "[0]"),
        (-3, 3, -128, 127, "i8"),
        127,
    );
    qconv(
        "ties_pw",
        ("i8", [1, 8, 5, 9]),
        (6, 1, 1),
        ("[1073741824]", "[-4]"),
        (7, -2, -128, 127, "i8"),
        127,
    );
}

#[test]
fn f64_requantization_clamps_narrow_ranges_and_uint8() {
    qconv(
        "narrow_i8",
        ("i8", [1, 12, 5, 6]),
        (7, 1, 1),
        (
            "[1289204782, 1164167674, 1388044534, 1531678477, 2021945361, 1628388656, 1100000000]",
            "[-8, -8, -9, -7, -9, -10, -8]",
        ),
        (-128, 5, -20, 100, "i8"),
        90,
    );
    qconv(
        "narrow_u8_dw",
        ("u8", [1, 6, 7, 5]),
        (6, 3, 6),
        ("[1529867883]", "[-6]"),
        (128, 128, 10, 200, "u8"),
        120,
    );
}

#[test]
fn f64_requantization_with_an_explicit_floor_near_the_bound() {
    // The accumulator bound of the large 3x3 below, computed as the
    // kernels do: each weight at its worst input (x - x_zp in [-127, 128]).
    let (m, cg, k) = (4usize, 64usize, 3usize);
    let nw = m * cg * k * k;
    let w: Vec<i64> = values(nw, nw as u64, -127, 127)
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    let b: Vec<i64> = values(m, 7, -3000, 3000)
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    let bound = (0..m)
        .map(|c| {
            let ws = &w[c * cg * k * k..(c + 1) * cg * k * k];
            let top: i64 = b[c] + ws.iter().map(|&v| (v * -127).max(v * 128)).sum::<i64>();
            let bot: i64 = b[c] + ws.iter().map(|&v| (v * -127).min(v * 128)).sum::<i64>();
            top.abs().max(bot.abs())
        })
        .max()
        .unwrap();
    // With a multiplier of 2^30 and a total shift of 31, the sum
    // |acc| * 2^30 + 2^30 lies in [2^52, 2^53): exact in f64, but no room
    // for the offset form's 2^K, so the floor is explicit.
    let top = bound * (1 << 30) + (1 << 30);
    assert!((1i64 << 52..1i64 << 53).contains(&top), "bound {bound}");
    qconv(
        "floor_form",
        ("i8", [1, 64, 4, 5]),
        (4, 3, 1),
        ("[1073741824]", "[0]"),
        (-1, 0, -128, 127, "i8"),
        127,
    );
}

#[test]
fn integer_requantization_where_f64_would_round() {
    // 3x3 over 64 channels of large weights: the bound (about 2^24) times
    // the multiplier (2^30.5) passes 2^53, so the integer form runs.
    qconv(
        "large_bound",
        ("i8", [1, 64, 4, 5]),
        (4, 3, 1),
        ("[1518500250]", "[-15]"),
        (-1, 0, -128, 127, "i8"),
        127,
    );
    // A shift of -25: 2^(56 - 1) alone passes 2^53.
    qconv(
        "large_shift",
        ("i8", [1, 4, 6, 6]),
        (4, 3, 4),
        ("[2000000000]", "[-25]"),
        (0, 1, -128, 127, "i8"),
        127,
    );
}

#[test]
fn byte_transposes_to_channels_first() {
    for (t, [h, w, c]) in [
        ("i8", [3, 5, 2]),
        ("i8", [4, 4, 3]),
        ("u8", [5, 9, 4]),
        ("i8", [7, 13, 3]),
        ("u8", [6, 6, 2]),
    ] {
        let src = format!(
            "graph @t(v0 \"x\": {t}[1,{h},{w},{c}]) -> (\"y\": {t}[1,{c},{h},{w}]) {{\n\
             v1 = transpose v0 {{perm=[0,3,1,2]}} : {t}[1,{c},{h},{w}]\n\
             return v1\n}}\n"
        );
        check(&format!("transpose {t} {h}x{w}x{c}"), &src);
    }
}

#[test]
fn stride_two_depthwise_planes_on_wide_images() {
    // Rows of 40 and 37 columns: the phase planes' runs of step 2 copy 16
    // elements per shuffle, then 8, 4 and single ones; per-channel
    // multipliers and shifts, zero points on both sides.
    for (name, (xt, h, w), x_zp) in [
        ("dw_s2_even", ("i8", 9, 40), -7),
        ("dw_s2_odd", ("i8", 11, 37), 12),
        ("dw_s2_u8", ("u8", 6, 45), 131),
    ] {
        let yt = xt;
        let (lo, hi) = if xt == "u8" { (0, 255) } else { (-128, 127) };
        qconv_s(
            name,
            (xt, [1, 3, h, w]),
            (3, 3, 3),
            2,
            ("[1289204782, 1164167674, 2021945361]", "[-7, -8, -6]"),
            (x_zp, if xt == "u8" { 128 } else { -5 }, lo, hi, yt),
            127,
        );
    }
}

#[test]
fn whole_plane_average_pools() {
    // Planes of whole vectors and a rest (125, 35), exactly one vector
    // (16), and shorter than one (9: the last plane reads backwards),
    // int8 and uint8, batches of one and two.
    for (t, [n, c, h, w]) in [
        ("i8", [1, 64, 25, 5]),
        ("i8", [2, 3, 7, 5]),
        ("u8", [1, 3, 4, 4]),
        ("i8", [1, 5, 3, 3]),
        ("u8", [1, 2, 1, 9]),
        ("i8", [1, 16, 1, 1]),
    ] {
        let src = format!(
            "graph @p(v0 \"x\": {t}[{n},{c},{h},{w}]) -> (\"y\": {t}[{n},{c},1,1]) {{\n\
             v1 = avg_pool v0 {{kernel=[{h},{w}] stride=[{h},{w}] pad=[0,0,0,0]}} : {t}[{n},{c},1,1]\n\
             return v1\n}}\n"
        );
        check(&format!("avg_pool {t} {n}x{c}x{h}x{w}"), &src);
    }
}

#[test]
fn constant_channels_keep_the_f64_form_exact() {
    // Channel 1 is dead (zero weights, a bias of 2^30, a multiplier of
    // 2^-27.7: always 5 + zp), channel 2 nearly so (weights of one, the
    // accumulator within 2^30 +- 1020, always 12 + zp); channel 0 is an
    // ordinary one that the f64 form computes.
    for (t, x_zp) in [("i8", -128), ("i8", 3), ("u8", 128)] {
        let src = format!(
            "graph @dead(v0 \"x\": {t}[1,4,3,5]) -> (\"y\": i8[1,3,3,5]) {{\n\
             c0 = const i8[3,4,1,1] [37, -90, 12, 127, 0, 0, 0, 0, 1, -1, 1, 1]\n\
             c1 = const i32[3] [100, 1073741824, 1073741760]\n\
             c2 = const i32[3] [1518500250, 1320764593, 1569364972]\n\
             c3 = const i32[3] [-8, -27, -26]\n\
             v1 = qconv v0, c0, c1, c2, c3 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1] \
             x_zp={x_zp} w_zp=0 y_zp=-128 lo=-128 hi=127 out=i8}} : i8[1,3,3,5]\n\
             return v1\n}}\n"
        );
        check(&format!("dead channels {t} x_zp={x_zp}"), &src);
    }
}

/// The integer softmax at output parameters other than TFLite's (1/255
/// from 0 for uint8, as onnxruntime's QDQ softmax writes, and an int8
/// output from -100 at 1/200): C and native code equal the interpreter,
/// which rounds the probabilities once to the output scale, on rows short
/// and long, including differences below `diff_min`.
#[test]
fn softmax_at_any_output_scale_on_c_and_native() {
    let cases = [
        ("u8", "u8", 140, 0.09f32, 1.0f32 / 255.0, 0, 10),
        ("i8", "i8", 0, 0.3, 1.0 / 200.0, -100, 37),
        ("i8", "u8", -5, 0.05, 1.0 / 255.0, 0, 300),
    ];
    for (xt, yt, xz, xs, ys, yz, n) in cases {
        let src = format!(
            "graph @t(v0 \"x\": {xt}[3,{n}]) -> (\"y\": {yt}[3,{n}]) {{
    c0 = const f32[] [{xs}]
    c1 = const {xt}[] [{xz}]
    v1 = dequantize v0, c0, c1 {{axis=0}} : f32[3,{n}]
    v2 = softmax v1 {{axis=1}} : f32[3,{n}]
    c2 = const f32[] [{ys}]
    c3 = const {yt}[] [{yz}]
    v3 = quantize v2, c2, c3 {{axis=0 to={yt}}} : {yt}[3,{n}]
    return v3
}}"
        );
        let name = format!("softmax {xt}->{yt} n={n}");
        let g = nnc_ir::parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (g, _) = driver::optimize(g, &Default::default(), |_, _| {}).unwrap();
        let text = nnc_ir::print(&g);
        assert!(
            text.contains("qsoftmax") && text.contains(" y=[") && !text.contains("requant"),
            "{name}:\n{text}"
        );
        for seed in [3, 11] {
            let inputs = nnc_passes::check::random_inputs(&g, seed);
            let want = nnc_ir::interp::run(&g, &inputs).unwrap();
            for b in [Backend::Native, Backend::C] {
                let got = driver::execute(&g, b, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, want, "{name} on {} seed {seed}", b.name());
            }
        }
    }
}
