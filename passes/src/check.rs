//! Checking a transformation against the interpreter: run the graph before
//! and after on the same inputs (random ones, or a model's test inputs) and
//! compare. Used by pass tests and the end-to-end suites.

use nnc_ir::{DType, Data, Graph, Tensor, TensorType};

/// Deterministic pseudo-random numbers (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
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

/// Random inputs for every graph input.
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed | 1);
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
