//! Random graphs for the differential test (`tests/tests/differential.rs`):
//! a few independent chains per graph, each starting at a graph input of
//! some element type and shape and applying random ops of every family
//! the backends have kernels for (convolutions of every shape class,
//! depthwise, transposed convolutions, Gemm and batched MatMul, pooling,
//! elementwise maps over every element type, casts, BatchNorm,
//! quantize/dequantize, data movement, table lookups, reductions, softmax,
//! LRN).
//!
//! Values whose computation rounds differently on different backends
//! (sums in another order, fused multiply-adds, libm) are *inexact*; ops
//! whose result jumps on a tiny change of their input (comparisons, floor,
//! float-to-integer casts, quantization, argmax) only take exact values
//! (graph inputs, integers, and single IEEE operations on exact values),
//! so a correct backend always agrees with the interpreter.

mod ops;

use std::collections::HashSet;

use nnc_ir::op::ReshapeAttrs;
use nnc_ir::{DType, Data, Graph, Op, Tensor, TensorType, Value};

/// Largest tensor a generated op may produce (elements).
const MAX_ELEMENTS: usize = 6144;

/// xorshift64* with a splitmix64-mixed seed, so failures reproduce from
/// the printed seed and consecutive seeds are unrelated.
#[derive(Clone, Debug)]
pub struct Rng(nnc_passes::check::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(nnc_passes::check::Rng::seeded(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())].clone()
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.0.unit() + 1.0) / 2.0 * (hi - lo)
    }

    /// Uniform integer in `[lo, hi]`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (self.next_u64() as u128 % span) as i128) as i64
    }
}

/// How a graph input is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Draw {
    /// Uniform floats in `[lo, hi)`.
    Float(f64, f64),
    /// Uniform integers in `[lo, hi]`.
    Int(i64, i64),
    Bool,
}

/// A generated graph and how to draw each of its inputs.
#[derive(Clone, Debug)]
pub struct RandomGraph {
    pub graph: Graph,
    pub draws: Vec<Draw>,
}

impl RandomGraph {
    /// Inputs for the graph, drawn as the generator asked.
    pub fn inputs(&self, seed: u64) -> Vec<Tensor> {
        let mut r = Rng::new(seed);
        self.draws
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let ty = self.graph.input_type(i);
                random_tensor(&mut r, ty, *d)
            })
            .collect()
    }
}

fn random_tensor(r: &mut Rng, ty: &TensorType, d: Draw) -> Tensor {
    let n = ty.len();
    let data = match d {
        Draw::Float(lo, hi) => Data::from_f64(ty.dtype, (0..n).map(|_| r.uniform(lo, hi))),
        Draw::Int(lo, hi) => Data::from_i64(ty.dtype, (0..n).map(|_| r.int(lo, hi))),
        Draw::Bool => Data::Bool((0..n).map(|_| r.next_u64() & 1 == 1).collect()),
    };
    Tensor::new(ty.dims.clone(), data).expect("sized to the type")
}

/// The default draw for an element type: floats in [-1, 1), integers over
/// a range that exercises wrapping and signs.
fn draw_for(r: &mut Rng, d: DType) -> Draw {
    match d {
        DType::F32 | DType::F64 => Draw::Float(-1.0, 1.0),
        DType::Bool => Draw::Bool,
        DType::I8 => Draw::Int(-128, 127),
        DType::U8 => Draw::Int(0, 255),
        DType::I16 => Draw::Int(-32768, 32767),
        DType::U16 => Draw::Int(0, 65535),
        DType::I32 if r.one_in(4) => Draw::Int(i32::MIN as i64, i32::MAX as i64),
        DType::U32 => Draw::Int(0, 100_000),
        DType::I64 if r.one_in(4) => Draw::Int(-(1 << 40), 1 << 40),
        _ => Draw::Int(-60, 60),
    }
}

/// The element types of the differential test.
pub const DTYPES: [DType; 7] = [
    DType::F32,
    DType::F64,
    DType::I8,
    DType::U8,
    DType::I32,
    DType::I64,
    DType::Bool,
];

struct Gen {
    r: Rng,
    g: Graph,
    draws: Vec<Draw>,
    /// Values every backend computes bit for bit like the interpreter.
    exact: HashSet<Value>,
    count: usize,
}

/// A random graph for `seed`: two to four chains of one to six ops each.
pub fn random_graph(seed: u64) -> RandomGraph {
    let mut gg = Gen {
        r: Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed),
        g: Graph::new(format!("rand{seed}")),
        draws: vec![],
        exact: HashSet::new(),
        count: 0,
    };
    let chains = 2 + gg.r.below(3);
    for c in 0..chains {
        let mut v = gg.start();
        let n = 1 + gg.r.below(6);
        let (mut added, mut tries) = (0, 0);
        while added < n && tries < 60 {
            tries += 1;
            if let Some(nv) = gg.op(v) {
                v = nv;
                added += 1;
            }
        }
        gg.g.add_output(v, format!("y{c}"));
    }
    RandomGraph {
        graph: gg.g,
        draws: gg.draws,
    }
}

impl Gen {
    fn ty(&self, v: Value) -> TensorType {
        self.g.value_type(v).clone()
    }

    fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("n{}_{what}", self.count)
    }

    fn is_exact(&self, v: Value) -> bool {
        self.exact.contains(&v) || !self.ty(v).dtype.is_float()
    }

    /// Adds `op(ins)`; the result is exact when `exact` says so.
    fn add(&mut self, op: Op, ins: &[Value], exact: bool) -> Option<Value> {
        let name = self.name(op.name());
        let v = self.g.add1(op, ins, name).ok()?;
        let ty = self.ty(v);
        if ty.dims.contains(&0) || ty.len() > MAX_ELEMENTS {
            return None;
        }
        if exact {
            self.exact.insert(v);
        }
        Some(v)
    }

    fn input(&mut self, dtype: DType, dims: Vec<usize>, draw: Draw) -> Value {
        let k = self.draws.len();
        self.draws.push(draw);
        let v = self
            .g
            .add_input(format!("x{k}"), TensorType::new(dtype, dims));
        self.exact.insert(v);
        v
    }

    fn konst(&mut self, t: Tensor) -> Value {
        let name = self.name("c");
        let v = self.g.add_const(t, name);
        self.exact.insert(v);
        v
    }

    /// A constant of `dtype` with values drawn by `d`.
    fn konst_drawn(&mut self, dtype: DType, dims: Vec<usize>, d: Draw) -> Value {
        let t = random_tensor(&mut self.r, &TensorType::new(dtype, dims), d);
        self.konst(t)
    }

    /// A constant, or (one time in `computed`) a graph input, of `dtype`.
    fn operand(&mut self, dtype: DType, dims: Vec<usize>, d: Draw, computed: usize) -> Value {
        if self.r.one_in(computed) {
            self.input(dtype, dims, d)
        } else {
            self.konst_drawn(dtype, dims, d)
        }
    }

    /// A chain's input.
    fn start(&mut self) -> Value {
        let r = &mut self.r;
        let (dtype, dims) = match r.below(12) {
            // Images, NCHW (sometimes 1-D or 3-D).
            0..=4 => {
                let dt = if r.one_in(6) { DType::F64 } else { DType::F32 };
                let n = if r.one_in(5) { 2 } else { 1 };
                let c = r.pick(&[1, 2, 3, 4, 5, 8, 12, 16]);
                let spatial = match r.below(8) {
                    0 => vec![1 + r.below(20)],
                    1 => vec![1 + r.below(4), 1 + r.below(5), 1 + r.below(5)],
                    _ => vec![1 + r.below(12), 1 + r.below(14)],
                };
                (dt, [vec![n, c], spatial].concat())
            }
            // Matrices and batches of them, float or integer.
            5..=6 => {
                let dt = r.pick(&[DType::F32, DType::F32, DType::F64, DType::I32, DType::I64]);
                let rank = r.pick(&[2, 2, 3, 4]);
                (dt, (0..rank).map(|_| 1 + r.below(9)).collect())
            }
            // Channels-last images (deinterleaving transposes).
            7 => {
                let dt = r.pick(&[DType::F32, DType::I32, DType::U8]);
                let c = 2 + r.below(3);
                (dt, vec![1, 1 + r.below(8), 1 + r.below(9), c])
            }
            // Small tensors of every element type.
            _ => {
                let dt = r.pick(&DTYPES);
                let rank = 1 + r.below(4);
                (dt, (0..rank).map(|_| 1 + r.below(6)).collect())
            }
        };
        let d = draw_for(&mut self.r, dtype);
        self.input(dtype, dims, d)
    }

    /// One random op applied to `v`; `None` when the drawn op does not fit.
    fn op(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if ty.rank() == 0 {
            // Scalars (full reductions, scalar gathers) become vectors.
            let ex = self.is_exact(v);
            return self.add(Op::Reshape(ReshapeAttrs { shape: vec![1] }), &[v], ex);
        }
        let float = ty.dtype.is_float();
        let image = float && (3..=5).contains(&ty.rank());
        let qimage = matches!(ty.dtype, DType::I8 | DType::U8) && (3..=4).contains(&ty.rank());
        match self.r.below(30) {
            0..=3 if image => self.conv(v),
            4 if image => self.depthwise(v),
            0..=2 if qimage => self.qconv(v, false),
            3 | 4 if qimage => self.qconv(v, true),
            5 if image && ty.rank() <= 4 => self.conv_transpose(v),
            6 if matches!(ty.dtype, DType::I8 | DType::U8) => self.qgemm(v),
            6 => self.gemm(v),
            7 => self.matmul(v),
            8..=9 if image || ty.rank() >= 3 => self.pool(v),
            10..=12 => self.unary(v),
            13..=15 => self.binary(v),
            16 => self.where_(v),
            17 => self.cast(v),
            18 if float && ty.rank() >= 2 => self.batch_norm(v),
            19 => self.quantize(v),
            20 => self.transpose(v),
            21 => self.concat_or_split(v),
            22 => self.slice(v),
            23 => self.pad(v),
            24 => self.expand_or_tile(v),
            25 => self.gather(v),
            26 if ty.rank() >= 3 => self.resize(v),
            27 => self.reduce(v),
            28 => self.arg_reduce(v),
            29 => self.softmax_or_lrn(v),
            _ => self.reshape(v),
        }
    }
}
