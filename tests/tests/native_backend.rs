//! The native (Cranelift) backend: every shared model through the JIT at
//! -O0 and -O2 against its reference, and shape sweeps of the fast
//! convolution, pooling and transpose kernels against the interpreter.
//! (The differential property test is `tests/differential.rs`.)

use nnc::driver::{self, LoadOptions};
use nnc::native::run_native;
use nnc_ir::op::{ConvAttrs, PoolAttrs, PoolKind, UnaryOp};
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

fn agree(a: &Tensor, b: &Tensor) -> Result<(), String> {
    let c = driver::compare(a, b, 1e-4, 1e-5);
    if c.ok() {
        Ok(())
    } else {
        Err(format!("{c:?}"))
    }
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
