//! Pruning: `prune-dead` removes exactly the dead channels of a model
//! built to have them (all-zero filters, a zero BatchNorm scale, channels
//! nobody reads, a residual add with one zero branch) with outputs
//! unchanged on every backend; on the shared models it finds nothing.
//! Structured pruning keeps the graph valid and reports its cost.

use std::sync::Arc;

use nnc::driver::{self, Backend, LoadOptions};
use nnc_ir::op::{
    BatchNormAttrs, BinaryOp, ConvAttrs, GemmAttrs, GlobalPoolAttrs, PoolKind, ReshapeAttrs,
    SliceAttrs, UnaryOp,
};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType, Value};
use nnc_passes::check::{Rng, random_tensor};
use nnc_passes::prune::PruneSpec;
use nnc_passes::{OptLevel, PipelineOptions};
use nnc_tests::shared::{models_dir, require};

fn randn(rng: &mut Rng, dims: &[usize]) -> Vec<f32> {
    random_tensor(&TensorType::new(DType::F32, dims.to_vec()), rng)
        .to_f64()
        .iter()
        .map(|x| *x as f32)
        .collect()
}

fn konst(g: &mut Graph, dims: &[usize], v: Vec<f32>, name: &str) -> Value {
    g.add_const(Arc::new(Tensor::from_f32(dims.to_vec(), v).unwrap()), name)
}

/// Zeroes filters `zero` of a `[M, ...]` weight and their bias.
fn zero_filters(w: &mut [f32], b: &mut [f32], m: usize, zero: &[usize]) {
    let k = w.len() / m;
    for &o in zero {
        w[o * k..(o + 1) * k].iter_mut().for_each(|x| *x = 0.0);
        b[o] = 0.0;
    }
}

fn conv(
    g: &mut Graph,
    x: Value,
    w: Value,
    b: Value,
    pad: usize,
    group: usize,
    name: &str,
) -> Value {
    let mut a = ConvAttrs::new(2);
    a.pads = vec![pad; 4];
    a.group = group;
    g.add1(Op::Conv(a), &[x, w, b], name).unwrap()
}

/// conv1 (8 filters, 2 and 5 all zero) -> relu -> batchnorm (channel 3:
/// scale and shift zero) -> relu -> depthwise -> two 1x1 branches
/// (channel 0 zero in both, channel 1 zero in one) -> add -> conv2 (6
/// filters) -> slice channels 0..4 (4 and 5 unread) -> global average
/// pool -> flatten -> gemm.
fn dead_model() -> Graph {
    let mut rng = Rng::seeded(7);
    let mut g = Graph::new("dead");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![1, 3, 8, 8]));
    let (mut w1, mut b1) = (randn(&mut rng, &[8, 3, 3, 3]), randn(&mut rng, &[8]));
    zero_filters(&mut w1, &mut b1, 8, &[2, 5]);
    let w1 = konst(&mut g, &[8, 3, 3, 3], w1, "w1");
    let b1 = konst(&mut g, &[8], b1, "b1");
    let c1 = conv(&mut g, x, w1, b1, 1, 1, "conv1");
    let r1 = g.add1(Op::Unary(UnaryOp::Relu), &[c1], "relu1").unwrap();
    let mut scale = randn(&mut rng, &[8]);
    let mut shift = randn(&mut rng, &[8]);
    let mut mean = randn(&mut rng, &[8]);
    let var: Vec<f32> = randn(&mut rng, &[8])
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect();
    scale[3] = 0.0;
    shift[3] = 0.0;
    for c in [2, 5] {
        shift[c] = 0.0;
        mean[c] = 0.0;
    }
    let bn_in: Vec<Value> = [
        ("scale", scale),
        ("shift", shift),
        ("mean", mean),
        ("var", var),
    ]
    .into_iter()
    .map(|(n, v)| konst(&mut g, &[8], v, n))
    .collect();
    let bn = g
        .add1(
            Op::BatchNorm(BatchNormAttrs { epsilon: 1e-5 }),
            &[r1, bn_in[0], bn_in[1], bn_in[2], bn_in[3]],
            "bn",
        )
        .unwrap();
    let r2 = g.add1(Op::Unary(UnaryOp::Relu), &[bn], "relu2").unwrap();
    let wd = randn(&mut rng, &[8, 1, 3, 3]);
    let wd = konst(&mut g, &[8, 1, 3, 3], wd, "wd");
    let bd = vec![0.0; 8];
    let bd = konst(&mut g, &[8], bd, "bd");
    let dw = conv(&mut g, r2, wd, bd, 1, 8, "dw");
    let mut branch = |g: &mut Graph, zero: &[usize], name: &str| {
        let (mut w, mut b) = (randn(&mut rng, &[4, 8, 1, 1]), randn(&mut rng, &[4]));
        zero_filters(&mut w, &mut b, 4, zero);
        let w = konst(g, &[4, 8, 1, 1], w, &format!("{name}.w"));
        let b = konst(g, &[4], b, &format!("{name}.b"));
        conv(g, dw, w, b, 0, 1, name)
    };
    let pa = branch(&mut g, &[0], "pa");
    let pb = branch(&mut g, &[0, 1], "pb");
    let add = g.add1(Op::Binary(BinaryOp::Add), &[pa, pb], "add").unwrap();
    let (w2, b2) = (randn(&mut rng, &[6, 4, 1, 1]), randn(&mut rng, &[6]));
    let w2 = konst(&mut g, &[6, 4, 1, 1], w2, "w2");
    let b2 = konst(&mut g, &[6], b2, "b2");
    let c2 = conv(&mut g, add, w2, b2, 0, 1, "conv2");
    let sl = g
        .add1(
            Op::Slice(SliceAttrs {
                starts: vec![0, 0, 0, 0],
                ends: vec![1, 4, 8, 8],
                steps: vec![1, 1, 1, 1],
            }),
            &[c2],
            "slice",
        )
        .unwrap();
    let gap = g
        .add1(
            Op::GlobalPool(GlobalPoolAttrs {
                kind: PoolKind::Avg,
            }),
            &[sl],
            "gap",
        )
        .unwrap();
    let flat = g
        .add1(
            Op::Reshape(ReshapeAttrs { shape: vec![1, 4] }),
            &[gap],
            "flatten",
        )
        .unwrap();
    let (wg, bg) = (randn(&mut rng, &[4, 5]), randn(&mut rng, &[5]));
    let wg = konst(&mut g, &[4, 5], wg, "wg");
    let bg = konst(&mut g, &[5], bg, "bg");
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

fn optimize(g: &Graph, passes: Option<&[&str]>) -> (Graph, nnc_passes::PipelineReport) {
    let opts = LoadOptions {
        opt_level: OptLevel::O2,
        pipeline: PipelineOptions {
            passes: passes.map(|p| p.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    driver::optimize(g.clone(), &opts, |_, _| {}).unwrap()
}

/// The output channel count of the node named `name`.
fn channels(g: &Graph, name: &str) -> usize {
    let id = g
        .node_ids()
        .into_iter()
        .find(|&id| g.node(id).name.split('+').any(|n| n == name))
        .unwrap_or_else(|| panic!("no node `{name}` in\n{}", nnc_ir::print(g)));
    g.node(id).outputs[0].dims[1]
}

#[test]
fn prune_dead_removes_exactly_the_dead_channels() {
    let g = dead_model();
    // Before the e-graph, so the BatchNorm is still there to be read.
    let (p, rep) = optimize(&g, Some(&["prune-dead"]));
    let r = &rep.prune_reports[0];
    assert_eq!(r.channels_removed, 6, "{r}");
    assert_eq!(channels(&p, "conv1"), 5, "{}", nnc_ir::print(&p));
    assert_eq!(channels(&p, "bn"), 5);
    assert_eq!(channels(&p, "dw"), 5);
    assert_eq!(channels(&p, "pa"), 3);
    assert_eq!(channels(&p, "pb"), 3);
    assert_eq!(channels(&p, "conv2"), 4);
    assert_eq!(channels(&p, "slice"), 4);
    let text = r.to_string();
    assert!(
        text.contains("conv `conv1`: channels 8 -> 5 (-3)"),
        "{text}"
    );
    assert!(
        text.contains("conv `conv2`: channels 6 -> 4 (-2)"),
        "{text}"
    );
    // Running it again finds nothing more.
    let (_, rep2) = optimize(&p, Some(&["prune-dead"]));
    assert_eq!(rep2.prune_reports[0].channels_removed, 0);
    // Exact in the interpreter: the removed terms were zeros.
    for seed in 1..4 {
        let x = nnc_passes::check::random_inputs(&g, seed);
        let a = driver::run_interp(&g, &x).unwrap();
        let b = driver::run_interp(&p, &x).unwrap();
        assert!(a[0].bit_eq(&b[0]), "seed {seed}: {:?} vs {:?}", a[0], b[0]);
    }
}

#[test]
fn prune_dead_at_o2_keeps_outputs_on_every_backend() {
    let g = dead_model();
    let (full, _) = optimize(
        &g,
        Some(&["fold-constants", "remove-identity", "egraph", "dce"]),
    );
    let (p, rep) = optimize(&g, None);
    assert_eq!(rep.prune_reports[0].channels_removed, 6);
    assert!(nnc_ir::stats::stats(&p).macs < nnc_ir::stats::stats(&full).macs);
    let x = nnc_passes::check::random_inputs(&g, 3);
    let want = driver::run_interp(&g, &x).unwrap();
    for b in Backend::ALL {
        let got = driver::execute(&p, b, &x).unwrap();
        let base = driver::execute(&full, b, &x).unwrap();
        nnc_passes::check::close(&got[0], &want[0], 1e-5, 1e-6)
            .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
        nnc_passes::check::close(&got[0], &base[0], 1e-6, 1e-7)
            .unwrap_or_else(|e| panic!("{} vs unpruned: {e}", b.name()));
    }
}

const SHARED: [&str; 7] = [
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/ic_resnet8_int8_qdq",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/kws_dscnn_int8_qdq",
    "mlperf_tiny/vww_mbv1_025_96_int8_qdq",
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "torchvision/mobilenet_v2",
];

#[test]
fn shared_models_have_no_dead_channels() {
    for m in SHARED {
        let d = models_dir().join(m);
        require(&d);
        let g = driver::import(&d.join("model.onnx"), &LoadOptions::default()).unwrap();
        let (_, rep) = optimize(&g, Some(&["fold-constants", "prune-dead"]));
        let r = &rep.prune_reports[0];
        assert_eq!(r.channels_removed, 0, "{m}: {r}");
        assert!(r.to_string().contains("no dead channels"), "{m}: {r}");
    }
}

/// Structured pruning on the shared models: the requested share of every
/// prunable layer goes, the graph stays valid through -O2, and MACs drop.
#[test]
fn structured_pruning_shrinks_shared_models() {
    for m in [
        "mlperf_tiny/ic_resnet8_fp32",
        "mlperf_tiny/kws_dscnn_int8_qdq",
    ] {
        let d = models_dir().join(m);
        require(&d);
        let g = driver::import(&d.join("model.onnx"), &LoadOptions::default()).unwrap();
        let (full, _) = optimize(&g, None);
        for spec in ["l1-filter:0.5", "slimming:0.25", "l1-filter:0.25:global"] {
            let opts = LoadOptions {
                opt_level: OptLevel::O2,
                pipeline: PipelineOptions {
                    prune: Some(PruneSpec::parse(spec).unwrap()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let (p, rep) = driver::optimize(g.clone(), &opts, |_, _| {}).unwrap();
            let r = &rep.prune_reports[0];
            assert!(r.channels_removed > 0, "{m} {spec}: {r}");
            let (a, b) = (nnc_ir::stats::stats(&full), nnc_ir::stats::stats(&p));
            assert!(b.macs < a.macs && b.params < a.params, "{m} {spec}");
            let x = nnc_passes::check::random_inputs(&g, 1);
            let y = driver::run_interp(&p, &x).unwrap();
            assert_eq!(y[0].ty(), driver::run_interp(&full, &x).unwrap()[0].ty());
        }
    }
}

/// 25% l1-filter on ResNet-8 with and without least-squares reconstruction
/// from 64 seeded random calibration inputs; the deviation is measured on
/// other inputs (the test data and random sets of other seeds).
#[test]
fn reconstruction_lowers_the_error_of_l1_filter_on_resnet8() {
    let d = models_dir().join("mlperf_tiny/ic_resnet8_fp32");
    require(&d);
    let model = d.join("model.onnx");
    let g = driver::import(&model, &LoadOptions::default()).unwrap();
    let (orig, _) = optimize(&g, None);
    let (sets, _) = nnc::prune::calib_inputs(
        &g,
        &model,
        None,
        nnc::prune::RANDOM_SETS,
        nnc::prune::DEVIATION_SEED,
        true,
    )
    .unwrap();
    let dev = |reconstruct: bool| {
        let mut spec = PruneSpec::parse("l1-filter:0.25").unwrap();
        spec.reconstruct = reconstruct;
        let opts = LoadOptions {
            opt_level: OptLevel::O2,
            pipeline: PipelineOptions {
                prune: Some(spec),
                ..Default::default()
            },
            ..Default::default()
        };
        let (p, rep) = driver::optimize(g.clone(), &opts, |_, _| {}).unwrap();
        if reconstruct {
            let notes = rep.prune_reports[0].notes.join("\n");
            assert!(notes.contains("refitted 9 layer(s)"), "{notes}");
            assert!(
                notes.contains("64 seeded random calibration input(s)"),
                "{notes}"
            );
        }
        nnc::prune::deviation(&orig, &p, &sets).unwrap()
    };
    let (plain, refit) = (dev(false), dev(true));
    eprintln!("without reconstruction: {plain}\nwith reconstruction:    {refit}");
    assert!(refit.snr_db > plain.snr_db + 10.0, "{plain} vs {refit}");
    assert!(refit.max_abs < plain.max_abs / 4.0, "{plain} vs {refit}");
    assert!(refit.top1 >= plain.top1);
}
