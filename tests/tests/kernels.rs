//! Kernels forced onto convolutions of every shape class their selection
//! check accepts, rendered by both backends from the same program, for
//! every target of `nnc_tests::targets` (C for this machine, SSE2 and AVX2;
//! native for this machine and x86-64-v2 without FMA), and compared with
//! the interpreter: `conv_row_tiles` (1-D, 2-D, pointwise,
//! strides 1 to 3, dilation, padding on every side, groups, every tile
//! shape, with and without the padded copy, f32 and f64, constant and
//! computed weights) and `dw_grid` (1-D, 2-D, pointwise, equal strides 1
//! to 3, dilation, padding), and `dw_phases` max pools on inputs with NaN
//! and infinities (checked against two mutations of the C separable path:
//! NaN planes not handed to the phase planes, and the NaN check reading
//! only the first window row; each failed it). Partial-sum slices with a residual epilogue,
//! which lowering does not produce yet, run on hand-built programs.

use std::collections::BTreeSet;
use std::sync::Arc;

use nnc::driver;
use nnc_ir::op::{ConvAttrs, UnaryOp};
use nnc_ir::program::{
    Buffer, ConvRowTiles, Epilogue, Kernel, Loc, Part, Program, Step, Weight, Window,
};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType};
use nnc_passes::lower::KernelChoice;
use nnc_tests::targets;

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

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    fn values(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            .collect()
    }
}

/// One convolution with the kernel forced onto it.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    c: usize,
    m: usize,
    a: ConvAttrs,
    /// Spatial input dims and kernel dims.
    input: Vec<usize>,
    k: Vec<usize>,
    bias: bool,
    dtype: DType,
    /// Weights and bias are graph inputs rather than constants.
    computed: bool,
    /// `NAME(key=value,...)` and the kernel lowering must pick from it.
    spec: String,
    want: Kernel,
}

impl Case {
    fn output(&self) -> Option<Vec<usize>> {
        let n = self.input.len();
        (0..n)
            .map(|d| {
                let a = &self.a;
                let span = a.dilations[d] * (self.k[d] - 1) + 1;
                let padded = self.input[d] + a.pads[d] + a.pads[n + d];
                (padded >= span).then(|| (padded - span) / a.strides[d] + 1)
            })
            .collect()
    }

    fn window(&self) -> Window {
        let x = TensorType::new(
            self.dtype,
            [vec![self.batch, self.c], self.input.clone()].concat(),
        );
        let w = TensorType::new(
            self.dtype,
            [vec![self.m, self.c / self.a.group], self.k.clone()].concat(),
        );
        let out = self.output().expect("a valid case");
        let y = TensorType::new(self.dtype, [vec![self.batch, self.m], out].concat());
        Window::conv(&self.a, &x, &w, &y)
    }
}

fn tensor(r: &mut Rng, dtype: DType, dims: Vec<usize>) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_f64(dtype, dims, r.values(n)).unwrap()
}

/// Adds case `i` to `g`: inputs `x{i}` (and `w{i}`, `b{i}` when computed),
/// node `conv{i}`, output `y{i}`.
fn add_case(g: &mut Graph, r: &mut Rng, i: usize, c: &Case) {
    let xdims = [vec![c.batch, c.c], c.input.clone()].concat();
    let x = g.add_input(format!("x{i}"), TensorType::new(c.dtype, xdims));
    let wdims = [vec![c.m, c.c / c.a.group], c.k.clone()].concat();
    let mut ins = vec![x];
    if c.computed {
        ins.push(g.add_input(format!("w{i}"), TensorType::new(c.dtype, wdims)));
        if c.bias {
            ins.push(g.add_input(format!("b{i}"), TensorType::new(c.dtype, vec![c.m])));
        }
    } else {
        ins.push(g.add_const(tensor(r, c.dtype, wdims), format!("w{i}")));
        if c.bias {
            ins.push(g.add_const(tensor(r, c.dtype, vec![c.m]), format!("b{i}")));
        }
    }
    let y = g
        .add1(Op::Conv(c.a.clone()), &ins, format!("conv{i}"))
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    g.add_output(y, format!("y{i}"));
}

/// Runs the cases in graphs of a few, forcing each case's kernel on its
/// node: checks lowering picked it for both targets, then compares C and
/// native with the interpreter. Returns the failures.
fn run_cases(cases: &[Case], seed: u64) -> Vec<String> {
    run_cases_on(cases, seed, &targets::all())
}

/// [`run_cases`] on the given targets only.
fn run_cases_on(cases: &[Case], seed: u64, targets: &[nnc_ir::program::Target]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut r = Rng(seed);
    for (chunk_no, chunk) in cases.chunks(8).enumerate() {
        let mut g = Graph::new(format!("kernels{chunk_no}"));
        let mut kernels = Vec::new();
        for (i, c) in chunk.iter().enumerate() {
            add_case(&mut g, &mut r, i, c);
            kernels.push(KernelChoice::parse(&format!("node:conv{i}={}", c.spec)).unwrap());
        }
        let inputs = nnc_passes::check::random_inputs(&g, seed + chunk_no as u64);
        let want = driver::run_interp(&g, &inputs).unwrap();
        // Every target, so the AVX2 and the FMA-less paths run too.
        for t in targets {
            let p = driver::lower(&g, "k", t, &kernels)
                .unwrap_or_else(|e| panic!("lowering {chunk:#?} for {t}: {e}"));
            for (i, c) in chunk.iter().enumerate() {
                let st = p.steps.iter().find(|s| s.name == format!("conv{i}"));
                let got = st.map(|s| &s.kernel);
                assert_eq!(got, Some(&c.want), "{t}: case {c:?}");
            }
            let label = targets::label(t);
            match targets::run_program(&p, &inputs) {
                Ok(got) => {
                    for (i, c) in chunk.iter().enumerate() {
                        let cmp = driver::compare(&got[i], &want[i], 1e-4, 1e-5);
                        if !cmp.ok() {
                            failures.push(format!("{label} {c:?}: {cmp:?}"));
                        }
                    }
                }
                Err(e) => failures.push(format!("{label} {chunk:?}: {e}")),
            }
        }
    }
    failures
}

/// A random 1-D, 2-D or pointwise convolution for `conv_row_tiles` with
/// `ob` channels per tile; at least four output columns (what forcing the
/// kernel needs to derive its defaults).
fn row_case(r: &mut Rng, ob: usize, vw: usize, pad_copy: bool) -> Case {
    loop {
        let n = r.pick(&[1, 2, 2]);
        let pointwise = r.below(6) == 0;
        let group = r.pick(&[1, 1, 2, 4]);
        let (cg, mg) = (r.pick(&[1, 2, 3]), ob * r.pick(&[1, 2, 3]));
        let mut a = ConvAttrs::new(n);
        a.group = group;
        let (mut input, mut k) = (vec![0; n], vec![1; n]);
        for d in 0..n {
            // The column axis is the last one.
            let col = d + 1 == n;
            input[d] = if col { 3 + r.below(20) } else { 1 + r.below(7) };
            if pointwise {
                continue;
            }
            k[d] = r.pick(&[1, 2, 3, 3, 5]);
            a.strides[d] = r.pick(&[1, 2, 3]);
            a.dilations[d] = if r.below(4) == 0 { 2 } else { 1 };
            a.pads[d] = r.below(3);
            a.pads[n + d] = r.below(3);
        }
        if r.below(2) == 0 {
            a.act = Some(UnaryOp::Relu);
        }
        let want = Kernel::ConvRowTiles(ConvRowTiles {
            channels: ob,
            width: vw,
            pad_copy,
        });
        let spec = format!(
            "conv_row_tiles(c={ob},w={vw},pad_copy={})",
            u8::from(pad_copy)
        );
        let case = Case {
            batch: r.pick(&[1, 1, 2]),
            c: group * cg,
            m: group * mg,
            a,
            input,
            k,
            bias: r.below(3) != 0,
            dtype: if r.below(5) == 0 {
                DType::F64
            } else {
                DType::F32
            },
            computed: r.below(6) == 0,
            spec,
            want,
        };
        if case
            .output()
            .is_some_and(|o| o.iter().all(|&v| v >= 1) && o[n - 1] >= 4)
        {
            return case;
        }
    }
}

/// What a row-tile case exercises, for the coverage check.
fn row_traits(c: &Case) -> Vec<String> {
    let Kernel::ConvRowTiles(k) = &c.want else {
        unreachable!()
    };
    let w = c.window();
    let (_, cols) = w.rows_cols().unwrap();
    let cols = if k.pad_copy { cols.unpadded() } else { cols };
    let (lo, hi) = cols.interior();
    let n = c.input.len();
    let mut t = vec![
        format!("{n}-D"),
        format!("stride {}", c.a.strides[n - 1]),
        format!("groups {}", c.a.group),
        format!("c {}", k.channels),
        format!("w {}", k.width),
        format!("pad_copy {}", k.pad_copy),
        format!("bias {}", c.bias),
        format!("act {:?}", c.a.act),
        format!("{}", c.dtype),
    ];
    let flags = [
        ("pointwise", w.is_pointwise()),
        ("dilation 2", c.a.dilations.contains(&2)),
        (
            "pads on every side",
            c.a.pads.iter().all(|&p| p > 0) && n == 2,
        ),
        ("narrow interior", hi - lo < k.width),
        (
            "shifted last tile",
            hi - lo > k.width && (hi - lo) % k.width != 0,
        ),
        ("border columns", hi - lo >= k.width && cols.border() > 0),
        ("computed weights", c.computed),
        ("batch 2", c.batch == 2),
    ];
    t.extend(flags.iter().filter(|f| f.1).map(|f| f.0.to_string()));
    t
}

#[test]
fn conv_row_tiles_match_the_interpreter_on_both_backends() {
    let mut r = Rng(0x7113_5eed);
    let mut cases = Vec::new();
    for _ in 0..3 {
        for ob in [1, 2, 4, 8] {
            for vw in [3, 4, 8, 16] {
                for pad_copy in [false, true] {
                    cases.push(row_case(&mut r, ob, vw, pad_copy));
                }
            }
        }
    }
    let seen: BTreeSet<String> = cases.iter().flat_map(row_traits).collect();
    for want in [
        "1-D",
        "2-D",
        "pointwise",
        "stride 1",
        "stride 2",
        "stride 3",
        "dilation 2",
        "pads on every side",
        "groups 1",
        "groups 2",
        "groups 4",
        "bias true",
        "bias false",
        "act Some(Relu)",
        "narrow interior",
        "shifted last tile",
        "border columns",
        "computed weights",
        "batch 2",
        "f64",
    ] {
        assert!(seen.contains(want), "no case has {want}: {seen:?}");
    }
    let failures = run_cases(&cases, 11);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The channel-blocked kernel at channel blocks of whole vectors, which the
/// C host renders with vector accumulators: 1, 2 and 3 vectors of 16 (of
/// 8 and 4 on the AVX2 and SSE2 targets), output channels not a multiple
/// of the block, 1x1 at 7x7, 3x3 padded with and without the padded copy
/// (border columns with bounds checks), stride 2, groups, 1-D, batch 2,
/// narrow rows, sigmoid (the vectorized `expf`) and relu epilogues.
#[test]
fn conv_blocked_vector_accumulators_match_the_interpreter() {
    // (batch, c, m, group, input, k, stride, pad, positions, channels, pad_copy, act)
    type Shape<'a> = (
        usize,
        usize,
        usize,
        usize,
        &'a [usize],
        usize,
        usize,
        usize,
        usize,
        usize,
        bool,
        Option<UnaryOp>,
    );
    let shapes: [Shape; 8] = [
        (1, 24, 40, 1, &[7, 7], 1, 1, 0, 7, 32, false, None),
        (
            1,
            5,
            48,
            1,
            &[9, 11],
            3,
            1,
            1,
            5,
            48,
            true,
            Some(UnaryOp::Sigmoid),
        ),
        (
            2,
            3,
            20,
            1,
            &[6, 13],
            3,
            1,
            1,
            4,
            16,
            false,
            Some(UnaryOp::Relu),
        ),
        (1, 8, 32, 2, &[8, 8], 3, 2, 1, 3, 16, true, None),
        (
            1,
            7,
            17,
            1,
            &[23],
            3,
            1,
            2,
            6,
            16,
            false,
            Some(UnaryOp::Sigmoid),
        ),
        (
            1,
            4,
            64,
            1,
            &[3, 3],
            3,
            1,
            1,
            3,
            32,
            true,
            Some(UnaryOp::Relu),
        ),
        (1, 6, 16, 1, &[5, 5], 5, 2, 2, 2, 16, false, None),
        (
            2,
            16,
            33,
            1,
            &[2, 9],
            1,
            1,
            0,
            8,
            32,
            false,
            Some(UnaryOp::Sigmoid),
        ),
    ];
    let cases: Vec<Case> = shapes
        .iter()
        .map(
            |&(batch, c, m, group, input, k, s, p, pos, ch, pad_copy, act)| {
                let n = input.len();
                let mut a = ConvAttrs::new(n);
                a.group = group;
                a.act = act;
                a.strides = vec![s; n];
                a.pads = vec![p; 2 * n];
                let want = Kernel::ConvBlocked(nnc_ir::program::ConvBlocked {
                    positions: pos,
                    channels: ch,
                    unroll: 1,
                    pad_copy,
                });
                Case {
                    batch,
                    c,
                    m,
                    a,
                    input: input.to_vec(),
                    k: vec![k; n],
                    bias: m % 2 == 0,
                    dtype: DType::F32,
                    computed: false,
                    spec: format!(
                        "conv_blocked(p={pos},c={ch},unroll=1,pad_copy={})",
                        u8::from(pad_copy)
                    ),
                    want,
                }
            },
        )
        .collect();
    let failures = run_cases(&cases, 31);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Transposed convolutions whose taps do not overlap (kernel = stride, no
/// padding), which the C host renders in sub-pixel form: 2x2 and 3x3
/// strides, unequal kernel per axis, rows (channel, tap) not a multiple of
/// the register tile, input widths under, at and past a tile (the shifted
/// last tile), batch 2, with and without bias; every target against the
/// interpreter (native keeps the scatter kernel).
#[test]
fn subpixel_conv_transpose_matches_the_interpreter() {
    // (batch, c, m, input, kernel, bias)
    let shapes: [(usize, usize, usize, [usize; 2], [usize; 2], bool); 6] = [
        (1, 16, 16, [16, 16], [2, 2], true),
        (2, 3, 3, [5, 7], [2, 2], true),
        (1, 5, 4, [3, 37], [3, 3], false),
        (1, 8, 6, [4, 1], [2, 3], true),
        (1, 1, 2, [2, 9], [1, 2], true),
        (1, 7, 5, [6, 33], [2, 2], false),
    ];
    let mut r = Rng(0x5b);
    let mut failures = Vec::new();
    for &(batch, c, m, input, k, bias) in &shapes {
        let a = nnc_ir::op::ConvTransposeAttrs {
            strides: k.to_vec(),
            pads: vec![0; 4],
            dilations: vec![1, 1],
            output_padding: vec![0, 0],
            group: 1,
        };
        let mut g = Graph::new("ct");
        let x = g.add_input(
            "x",
            TensorType::new(DType::F32, vec![batch, c, input[0], input[1]]),
        );
        let mut ins = vec![x];
        ins.push(g.add_const(tensor(&mut r, DType::F32, vec![c, m, k[0], k[1]]), "w"));
        if bias {
            ins.push(g.add_const(tensor(&mut r, DType::F32, vec![m]), "b"));
        }
        let y = g.add1(Op::ConvTranspose(a), &ins, "ct").unwrap();
        g.add_output(y, "y");
        let inputs = nnc_passes::check::random_inputs(&g, 5);
        let want = driver::run_interp(&g, &inputs).unwrap();
        for t in targets::all() {
            let p = driver::lower(&g, "k", &t, &[]).unwrap();
            match targets::run_program(&p, &inputs) {
                Ok(got) => {
                    let cmp = driver::compare(&got[0], &want[0], 1e-4, 1e-5);
                    if !cmp.ok() {
                        failures.push(format!(
                            "{} {:?}: {cmp:?}",
                            targets::label(&t),
                            (batch, c, m, input, k)
                        ));
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", targets::label(&t))),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Row tiles whose zero-padded copy is too large for the stack: the C
/// renderer copies one band of rows per output row instead (native code
/// has no band form, so these run on the C targets). Stems of 224x224
/// images, odd widths, strides 1 to 3, dilation, uneven padding, groups,
/// f64, computed weights and batch 2 (a 1-D band would be the whole copy).
#[test]
fn conv_row_tiles_copy_bands_of_inputs_too_large_for_the_stack() {
    // (batch, c, m, group, input, k, strides, dilations, pads, ob, vw, dtype, computed, relu)
    type Shape<'a> = (
        usize,
        usize,
        usize,
        usize,
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        usize,
        usize,
        DType,
        bool,
        bool,
    );
    let f32_ = DType::F32;
    let shapes: [Shape; 7] = [
        // MobileNetV2's stem (fewer output channels).
        (
            1,
            3,
            16,
            1,
            &[224, 224],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[1, 1, 1, 1],
            8,
            32,
            f32_,
            false,
            true,
        ),
        // SqueezeNet's: no padding, an odd output width (111).
        (
            1,
            3,
            8,
            1,
            &[224, 224],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[0, 0, 0, 0],
            8,
            16,
            f32_,
            false,
            false,
        ),
        // Stride 1, 5x5, odd input width, channels not a multiple of the tile.
        (
            1,
            2,
            12,
            1,
            &[150, 231],
            &[5, 5],
            &[1, 1],
            &[1, 1],
            &[2, 2, 2, 2],
            4,
            16,
            f32_,
            false,
            true,
        ),
        // Stride 3, dilation 2, uneven padding, f64.
        (
            1,
            1,
            2,
            1,
            &[141, 233],
            &[3, 3],
            &[3, 3],
            &[2, 2],
            &[1, 0, 2, 1],
            2,
            8,
            DType::F64,
            false,
            false,
        ),
        // Groups, computed weights, batch 2.
        (
            2,
            4,
            4,
            2,
            &[130, 129],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[1, 1, 1, 1],
            2,
            16,
            f32_,
            true,
            true,
        ),
        // Padding on the bottom and right only, a narrow tile.
        (
            1,
            3,
            8,
            1,
            &[100, 300],
            &[3, 3],
            &[1, 1],
            &[1, 1],
            &[0, 0, 1, 1],
            8,
            4,
            f32_,
            false,
            false,
        ),
        // Rows taller than the kernel's stride: 3x1 taps, stride (1, 2).
        (
            1,
            3,
            8,
            1,
            &[120, 250],
            &[3, 1],
            &[1, 2],
            &[1, 1],
            &[1, 0, 1, 0],
            8,
            32,
            f32_,
            false,
            true,
        ),
    ];
    let mut cases = Vec::new();
    for &(batch, c, m, group, input, k, strides, dil, pads, ob, vw, dtype, computed, relu) in
        &shapes
    {
        let n = input.len();
        let mut a = ConvAttrs::new(n);
        a.group = group;
        a.strides = strides.to_vec();
        a.dilations = dil.to_vec();
        a.pads = pads.to_vec();
        if relu {
            a.act = Some(UnaryOp::Relu);
        }
        let case = Case {
            batch,
            c,
            m,
            a,
            input: input.to_vec(),
            k: k.to_vec(),
            bias: !computed,
            dtype,
            computed,
            spec: format!("conv_row_tiles(c={ob},w={vw},pad_copy=1)"),
            want: Kernel::ConvRowTiles(ConvRowTiles {
                channels: ob,
                width: vw,
                pad_copy: true,
            }),
        };
        let w = case.window();
        let (h, cols) = w.rows_cols().unwrap();
        assert!(
            nnc_ir::program::rowband::uses_band(c, &h, &cols, dtype.size()),
            "{case:?} is copied whole"
        );
        cases.push(case);
    }
    let c_targets: Vec<_> = targets::C_TARGETS.iter().map(|s| targets::c(s)).collect();
    let failures = run_cases_on(&cases, 23, &c_targets);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A random depthwise convolution `dw_grid` accepts: 1-D (stride 1),
/// pointwise or 2-D with equal strides, any dilation and padding.
fn grid_case(r: &mut Rng) -> Case {
    loop {
        let n = r.pick(&[1, 2, 2, 2]);
        let c = r.pick(&[1, 3, 4, 8]);
        let mut a = ConvAttrs::new(n);
        a.group = c;
        let s = if n == 1 { 1 } else { r.pick(&[1, 1, 2, 2, 3]) };
        let pointwise = r.below(8) == 0;
        let (mut input, mut k) = (vec![0; n], vec![1; n]);
        for d in 0..n {
            input[d] = 1 + r.below(if d + 1 == n { 21 } else { 9 });
            if pointwise {
                continue;
            }
            k[d] = r.pick(&[1, 2, 3, 3, 5]);
            a.strides[d] = s;
            a.dilations[d] = if r.below(4) == 0 { 2 } else { 1 };
            a.pads[d] = r.below(3);
            a.pads[n + d] = r.below(3);
        }
        if r.below(2) == 0 {
            a.act = Some(UnaryOp::Relu);
        }
        let case = Case {
            batch: r.pick(&[1, 1, 2]),
            c,
            m: c,
            a,
            input,
            k,
            bias: r.below(3) != 0,
            dtype: DType::F32,
            computed: r.below(6) == 0,
            spec: "dw_grid".into(),
            want: Kernel::DepthwiseGrid,
        };
        if case.output().is_some_and(|o| o.iter().all(|&v| v >= 1)) {
            return case;
        }
    }
}

#[test]
fn dw_grid_matches_the_interpreter_on_both_backends() {
    let mut r = Rng(0x96_1d);
    let cases: Vec<Case> = (0..40).map(|_| grid_case(&mut r)).collect();
    let seen: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| {
            let n = c.input.len();
            let w = c.window();
            [
                Some(format!("{n}-D stride {}", c.a.strides[n - 1])),
                w.is_pointwise().then(|| "pointwise".into()),
                c.a.dilations.contains(&2).then(|| "dilation".into()),
                (n == 2 && c.a.pads.iter().all(|&p| p > 0)).then(|| "pads".into()),
                c.computed.then(|| "computed".into()),
                (!c.bias).then(|| "no bias".into()),
                c.a.act.map(|_| "relu".into()),
            ]
        })
        .flatten()
        .collect();
    for want in [
        "1-D stride 1",
        "2-D stride 1",
        "2-D stride 2",
        "2-D stride 3",
        "pointwise",
        "dilation",
        "pads",
        "computed",
        "no bias",
        "relu",
    ] {
        assert!(seen.contains(want), "no case has {want}: {seen:?}");
    }
    let failures = run_cases(&cases, 23);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A random depthwise convolution for `dw_phases`: 1-D or 2-D, strides 1
/// to 3 (row and column strides may differ), any dilation and padding.
fn phases_case(r: &mut Rng) -> Case {
    loop {
        let n = r.pick(&[1, 2, 2, 2]);
        let c = r.pick(&[1, 3, 4]);
        let mut a = ConvAttrs::new(n);
        a.group = c;
        let (mut input, mut k) = (vec![0; n], vec![1; n]);
        for d in 0..n {
            input[d] = 1 + r.below(if d + 1 == n { 40 } else { 9 });
            k[d] = r.pick(&[1, 2, 3, 3, 5, 7]);
            a.strides[d] = r.pick(&[1, 1, 2, 2, 3]);
            a.dilations[d] = if r.below(4) == 0 { 2 } else { 1 };
            a.pads[d] = r.below(4);
            a.pads[n + d] = r.below(4);
        }
        if r.below(2) == 0 {
            a.act = Some(UnaryOp::Relu);
        }
        let case = Case {
            batch: r.pick(&[1, 1, 2]),
            c,
            m: c,
            a,
            input,
            k,
            bias: r.below(3) != 0,
            dtype: DType::F32,
            computed: r.below(6) == 0,
            spec: "dw_phases".into(),
            want: Kernel::DepthwisePhases,
        };
        if case.output().is_some_and(|o| o.iter().all(|&v| v >= 1)) {
            return case;
        }
    }
}

#[test]
fn dw_phases_matches_the_interpreter_on_both_backends() {
    let mut r = Rng(0xd9_a5e);
    let cases: Vec<Case> = (0..40).map(|_| phases_case(&mut r)).collect();
    let seen: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| {
            let n = c.input.len();
            [
                Some(format!("{n}-D")),
                (n == 2 && c.a.strides[0] != c.a.strides[1]).then(|| "unequal strides".into()),
                c.a.strides.contains(&3).then(|| "stride 3".into()),
                c.k.contains(&5).then(|| "5 taps".into()),
                c.k.contains(&7).then(|| "7 taps".into()),
                c.a.dilations.contains(&2).then(|| "dilation".into()),
                c.computed.then(|| "computed".into()),
                (!c.bias).then(|| "no bias".into()),
                c.a.act.map(|_| "relu".into()),
                (c.batch == 2).then(|| "batch 2".into()),
            ]
        })
        .flatten()
        .collect();
    for want in [
        "1-D",
        "2-D",
        "unequal strides",
        "stride 3",
        "5 taps",
        "7 taps",
        "dilation",
        "computed",
        "no bias",
        "relu",
        "batch 2",
    ] {
        assert!(seen.contains(want), "no case has {want}: {seen:?}");
    }
    let failures = run_cases(&cases, 29);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Input channels `[lo, hi)` of an `[n, c, ...]` tensor (n = 1).
fn channels(t: &Tensor, lo: usize, hi: usize) -> Tensor {
    let per: usize = t.dims()[2..].iter().product();
    let v = t.to_f64()[lo * per..hi * per].to_vec();
    let dims = [vec![1, hi - lo], t.dims()[2..].to_vec()].concat();
    Tensor::from_f64(t.dtype(), dims, v).unwrap()
}

/// Input channels `[lo, hi)` of `[m, c, ...]` weights.
fn weight_columns(t: &Tensor, lo: usize, hi: usize) -> Tensor {
    let (m, c) = (t.dims()[0], t.dims()[1]);
    let per: usize = t.dims()[2..].iter().product();
    let all = t.to_f64();
    let v: Vec<f64> = (0..m)
        .flat_map(|o| all[(o * c + lo) * per..(o * c + hi) * per].to_vec())
        .collect();
    let dims = [vec![m, hi - lo], t.dims()[2..].to_vec()].concat();
    Tensor::from_f64(t.dtype(), dims, v).unwrap()
}

/// `relu(conv(x, w, b) + r)` as two steps over input-channel halves: the
/// first adds the bias, the second accumulates into the output and applies
/// the residual and the activation; every accumulating convolution kernel,
/// through both backends.
#[test]
fn convolutions_accumulate_partial_sums_with_a_residual() {
    let mut r = Rng(0xacc);
    let mut failures = Vec::new();
    // (c, m, h, w, k, stride, pad, tile channels, width, pad_copy)
    let shapes = [
        (4, 8, 5, 18, 3, 1, 1, 4, 8, false),
        (4, 8, 5, 19, 3, 1, 1, 4, 8, false),
        (6, 4, 4, 23, 3, 2, 1, 2, 4, false),
        (4, 6, 3, 17, 3, 1, 0, 3, 16, true),
        (2, 4, 6, 14, 3, 3, 2, 1, 3, true),
        (6, 8, 1, 30, 1, 1, 0, 8, 8, false),
    ];
    for &(c, m, h, w, k, s, p, ob, vw, pad_copy) in &shapes {
        let mut a = ConvAttrs::new(2);
        a.strides = vec![s, s];
        a.pads = vec![p; 4];
        let x = tensor(&mut r, DType::F32, vec![1, c, h, w]);
        let wt = tensor(&mut r, DType::F32, vec![m, c, k, k]);
        let b = tensor(&mut r, DType::F32, vec![m]);
        let mut g = Graph::new("ref");
        let xv = g.add_input("x", x.ty());
        let wv = g.add_const(wt.clone(), "w");
        let bv = g.add_const(b.clone(), "b");
        let y = g.add1(Op::Conv(a.clone()), &[xv, wv, bv], "conv").unwrap();
        let yt = g.value_type(y).clone();
        let res = tensor(&mut r, DType::F32, yt.dims.clone());
        let rv = g.add_input("r", yt.clone());
        let sum = g
            .add1(Op::Binary(nnc_ir::op::BinaryOp::Add), &[y, rv], "add")
            .unwrap();
        let out = g.add1(Op::Unary(UnaryOp::Relu), &[sum], "relu").unwrap();
        g.add_output(out, "y");
        let want = driver::run_interp(&g, &[x.clone(), res.clone()]).unwrap();

        let half = c / 2;
        let (xa, xb) = (channels(&x, 0, half), channels(&x, half, c));
        let (wa, wb) = (weight_columns(&wt, 0, half), weight_columns(&wt, half, c));
        let buf = |loc, t: &Tensor| Buffer::new(loc, t.ty());
        // Every convolution kernel that accumulates partial sums.
        for kernel in [
            Kernel::ConvRowTiles(ConvRowTiles {
                channels: ob,
                width: vw,
                pad_copy,
            }),
            Kernel::ConvDirect,
            Kernel::ConvBlocked(nnc_ir::program::ConvBlocked {
                positions: vw.min(6),
                channels: 4 * ob.div_ceil(4),
                unroll: 1 + (ob % 2),
                pad_copy: pad_copy && p > 0,
            }),
        ] {
            let yb = Buffer::new(Loc::Output(0), yt.clone());
            let step = |ins: Vec<Buffer>, epilogue, part| Step {
                op: Op::Conv(a.clone()),
                kernel: kernel.clone(),
                epilogue,
                part,
                inputs: ins,
                outputs: vec![yb.clone()],
                name: "conv".into(),
                in_place: false,
            };
            let weight = |name: &str, t: &Tensor| Weight {
                name: name.into(),
                tensor: Arc::new(t.clone()),
            };
            let prog = Program {
                name: "partial".into(),
                target: nnc_backends::cranelift::host_target().unwrap(),
                inputs: vec![
                    ("xa".into(), xa.ty()),
                    ("xb".into(), xb.ty()),
                    ("r".into(), yt.clone()),
                ],
                outputs: vec![("y".into(), yt.clone())],
                weights: vec![weight("wa", &wa), weight("wb", &wb), weight("b", &b)],
                loops: Vec::new(),
                steps: vec![
                    step(
                        vec![
                            buf(Loc::Input(0), &xa),
                            buf(Loc::Const(0), &wa),
                            buf(Loc::Const(2), &b),
                        ],
                        vec![Epilogue::Bias { input: 2 }],
                        Part {
                            in_channels: Some((0, half)),
                            ..Part::default()
                        },
                    ),
                    step(
                        vec![
                            buf(Loc::Input(1), &xb),
                            buf(Loc::Const(1), &wb),
                            buf(Loc::Input(2), &res),
                        ],
                        vec![
                            Epilogue::Residual { input: 2 },
                            Epilogue::Act(UnaryOp::Relu),
                        ],
                        Part {
                            in_channels: Some((half, c)),
                            accumulate: true,
                            ..Part::default()
                        },
                    ),
                ],
                arena_bytes: 0,
                stats: Default::default(),
            };
            prog.verify().unwrap();
            let inputs = [xa.clone(), xb.clone(), res.clone()];
            let mut outs = Vec::new();
            for t in targets::all() {
                let mut p = prog.clone();
                p.target = t;
                let got = targets::run_program(&p, &inputs)
                    .unwrap_or_else(|e| panic!("{}: {e}", targets::label(&p.target)));
                outs.push((targets::label(&p.target), got));
            }
            for (backend, got) in outs {
                let cmp = driver::compare(&got[0], &want[0], 1e-4, 1e-5);
                if !cmp.ok() {
                    failures.push(format!(
                        "{backend} {kernel} {:?}: {cmp:?}",
                        (c, m, h, w, k, s, p, ob, vw, pad_copy)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `dw_phases` max pools (1-D and 2-D, strides 1 to 3, dilation, padding,
/// ceil mode) on inputs where some planes hold a NaN or an infinity, for
/// every target: the C kernel's separable path drops a NaN in its plain
/// compare and must hand such a plane to the phase planes, so a window
/// with a NaN gives NaN as the interpreter does, and one without gives its
/// maximum (infinities included).
#[test]
fn dw_phases_max_pools_keep_nan_on_every_target() {
    use nnc_ir::op::{PoolAttrs, PoolKind};
    let mut r = Rng(0x9a_7a9);
    let (mut nan_planes, mut inf_planes, mut clean_planes) = (0, 0, 0);
    let (mut ran, mut failures) = (0, Vec::new());
    for case in 0..24 {
        let n = if case % 4 == 3 { 1 } else { 2 };
        let (batch, c) = (r.pick(&[1, 2]), r.pick(&[1, 3, 4]));
        let mut a = PoolAttrs {
            kind: PoolKind::Max,
            kernel: vec![1; n],
            strides: vec![1; n],
            pads: vec![0; 2 * n],
            dilations: vec![1; n],
            ceil_mode: r.below(3) == 0,
            count_include_pad: false,
        };
        let mut input = vec![0; n];
        for d in 0..n {
            a.kernel[d] = r.pick(&[2, 3, 3, 5]);
            a.strides[d] = r.pick(&[1, 2, 2, 3]);
            a.dilations[d] = if r.below(5) == 0 { 2 } else { 1 };
            a.pads[d] = r.below(a.kernel[d]);
            a.pads[n + d] = r.below(a.kernel[d]);
            input[d] = 6 + r.below(if d + 1 == n { 30 } else { 8 });
        }
        let mut g = Graph::new(format!("maxpool{case}"));
        let dims = [vec![batch, c], input.clone()].concat();
        let x = g.add_input("x", TensorType::new(DType::F32, dims.clone()));
        let Ok(y) = g.add1(Op::Pool(a.clone()), &[x], "pool") else {
            continue;
        };
        g.add_output(y, "y");
        ran += 1;
        // Values with a NaN in about a third of the planes and an infinity
        // in a quarter of them, at random positions.
        let plane: usize = input.iter().product();
        let mut v = r.values(batch * c * plane);
        for p in 0..batch * c {
            let mut marked = false;
            if r.below(3) == 0 {
                v[p * plane + r.below(plane)] = f64::NAN;
                nan_planes += 1;
                marked = true;
            }
            if r.below(4) == 0 {
                let inf = if r.below(2) == 0 {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                };
                v[p * plane + r.below(plane)] = inf;
                inf_planes += 1;
                marked = true;
            }
            clean_planes += usize::from(!marked);
        }
        let inputs = vec![Tensor::from_f64(DType::F32, dims, v).unwrap()];
        let want = driver::run_interp(&g, &inputs).unwrap();
        let kernels = vec![KernelChoice::parse("node:pool=dw_phases").unwrap()];
        for t in &targets::all() {
            let p = driver::lower(&g, "k", t, &kernels)
                .unwrap_or_else(|e| panic!("lowering {a:?} on {input:?} for {t}: {e}"));
            let st = p.steps.iter().find(|s| s.name == "pool");
            assert_eq!(
                st.map(|s| &s.kernel),
                Some(&Kernel::DepthwisePhases),
                "{t}: {a:?}"
            );
            let label = targets::label(t);
            match targets::run_program(&p, &inputs) {
                Ok(got) => {
                    let cmp = driver::compare(&got[0], &want[0], 0.0, 0.0);
                    if !cmp.ok() {
                        failures.push(format!("{label} {a:?} on {input:?}: {cmp:?}"));
                    }
                }
                Err(e) => failures.push(format!("{label} {a:?}: {e}")),
            }
        }
    }
    assert!(ran >= 20, "only {ran} valid cases");
    assert!(nan_planes >= 10 && inf_planes >= 10 && clean_planes >= 10);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
