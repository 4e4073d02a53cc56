//! Random small graphs for the pipeline fuzz target (the differential
//! test has its own generator, [`crate::graphgen`]): a 4-D input, a chain of convolutions (every shape class),
//! pooling, elementwise ops, concatenations and residual adds, then maybe
//! a Gemm head. Every choice comes from an [`Rng`], seeded or replaying a
//! fuzzer's bytes.

use nnc_ir::op::{
    BinaryOp, ConcatAttrs, ConvAttrs, GemmAttrs, GlobalPoolAttrs, PoolAttrs, PoolKind,
    ReshapeAttrs, UnaryOp,
};
use nnc_ir::{DType, Graph, Op, Tensor, TensorType, Value};

/// A small deterministic generator (xorshift64*), so failures reproduce
/// from the printed seed.
#[derive(Debug)]
pub struct Rng {
    state: u64,
    bytes: Option<(Vec<u8>, usize)>,
}

impl Rng {
    /// A generator seeded with `seed`; every seed gives its own sequence
    /// (the seed goes through SplitMix64's finalizer, so neighbouring seeds
    /// do not share a state the way `seed | 1` would make 2k and 2k + 1 do).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng {
            // xorshift's one fixed point is zero.
            state: if z == 0 { 1 } else { z },
            bytes: None,
        }
    }

    /// A generator that replays `data` (8 bytes per draw, zero once it is
    /// used up), so a fuzzer's mutations steer every choice.
    pub fn from_bytes(data: &[u8]) -> Self {
        Rng {
            state: 1,
            bytes: Some((data.to_vec(), 0)),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if let Some((b, pos)) = &mut self.bytes {
            let mut v = [0u8; 8];
            for x in v.iter_mut() {
                *x = b.get(*pos).copied().unwrap_or(0);
                *pos += 1;
            }
            return u64::from_le_bytes(v);
        }
        let s = &mut self.state;
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `v`.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    /// A float in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }

    /// An integer in `[lo, hi]`.
    pub fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// `n` floats in `[-scale, scale]`.
    pub fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect()
    }
}

/// A random f32 constant of shape `dims` in `[-scale, scale]`.
pub fn konst(g: &mut Graph, r: &mut Rng, dims: Vec<usize>, scale: f32) -> Value {
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
pub fn random_graph(seed: u64) -> Graph {
    let mut r = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    generate(&mut r, format!("rand{seed}"))
}

/// The graph a byte string describes (the pipeline fuzz target's input).
pub fn graph_from_bytes(data: &[u8]) -> Graph {
    generate(&mut Rng::from_bytes(data), "fuzz".into())
}

fn generate(r: &mut Rng, name: String) -> Graph {
    let mut g = Graph::new(name);
    let c = r.pick(&[1, 2, 3, 4, 8, 16]);
    let h = 1 + r.below(14);
    let w = 1 + r.below(14);
    let mut v = g.add_input("x", TensorType::new(DType::F32, vec![1, c, h, w]));
    let n = 2 + r.below(4);
    let mut i = 0;
    let mut added = 0;
    while added < n && i < 40 {
        if let Some(nv) = random_op(&mut g, r, v, i) {
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
            let wt = konst(&mut g, r, wdims, 0.2);
            let b = konst(&mut g, r, vec![nout], 0.2);
            let a = GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b,
                act: act(r),
            };
            v = g.add1(Op::Gemm(a), &[f, wt, b], "gemm").unwrap();
        }
    }
    g.add_output(v, "y");
    g
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn neighbouring_seeds_give_different_sequences() {
        let mut first: Vec<u64> = (0..1000).map(|s| Rng::new(s).next_u64()).collect();
        first.sort_unstable();
        first.dedup();
        assert_eq!(first.len(), 1000);
    }
}
