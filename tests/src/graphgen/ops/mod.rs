//! The op builders of the generator: each applies one random op of its
//! family to a value, or declines when the value does not fit.

use nnc_ir::op::{
    ArgReduceAttrs, BatchNormAttrs, BinaryOp, CastAttrs, ConcatAttrs, ConvAttrs,
    ConvTransposeAttrs, CoordMode, DequantizeAttrs, ExpandAttrs, GatherAttrs, GemmAttrs,
    GlobalPoolAttrs, LrnAttrs, NearestMode, PadAttrs, PadMode, PoolAttrs, PoolKind, QuantizeAttrs,
    ReduceAttrs, ReduceKind, ReshapeAttrs, ResizeAttrs, ResizeMode, SliceAttrs, SoftmaxAttrs,
    SplitAttrs, TileAttrs, TransposeAttrs, UnaryOp,
};
use nnc_ir::{DType, Op, Tensor, TensorType, Value};

use super::{DTYPES, Draw, Gen, draw_for};

mod quant;

impl Gen {
    pub(super) fn act(&mut self) -> Option<UnaryOp> {
        let r = &mut self.r;
        match r.below(12) {
            0 => Some(UnaryOp::Relu),
            1 => Some(UnaryOp::Clip { min: 0.0, max: 6.0 }),
            2 => Some(UnaryOp::Clip {
                min: -0.5,
                max: 0.5,
            }),
            3 => Some(UnaryOp::LeakyRelu { alpha: 0.1 }),
            4 => Some(UnaryOp::Sigmoid),
            5 => Some(UnaryOp::HardSwish),
            6 => Some(UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            }),
            7 => Some(UnaryOp::Tanh),
            8 => Some(UnaryOp::Elu { alpha: 1.0 }),
            9 => Some(UnaryOp::Silu),
            _ => None,
        }
    }

    /// Convolution weights scaled so that outputs stay near unit size.
    pub(super) fn weights(&mut self, dtype: DType, dims: Vec<usize>, computed: usize) -> Value {
        let fan_in: usize = dims[1..].iter().product();
        let s = 1.5 / (fan_in as f64).sqrt();
        self.operand(dtype, dims, Draw::Float(-s, s), computed)
    }

    /// Spatial geometry of a window over `input`: kernel, strides,
    /// dilations, pads (begins then ends).
    pub(super) fn window(
        &mut self,
        input: &[usize],
        max_k: usize,
    ) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
        let n = input.len();
        let square = self.r.one_in(2);
        let k0 = self.r.pick(&[1, 2, 3, 3, 5]).min(max_k);
        let s0 = self.r.pick(&[1, 1, 1, 2, 3]);
        let (mut k, mut s, mut d, mut p) = (vec![0; n], vec![0; n], vec![1; n], vec![0; 2 * n]);
        for i in 0..n {
            k[i] = if square {
                k0
            } else {
                self.r.pick(&[1, 2, 3, 4]).min(max_k)
            };
            s[i] = if square { s0 } else { self.r.pick(&[1, 2]) };
            if self.r.one_in(6) {
                d[i] = 2;
            }
            p[i] = self.r.below(k[i] / 2 + 2);
            p[n + i] = self.r.below(k[i] / 2 + 2);
        }
        (k, s, d, p)
    }

    pub(super) fn conv_with(&mut self, v: Value, depthwise: bool) -> Option<Value> {
        let ty = self.ty(v);
        let c = ty.dims[1];
        let spatial = ty.dims[2..].to_vec();
        let (k, s, d, p) = self.window(&spatial, 5);
        let group = if depthwise {
            c
        } else {
            match self.r.below(6) {
                0 if c.is_multiple_of(2) => 2,
                1 if c.is_multiple_of(4) => 4,
                _ => 1,
            }
        };
        let m = if depthwise && !self.r.one_in(4) {
            c
        } else {
            group * self.r.pick(&[1, 2, 3, 4, 5, 8, 12, 16])
        };
        let mut a = ConvAttrs::new(spatial.len());
        a.strides = s;
        a.dilations = d;
        a.pads = p;
        a.group = group;
        a.act = self.act();
        let computed = if self.r.one_in(8) { 1 } else { 1000 };
        let w = self.weights(ty.dtype, [vec![m, c / group], k].concat(), computed);
        let mut ins = vec![v, w];
        if !self.r.one_in(3) {
            ins.push(self.operand(ty.dtype, vec![m], Draw::Float(-0.5, 0.5), computed));
        }
        self.add(Op::Conv(a), &ins, false)
    }

    pub(super) fn conv(&mut self, v: Value) -> Option<Value> {
        self.conv_with(v, false)
    }

    pub(super) fn depthwise(&mut self, v: Value) -> Option<Value> {
        self.conv_with(v, true)
    }

    pub(super) fn conv_transpose(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let c = ty.dims[1];
        let n = ty.rank() - 2;
        let group = if c.is_multiple_of(2) && self.r.one_in(3) {
            2
        } else {
            1
        };
        let m = group * self.r.pick(&[1, 2, 3, 4]);
        let (mut k, mut s, mut d, mut p, mut op) = (
            vec![0; n],
            vec![0; n],
            vec![1; n],
            vec![0; 2 * n],
            vec![0; n],
        );
        for i in 0..n {
            k[i] = self.r.pick(&[1, 2, 3, 4]);
            s[i] = self.r.pick(&[1, 1, 2, 3]);
            if self.r.one_in(6) {
                d[i] = 2;
            }
            p[i] = self.r.below(k[i]);
            p[n + i] = self.r.below(k[i]);
            op[i] = self.r.below(s[i]);
        }
        let a = ConvTransposeAttrs {
            strides: s,
            pads: p,
            dilations: d,
            output_padding: op,
            group,
        };
        let w = self.weights(ty.dtype, [vec![c, m / group], k].concat(), 6);
        let mut ins = vec![v, w];
        if self.r.one_in(2) {
            ins.push(self.konst_drawn(ty.dtype, vec![m], Draw::Float(-0.5, 0.5)));
        }
        self.add(Op::ConvTranspose(a), &ins, false)
    }

    /// `v` as a matrix `[rows, cols]`.
    pub(super) fn as_matrix(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if ty.rank() == 2 {
            return Some(v);
        }
        let cols = *ty.dims.last()?;
        let shape = if self.r.one_in(2) {
            vec![ty.len() / cols, cols]
        } else {
            vec![1, ty.len()]
        };
        let ex = self.is_exact(v);
        self.add(Op::Reshape(ReshapeAttrs { shape }), &[v], ex)
    }

    pub(super) fn gemm(&mut self, v: Value) -> Option<Value> {
        if !self.ty(v).dtype.is_float() {
            return None;
        }
        let x = self.as_matrix(v)?;
        let ty = self.ty(x);
        let trans_a = self.r.one_in(4);
        let (m, k) = if trans_a {
            (ty.dims[1], ty.dims[0])
        } else {
            (ty.dims[0], ty.dims[1])
        };
        if k > 1024 {
            return None;
        }
        let n = self.r.pick(&[1, 3, 4, 5, 8, 10, 16, 17, 33]);
        let trans_b = self.r.one_in(2);
        let bdims = if trans_b { vec![n, k] } else { vec![k, n] };
        let s = 1.5 / (k as f64).sqrt();
        let b = self.operand(ty.dtype, bdims, Draw::Float(-s, s), 6);
        let mut ins = vec![x, b];
        let cdims = match self.r.below(6) {
            0 => None,
            1 => Some(vec![n]),
            2 => Some(vec![1, n]),
            3 => Some(vec![m, n]),
            4 => Some(vec![m, 1]),
            _ => Some(vec![1]),
        };
        if let Some(cd) = cdims {
            ins.push(self.operand(ty.dtype, cd, Draw::Float(-0.5, 0.5), 5));
        }
        let a = GemmAttrs {
            alpha: self.r.pick(&[1.0, 1.0, 0.5, -2.0]),
            beta: self.r.pick(&[1.0, 1.0, 2.0]),
            trans_a,
            trans_b,
            act: self.act(),
        };
        self.add(Op::Gemm(a), &ins, false)
    }

    pub(super) fn matmul(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if ty.dtype == DType::Bool || ty.rank() < 1 {
            return None;
        }
        let r = ty.rank();
        let k = ty.dims[r - 1];
        let n = self.r.pick(&[1, 2, 4, 5, 8, 16]);
        let bdims = match self.r.below(5) {
            0 => vec![k],
            1 | 2 => vec![k, n],
            // Same batch dims, or unit dims that broadcast.
            3 => [
                ty.dims[..r.saturating_sub(2)]
                    .iter()
                    .map(|&d| if self.r.one_in(2) { 1 } else { d })
                    .collect::<Vec<_>>(),
                vec![k, n],
            ]
            .concat(),
            _ => [vec![2], vec![k, n]].concat(),
        };
        let d = if ty.dtype.is_float() {
            let s = 1.5 / (k as f64).sqrt();
            Draw::Float(-s, s)
        } else {
            Draw::Int(-20, 20)
        };
        let b = self.operand(ty.dtype, bdims, d, 4);
        let ex = !ty.dtype.is_float();
        self.add(Op::MatMul, &[v, b], ex)
    }

    pub(super) fn pool(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if ty.rank() < 3 {
            return None;
        }
        let spatial = ty.dims[2..].to_vec();
        let global = self.r.one_in(4);
        let kind = if self.r.one_in(2) {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        if global {
            if self.r.one_in(2) {
                let ex = kind == PoolKind::Max && self.is_exact(v);
                return self.add(Op::GlobalPool(GlobalPoolAttrs { kind }), &[v], ex);
            }
            // A window over whole planes.
            let n = spatial.len();
            let a = PoolAttrs {
                kind,
                kernel: spatial,
                strides: vec![1; n],
                pads: vec![0; 2 * n],
                dilations: vec![1; n],
                ceil_mode: false,
                count_include_pad: false,
            };
            let ex = kind == PoolKind::Max && self.is_exact(v);
            return self.add(Op::Pool(a), &[v], ex);
        }
        let (k, s, mut d, p) = self.window(&spatial, 3);
        // Pads smaller than the kernel, dilation for max pooling only.
        let p: Vec<usize> = p
            .iter()
            .enumerate()
            .map(|(i, &x)| x.min(k[i % k.len()].saturating_sub(1)))
            .collect();
        if kind == PoolKind::Avg {
            d = vec![1; d.len()];
        }
        let a = PoolAttrs {
            kind,
            kernel: k,
            strides: s,
            pads: p,
            dilations: d,
            ceil_mode: self.r.one_in(3),
            count_include_pad: self.r.one_in(2),
        };
        let ex = kind == PoolKind::Max && self.is_exact(v);
        self.add(Op::Pool(a), &[v], ex)
    }

    /// `|v| + c` with `c > 0`: a positive operand for log, sqrt, pow.
    pub(super) fn positive(&mut self, v: Value, c: f64) -> Option<Value> {
        let ty = self.ty(v);
        let ex = self.is_exact(v);
        let a = self.add(Op::Unary(UnaryOp::Abs), &[v], ex)?;
        let k = self.konst_drawn(ty.dtype, vec![1], Draw::Float(c, c + 0.25));
        self.add(Op::Binary(BinaryOp::Add), &[a, k], ex)
    }

    pub(super) fn unary(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let ex = self.is_exact(v);
        if ty.dtype == DType::Bool {
            return self.add(Op::Unary(UnaryOp::Not), &[v], true);
        }
        if !ty.dtype.is_float() {
            let u = self
                .r
                .pick(&[UnaryOp::Abs, UnaryOp::Neg, UnaryOp::Sign, UnaryOp::Relu]);
            return self.add(Op::Unary(u), &[v], true);
        }
        // (op, exact result, needs an exact input, needs a positive input)
        let (u, exact, needs_exact, positive) = match self.r.below(25) {
            0 => (UnaryOp::Relu, true, false, false),
            1 => (UnaryOp::LeakyRelu { alpha: 0.2 }, false, false, false),
            2 => (UnaryOp::Elu { alpha: 0.7 }, false, false, false),
            3 => (
                UnaryOp::Selu {
                    alpha: 1.67,
                    gamma: 1.05,
                },
                false,
                false,
                false,
            ),
            4 => (
                UnaryOp::Clip {
                    min: -0.3,
                    max: 0.6,
                },
                true,
                false,
                false,
            ),
            5 => (UnaryOp::Sigmoid, false, false, false),
            6 => (
                UnaryOp::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                false,
                false,
                false,
            ),
            7 => (UnaryOp::HardSwish, false, false, false),
            8 => (UnaryOp::Tanh, false, false, false),
            9 => (UnaryOp::Softplus, false, false, false),
            10 => (UnaryOp::Softsign, false, false, false),
            11 => (UnaryOp::Erf, false, false, false),
            12 => (UnaryOp::Exp, false, false, false),
            13 => (UnaryOp::Log, false, false, true),
            14 => (UnaryOp::Sqrt, true, false, true),
            15 => (UnaryOp::Abs, true, false, false),
            16 => (UnaryOp::Neg, true, false, false),
            17 => (UnaryOp::Reciprocal, true, false, true),
            18 => (UnaryOp::Floor, true, true, false),
            19 => (UnaryOp::Ceil, true, true, false),
            20 => (UnaryOp::Round, true, true, false),
            21 => (UnaryOp::Sign, true, true, false),
            22 => (UnaryOp::Sin, false, false, false),
            23 => (UnaryOp::Silu, false, false, false),
            _ => (UnaryOp::Cos, false, false, false),
        };
        if needs_exact && !ex {
            return None;
        }
        let x = if positive {
            self.positive(v, 0.5)?
        } else if matches!(u, UnaryOp::Exp) {
            self.add(
                Op::Unary(UnaryOp::Clip {
                    min: -4.0,
                    max: 4.0,
                }),
                &[v],
                ex,
            )?
        } else {
            v
        };
        let ex = exact && self.is_exact(x);
        self.add(Op::Unary(u), &[x], ex)
    }

    /// Dims of a second operand that broadcasts to `ty`: a scalar, one
    /// value per channel, the last axis, unit dims here and there, or the
    /// whole shape.
    pub(super) fn broadcast_dims(&mut self, ty: &TensorType) -> Vec<usize> {
        let r = ty.rank();
        match self.r.below(5) {
            0 => vec![1],
            1 if r >= 2 => [vec![ty.dims[1]], vec![1; r - 2]].concat(),
            2 => vec![ty.dims[r - 1]],
            3 => ty
                .dims
                .iter()
                .map(|&d| if self.r.one_in(2) { 1 } else { d })
                .collect(),
            _ => ty.dims.clone(),
        }
    }

    pub(super) fn binary(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let dt = ty.dtype;
        let ex = self.is_exact(v);
        let dims = self.broadcast_dims(&ty);
        let swap = self.r.one_in(3);
        if dt == DType::Bool {
            let b = self.r.pick(&[
                BinaryOp::And,
                BinaryOp::Or,
                BinaryOp::Xor,
                BinaryOp::Equal,
                BinaryOp::Less,
                BinaryOp::GreaterOrEqual,
            ]);
            let y = self.operand(DType::Bool, dims, Draw::Bool, 3);
            let ins = if swap { [y, v] } else { [v, y] };
            return self.add(Op::Binary(b), &ins, true);
        }
        if !dt.is_float() {
            let b = self.r.pick(&[
                BinaryOp::Add,
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Mod { fmod: false },
                BinaryOp::Mod { fmod: true },
                BinaryOp::Pow,
                BinaryOp::Max,
                BinaryOp::Min,
                BinaryOp::PRelu,
                BinaryOp::Equal,
                BinaryOp::Less,
                BinaryOp::Greater,
                BinaryOp::LessOrEqual,
                BinaryOp::GreaterOrEqual,
            ]);
            let d = match b {
                BinaryOp::Pow => Draw::Int(-1, 3),
                BinaryOp::Div | BinaryOp::Mod { .. } => Draw::Int(-9, 9),
                _ => draw_for(&mut self.r, dt),
            };
            let y = if b == BinaryOp::Pow && self.r.one_in(3) {
                // A float exponent.
                self.konst_drawn(DType::F32, dims, Draw::Float(0.0, 2.0))
            } else {
                self.operand(dt, dims, d, 3)
            };
            let ins = if swap && !matches!(b, BinaryOp::Pow | BinaryOp::PRelu) {
                [y, v]
            } else {
                [v, y]
            };
            return self.add(Op::Binary(b), &ins, true);
        }
        match self.r.below(11) {
            // add, sub, mul, max, min with a constant or a second input.
            0..=4 => {
                let b = self.r.pick(&[
                    BinaryOp::Add,
                    BinaryOp::Sub,
                    BinaryOp::Mul,
                    BinaryOp::Max,
                    BinaryOp::Min,
                ]);
                let y = if self.r.one_in(5) {
                    v
                } else {
                    self.operand(dt, dims, Draw::Float(-1.0, 1.0), 3)
                };
                let ins = if swap { [y, v] } else { [v, y] };
                let e = ex && self.is_exact(y);
                self.add(Op::Binary(b), &ins, e)
            }
            // Division by something away from zero (or of it).
            5 => {
                let y = self.operand(dt, dims, Draw::Float(0.5, 2.0), 3);
                let y = if self.r.one_in(2) {
                    let m1 = self.konst_drawn(dt, vec![1], Draw::Float(-1.0, -1.0));
                    self.add(Op::Binary(BinaryOp::Mul), &[y, m1], true)?
                } else {
                    y
                };
                if swap {
                    let p = self.positive(v, 0.5)?;
                    let e = self.is_exact(p);
                    self.add(Op::Binary(BinaryOp::Div), &[y, p], e)
                } else {
                    self.add(Op::Binary(BinaryOp::Div), &[v, y], ex)
                }
            }
            6 => {
                let base = self.positive(v, 0.25)?;
                let y = if self.r.one_in(2) {
                    let e = self.r.pick(&[2.0, 3.0, 0.5, -1.0, 1.5, -0.5]);
                    self.konst(Tensor::from_f64(dt, vec![1], vec![e]).ok()?)
                } else {
                    self.operand(dt, dims, Draw::Float(-2.0, 2.0), 2)
                };
                self.add(Op::Binary(BinaryOp::Pow), &[base, y], false)
            }
            7 => {
                let sd = if ty.rank() >= 2 && self.r.one_in(2) {
                    [vec![ty.dims[1]], vec![1; ty.rank() - 2]].concat()
                } else {
                    vec![1]
                };
                let y = self.operand(dt, sd, Draw::Float(-0.5, 0.5), 4);
                self.add(Op::Binary(BinaryOp::PRelu), &[v, y], ex)
            }
            8 if ex => {
                let fmod = self.r.one_in(2);
                let y = self.konst_drawn(dt, dims, Draw::Float(0.3, 0.9));
                self.add(Op::Binary(BinaryOp::Mod { fmod }), &[v, y], true)
            }
            _ if ex => self.compare(v),
            _ => None,
        }
    }

    /// A comparison of an exact value with a constant or another input.
    pub(super) fn compare(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let b = self.r.pick(&[
            BinaryOp::Equal,
            BinaryOp::Less,
            BinaryOp::Greater,
            BinaryOp::LessOrEqual,
            BinaryOp::GreaterOrEqual,
        ]);
        let dims = self.broadcast_dims(&ty);
        let d = draw_for(&mut self.r, ty.dtype);
        let y = if b == BinaryOp::Equal && self.r.one_in(2) {
            v
        } else {
            self.operand(ty.dtype, dims, d, 3)
        };
        self.add(Op::Binary(b), &[v, y], true)
    }

    pub(super) fn where_(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if ty.dtype == DType::Bool {
            let dt = self.r.pick(&DTYPES);
            let d = draw_for(&mut self.r, dt);
            let dims = self.broadcast_dims(&ty);
            let a = self.operand(dt, dims, d, 3);
            let b = self.konst_drawn(dt, vec![1], d);
            return self.add(Op::Where, &[v, a, b], true);
        }
        if !self.is_exact(v) {
            // The condition from an exact input of the same shape.
            let d = draw_for(&mut self.r, ty.dtype);
            let c = self.input(DType::Bool, ty.dims.clone(), Draw::Bool);
            let other = self.operand(ty.dtype, vec![1], d, 3);
            let ins = if self.r.one_in(2) {
                [c, v, other]
            } else {
                [c, other, v]
            };
            return self.add(Op::Where, &ins, false);
        }
        let c = self.compare(v)?;
        let dims = self.broadcast_dims(&ty);
        let d = draw_for(&mut self.r, ty.dtype);
        let other = self.operand(ty.dtype, dims, d, 3);
        let ins = if self.r.one_in(2) {
            [c, v, other]
        } else {
            [c, other, v]
        };
        self.add(Op::Where, &ins, true)
    }

    pub(super) fn cast(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let to = self.r.pick(&DTYPES);
        if to == ty.dtype {
            return None;
        }
        let ex = self.is_exact(v);
        if ty.dtype.is_float() && !to.is_float() {
            if !ex {
                return None;
            }
            // Spread the values over the target's range and beyond
            // (float-to-integer casts saturate).
            let s = self.r.pick(&[1.0, 100.0, 300.0, 5e9]);
            let k = self.konst(Tensor::from_f64(ty.dtype, vec![1], vec![s]).ok()?);
            let x = self.add(Op::Binary(BinaryOp::Mul), &[v, k], true)?;
            return self.add(Op::Cast(CastAttrs { to }), &[x], true);
        }
        // Integer-to-float and float-to-float conversions round the same
        // everywhere.
        self.add(Op::Cast(CastAttrs { to }), &[v], ex)
    }

    pub(super) fn batch_norm(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let c = ty.dims[1];
        let dt = ty.dtype;
        let scale = self.konst_drawn(dt, vec![c], Draw::Float(0.5, 1.5));
        let bias = self.konst_drawn(dt, vec![c], Draw::Float(-0.5, 0.5));
        let mean = self.konst_drawn(dt, vec![c], Draw::Float(-0.2, 0.2));
        let var = self.konst_drawn(dt, vec![c], Draw::Float(0.25, 2.0));
        let a = BatchNormAttrs {
            epsilon: self.r.pick(&[1e-5, 1e-3]),
        };
        self.add(Op::BatchNorm(a), &[v, scale, bias, mean, var], false)
    }

    /// Quantize an exact float, or dequantize an int8/uint8 value.
    pub(super) fn quantize(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let per_axis = ty.rank() >= 1 && self.r.one_in(2);
        let axis = if per_axis { self.r.below(ty.rank()) } else { 0 };
        // One scale per slice along `axis`, or a scalar.
        let pdims_t = if per_axis {
            vec![ty.dims[axis]]
        } else {
            vec![]
        };
        if ty.dtype.is_float() {
            if !self.is_exact(v) {
                return None;
            }
            let to = self.r.pick(&[DType::I8, DType::U8]);
            let scale = self.konst_drawn(ty.dtype, pdims_t.clone(), Draw::Float(0.005, 0.03));
            let mut ins = vec![v, scale];
            if !self.r.one_in(3) {
                let d = if to == DType::I8 {
                    Draw::Int(-20, 20)
                } else {
                    Draw::Int(100, 160)
                };
                ins.push(self.konst_drawn(to, pdims_t, d));
            }
            return self.add(Op::Quantize(QuantizeAttrs { axis, to }), &ins, true);
        }
        if !matches!(ty.dtype, DType::I8 | DType::U8 | DType::I32) {
            return None;
        }
        let scale = self.konst_drawn(DType::F32, pdims_t.clone(), Draw::Float(0.005, 0.05));
        let mut ins = vec![v, scale];
        if !self.r.one_in(3) {
            let d = draw_for(&mut self.r, ty.dtype);
            ins.push(self.konst_drawn(ty.dtype, pdims_t, d));
        }
        self.add(Op::Dequantize(DequantizeAttrs { axis }), &ins, true)
    }

    pub(super) fn transpose(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let r = ty.rank();
        if r < 2 {
            return None;
        }
        let perm = if r == 4 && self.r.one_in(2) {
            vec![0, 3, 1, 2]
        } else {
            let mut p: Vec<usize> = (0..r).collect();
            for i in (1..r).rev() {
                let j = self.r.below(i + 1);
                p.swap(i, j);
            }
            p
        };
        let ex = self.is_exact(v);
        self.add(Op::Transpose(TransposeAttrs { perm }), &[v], ex)
    }

    pub(super) fn concat_or_split(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let axis = self.r.below(ty.rank());
        let ex = self.is_exact(v);
        if self.r.one_in(2) {
            let mut dims = ty.dims.clone();
            dims[axis] = 1 + self.r.below(4);
            let d = draw_for(&mut self.r, ty.dtype);
            let other = self.operand(ty.dtype, dims, d, 3);
            let mut ins = vec![v, other];
            if self.r.one_in(3) {
                ins.push(v);
            }
            if self.r.one_in(2) {
                ins.reverse();
            }
            return self.add(Op::Concat(ConcatAttrs { axis }), &ins, ex);
        }
        let d = ty.dims[axis];
        if d < 2 {
            return None;
        }
        let first = 1 + self.r.below(d - 1);
        let mut sizes = vec![first, d - first];
        if sizes[1] >= 2 && self.r.one_in(2) {
            let s = 1 + self.r.below(sizes[1] - 1);
            sizes = vec![first, s, d - first - s];
        }
        let name = self.name("split");
        let parts = self
            .g
            .add_op(Op::Split(SplitAttrs { axis, sizes }), &[v], name)
            .ok()?;
        if ex {
            self.exact.extend(parts.iter().copied());
        }
        // Put the parts back together in another order.
        let mut order = parts.clone();
        order.rotate_left(1);
        self.add(Op::Concat(ConcatAttrs { axis }), &order, ex)
    }

    pub(super) fn slice(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let (mut starts, mut ends, mut steps) = (vec![], vec![], vec![]);
        for &d in &ty.dims {
            let d = d as i64;
            let step = if self.r.one_in(3) {
                1
            } else {
                self.r.pick(&[1, 2, -1, -2, 3])
            };
            let (s, e) = if step > 0 {
                let s = self.r.int(0, d - 1);
                (s, self.r.int(s + 1, d))
            } else {
                let s = self.r.int(0, d - 1);
                (s, self.r.int(-1, s - 1))
            };
            starts.push(s);
            ends.push(e);
            steps.push(step);
        }
        let ex = self.is_exact(v);
        self.add(
            Op::Slice(SliceAttrs {
                starts,
                ends,
                steps,
            }),
            &[v],
            ex,
        )
    }

    pub(super) fn pad(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let r = ty.rank();
        let mode = self.r.pick(&[
            PadMode::Constant,
            PadMode::Constant,
            PadMode::Reflect,
            PadMode::Edge,
            PadMode::Wrap,
        ]);
        let mut pads = vec![0i64; 2 * r];
        for i in 0..r {
            // Pad the last axes mostly; crop sometimes.
            if i + 2 >= r || self.r.one_in(3) {
                let d = ty.dims[i] as i64;
                let hi = if mode == PadMode::Reflect {
                    (d - 1).min(2)
                } else {
                    2
                };
                pads[i] = self.r.int(if d > 1 { -1 } else { 0 }, hi.max(0));
                pads[r + i] = self.r.int(0, hi.max(0));
            }
        }
        let value: f64 = if self.r.one_in(2) {
            0.0
        } else {
            self.r.pick(&[1.0, -2.0, 0.5])
        };
        let value = if ty.dtype.is_float() {
            value
        } else {
            value.round()
        };
        let ex = self.is_exact(v);
        self.add(Op::Pad(PadAttrs { mode, pads, value }), &[v], ex)
    }

    pub(super) fn expand_or_tile(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let ex = self.is_exact(v);
        if self.r.one_in(2) {
            let mut shape: Vec<usize> = ty
                .dims
                .iter()
                .map(|&d| if d == 1 { self.r.pick(&[1, 2, 3]) } else { d })
                .collect();
            if self.r.one_in(3) {
                shape.insert(0, 2);
            }
            return self.add(Op::Expand(ExpandAttrs { shape }), &[v], ex);
        }
        let repeats = ty.dims.iter().map(|_| self.r.pick(&[1, 1, 2, 3])).collect();
        self.add(Op::Tile(TileAttrs { repeats }), &[v], ex)
    }

    pub(super) fn gather(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let axis = self.r.below(ty.rank());
        let d = ty.dims[axis] as i64;
        let idt = self.r.pick(&[DType::I64, DType::I32]);
        let idims = match self.r.below(3) {
            0 => vec![],
            1 => vec![1 + self.r.below(4)],
            _ => vec![2, 1 + self.r.below(3)],
        };
        // Negative indices count from the end.
        let draw = Draw::Int(-d, d - 1);
        let idx = self.operand(idt, idims, draw, 3);
        let ex = self.is_exact(v);
        self.add(Op::Gather(GatherAttrs { axis }), &[v, idx], ex)
    }

    pub(super) fn resize(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let r = ty.rank();
        let mode = if ty.dtype.is_float() {
            self.r
                .pick(&[ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic])
        } else {
            ResizeMode::Nearest
        };
        let coord = self.r.pick(&[
            CoordMode::HalfPixel,
            CoordMode::HalfPixelSymmetric,
            CoordMode::PytorchHalfPixel,
            CoordMode::AlignCorners,
            CoordMode::Asymmetric,
            CoordMode::TfCropAndResize,
        ]);
        let mut scales = vec![1.0f32; r];
        let mut sizes = ty.dims.clone();
        for i in 2..r {
            let s = self.r.pick(&[0.5f32, 0.75, 1.5, 2.0, 3.0]);
            let n = (ty.dims[i] as f32 * s).floor() as usize;
            if n == 0 {
                return None;
            }
            scales[i] = s;
            sizes[i] = n;
        }
        let roi = if coord == CoordMode::TfCropAndResize {
            let mut v = vec![0.0f32; r];
            v.extend(vec![1.0f32; r]);
            for i in 2..r {
                v[i] = self.r.pick(&[0.0, 0.1, 0.25]);
                v[r + i] = self.r.pick(&[1.0, 0.9, 1.2]);
            }
            v
        } else {
            vec![]
        };
        let a = ResizeAttrs {
            mode,
            coord,
            nearest: self.r.pick(&[
                NearestMode::RoundPreferFloor,
                NearestMode::RoundPreferCeil,
                NearestMode::Floor,
                NearestMode::Ceil,
            ]),
            cubic_a: self.r.pick(&[-0.75, -0.5]),
            exclude_outside: self.r.one_in(3),
            extrapolation: 0.5,
            scales,
            roi,
            sizes,
        };
        let ex = mode == ResizeMode::Nearest && self.is_exact(v);
        self.add(Op::Resize(a), &[v], ex)
    }

    pub(super) fn axes(&mut self, rank: usize) -> Vec<usize> {
        let mut axes: Vec<usize> = (0..rank).filter(|_| self.r.one_in(2)).collect();
        if axes.is_empty() {
            axes.push(self.r.below(rank));
        }
        axes
    }

    pub(super) fn reduce(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let kind = self.r.pick(&ReduceKind::ALL);
        let axes = self.axes(ty.rank());
        let span: usize = axes.iter().map(|&a| ty.dims[a]).product();
        let x = match kind {
            _ if !ty.dtype.is_float() => {
                if !matches!(kind, ReduceKind::Sum | ReduceKind::Max | ReduceKind::Min) {
                    return None;
                }
                v
            }
            ReduceKind::LogSum => self.positive(v, 0.5)?,
            // Products of many values leave the range where rtol means much.
            ReduceKind::Prod if span > 12 => return None,
            _ => v,
        };
        let a = ReduceAttrs {
            kind,
            axes,
            keepdims: self.r.one_in(2),
        };
        let ex = !ty.dtype.is_float()
            || matches!(kind, ReduceKind::Max | ReduceKind::Min) && self.is_exact(x);
        self.add(Op::Reduce(a), &[x], ex)
    }

    pub(super) fn arg_reduce(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if !self.is_exact(v) || ty.dtype == DType::Bool {
            return None;
        }
        let a = ArgReduceAttrs {
            max: self.r.one_in(2),
            axis: self.r.below(ty.rank()),
            keepdims: self.r.one_in(2),
            select_last: self.r.one_in(2),
        };
        self.add(Op::ArgReduce(a), &[v], true)
    }

    pub(super) fn softmax_or_lrn(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        if !ty.dtype.is_float() {
            return None;
        }
        if ty.rank() == 4 && self.r.one_in(3) {
            let a = LrnAttrs {
                size: self.r.pick(&[1, 2, 3, 5]),
                alpha: self.r.pick(&[1e-4, 0.01, 0.5]),
                beta: self.r.pick(&[0.75, 0.5]),
                bias: self.r.pick(&[1.0, 2.0]),
            };
            return self.add(Op::Lrn(a), &[v], false);
        }
        let a = SoftmaxAttrs {
            axis: self.r.below(ty.rank()),
            log: self.r.one_in(3),
        };
        self.add(Op::Softmax(a), &[v], false)
    }

    pub(super) fn reshape(&mut self, v: Value) -> Option<Value> {
        let ty = self.ty(v);
        let mut left = ty.len();
        let mut shape = vec![];
        // Peel off small factors, then the rest.
        for _ in 0..self.r.below(3) {
            let f = [2, 3, 4, 5]
                .into_iter()
                .find(|f| left.is_multiple_of(*f) && self.r.one_in(2));
            if let Some(f) = f {
                shape.push(f);
                left /= f;
            }
        }
        shape.push(left);
        if self.r.one_in(2) {
            shape.reverse();
        }
        if shape == ty.dims {
            return None;
        }
        let ex = self.is_exact(v);
        self.add(Op::Reshape(ReshapeAttrs { shape }), &[v], ex)
    }
}
