//! The differential property test: random graphs (`nnc_tests::graphgen`:
//! every kernel family, every element type) through the interpreter,
//! generated C and native code, at -O0 and -O2, on every seed. About half
//! of the steps get a kernel forced onto them (a random variant with random
//! parameters, as `--kernel` would), so every kernel variant is rendered by
//! both backends, and the seeds rotate through the C targets `host`,
//! `x86_64` (SSE2, no FMA) and `x86_64:avx2` (compiled with its ISA flags)
//! and the native targets `host` and `x86_64:x86-64-v2` (no FMA).
//!
//! `NNC_DIFF_SEEDS=3,17` runs only those seeds (and prints their graphs).
//!
//! Mutations this test was checked against (each one made it fail, with
//! the number of failing seed/level/backend runs out of 600; the code was
//! restored byte for byte afterwards):
//! - map, native: integer `iadd` -> `isub` in `cranelift/scalar.rs` (12);
//! - depthwise, native `qdw_dot`: the first sliding tap group skipped (6);
//! - map, native: float `min` computed as `max` (6);
//! - conv, C `conv_direct`: the last kernel column dropped (57);
//! - depthwise, C `dw_grid`: the last input row left out of the padded copy
//!   (22);
//! - conv transpose, native: the bias ignored (18);
//! - matrix product, native `matmul_packed`: the unroll tail of the
//!   reduction dropped (11);
//! - pooling, C `pool_rows`: the average divisor's padding rule inverted (2);
//! - copy, C: slices with negative steps read forwards (24);
//! - lookup, both (shared table): Pad's edge mode clamped to index 1 at the
//!   low border (12);
//! - reduction, C: sums and means started at 1 (8);
//! - reduction, native: log_softmax without the log-sum subtracted (4);
//! - reduction, native: integer argmax with select_last keeping the first
//!   of equal values (6);
//! - epilogue, native: fused activations dropped (153).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nnc::driver;
use nnc_ir::program::{Kernel, Program, Target};
use nnc_ir::{Graph, Op};
use nnc_passes::OptLevel;
use nnc_passes::lower::KernelChoice;
use nnc_passes::lower::partition::MemoryGoal;
use nnc_tests::graphgen::{DTYPES, RandomGraph, Rng, random_graph};
use nnc_tests::targets::{self, C_TARGETS, NATIVE_TARGETS};

/// Seeds per run: each is a graph of two to four chains, at two levels,
/// through both backends.
const SEEDS: u64 = 150;

/// The C and native target of a seed.
fn targets(seed: u64) -> (&'static str, &'static str) {
    let c = C_TARGETS[(seed % 3) as usize];
    let native = NATIVE_TARGETS[(seed / 3 % 2) as usize];
    (c, native)
}

/// Random variants (with random parameters) of the kernels that could
/// compute a step of `op`, as `--kernel` specs.
fn variants(r: &mut Rng, op: &Op) -> Vec<String> {
    let b = |r: &mut Rng| u8::from(r.one_in(2));
    let mut v = match op {
        Op::Conv(_) => vec![
            "conv_direct".to_string(),
            format!(
                "conv_blocked(p={},c={},unroll={},pad_copy={})",
                1 + r.below(8),
                r.pick(&[4, 8, 12, 16]),
                r.pick(&[1, 2, 3, 4]),
                b(r)
            ),
            format!(
                "conv_row_tiles(c={},w={},pad_copy={})",
                r.pick(&[1, 1, 2, 3, 4, 8]),
                r.pick(&[3, 4, 5, 8, 16]),
                b(r)
            ),
            format!("dw_rows(w={},pad_copy={})", r.pick(&[4, 8, 12, 16]), b(r)),
            format!(
                "dw_channels_last(block={},p={})",
                r.pick(&[1, 3, 4, 8, 16]),
                r.pick(&[1, 2, 3, 4])
            ),
            "dw_grid".to_string(),
        ],
        Op::Gemm(_) | Op::MatMul => vec![
            "matmul_direct".to_string(),
            format!(
                "matmul_packed(cols={},unroll={})",
                r.pick(&[4, 8, 16, 32]),
                r.pick(&[1, 2, 3, 4, 8])
            ),
        ],
        Op::QConv(_) => {
            let l = r.pick(&[4, 8, 16]);
            let (v, d) = (1 + r.below(4), r.pick(&[2, 4]));
            vec![
                "conv_direct".to_string(),
                format!(
                    "qconv_dot(lanes={l},v={v},c={},dot={d},im2col={})",
                    1 + r.below(6),
                    b(r)
                ),
                format!("qdw_dot(lanes={l},v={v},dot={d})"),
                format!(
                    "qconv_dot(lanes=4,v={v},c={},dot={d},im2col={})",
                    1 + r.below(6),
                    b(r)
                ),
                format!("qdw_dot(lanes=4,v={v},dot={d})"),
                format!(
                    "conv_im2col(r={},c={},unroll={})",
                    1 + r.below(4),
                    1 + r.below(4),
                    1 + r.below(6)
                ),
                format!("dw_pairs(p={},rows=1)", 1 + r.below(4)),
            ]
        }
        Op::QGemm(_) => {
            let (v, d) = (1 + r.below(4), r.pick(&[2, 4]));
            vec![
                "matmul_direct".to_string(),
                format!("qgemm_dot(lanes={},v={v},dot={d})", r.pick(&[4, 8, 16])),
                format!("qgemm_dot(lanes=4,v={v},dot={d})"),
                format!(
                    "matmul_panels(r={},c={},unroll={})",
                    1 + r.below(4),
                    1 + r.below(4),
                    1 + r.below(6)
                ),
            ]
        }
        Op::Pool(_) => vec![
            "pool_direct".to_string(),
            format!("pool_rows(w={})", r.pick(&[4, 8, 12, 16])),
            format!("global_pool(partials={})", r.pick(&[1, 4, 8, 16])),
        ],
        Op::GlobalPool(_) => vec![format!("global_pool(partials={})", r.pick(&[1, 4, 8, 16]))],
        Op::Reduce(_) => vec!["reduce(acc=f32)".into(), "reduce(acc=f64)".into()],
        Op::Transpose(_) => vec!["deinterleave".into()],
        _ => vec![],
    };
    // Try them in a random order.
    for i in (1..v.len()).rev() {
        let j = r.below(i + 1);
        v.swap(i, j);
    }
    // Kernels added later join at a fixed place, drawing nothing from the
    // generator, so every other seed still builds the graphs it did.
    if matches!(op, Op::Conv(_) | Op::Pool(_)) {
        v.insert(v.len().min(2), "dw_phases".to_string());
    }
    v
}

/// Kernels forced onto about half of the steps: for each, the first
/// random variant that both targets accept.
fn forced(g: &Graph, seed: u64, opt: OptLevel, ts: &[Target; 2]) -> Vec<KernelChoice> {
    let mut r = Rng::new(seed ^ (opt as u64) << 32 ^ 0xf0_7ced);
    let p = driver::lower(g, "k", &ts[0], &[]).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let mut chosen = Vec::new();
    for (i, st) in p.steps.iter().enumerate() {
        if r.one_in(2) {
            continue;
        }
        for spec in variants(&mut r, &st.op) {
            let c = KernelChoice::parse(&format!("{i}={spec}")).unwrap();
            let mut with = chosen.clone();
            with.push(c.clone());
            if ts.iter().all(|t| driver::lower(g, "k", t, &with).is_ok()) {
                chosen.push(c);
                break;
            }
        }
    }
    chosen
}

/// What the runs exercised, for the coverage checks.
#[derive(Default)]
struct Coverage {
    /// (backend, kernel name).
    kernels: BTreeSet<(&'static str, &'static str)>,
    /// (backend, `kernel:param=value`).
    params: BTreeSet<(&'static str, String)>,
    /// (backend, kernel family, element type of the step's output).
    typed: BTreeSet<(&'static str, String, String)>,
    ops: BTreeMap<&'static str, usize>,
    targets: BTreeSet<String>,
    forced: usize,
}

impl Coverage {
    /// Adds what another run of seeds covered.
    fn merge(&mut self, o: Coverage) {
        self.kernels.extend(o.kernels);
        self.params.extend(o.params);
        self.typed.extend(o.typed);
        for (op, n) in o.ops {
            *self.ops.entry(op).or_default() += n;
        }
        self.targets.extend(o.targets);
        self.forced += o.forced;
    }

    fn record(&mut self, backend: &'static str, p: &Program) {
        self.targets
            .insert(format!("{backend} {}", p.target.spec()));
        for st in &p.steps {
            self.kernels.insert((backend, st.kernel.name()));
            for (k, v) in st.kernel.params() {
                let v = if k == "partials" && v != "1" { "n" } else { &v };
                self.params
                    .insert((backend, format!("{}:{k}={v}", st.kernel.name())));
            }
            let dt = st.outputs.first().map(|b| b.ty.dtype.name()).unwrap_or("");
            self.typed
                .insert((backend, format!("{:?}", st.kernel.family()), dt.to_string()));
        }
    }
}

/// Runs one seed; returns the failures.
fn check_seed(seed: u64, cov: &mut Coverage, verbose: bool) -> Vec<String> {
    let RandomGraph { graph: g0, draws } = random_graph(seed);
    let rg = RandomGraph {
        graph: g0.clone(),
        draws,
    };
    let inputs = rg.inputs(seed);
    let (cspec, nspec) = targets(seed);
    let ts = [targets::c(cspec), targets::native(nspec)];
    let mut failures = Vec::new();
    for opt in [OptLevel::O0, OptLevel::O2] {
        let mut g = g0.clone();
        // Winograd forced on two seeds in three, so its kernel meets the
        // random shapes (the cost model rarely picks it for their few
        // channels).
        let po = nnc_passes::PipelineOptions {
            winograd: match seed % 3 {
                0 => nnc_passes::WinogradMode::Auto,
                1 => nnc_passes::WinogradMode::F23,
                _ => nnc_passes::WinogradMode::F43,
            },
            ..Default::default()
        };
        nnc_passes::run_pipeline(&mut g, opt, &po, |_, _| {})
            .unwrap_or_else(|e| panic!("seed {seed} {opt}: {e}\n{}", nnc_ir::print(&g0)));
        for id in g.node_ids() {
            *cov.ops.entry(g.node(id).op.name()).or_default() += 1;
        }
        let want = driver::run_interp(&g, &inputs).unwrap_or_else(|e| {
            panic!("seed {seed} {opt}: interpreter: {e}\n{}", nnc_ir::print(&g))
        });
        let kernels = forced(&g, seed, opt, &ts);
        cov.forced += kernels.len();
        // Partial execution (streamed chains, in-place steps, zero-copy
        // concatenation) on every other seed at -O2.
        let memory = if opt == OptLevel::O2 && seed % 2 == 1 {
            MemoryGoal::Minimize
        } else {
            MemoryGoal::Auto
        };
        for (backend, t) in [("c", &ts[0]), ("native", &ts[1])] {
            let how = driver::Lowering {
                kernels: kernels.clone(),
                memory,
                ..Default::default()
            };
            let p = match how.lower(&g, "rand", t) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("seed {seed} {opt} {backend}: lowering: {e}"));
                    continue;
                }
            };
            cov.record(backend, &p);
            if verbose {
                println!("seed {seed} {opt} {backend}:\n{}", p.dump());
            }
            let got = targets::run_program(&p, &inputs);
            let got = match got {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("seed {seed} {opt} {backend} ({}): {e}", t.spec()));
                    continue;
                }
            };
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                let c = driver::compare(a, b, 1e-4, 1e-5);
                if !c.ok() {
                    failures.push(format!(
                        "seed {seed} {opt} {backend} ({}) output {k}: {c:?}\n{}",
                        t.spec(),
                        p.dump()
                    ));
                }
            }
        }
    }
    if verbose || !failures.is_empty() {
        println!("seed {seed}:\n{}", nnc_ir::print(&g0));
    }
    failures
}

#[test]
fn random_graphs_agree_across_backends() {
    let t0 = Instant::now();
    let only: Option<Vec<u64>> = std::env::var("NNC_DIFF_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let seeds: Vec<u64> = only.clone().unwrap_or_else(|| (0..SEEDS).collect());
    // The seeds are independent: one worker per core, seeds dealt out in
    // turn, failures put back in seed order.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let runs: Vec<(Coverage, Vec<(u64, Vec<String>)>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (seeds, verbose) = (&seeds, only.is_some());
                s.spawn(move || {
                    let mut cov = Coverage::default();
                    let mut failed = Vec::new();
                    for &seed in seeds.iter().skip(w).step_by(workers) {
                        failed.push((seed, check_seed(seed, &mut cov, verbose)));
                    }
                    (cov, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a seed worker panicked"))
            .collect()
    });
    let mut cov = Coverage::default();
    let mut by_seed = Vec::new();
    for (c, f) in runs {
        cov.merge(c);
        by_seed.extend(f);
    }
    by_seed.sort_by_key(|(seed, _)| *seed);
    let failures: Vec<String> = by_seed.into_iter().flat_map(|(_, f)| f).collect();
    println!(
        "{} seeds in {:.1} s, {} forced kernels; targets {:?}",
        seeds.len(),
        t0.elapsed().as_secs_f64(),
        cov.forced,
        cov.targets
    );
    println!("ops: {:?}", cov.ops);
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    if only.is_some() {
        return;
    }
    // Every kernel variant, rendered by both backends.
    let mut missing = Vec::new();
    for backend in ["c", "native"] {
        for k in Kernel::NAMES {
            // The winograd op exists only where the e-graph makes one: the
            // random graphs' few 3x3 stride-1 f32 convolutions rarely give
            // it a step; tests/winograd.rs sweeps its shapes instead.
            if *k == "winograd" {
                continue;
            }
            if !cov.kernels.contains(&(backend, k)) {
                missing.push(format!("{backend} {k}"));
            }
        }
    }
    // Both settings of the flags that switch code paths.
    for backend in ["c", "native"] {
        for p in [
            "conv_blocked:pad_copy=0",
            "conv_blocked:pad_copy=1",
            "conv_row_tiles:pad_copy=0",
            "conv_row_tiles:pad_copy=1",
            "dw_rows:pad_copy=0",
            "dw_rows:pad_copy=1",
            "global_pool:partials=1",
            "global_pool:partials=n",
            "reduce:acc=f32",
            "reduce:acc=f64",
        ] {
            if !cov.params.contains(&(backend, p.to_string())) {
                missing.push(format!("{backend} {p}"));
            }
        }
    }
    // Every element type through maps and copies, floats through the
    // numeric families.
    for backend in ["c", "native"] {
        for d in DTYPES {
            for fam in ["Map", "Copy"] {
                if !cov.typed.contains(&(backend, fam.into(), d.name().into())) {
                    missing.push(format!("{backend} {fam} {d}"));
                }
            }
        }
        // Depthwise kernels are f32 only; f64 depthwise runs conv_direct.
        if !cov
            .typed
            .contains(&(backend, "Depthwise".into(), "f32".into()))
        {
            missing.push(format!("{backend} Depthwise f32"));
        }
        for fam in ["Conv", "ConvTranspose", "MatMul", "Pool", "Reduction"] {
            for d in ["f32", "f64"] {
                if !cov.typed.contains(&(backend, fam.into(), d.into())) {
                    missing.push(format!("{backend} {fam} {d}"));
                }
            }
        }
        for d in ["i32", "i64"] {
            if !cov.typed.contains(&(backend, "MatMul".into(), d.into())) {
                missing.push(format!("{backend} MatMul {d}"));
            }
        }
    }
    for op in [
        "conv",
        "conv_transpose",
        "gemm",
        "matmul",
        "max_pool",
        "avg_pool",
        "global_avg_pool",
        "global_max_pool",
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "max",
        "min",
        "prelu",
        "mod",
        "fmod",
        "equal",
        "less",
        "greater",
        "and",
        "where",
        "cast",
        "batch_norm",
        "quantize",
        "dequantize",
        "transpose",
        "concat",
        "split",
        "slice",
        "pad",
        "expand",
        "tile",
        "gather",
        "resize",
        "reduce_sum",
        "reduce_max",
        "argmax",
        "argmin",
        "softmax",
        "log_softmax",
        "lrn",
        "exp",
        "log",
        "tanh",
        "sigmoid",
        "not",
    ] {
        if !cov.ops.contains_key(op) {
            missing.push(format!("op {op}"));
        }
    }
    for t in [
        "c host",
        "c x86_64",
        "c x86_64:avx2",
        "native host",
        "native x86_64:x86-64-v2",
    ] {
        if !cov.targets.contains(t) {
            missing.push(format!("target {t}"));
        }
    }
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
