//! `--prune-to-fit`: pruning at the memory bottleneck until the plan fits
//! an SRAM budget. On a small model, the loop fits budgets below the
//! channel-split arena without removing a layer, and refuses a budget no
//! pruning can meet, naming the bottleneck. On VWW int8 and MobileNetV2,
//! budgets of a half and a quarter of the channel-split-only arena
//! (measured here, never hard-coded) are met, with the channels removed
//! and the deviation reported.

use std::sync::Arc;

use nnc::driver::{self, LoadOptions, Lowering};
use nnc::fit::{Fitted, fit};
use nnc_ir::op::{ConvAttrs, GemmAttrs, GlobalPoolAttrs, PoolKind, ReshapeAttrs, UnaryOp};
use nnc_ir::program::{Arch, Target};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType, Value};
use nnc_passes::check::{Rng, random_tensor};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_passes::prune::Method;
use nnc_tests::shared::{models_dir, o2, require};

fn m4() -> Target {
    Target::cortex_m(Arch::CortexM4)
}

fn opts() -> LoadOptions {
    o2(&m4())
}

fn konst(g: &mut Graph, rng: &mut Rng, dims: &[usize], name: &str) -> Value {
    let t = random_tensor(&TensorType::new(DType::F32, dims.to_vec()), rng);
    let v: Vec<f32> = t.to_f64().iter().map(|x| *x as f32).collect();
    g.add_const(Arc::new(Tensor::from_f32(dims.to_vec(), v).unwrap()), name)
}

/// x [1,3,32,32] -> conv 16 (3x3) -> relu -> conv 24 (3x3) -> relu ->
/// conv 8 (1x1) -> global average pool -> flatten -> gemm 10.
fn small_model() -> Graph {
    let mut rng = Rng::seeded(11);
    let mut g = Graph::new("small");
    let mut x = g.add_input("x", TensorType::new(DType::F32, vec![1, 3, 32, 32]));
    for (i, (m, c, k)) in [(16, 3, 3), (24, 16, 3), (8, 24, 1)]
        .into_iter()
        .enumerate()
    {
        let w = konst(&mut g, &mut rng, &[m, c, k, k], &format!("w{i}"));
        let b = konst(&mut g, &mut rng, &[m], &format!("b{i}"));
        let mut a = ConvAttrs::new(2);
        a.pads = vec![k / 2; 4];
        x = g.add1(Op::Conv(a), &[x, w, b], format!("conv{i}")).unwrap();
        x = g
            .add1(Op::Unary(UnaryOp::Relu), &[x], format!("relu{i}"))
            .unwrap();
    }
    let gap = g
        .add1(
            Op::GlobalPool(GlobalPoolAttrs {
                kind: PoolKind::Avg,
            }),
            &[x],
            "gap",
        )
        .unwrap();
    let flat = g
        .add1(
            Op::Reshape(ReshapeAttrs { shape: vec![1, 8] }),
            &[gap],
            "flatten",
        )
        .unwrap();
    let wg = konst(&mut g, &mut rng, &[8, 10], "wg");
    let bg = konst(&mut g, &mut rng, &[10], "bg");
    let a = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: None,
    };
    let y = g.add1(Op::Gemm(a), &[flat, wg, bg], "gemm").unwrap();
    g.add_output(y, "y");
    g.verify().unwrap();
    g
}

/// The arena of `imported` optimized and lowered with channel split as far
/// as it goes (what `--memory min` reports).
fn channel_split_arena(imported: &Graph) -> usize {
    let (g, _) = driver::optimize(imported.clone(), &opts(), |_, _| {}).unwrap();
    Lowering {
        kernels: vec![],
        memory: MemoryGoal::Minimize,
        ..Default::default()
    }
    .lower(&g, "m", &m4())
    .unwrap()
    .arena_bytes
}

/// Checks what every fit must give: the plan fits, channels went, no layer
/// lost all of them, and the report adds up.
fn check_fit(what: &str, f: &Fitted, budget: usize, split: usize) {
    let r = &f.report;
    assert!(
        f.program.arena_bytes <= budget && r.arena_after == f.program.arena_bytes,
        "{what}: arena {} B over the budget {budget} B",
        f.program.arena_bytes
    );
    assert_eq!(r.arena_before, split, "{what}: the channel-split arena");
    assert!(r.channels_removed > 0 && r.rounds > 0, "{what}: {r}");
    assert!(!r.layers.is_empty(), "{what}: {r}");
    for l in &r.layers {
        assert!(l.after >= 1 && l.after < l.before, "{what}: {l:?}");
    }
    // The command lowers the graph it returns again, within the budget.
    let again = Lowering {
        kernels: vec![],
        memory: MemoryGoal::Budget(budget),
        ..Default::default()
    }
    .lower(&f.optimized, "m", &m4())
    .unwrap();
    assert_eq!(again.arena_bytes, f.program.arena_bytes, "{what}");
}

#[test]
fn the_loop_fits_a_small_model_without_removing_a_layer() {
    let g = small_model();
    let split = channel_split_arena(&g);
    let x = random_tensor(&g.input_type(0).clone(), &mut Rng::seeded(3));
    for den in [2, 4] {
        let budget = split / den;
        let f = fit(
            &g,
            &opts(),
            &m4(),
            &Lowering::default(),
            budget,
            Method::L1Filter,
        )
        .unwrap_or_else(|e| panic!("1/{den} of {split} B: {e:#}"));
        check_fit(&format!("1/{den}"), &f, budget, split);
        println!("1/{den}: {}", f.report);
        // The pruned graph still computes outputs of the same shape.
        let y = driver::run_interp(&f.optimized, std::slice::from_ref(&x)).unwrap();
        assert_eq!(y[0].dims(), &[1, 10]);
    }
    // A budget that fits already prunes nothing.
    let f = fit(
        &g,
        &opts(),
        &m4(),
        &Lowering::default(),
        split,
        Method::Slimming,
    )
    .unwrap();
    assert_eq!(f.report.channels_removed, 0);
    assert_eq!(f.report.rounds, 0);
    // Magnitude pruning saves no SRAM: refused.
    let e = fit(
        &g,
        &opts(),
        &m4(),
        &Lowering::default(),
        64,
        Method::Magnitude,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("l1-filter or slimming"), "{e:#}");
}

#[test]
fn an_impossible_budget_is_refused_naming_the_bottleneck() {
    let g = small_model();
    let r = fit(
        &g,
        &opts(),
        &m4(),
        &Lowering::default(),
        64,
        Method::L1Filter,
    );
    let Err(e) = r else {
        panic!("64 bytes cannot fit");
    };
    let msg = format!("{e:#}");
    for want in [
        "the plan does not fit",
        "the SRAM budget is 64 B",
        "bottleneck step",
        "these tensors are live",
        "--prune-to-fit cannot meet the budget",
        "without removing a whole layer",
    ] {
        assert!(msg.contains(want), "`{want}` missing: {msg}");
    }
}

/// The figures of one fit, for the reply and the log.
fn fit_shared(rel: &str, dens: &[usize], calib_sets: u64) {
    let d = models_dir().join(rel);
    require(&d);
    let model = d.join("model.onnx");
    let imported = driver::import(&model, &opts()).unwrap();
    let split = channel_split_arena(&imported);
    let (orig, _) = driver::optimize(imported.clone(), &opts(), |_, _| {}).unwrap();
    let (sets, src) =
        nnc::prune::calib_inputs(&imported, &model, None, calib_sets, 1001, true).unwrap();
    for &den in dens {
        let budget = split / den;
        let what = format!("{rel} at 1/{den} of {split} B");
        let f = fit(
            &imported,
            &opts(),
            &m4(),
            &Lowering::default(),
            budget,
            Method::L1Filter,
        )
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        check_fit(&what, &f, budget, split);
        let how = Lowering {
            kernels: vec![],
            memory: MemoryGoal::Budget(budget),
            ..Default::default()
        };
        let cost = nnc::prune::cost(&orig, &f.optimized, &m4(), &how, &sets, src.clone()).unwrap();
        assert_eq!(cost.after.peak, f.program.arena_bytes, "{what}");
        assert_eq!(cost.before.peak, split, "{what}");
        // The baseline the fit carries (what the CLI reports) is the same.
        assert_eq!(f.before, cost.before, "{what}");
        assert_eq!(nnc_ir::print(&f.original), nnc_ir::print(&orig), "{what}");
        assert!(cost.after.params < cost.before.params, "{what}");
        assert!(cost.after.macs < cost.before.macs, "{what}");
        assert_eq!(cost.deviation.sets, sets.len(), "{what}");
        assert!(
            !cost.deviation.snr_db.is_nan() && (0.0..=1.0).contains(&cost.deviation.top1),
            "{what}: {}",
            cost.deviation
        );
        println!("{what}: budget {budget} B\n{}{cost}", f.report);
    }
}

#[test]
fn vww_int8_fits_a_half_and_a_quarter_of_its_channel_split_arena() {
    fit_shared("mlperf_tiny/vww_mbv1_025_96_int8_qdq", &[2, 4], 4);
}

/// MobileNetV2 is big: the deviation runs on its one test input only.
#[test]
fn mobilenet_v2_fits_a_half_and_a_quarter_of_its_channel_split_arena() {
    fit_shared("torchvision/mobilenet_v2", &[2, 4], 1);
}
