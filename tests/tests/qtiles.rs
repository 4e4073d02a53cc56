//! The integer tile kernels of microcontrollers (`conv_im2col`,
//! `matmul_panels`, `dw_pairs`) forced onto random integer convolutions
//! and Gemms of every shape class their check accepts (1-D and 2-D,
//! pointwise, grouped, depthwise, strides, dilations, padding on every
//! side, int8 and uint8 activations and weights with zero points,
//! per-tensor and per-channel requantization in both of its forms, clamps
//! narrower than the type, ragged tiles, every tile shape and unroll),
//! with inputs over the whole int8/uint8 range. Each program is rendered
//! three ways and must equal the interpreter exactly: C on the host (the
//! plain path), C with `-DNNC_DSP_EMULATE` (the Cortex-M DSP path with
//! portable intrinsics, under AddressSanitizer and UBSan) and Cranelift.
//! The same programs lowered for the Cortex-M4 then run as firmware under
//! QEMU (the DSP path with ACLE's intrinsics), the interpreter's outputs
//! compared on the device (tools from `scripts/setup.sh`).

use nnc::cbuild::{CFlags, build_executable, harness_glue, run_executable};
use nnc_ir::op::{ConvAttrs, QConvAttrs, QGemmAttrs, QParams};
use nnc_ir::program::{Kernel, Program};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType};
use nnc_passes::lower::KernelChoice;

/// A small deterministic generator (xorshift64*), so failures reproduce.
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

    /// In `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

fn range(d: DType) -> (i64, i64) {
    if d == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    }
}

/// Random integer data of type `d`; weights stay within int8 of their zero
/// point (what the tile kernels accept).
fn ints(r: &mut Rng, d: DType, dims: Vec<usize>, zp: i64) -> Tensor {
    let (lo, hi) = range(d);
    let (lo, hi) = (lo.max(zp - 128), hi.min(zp + 127));
    let n = dims.iter().product();
    Tensor::from_i64(d, dims, (0..n).map(|_| r.int(lo, hi)).collect()).unwrap()
}

/// Quantization parameters: zero points, an output type and a clamp that is
/// the type's range or narrower.
fn qparams(r: &mut Rng, x: DType, w: DType) -> QParams {
    let zp = |r: &mut Rng, d: DType| {
        let (lo, hi) = range(d);
        if r.below(3) == 0 {
            0
        } else {
            r.int(lo, hi) as i32
        }
    };
    let out = r.pick(&[DType::I8, DType::U8]);
    let (lo, hi) = range(out);
    let (lo, hi) = if r.below(3) == 0 {
        (r.int(lo, lo + 60) as i32, r.int(hi - 60, hi) as i32)
    } else {
        (lo as i32, hi as i32)
    };
    QParams {
        x_zp: zp(r, x),
        w_zp: if w == DType::U8 {
            r.int(100, 155) as i32
        } else if r.below(4) == 0 {
            r.int(-5, 5) as i32
        } else {
            0
        },
        y_zp: zp(r, out),
        lo,
        hi,
        out,
    }
}

/// Bias, multipliers and shifts for `m` channels: per-channel or one for
/// all; shifts mostly in the range real models have (the high-word form),
/// sometimes -1 or above (the general form).
fn rq_consts(g: &mut Graph, r: &mut Rng, m: usize, k: usize, tag: &str) -> Vec<nnc_ir::Value> {
    let bias = Tensor::from_i64(
        DType::I32,
        vec![m],
        (0..m).map(|_| r.int(-3000, 3000)).collect(),
    )
    .unwrap();
    let per = if r.below(2) == 0 { m } else { 1 };
    let general = r.below(5) == 0;
    // Scale so outputs spread over the int8 range: the accumulator of `k`
    // products reaches about 2^14 sqrt(k).
    let base = -(8 + (k as f64).log2() as i64 / 2);
    let mult = (0..per).map(|_| r.int(1 << 30, (1 << 31) - 1)).collect();
    let shift = (0..per)
        .map(|_| {
            if general {
                r.int(-1, 1)
            } else {
                base + r.int(-2, 1)
            }
        })
        .collect();
    vec![
        g.add_const(bias, format!("b{tag}")),
        g.add_const(
            Tensor::from_i64(DType::I32, vec![per], mult).unwrap(),
            format!("m{tag}"),
        ),
        g.add_const(
            Tensor::from_i64(DType::I32, vec![per], shift).unwrap(),
            format!("s{tag}"),
        ),
    ]
}

/// A node and the kernel forced onto it.
struct Case {
    what: String,
    spec: String,
}

/// A random convolution (regular, grouped, pointwise or depthwise; 1-D or
/// 2-D) for `conv_im2col` or (depthwise, column dilation 1) `dw_pairs`.
fn conv_case(g: &mut Graph, r: &mut Rng, i: usize, depthwise: bool) -> Case {
    let rank = if r.below(4) == 0 { 1 } else { 2 };
    let (c, m, group) = if depthwise {
        let c = 1 + r.below(5);
        (c, c, c)
    } else {
        let group = r.pick(&[1, 1, 1, 2, 3]);
        (group * (1 + r.below(4)), group * (1 + r.below(4)), group)
    };
    let pointwise = !depthwise && r.below(4) == 0;
    let mut a = ConvAttrs::new(rank);
    a.group = group;
    let mut input = Vec::new();
    let mut k = Vec::new();
    for d in 0..rank {
        let kd = if pointwise {
            1
        } else if depthwise && d == rank - 1 {
            r.pick(&[1, 2, 3, 3, 4, 5, 8, 9])
        } else {
            r.pick(&[1, 2, 3, 3, 5])
        };
        if !pointwise {
            a.strides[d] = r.pick(&[1, 1, 2, 3]);
            a.dilations[d] = if depthwise && d == rank - 1 {
                1
            } else {
                r.pick(&[1, 1, 2])
            };
            a.pads[d] = r.below(kd.min(3));
            a.pads[rank + d] = r.below(kd.min(3));
        }
        let span = a.dilations[d] * (kd - 1) + 1;
        let pads = a.pads[d] + a.pads[rank + d];
        input.push(span.saturating_sub(pads).max(1) + r.below(9));
        k.push(kd);
    }
    let batch = 1 + usize::from(r.below(4) == 0);
    let xd = r.pick(&[DType::I8, DType::I8, DType::U8]);
    let wd = if r.below(4) == 0 {
        DType::U8
    } else {
        DType::I8
    };
    let q = qparams(r, xd, wd);
    let x = g.add_input(
        format!("x{i}"),
        TensorType::new(xd, [vec![batch, c], input.clone()].concat()),
    );
    let wdims = [vec![m, c / group], k.clone()].concat();
    let taps: usize = wdims[1..].iter().product();
    let w = g.add_const(ints(r, wd, wdims, q.w_zp as i64), format!("w{i}"));
    let mut ins = vec![x, w];
    ins.extend(rq_consts(g, r, m, taps, &i.to_string()));
    let attrs = QConvAttrs { conv: a, q };
    let y = g
        .add1(Op::QConv(attrs.clone()), &ins, format!("q{i}"))
        .unwrap_or_else(|e| panic!("case {i}: {e}"));
    g.add_output(y, format!("y{i}"));
    let out = &g.value_type(y).dims;
    let spec = if depthwise {
        // Planes one column wide are read along their rows (one band row).
        let one_column = input[1..].iter().all(|&d| d == 1) && k[1..].iter().all(|&d| d == 1);
        let rows = if rank == 2 && !one_column { out[2] } else { 1 };
        format!("dw_pairs(p={},rows={})", 1 + r.below(4), 1 + r.below(rows))
    } else {
        format!(
            "conv_im2col(r={},c={},unroll={})",
            1 + r.below(4),
            1 + r.below(4),
            1 + r.below(6)
        )
    };
    Case {
        what: format!(
            "qconv x={} w={} {attrs:?}",
            g.value_type(x),
            g.value_type(w)
        ),
        spec,
    }
}

/// A random Gemm for `matmul_panels`.
fn gemm_case(g: &mut Graph, r: &mut Rng, i: usize) -> Case {
    let (rows, k, n) = (1 + r.below(6), 1 + r.below(40), 1 + r.below(9));
    let xd = r.pick(&[DType::I8, DType::U8]);
    let wd = if r.below(4) == 0 {
        DType::U8
    } else {
        DType::I8
    };
    let q = qparams(r, xd, wd);
    let trans_b = r.below(2) == 0;
    let x = g.add_input(format!("x{i}"), TensorType::new(xd, vec![rows, k]));
    let bd = if trans_b { vec![n, k] } else { vec![k, n] };
    let w = g.add_const(ints(r, wd, bd, q.w_zp as i64), format!("w{i}"));
    let mut ins = vec![x, w];
    ins.extend(rq_consts(g, r, n, k, &i.to_string()));
    let attrs = QGemmAttrs { trans_b, q };
    let y = g
        .add1(Op::QGemm(attrs.clone()), &ins, format!("q{i}"))
        .unwrap_or_else(|e| panic!("case {i}: {e}"));
    g.add_output(y, format!("y{i}"));
    Case {
        what: format!("qgemm [{rows},{k}]x[{k},{n}] {xd} {wd} {attrs:?}"),
        spec: format!(
            "matmul_panels(r={},c={},unroll={})",
            1 + r.below(4),
            1 + r.below(4),
            1 + r.below(6)
        ),
    }
}

/// Inputs over the whole range of their type.
fn inputs(g: &Graph, r: &mut Rng) -> Vec<Tensor> {
    (0..g.inputs().len())
        .map(|i| {
            let ty = g.input_type(i);
            ints(r, ty.dtype, ty.dims.clone(), 0)
        })
        .collect()
}

/// The stack scratch `nnc info` reports for each step is what the C
/// rendering declares (`uint32_t col[N]` or `band[N]` in the step's
/// function).
fn check_scratch(p: &Program, src: &str) {
    for (i, st) in p.steps.iter().enumerate() {
        let head = format!("static int qk_step_{i}(");
        let start = src.find(&head).unwrap_or_else(|| panic!("no {head}"));
        let body = &src[start..];
        let body = &body[..body[head.len()..]
            .find("static int ")
            .map_or(body.len(), |e| e + head.len())];
        let decl = |what: &str| {
            body.find(what).map(|at| {
                let n = &body[at + what.len()..];
                n[..n.find(']').unwrap()].parse::<usize>().unwrap()
            })
        };
        let declared = decl("uint32_t col[")
            .map(|n| 4 * n)
            .or_else(|| decl("band[").map(|n| n * st.inputs[0].ty.dtype.size()));
        assert_eq!(
            declared.unwrap_or(0),
            nnc_ir::program::tiles::scratch_bytes(st),
            "step {i} ({})",
            st.kernel
        );
    }
}

fn run_c(p: &Program, inputs: &[Tensor], emulate: bool) -> Vec<Tensor> {
    let src = nnc_backends::c::emit(p, "qk").unwrap();
    check_scratch(p, &src.source);
    let glue = harness_glue(p, &src.name);
    let mut opt = vec!["-O2".to_string()];
    if emulate {
        opt.push("-DNNC_DSP_EMULATE".into());
    }
    let flags = CFlags {
        opt,
        sanitize: emulate,
        ..Default::default()
    };
    let exe = build_executable(&src, &glue, &flags).unwrap();
    run_executable(&exe, p, inputs).unwrap()
}

/// The program lowered for the Cortex-M4 as firmware under QEMU, its
/// outputs compared with `want` on the device: the failures.
fn run_m4(
    cases: &[Case],
    g: &Graph,
    kernels: &[KernelChoice],
    ins: &[Tensor],
    want: &[Tensor],
    gi: usize,
) -> Vec<String> {
    let t = nnc_backends::c::target("cortex-m4").unwrap();
    let p = nnc::driver::lower(g, "qk", &t, kernels)
        .unwrap_or_else(|e| panic!("lowering graph {gi} for {t}: {e}"));
    let src = nnc_backends::c::emit(&p, "qk").unwrap();
    check_scratch(&p, &src.source);
    let o = nnc::mcu::BenchOptions {
        runs: 1,
        expect: want.iter().cloned().enumerate().collect(),
        lsb: 0,
        ..Default::default()
    };
    let b = nnc::mcu::bench_program(&p, &src, ins, &o)
        .unwrap_or_else(|e| panic!("graph {gi} on the Cortex-M4: {e}"));
    assert_eq!(b.plain.report.checks.len(), want.len(), "graph {gi}");
    b.plain
        .report
        .checks
        .iter()
        .filter(|c| c.mismatches > 0)
        .map(|c| {
            format!(
                "graph {gi} cortex-m4 {} {}: {}/{} elements differ",
                cases[c.output].spec, cases[c.output].what, c.mismatches, c.elements
            )
        })
        .collect()
}

/// Builds graphs of `per` cases from `make`, forces each case's kernel,
/// checks lowering kept it on both host targets, and compares the three
/// renderings with the interpreter. Returns the failures.
fn sweep(
    graphs: usize,
    per: usize,
    seed: u64,
    make: &dyn Fn(&mut Graph, &mut Rng, usize) -> Case,
) -> Vec<String> {
    let mut r = Rng(seed);
    let mut failures = Vec::new();
    for gi in 0..graphs {
        let mut g = Graph::new(format!("qk{gi}"));
        let cases: Vec<Case> = (0..per).map(|i| make(&mut g, &mut r, i)).collect();
        let kernels: Vec<KernelChoice> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| KernelChoice::parse(&format!("node:q{i}={}", c.spec)).unwrap())
            .collect();
        let ins = inputs(&g, &mut r);
        let want = nnc_ir::interp::run(&g, &ins).unwrap();
        let c_target = nnc_backends::c::host_target();
        let native_target = nnc_backends::cranelift::host_target().unwrap();
        for t in [&c_target, &native_target] {
            let p = nnc::driver::lower(&g, "qk", t, &kernels)
                .unwrap_or_else(|e| panic!("lowering graph {gi} for {t}: {e}"));
            for (i, c) in cases.iter().enumerate() {
                let st = p.steps.iter().find(|s| s.name == format!("q{i}")).unwrap();
                let want_name = c.spec.split('(').next().unwrap();
                assert_eq!(st.kernel.name(), want_name, "{t}: {} {}", c.what, c.spec);
                assert!(
                    matches!(
                        st.kernel,
                        Kernel::ConvIm2col(_) | Kernel::DepthwisePairs(_) | Kernel::MatMulPanels(_)
                    ),
                    "{}",
                    st.kernel.name()
                );
            }
            let runs: Vec<(&str, Vec<Tensor>)> = if t == &c_target {
                vec![
                    ("c", run_c(&p, &ins, false)),
                    ("c dsp", run_c(&p, &ins, true)),
                ]
            } else {
                let jit = nnc_backends::cranelift::jit(&p).unwrap();
                vec![("native", nnc::native::run_jit(&jit, &p, &ins).unwrap())]
            };
            for (how, got) in runs {
                for (i, c) in cases.iter().enumerate() {
                    if !got[i].bit_eq(&want[i]) {
                        let (a, b) = (got[i].to_i64(), want[i].to_i64());
                        let bad = a.iter().zip(&b).filter(|(x, y)| x != y).count();
                        failures.push(format!(
                            "graph {gi} {how} {} {}: {bad}/{} elements differ\n  got  {:?}\n  want {:?}",
                            c.spec,
                            c.what,
                            b.len(),
                            &a[..a.len().min(24)],
                            &b[..b.len().min(24)]
                        ));
                    }
                }
            }
        }
        failures.extend(run_m4(&cases, &g, &kernels, &ins, &want, gi));
    }
    failures
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conv_im2col_is_exact_on_every_rendering() {
    report(sweep(6, 8, 0x9e37_79b9_7f4a_7c15, &|g, r, i| {
        conv_case(g, r, i, false)
    }));
}

#[test]
fn dw_pairs_is_exact_on_every_rendering() {
    report(sweep(4, 8, 0x2545_f491_4f6c_dd1d, &|g, r, i| {
        conv_case(g, r, i, true)
    }));
}

#[test]
fn matmul_panels_is_exact_on_every_rendering() {
    report(sweep(5, 8, 0x1234_5678_9abc_def1, &gemm_case));
}
