//! The native (Cranelift) backend: every shared model through the JIT at
//! -O0 and -O2 against its reference, and a differential property test
//! that generates random small graphs (convolutions of every shape class,
//! depthwise, Gemm, pooling, elementwise chains, concatenation) and checks
//! that the interpreter, generated C and native code agree on them.

use nnc::cbuild::{CFlags, run_c};
use nnc::driver::{self, LoadOptions};
use nnc::native::run_native;
use nnc_ir::op::{
    BinaryOp, ConcatAttrs, ConvAttrs, GemmAttrs, GlobalPoolAttrs, PoolAttrs, PoolKind,
    ReshapeAttrs, UnaryOp,
};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType, Value};
use nnc_passes::OptLevel;
use nnc_tests::shared::{FLOAT_MODELS, INT8_MODELS, models_dir, require};

fn check_model(m: &str, opt: OptLevel) {
    let d = models_dir().join(m);
    require(&d);
    let g = driver::load(
        &d.join("model.onnx"),
        &LoadOptions {
            opt_level: opt,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{m}: {e}"));
    let t = d.join("test_data_set_0");
    let (_, x) = nnc::io::read_tensor(&t.join("input_0.pb")).unwrap();
    let (_, want) = nnc::io::read_tensor(&t.join("output_0.pb")).unwrap();
    let out = run_native(&g, &[x]).unwrap_or_else(|e| panic!("{m} {opt}: {e}"));
    let c = driver::compare(&out[0], &want, 1e-4, 1e-5);
    assert!(c.ok(), "{m} natively at {opt}: {c:?}");
}

#[test]
fn every_model_through_the_jit() {
    for m in FLOAT_MODELS.iter().chain(INT8_MODELS.iter()) {
        for opt in [OptLevel::O0, OptLevel::O2] {
            check_model(m, opt);
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce
/// from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect()
    }
}

fn konst(g: &mut Graph, r: &mut Rng, dims: Vec<usize>, scale: f32) -> Value {
    let n = dims.iter().product();
    let t = Tensor::from_f32(dims, r.f32s(n, scale)).unwrap();
    let k = g.const_table_len();
    g.add_const(t, format!("c{k}"))
}

fn act(r: &mut Rng) -> Option<UnaryOp> {
    match r.below(7) {
        0 => Some(UnaryOp::Relu),
        1 => Some(UnaryOp::Clip { min: 0.0, max: 6.0 }),
        2 => Some(UnaryOp::LeakyRelu { alpha: 0.1 }),
        3 => Some(UnaryOp::Sigmoid),
        4 => Some(UnaryOp::HardSwish),
        _ => None,
    }
}

/// One random op applied to `v` (a 4-D f32 tensor); `None` when the drawn
/// op does not fit the current shape.
fn random_op(g: &mut Graph, r: &mut Rng, v: Value, i: usize) -> Option<Value> {
    let ty = g.value_type(v).clone();
    let (c, h, w) = (ty.dims[1], ty.dims[2], ty.dims[3]);
    let name = format!("n{i}");
    let op = r.below(10);
    match op {
        // Convolutions: pointwise, square and rectangular kernels, strides,
        // dilations, padding, groups, depthwise, bias and activations.
        0..=3 => {
            let kh = r.pick(&[1, 1, 3, 3, 5, 2]);
            let kw = if r.below(4) == 0 {
                r.pick(&[1, 3, 4])
            } else {
                kh
            };
            let s = r.pick(&[1, 1, 1, 2]);
            let dil = if r.below(6) == 0 { 2 } else { 1 };
            let (ph, pw) = (r.below(kh / 2 + 1 + (kh > 1) as usize), r.below(kw / 2 + 1));
            let group = match r.below(5) {
                0 => c,
                1 if c % 2 == 0 => 2,
                _ => 1,
            };
            let m = if group == c && r.below(2) == 0 {
                c
            } else {
                group * r.pick(&[1, 2, 3, 4, 5, 8, 12])
            };
            let mut a = ConvAttrs::new(2);
            a.strides = vec![s, s];
            a.pads = vec![ph, pw, r.below(ph + 1), r.below(pw + 1)];
            a.dilations = vec![dil, dil];
            a.group = group;
            a.act = act(r);
            let wt = konst(g, r, vec![m, c / group, kh, kw], 0.5);
            let mut ins = vec![v, wt];
            if r.below(3) != 0 {
                ins.push(konst(g, r, vec![m], 0.5));
            }
            g.add1(Op::Conv(a), &ins, name).ok()
        }
        4 => {
            let k = r.pick(&[2, 3]);
            let s = r.pick(&[1, 2]);
            let p = r.below(k / 2 + 1);
            let kind = if r.below(2) == 0 {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            let a = PoolAttrs {
                kind,
                kernel: vec![k, k],
                strides: vec![s, s],
                pads: vec![p, p, p, p],
                dilations: vec![1, 1],
                ceil_mode: r.below(3) == 0,
                count_include_pad: r.below(2) == 0,
            };
            g.add1(Op::Pool(a), &[v], name).ok()
        }
        5 => {
            // Elementwise with a broadcast constant: per channel or scalar.
            let b = r.pick(&[BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub, BinaryOp::Max]);
            let dims = if r.below(2) == 0 {
                vec![1, c, 1, 1]
            } else {
                vec![1]
            };
            let k = konst(g, r, dims, 1.0);
            g.add1(Op::Binary(b), &[v, k], name).ok()
        }
        6 => {
            let u = r.pick(&[
                UnaryOp::Relu,
                UnaryOp::Tanh,
                UnaryOp::Abs,
                UnaryOp::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                UnaryOp::Clip {
                    min: -0.5,
                    max: 0.5,
                },
            ]);
            g.add1(Op::Unary(u), &[v], name).ok()
        }
        7 => {
            // A second pointwise branch concatenated along channels.
            let m = r.pick(&[1, 3, 4, 8]);
            let wt = konst(g, r, vec![m, c, 1, 1], 0.5);
            let b = g
                .add1(Op::Conv(ConvAttrs::new(2)), &[v, wt], format!("{name}b"))
                .ok()?;
            let ins = if r.below(2) == 0 { [v, b] } else { [b, v] };
            g.add1(Op::Concat(ConcatAttrs { axis: 1 }), &ins, name).ok()
        }
        8 => {
            // Residual add of the same shape.
            let wt = konst(g, r, vec![c, c, 1, 1], 0.5);
            let b = g
                .add1(Op::Conv(ConvAttrs::new(2)), &[v, wt], format!("{name}b"))
                .ok()?;
            g.add1(Op::Binary(BinaryOp::Add), &[v, b], name).ok()
        }
        _ => {
            if h * w > 1 && r.below(2) == 0 {
                let a = GlobalPoolAttrs {
                    kind: PoolKind::Avg,
                };
                g.add1(Op::GlobalPool(a), &[v], name).ok()
            } else {
                None
            }
        }
    }
}

/// A random graph: a 4-D input, a chain of ops, then optionally a Gemm
/// head on the flattened features.
fn random_graph(seed: u64) -> Graph {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut g = Graph::new(format!("rand{seed}"));
    let c = r.pick(&[1, 2, 3, 4, 8, 16]);
    let h = 1 + r.below(14);
    let w = 1 + r.below(14);
    let mut v = g.add_input("x", TensorType::new(DType::F32, vec![1, c, h, w]));
    let n = 2 + r.below(4);
    let mut i = 0;
    let mut added = 0;
    while added < n && i < 40 {
        if let Some(nv) = random_op(&mut g, &mut r, v, i) {
            v = nv;
            added += 1;
        }
        i += 1;
    }
    if r.below(3) == 0 {
        let ty = g.value_type(v).clone();
        let k: usize = ty.dims[1..].iter().product();
        if k <= 2048 {
            let f = g
                .add1(
                    Op::Reshape(ReshapeAttrs { shape: vec![1, k] }),
                    &[v],
                    "flat",
                )
                .unwrap();
            let nout = r.pick(&[1, 5, 8, 10, 17]);
            let trans_b = r.below(2) == 0;
            let wdims = if trans_b {
                vec![nout, k]
            } else {
                vec![k, nout]
            };
            let wt = konst(&mut g, &mut r, wdims, 0.2);
            let b = konst(&mut g, &mut r, vec![nout], 0.2);
            let a = GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b,
                act: act(&mut r),
            };
            v = g.add1(Op::Gemm(a), &[f, wt, b], "gemm").unwrap();
        }
    }
    g.add_output(v, "y");
    g
}

fn agree(a: &Tensor, b: &Tensor) -> Result<(), String> {
    let c = driver::compare(a, b, 1e-4, 1e-5);
    if c.ok() {
        Ok(())
    } else {
        Err(format!("{c:?}"))
    }
}

/// Interpreter, C and native agree on random graphs, before and after -O2.
#[test]
fn random_graphs_agree_across_backends() {
    let mut failures = Vec::new();
    let mut ops = std::collections::BTreeMap::new();
    for seed in 0..120u64 {
        let g0 = random_graph(seed);
        for opt in [OptLevel::O0, OptLevel::O2] {
            let mut g = g0.clone();
            nnc_passes::run_pipeline(&mut g, opt, &Default::default(), |_, _| {})
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            for id in g.node_ids() {
                *ops.entry(g.node(id).op.name()).or_insert(0usize) += 1;
            }
            let inputs = nnc_passes::check::random_inputs(&g, seed + 7);
            let want = driver::run_interp(&g, &inputs).unwrap();
            let native = run_native(&g, &inputs);
            let c = if seed % 3 == 0 {
                Some(run_c(&g, &inputs, &CFlags::default()))
            } else {
                None
            };
            let mut check = |what: &str, got: Result<Vec<Tensor>, driver::DriverError>| match got {
                Ok(o) => {
                    if let Err(e) = agree(&o[0], &want[0]) {
                        failures.push(format!(
                            "seed {seed} {opt} {what}: {e}\n{}",
                            nnc_ir::print(&g)
                        ));
                    }
                }
                Err(e) => failures.push(format!("seed {seed} {opt} {what}: {e}")),
            };
            check("native", native);
            if let Some(c) = c {
                check("C", c);
            }
        }
    }
    println!("ops exercised: {ops:?}");
    for op in [
        "conv",
        "max_pool",
        "avg_pool",
        "concat",
        "gemm",
        "add",
        "global_avg_pool",
    ] {
        assert!(
            ops.contains_key(op),
            "the generator never produced {op}: {ops:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A sweep over the shape classes the register-blocked convolution kernels
/// specialize (border rows and columns, tile tails, channel remainders,
/// strides, dilations, pointwise, depthwise on narrow and wide planes),
/// each checked against the interpreter.
#[test]
fn convolution_shape_classes_match_the_interpreter() {
    let mut r = Rng(0x5eed);
    let mut cases = 0;
    let mut failures = Vec::new();
    let shapes: Vec<(usize, usize, usize, usize, usize, usize, usize, usize)> = vec![
        // (c, m, h, w, k, stride, pad, group)
        (3, 16, 9, 9, 3, 1, 1, 1),
        (5, 20, 7, 13, 3, 1, 1, 1),
        (8, 12, 6, 5, 3, 2, 1, 1),
        (4, 28, 11, 17, 5, 1, 2, 1),
        (6, 8, 1, 30, 3, 1, 1, 1),
        (16, 36, 4, 4, 1, 1, 0, 1),
        (7, 44, 5, 9, 1, 1, 0, 1),
        (8, 16, 8, 8, 3, 1, 0, 2),
        (2, 4, 3, 3, 3, 1, 2, 1),
        (1, 64, 25, 5, 4, 2, 2, 1),
        (24, 24, 10, 10, 3, 1, 1, 24),
        (16, 16, 30, 40, 3, 2, 1, 16),
        (16, 16, 33, 37, 3, 1, 1, 16),
        (12, 12, 20, 21, 5, 2, 2, 12),
        (5, 5, 3, 3, 3, 1, 1, 5),
        (20, 20, 7, 7, 3, 2, 1, 20),
        (32, 32, 1, 1, 3, 1, 1, 32),
    ];
    for &(c, m, h, w, k, s, p, group) in &shapes {
        for dil in [1, 2] {
            let mut g = Graph::new("conv");
            let x = g.add_input("x", TensorType::new(DType::F32, vec![1, c, h, w]));
            let wt = konst(&mut g, &mut r, vec![m, c / group, k, k], 0.5);
            let b = konst(&mut g, &mut r, vec![m], 0.5);
            let mut a = ConvAttrs::new(2);
            a.strides = vec![s, s];
            a.pads = vec![p, p, p, p];
            a.dilations = vec![dil, dil];
            a.group = group;
            a.act = Some(UnaryOp::Relu);
            let Ok(y) = g.add1(Op::Conv(a), &[x, wt, b], "conv") else {
                continue;
            };
            g.add_output(y, "y");
            cases += 1;
            let inputs = nnc_passes::check::random_inputs(&g, 3);
            let want = driver::run_interp(&g, &inputs).unwrap();
            match run_native(&g, &inputs) {
                Ok(o) => {
                    if let Err(e) = agree(&o[0], &want[0]) {
                        failures.push(format!("{:?} dil {dil}: {e}", (c, m, h, w, k, s, p, group)));
                    }
                }
                Err(e) => failures.push(format!("{:?}: {e}", (c, m, h, w, k, s, p, group))),
            }
        }
    }
    assert!(cases >= 25, "only {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pooling shape classes of the fast forms: whole-plane windows (global)
/// and wide planes through the row-vector window kernel, with padding,
/// ceil mode and both average divisors.
#[test]
fn pooling_shape_classes_match_the_interpreter() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (h, w) in [(20, 37), (17, 64), (9, 33), (25, 5), (8, 8)] {
        for (k, s, p) in [
            (3, 2, 0),
            (3, 2, 1),
            (2, 2, 0),
            (3, 1, 1),
            (5, 1, 2),
            (0, 1, 0),
        ] {
            for kind in [PoolKind::Max, PoolKind::Avg] {
                for (ceil_mode, include) in [(false, false), (true, true), (true, false)] {
                    let mut g = Graph::new("pool");
                    let x = g.add_input("x", TensorType::new(DType::F32, vec![1, 3, h, w]));
                    // k == 0: a window covering the whole plane.
                    let (kh, kw, p) = if k == 0 { (h, w, 0) } else { (k, k, p) };
                    let a = PoolAttrs {
                        kind,
                        kernel: vec![kh, kw],
                        strides: vec![s, s],
                        pads: vec![p, p, p, p],
                        dilations: vec![1, 1],
                        ceil_mode,
                        count_include_pad: include,
                    };
                    let Ok(y) = g.add1(Op::Pool(a), &[x], "pool") else {
                        continue;
                    };
                    g.add_output(y, "y");
                    cases += 1;
                    let inputs = nnc_passes::check::random_inputs(&g, 5);
                    let want = driver::run_interp(&g, &inputs).unwrap();
                    match run_native(&g, &inputs) {
                        Ok(o) => {
                            if let Err(e) = agree(&o[0], &want[0]) {
                                failures.push(format!(
                                    "{h}x{w} k{k} s{s} p{p} {kind:?} ceil {ceil_mode} incl {include}: {e}"
                                ));
                            }
                        }
                        Err(e) => failures.push(format!("{h}x{w} k{k}: {e}")),
                    }
                }
            }
        }
    }
    assert!(cases >= 100, "only {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Channels-last to channels-first transposes (the NHWC inputs of
/// converted TensorFlow models) for every channel count the shuffle kernel
/// takes, odd plane sizes, and a 4-byte integer type, against the
/// interpreter; other permutations go through the strided copy.
#[test]
fn transposes_match_the_interpreter() {
    use nnc_ir::op::TransposeAttrs;
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::I32] {
        for c in 1..=5 {
            for (h, w) in [(3, 3), (4, 5), (96, 96), (1, 7)] {
                for perm in [vec![0, 3, 1, 2], vec![0, 2, 3, 1], vec![3, 1, 2, 0]] {
                    let mut g = Graph::new("t");
                    let x = g.add_input("x", TensorType::new(dtype, vec![1, h, w, c]));
                    let y = g
                        .add1(
                            Op::Transpose(TransposeAttrs { perm: perm.clone() }),
                            &[x],
                            "t",
                        )
                        .unwrap();
                    g.add_output(y, "y");
                    let inputs = nnc_passes::check::random_inputs(&g, 9);
                    let want = driver::run_interp(&g, &inputs).unwrap();
                    let got = run_native(&g, &inputs).unwrap();
                    if !got[0].bit_eq(&want[0]) {
                        failures.push(format!("{dtype} [1,{h},{w},{c}] perm {perm:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
