//! The Winograd kernel on both backends against the interpreter's direct
//! convolution: F(2,3) and F(4,3), 3x3, 1x3 and 3x1 kernels, padding 0, 1
//! and uneven, odd sizes where tiles overhang the output, channel counts
//! that are not whole vectors, several tile groups and channel blocks,
//! with bias, activation and residual epilogues (the residual on a
//! hand-built program: lowering does not fuse residual adds yet), planes
//! wide enough for the C host kernel's vector transposes. Every
//! target of `nnc_tests::targets` renders the same program.

use std::sync::Arc;

use nnc::driver;
use nnc_ir::op::winograd::transform_weight;
use nnc_ir::op::{BinaryOp, ConvAttrs, UnaryOp, WinogradAttrs};
use nnc_ir::program::{Buffer, Epilogue, Kernel, Loc, Part, Program, Step, Weight, Winograd};
use nnc_ir::{DType, Graph, Op, Tensor};
use nnc_tests::targets;

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn tensor(&mut self, dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
                (r >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        Tensor::from_f64(DType::F32, dims.to_vec(), v).unwrap()
    }
}

struct Case {
    c: usize,
    m: usize,
    hw: [usize; 2],
    k: [usize; 2],
    pads: [usize; 4],
    tile: usize,
    /// Tiles per group and channels per block.
    tiles: usize,
    block: usize,
    residual: bool,
    act: bool,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let base = |tile| Case {
        c: 16,
        m: 16,
        hw: [8, 8],
        k: [3, 3],
        pads: [1, 1, 1, 1],
        tile,
        tiles: 8,
        block: 64,
        residual: false,
        act: true,
    };
    for tile in [2, 4] {
        v.push(base(tile));
        // Padding 0, odd sizes: the last tiles overhang the output.
        v.push(Case {
            c: 5,
            m: 7,
            hw: [9, 11],
            pads: [0, 0, 0, 0],
            tiles: 3,
            block: 4,
            act: false,
            ..base(tile)
        });
        // Uneven padding, a residual, several groups and blocks.
        v.push(Case {
            c: 6,
            m: 20,
            hw: [7, 13],
            pads: [2, 1, 0, 1],
            tiles: 2,
            block: 8,
            residual: true,
            ..base(tile)
        });
        // One-dimensional kernels.
        v.push(Case {
            c: 8,
            m: 12,
            hw: [3, 17],
            k: [1, 3],
            pads: [0, 1, 0, 1],
            tiles: 4,
            residual: true,
            ..base(tile)
        });
        v.push(Case {
            c: 3,
            m: 4,
            hw: [10, 2],
            k: [3, 1],
            pads: [1, 0, 1, 0],
            tiles: 1,
            ..base(tile)
        });
        // ResNet-8's widest layer.
        v.push(Case {
            c: 64,
            m: 64,
            hw: [8, 8],
            residual: true,
            ..base(tile)
        });
        // Planes wider than a vector: the band is filled and the staged
        // outputs are stored in transposed vector blocks (C on a host),
        // with columns and channels past the last whole block one by
        // one; an activation applied as the stage is written, or a
        // residual as the planes are.
        for residual in [false, true] {
            v.push(Case {
                c: 20,
                m: 36,
                hw: [18, 35],
                tiles: 8,
                block: 32,
                residual,
                ..base(tile)
            });
        }
    }
    v
}

/// The program of one case: a single `winograd` step with the kernel
/// parameters forced, and the reference: the direct convolution (plus
/// the residual, then the activation) on the interpreter.
fn run_case(cs: &Case, r: &mut Rng) -> Vec<String> {
    let x = r.tensor(&[1, cs.c, cs.hw[0], cs.hw[1]]);
    let w = r.tensor(&[cs.m, cs.c, cs.k[0], cs.k[1]]);
    let b = r.tensor(&[cs.m]);
    let mut ca = ConvAttrs::new(2);
    ca.pads = cs.pads.to_vec();
    let mut g = Graph::new("ref");
    let xv = g.add_input("x", x.ty());
    let wv = g.add_const(w.clone(), "w");
    let bv = g.add_const(b.clone(), "b");
    let mut y = g.add1(Op::Conv(ca.clone()), &[xv, wv, bv], "conv").unwrap();
    let yt = g.value_type(y).clone();
    let res = r.tensor(&yt.dims);
    let rv = g.add_input("r", yt.clone());
    if cs.residual {
        y = g.add1(Op::Binary(BinaryOp::Add), &[y, rv], "add").unwrap();
    }
    if cs.act {
        y = g.add1(Op::Unary(UnaryOp::Relu), &[y], "relu").unwrap();
    }
    g.add_output(y, "y");
    let inputs = [x.clone(), res.clone()];
    let want = driver::run_interp(&g, &inputs).unwrap();

    let a = WinogradAttrs::of_conv(&ca, &x.ty(), &w.ty(), cs.tile).unwrap();
    let u = transform_weight(&w, cs.tile).unwrap();
    let mut epilogue = vec![Epilogue::Bias { input: 2 }];
    if cs.residual {
        epilogue.push(Epilogue::Residual { input: 3 });
    }
    if cs.act {
        epilogue.push(Epilogue::Act(UnaryOp::Relu));
    }
    let step = Step {
        op: Op::Winograd(a),
        kernel: Kernel::Winograd(Winograd {
            tile: cs.tile,
            tiles: cs.tiles,
            channels: cs.block,
        }),
        epilogue,
        part: Part::default(),
        inputs: vec![
            Buffer::new(Loc::Input(0), x.ty()),
            Buffer::new(Loc::Const(0), u.ty()),
            Buffer::new(Loc::Const(1), b.ty()),
            Buffer::new(Loc::Input(1), yt.clone()),
        ],
        outputs: vec![Buffer::new(Loc::Output(0), yt.clone())],
        name: "winograd".into(),
        in_place: false,
    };
    let weight = |name: &str, t: &Tensor| Weight {
        name: name.into(),
        tensor: Arc::new(t.clone()),
    };
    let prog = Program {
        name: "wino".into(),
        target: nnc_backends::cranelift::host_target().unwrap(),
        inputs: vec![("x".into(), x.ty()), ("r".into(), yt.clone())],
        outputs: vec![("y".into(), yt.clone())],
        weights: vec![weight("u", &u), weight("b", &b)],
        loops: Vec::new(),
        steps: vec![step],
        arena_bytes: 0,
        stats: Default::default(),
    };
    prog.verify().unwrap();
    let mut failures = Vec::new();
    for t in targets::all() {
        let mut p = prog.clone();
        p.target = t;
        let label = targets::label(&p.target);
        match targets::run_program(&p, &inputs) {
            Ok(got) => {
                // F(4,3)'s rounding error scales with the magnitude of
                // the sums (its transforms multiply by up to 8), not with
                // each output: outputs near zero get an absolute bound
                // relative to the largest output.
                let scale = want[0].to_f64().iter().fold(1.0f64, |s, v| s.max(v.abs()));
                let cmp = driver::compare(&got[0], &want[0], 1e-4, 1e-5 * scale);
                if !cmp.ok() {
                    failures.push(format!(
                        "{label} F({},3) c={} m={} {:?} k={:?} pads={:?}: {cmp:?}",
                        cs.tile, cs.c, cs.m, cs.hw, cs.k, cs.pads
                    ));
                }
            }
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    failures
}

#[test]
fn winograd_matches_direct_convolution_on_both_backends() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let failures: Vec<String> = cases().iter().flat_map(|c| run_case(c, &mut r)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every 3x3 stride-1 convolution with at least 16 input and output
/// channels of ResNet-8 and both SqueezeNets, alone on random
/// non-negative inputs (what a ReLU feeds it): the Winograd form (F(2,3),
/// F(4,3), and the cost model's choice) compiled for C and native on this
/// machine, against the interpreter's direct convolution. The normwise
/// relative error `max |y - y_ref| / max |y_ref|` stays below 1e-4, and
/// the cost model picks Winograd for every such layer on the host.
#[test]
fn model_layers_are_accurate_and_use_winograd() {
    use nnc_passes::{OptLevel, PipelineOptions, WinogradMode};
    let models = [
        "mlperf_tiny/ic_resnet8_fp32",
        "torchvision/squeezenet1_1",
        "onnx_light/light_squeezenet_randw",
    ];
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    let mut layers = 0;
    for m in models {
        let dir = nnc_tests::shared::models_dir().join(m);
        nnc_tests::shared::require(&dir);
        let opts = driver::LoadOptions {
            pipeline: PipelineOptions {
                winograd: WinogradMode::Off,
                ..Default::default()
            },
            ..Default::default()
        };
        let g = driver::load(&dir.join("model.onnx"), &opts).unwrap();
        for id in g.topo_order().unwrap() {
            let Op::Conv(a) = &g.node(id).op else {
                continue;
            };
            let ins = g.node_inputs(id);
            let (xt, wt) = (g.value_type(ins[0]).clone(), g.value_type(ins[1]).clone());
            if WinogradAttrs::of_conv(a, &xt, &wt, 2).is_none()
                || wt.dims[..2].iter().any(|&d| d < 16)
                || wt.dims[2..] != [3, 3]
            {
                continue;
            }
            layers += 1;
            let name = g.node(id).name.clone();
            let mut layer = Graph::new("layer");
            let x = layer.add_input("x", xt.clone());
            let mut operands = vec![x];
            for v in &ins[1..] {
                let Op::Const(c) = g.node(v.node).op else {
                    panic!("{m} {name}: computed weights");
                };
                operands.push(layer.add_const(g.constant(c).unwrap().clone(), "w"));
            }
            let y = layer.add1(Op::Conv(a.clone()), &operands, &name).unwrap();
            layer.add_output(y, "y");
            let xs = r
                .tensor(&xt.dims)
                .to_f64()
                .iter()
                .map(|v| v + 0.5)
                .collect();
            let xs = Tensor::from_f64(DType::F32, xt.dims.clone(), xs).unwrap();
            let want = driver::run_interp(&layer, std::slice::from_ref(&xs)).unwrap();
            let wv = want[0].to_f64();
            let scale = wv.iter().fold(0.0f64, |s, v| s.max(v.abs()));
            for mode in [WinogradMode::F23, WinogradMode::F43, WinogradMode::Auto] {
                for t in [targets::c("host"), targets::native("host")] {
                    let mut lg = layer.clone();
                    let po = PipelineOptions {
                        winograd: mode,
                        target: t.clone(),
                        ..Default::default()
                    };
                    nnc_passes::run_pipeline(&mut lg, OptLevel::O2, &po, |_, _| {}).unwrap();
                    let wino =
                        lg.topo_order()
                            .unwrap()
                            .into_iter()
                            .find_map(|n| match &lg.node(n).op {
                                Op::Winograd(w) => Some(w.tile),
                                _ => None,
                            });
                    let Some(tile) = wino else {
                        failures.push(format!("{m} {name} {mode}: no winograd on the host"));
                        continue;
                    };
                    let got = targets::run(&lg, &t, &[], std::slice::from_ref(&xs)).unwrap();
                    let err = got[0]
                        .to_f64()
                        .iter()
                        .zip(&wv)
                        .fold(0.0f64, |s, (a, b)| s.max((a - b).abs()))
                        / scale;
                    eprintln!(
                        "{m} {name} {:?}->{:?} ({mode}: F({tile},3)) {}: rel err {err:.2e}",
                        xt.dims,
                        want[0].dims(),
                        targets::label(&t)
                    );
                    if err >= 1e-4 {
                        failures.push(format!(
                            "{m} {name} {mode} {}: {err:.2e}",
                            targets::label(&t)
                        ));
                    }
                }
            }
        }
    }
    assert!(layers >= 10, "only {layers} layers found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
