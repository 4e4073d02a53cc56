//! Channel split chosen by peak memory: small graphs where a split must
//! lower the arena (a wide intermediate between a narrow input and a
//! narrow output, at a spatial size where row streaming cannot help), for
//! float and int8, by placement and by accumulation. The split programs
//! must compute what the unsplit graph does on the interpreter, C and
//! native code (float within rtol 1e-4 / atol 1e-5, int8 exactly), and
//! on the shared models channel split must never raise the arena.

use nnc::driver::{self, LoadOptions, Lowering};
use nnc_ir::program::{Arch, Target};
use nnc_ir::{DType, Graph, Tensor};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_passes::{OptLevel, PipelineOptions};
use nnc_tests::graphs::Rng;
use nnc_tests::shared::{models_dir, require};
use nnc_tests::targets::run_program;

/// `n` pseudo-random numbers in `[lo, hi]` (rounded to integers when
/// `int`), as an IR constant list.
fn vals(seed: u64, n: usize, lo: f64, hi: f64, int: bool) -> String {
    format!(
        "[{}]",
        draw(seed, n, lo, hi, int)
            .iter()
            .map(|x| if int {
                format!("{x}")
            } else {
                format!("{x:.4}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `n` pseudo-random numbers in `[lo, hi]` (integers when `int`).
fn draw(seed: u64, n: usize, lo: f64, hi: f64, int: bool) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let x = r.uniform(lo, hi);
            if int { x.round() } else { x }
        })
        .collect()
}

/// Float, accumulation: 8 channels -> 128 (relu) -> depthwise 3x3 (relu)
/// -> 8, on 2x2 pixels.
fn float_accumulate() -> Graph {
    let (c, h) = (128, 2);
    let src = format!(
        "graph @acc(v0 \"x\": f32[1,8,{h},{h}]) -> (\"y\": f32[1,8,{h},{h}]) {{
    c1 = const f32[{c},8,1,1] {}
    c2 = const f32[{c}] {}
    c3 = const f32[{c},1,3,3] {}
    c4 = const f32[{c}] {}
    c5 = const f32[8,{c},1,1] {}
    c6 = const f32[8] {}
    v1 = conv v0, c1, c2 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,{c},{h},{h}]
    v2 = relu v1 : f32[1,{c},{h},{h}]
    v3 = conv v2, c3, c4 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1] group={c}}} : f32[1,{c},{h},{h}]
    v4 = relu v3 : f32[1,{c},{h},{h}]
    v5 = conv v4, c5, c6 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,8,{h},{h}]
    return v5
}}",
        vals(1, c * 8, -1.0, 1.0, false),
        vals(2, c, -1.0, 1.0, false),
        vals(3, c * 9, -1.0, 1.0, false),
        vals(4, c, -1.0, 1.0, false),
        vals(5, 8 * c, -1.0, 1.0, false),
        vals(6, 8, -1.0, 1.0, false),
    );
    optimized(&src)
}

/// Float, placement: 4 channels -> 64 (3x3, relu) -> 2x2 max pooling, on
/// 4x4 pixels.
fn float_place() -> Graph {
    let c = 64;
    let src = format!(
        "graph @place(v0 \"x\": f32[1,4,4,4]) -> (\"y\": f32[1,{c},2,2]) {{
    c1 = const f32[{c},4,3,3] {}
    c2 = const f32[{c}] {}
    v1 = conv v0, c1, c2 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1]}} : f32[1,{c},4,4]
    v2 = relu v1 : f32[1,{c},4,4]
    v3 = max_pool v2 {{kernel=[2,2] stride=[2,2] pad=[0,0,0,0]}} : f32[1,{c},2,2]
    return v3
}}",
        vals(7, c * 36, -1.0, 1.0, false),
        vals(8, c, -1.0, 1.0, false),
    );
    optimized(&src)
}

/// int8, placement: 4 channels -> 64 (3x3) -> depthwise 3x3 stride 2
/// (per-channel requantization), on 4x4 pixels.
fn int8_place() -> Graph {
    let c = 64;
    let src = format!(
        "graph @qplace(v0 \"x\": i8[1,4,4,4]) -> (\"y\": i8[1,{c},2,2]) {{
    c1 = const i8[{c},4,3,3] {}
    c2 = const i32[{c}] {}
    c3 = const i32[{c}] {}
    c4 = const i32[{c}] {}
    v1 = qconv v0, c1, c2, c3, c4 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1] x_zp=-3 w_zp=0 y_zp=-128 lo=-128 hi=127 out=i8}} : i8[1,{c},4,4]
    c5 = const i8[{c},1,3,3] {}
    c6 = const i32[{c}] {}
    c7 = const i32[1] [1628388656]
    c8 = const i32[1] [-7]
    v2 = qconv v1, c5, c6, c7, c8 {{stride=[2,2] pad=[1,1,1,1] dilation=[1,1] group={c} x_zp=-128 w_zp=0 y_zp=5 lo=-20 hi=100 out=i8}} : i8[1,{c},2,2]
    return v2
}}",
        vals(9, c * 36, -127.0, 127.0, true),
        vals(10, c, -3000.0, 3000.0, true),
        vals(11, c, 1.1e9, 2.1e9, true),
        vals(12, c, -10.0, -8.0, true),
        vals(13, c * 9, -127.0, 127.0, true),
        vals(14, c, -300.0, 300.0, true),
    );
    optimized(&src)
}

/// The graph after the -O2 pipeline for a Cortex-M4 (fusion, no
/// Winograd), as lowering sees it.
fn optimized(src: &str) -> Graph {
    let g = nnc_ir::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let opts = LoadOptions {
        opt_level: OptLevel::O2,
        pipeline: PipelineOptions {
            target: Target::cortex_m(Arch::CortexM4),
            ..Default::default()
        },
        ..Default::default()
    };
    driver::optimize(g, &opts, |_, _| {}).unwrap().0
}

fn how(channel_split: bool) -> Lowering {
    Lowering {
        memory: MemoryGoal::Minimize,
        max_recompute: 0.0,
        channel_split,
        ..Default::default()
    }
}

fn input(g: &Graph, seed: u64) -> Tensor {
    let t = g.input_type(0);
    let int = t.dtype == DType::I8;
    let (lo, hi) = if int { (-128.0, 127.0) } else { (-1.0, 1.0) };
    let n = t.len();
    Tensor::from_f64(t.dtype, t.dims.clone(), draw(seed, n, lo, hi, int)).unwrap()
}

/// The first output of `p` on `x`, on the backend it was lowered for.
fn run_one(p: &nnc_ir::program::Program, x: &Tensor) -> Tensor {
    run_program(p, std::slice::from_ref(x)).unwrap().remove(0)
}

fn same(what: &str, got: &Tensor, want: &Tensor) {
    if want.dtype().is_float() {
        for (i, (a, b)) in got.to_f64().iter().zip(want.to_f64()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                "{what}: element {i}: {a} vs {b}"
            );
        }
    } else {
        assert!(got.bit_eq(want), "{what}: int8 outputs differ");
    }
}

/// The split is chosen, lowers the arena on a Cortex-M4, and computes
/// what the unsplit graph does everywhere.
fn check(name: &str, g: &Graph, kind: &str) {
    let m4 = Target::cortex_m(Arch::CortexM4);
    let plain = how(false).lower(g, name, &m4).unwrap();
    let split = how(true).lower(g, name, &m4).unwrap();
    let cs = split.stats.channel_split.as_ref().expect("tried");
    assert!(cs.kept, "{name}: {}", cs.summary());
    assert!(
        cs.splits.iter().any(|s| s.kind == kind && s.slices > 1),
        "{name}: {cs:?}"
    );
    assert_eq!(cs.arena_without, plain.arena_bytes);
    assert!(
        split.arena_bytes < plain.arena_bytes,
        "{name}: {} B split, {} B unsplit",
        split.arena_bytes,
        plain.arena_bytes
    );
    assert!(
        split.dump().contains(&format!("split {kind} x")),
        "{}",
        split.dump()
    );
    // Outputs: the interpreter on the split graph, C and native on the
    // split programs, against the interpreter on the unsplit graph.
    let sg = nnc_passes::egraph::memextract::channel_split(g, true)
        .unwrap()
        .graph;
    assert!(
        nnc_ir::print(&sg).contains("/ch0-"),
        "{}",
        nnc_ir::print(&sg)
    );
    for seed in [21, 22] {
        let x = input(g, seed);
        let want = driver::run_interp(g, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let got = driver::run_interp(&sg, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        same(&format!("{name} interp"), &got, &want);
        let c = how(true)
            .lower(g, name, &nnc_backends::c::host_target())
            .unwrap();
        assert!(c.stats.channel_split.as_ref().is_some_and(|s| s.kept));
        same(&format!("{name} C"), &run_one(&c, &x), &want);
        let n = how(true)
            .lower(g, name, &nnc_backends::cranelift::host_target().unwrap())
            .unwrap();
        assert!(n.stats.channel_split.as_ref().is_some_and(|s| s.kept));
        same(&format!("{name} native"), &run_one(&n, &x), &want);
    }
}

#[test]
fn float_accumulation_lowers_the_arena_and_computes_the_same() {
    check("acc", &float_accumulate(), "accumulate");
}

#[test]
fn float_placement_lowers_the_arena_and_computes_the_same() {
    check("place", &float_place(), "place");
}

#[test]
fn int8_placement_lowers_the_arena_and_is_exact() {
    check("qplace", &int8_place(), "place");
}

/// Host programs with the default goal are never split.
#[test]
fn host_auto_never_splits() {
    let g = float_accumulate();
    let p = Lowering::default()
        .lower(&g, "acc", &nnc_backends::c::host_target())
        .unwrap();
    assert!(p.stats.channel_split.is_none());
    let p = Lowering {
        memory: MemoryGoal::Off,
        ..Default::default()
    }
    .lower(&g, "acc", &Target::cortex_m(Arch::CortexM4))
    .unwrap();
    assert!(p.stats.channel_split.is_none());
}

/// On the shared models channel split never raises the `--memory min`
/// arena (whole rows: no column-tile search in the test), and leaves the
/// multiply-accumulates of the kept program as they were but for the
/// partial-sum additions.
#[test]
fn shared_models_are_never_worse() {
    let m4 = Target::cortex_m(Arch::CortexM4);
    for m in [
        "mlperf_tiny/kws_dscnn_int8_qdq",
        "mlperf_tiny/kws_dscnn_fp32",
        "mlperf_tiny/vww_mbv1_025_96_int8_qdq",
        "torchvision/mobilenet_v2",
    ] {
        let d = models_dir().join(m);
        require(&d);
        let opts = LoadOptions {
            opt_level: OptLevel::O2,
            pipeline: PipelineOptions {
                target: m4.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let g = driver::load(&d.join("model.onnx"), &opts).unwrap();
        let off = how(false).lower(&g, "m", &m4).unwrap();
        let on = how(true).lower(&g, "m", &m4).unwrap();
        assert!(on.arena_bytes <= off.arena_bytes, "{m}");
        let cs = on.stats.channel_split.as_ref().expect("tried");
        assert_eq!(cs.arena_without, off.arena_bytes, "{m}");
        if let Some(w) = cs.arena_with {
            assert_eq!(cs.kept, w < off.arena_bytes, "{m}");
        }
        println!("{m}: {}", cs.summary());
    }
}
