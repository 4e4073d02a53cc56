//! Checking a transformation against the interpreter: run the graph before
//! and after on the same inputs (random ones, or a model's test inputs) and
//! compare. Used by pass tests and the end-to-end suites.

use nnc_ir::{DType, Data, Graph, Tensor, TensorType};

/// Deterministic pseudo-random numbers (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The generator for `seed`: the seed goes through splitmix64's
    /// finalizer (a bijection), so consecutive seeds start unrelated
    /// streams. (`Rng(seed | 1)` gave seeds 2k and 2k+1 the same stream.)
    pub fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // xorshift never leaves the zero state; one seed maps there.
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A random tensor of the given type: floats in [-1, 1), small integers
/// (so that indices are likely in range), random booleans.
pub fn random_tensor(ty: &TensorType, rng: &mut Rng) -> Tensor {
    let n = ty.len();
    let data = match ty.dtype {
        DType::F32 | DType::F64 => Data::from_f64(ty.dtype, (0..n).map(|_| rng.unit())),
        DType::Bool => Data::Bool((0..n).map(|_| rng.next_u64() & 1 == 1).collect()),
        d => Data::from_i64(d, (0..n).map(|_| (rng.next_u64() % 4) as i64)),
    };
    Tensor::new(ty.dims.clone(), data).expect("sized to the type")
}

/// Random inputs for every graph input; different seeds give different
/// inputs.
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::seeded(seed);
    (0..g.inputs().len())
        .map(|i| random_tensor(g.input_type(i), &mut rng))
        .collect()
}

/// Largest |a - b| and whether every element is within `atol + rtol * |b|`
/// (NaNs must match; integers within `atol`, so exactly unless `atol` is
/// at least 1: a requantization that rounds differently on purpose).
pub fn close(a: &Tensor, b: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if a.ty() != b.ty() {
        return Err(format!("types differ: {} vs {}", a.ty(), b.ty()));
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    let exact = !a.dtype().is_float();
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = if exact {
            (p - q).abs() <= atol.floor()
        } else if p.is_nan() || q.is_nan() {
            p.is_nan() && q.is_nan()
        } else if p.is_infinite() || q.is_infinite() {
            p == q
        } else {
            (p - q).abs() <= atol + rtol * q.abs()
        };
        if !ok {
            return Err(format!("element {i}: {p} vs {q}"));
        }
    }
    Ok(())
}

/// Runs both graphs on the same inputs and compares their outputs.
pub fn same_outputs(
    a: &Graph,
    b: &Graph,
    inputs: &[Tensor],
    rtol: f64,
    atol: f64,
) -> Result<(), String> {
    let ra = nnc_ir::interp::run(a, inputs).map_err(|e| format!("before: {e}"))?;
    let rb = nnc_ir::interp::run(b, inputs).map_err(|e| format!("after: {e}"))?;
    if ra.len() != rb.len() {
        return Err(format!("{} outputs before, {} after", ra.len(), rb.len()));
    }
    for (k, (x, y)) in rb.iter().zip(&ra).enumerate() {
        close(x, y, rtol, atol).map_err(|m| format!("output {k}: {m}"))?;
    }
    Ok(())
}

/// Panics unless the graphs agree on `trials` sets of random inputs.
pub fn assert_same_outputs(a: &Graph, b: &Graph, trials: u64, rtol: f64, atol: f64) {
    for seed in 0..trials {
        let inputs = random_inputs(a, 0x5eed + seed);
        if let Err(e) = same_outputs(a, b, &inputs, rtol, atol) {
            panic!(
                "graphs differ on random inputs (seed {seed}): {e}\nbefore:\n{}\nafter:\n{}",
                nnc_ir::print(a),
                nnc_ir::print(b)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_ir::op::UnaryOp;
    use nnc_ir::{Op, TensorType};

    fn abs_graph(dtype: DType) -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(dtype, vec![4, 8]));
        let y = g.add1(Op::Unary(UnaryOp::Abs), &[x], "abs").unwrap();
        g.add_output(y, "y");
        g
    }

    /// Every seed gives its own inputs: the trials of `assert_same_outputs`
    /// and the "two random inputs" checks of the end-to-end tests are as
    /// many inputs as they say.
    #[test]
    fn consecutive_seeds_give_different_inputs() {
        for dtype in [DType::F32, DType::I32] {
            let g = abs_graph(dtype);
            let mut seen = std::collections::HashSet::new();
            for seed in (0..64).chain(0x5eed..0x5eed + 8).chain(100..108) {
                let t = &random_inputs(&g, seed)[0];
                let key = format!("{:?}", t.to_f64());
                assert!(seen.insert(key), "{dtype}: seed {seed} repeats an input");
            }
        }
    }

    #[test]
    fn seeded_generators_never_start_at_zero() {
        for seed in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15u64.wrapping_neg()] {
            assert_ne!(Rng::seeded(seed).0, 0, "seed {seed}");
        }
    }

    /// Graphs that differ on some inputs only are told apart.
    #[test]
    fn differences_on_some_inputs_are_found() {
        let a = abs_graph(DType::F32);
        let mut b = Graph::new("t");
        let x = b.add_input("x", TensorType::new(DType::F32, vec![4, 8]));
        let y = b.add1(Op::Unary(UnaryOp::Relu), &[x], "relu").unwrap();
        b.add_output(y, "y");
        let r = std::panic::catch_unwind(|| assert_same_outputs(&a, &b, 2, 1e-4, 1e-5));
        assert!(r.is_err(), "abs and relu were found equal");
        assert_same_outputs(&a, &a.clone(), 4, 0.0, 0.0);
    }
}
