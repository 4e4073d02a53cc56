//! Normalizations: inference-mode BatchNormalization, Softmax / LogSoftmax
//! along one axis, and local response normalization across channels.

use super::attr::{AttrReader, AttrWriter};
use crate::dtype::TensorType;
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// BatchNormalization in inference mode. Inputs: x `[N, C, ...]`, scale,
/// bias, mean, var (each `[C]`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormAttrs {
    pub epsilon: f32,
}

impl BatchNormAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.f32("epsilon", self.epsilon);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(BatchNormAttrs {
            epsilon: r.f32("epsilon")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x, rest @ ..] = ins else {
            return Err("expects 5 inputs".into());
        };
        if rest.len() != 4 {
            return Err(format!("expects 5 inputs, got {}", ins.len()));
        }
        if !x.dtype.is_float() || x.rank() < 2 {
            return Err(format!("input {x} must be a float tensor of rank >= 2"));
        }
        let c = x.dims[1];
        for (name, t) in ["scale", "bias", "mean", "var"].iter().zip(rest) {
            if t.dims != [c] || t.dtype != x.dtype {
                return Err(format!("{name} {t} must be {}[{c}]", x.dtype));
            }
        }
        Ok(vec![(*x).clone()])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let x = ins[0];
        let [s, b, m, v] = [1, 2, 3, 4].map(|i| ins[i].to_f64());
        let c = x.dims()[1];
        let inner: usize = x.dims()[2..].iter().product();
        let mut y = x.to_f64();
        for (i, val) in y.iter_mut().enumerate() {
            let ch = (i / inner.max(1)) % c;
            *val = (*val - m[ch]) / (v[ch] + self.epsilon as f64).sqrt() * s[ch] + b[ch];
        }
        Tensor::from_f64(x.dtype(), x.dims().to_vec(), y).map_err(|e| e.to_string())
    }
}

/// Softmax (or LogSoftmax) along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxAttrs {
    pub axis: usize,
    pub log: bool,
}

impl SoftmaxAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }

    pub fn read(r: &mut AttrReader, log: bool) -> R<Self> {
        Ok(SoftmaxAttrs {
            axis: r.usize("axis")?,
            log,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if !x.dtype.is_float() {
            return Err(format!("expects a float input, got {}", x.dtype));
        }
        if self.axis >= x.rank() {
            return Err(format!("axis {} out of range for {x}", self.axis));
        }
        Ok(vec![(*x).clone()])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let d = x.dims();
        let n = d[self.axis];
        let inner: usize = d[self.axis + 1..].iter().product();
        let outer: usize = d[..self.axis].iter().product();
        let mut y = x.to_f64();
        for o in 0..outer {
            for i in 0..inner {
                let idx = |k: usize| (o * n + k) * inner + i;
                let mx = (0..n).map(|k| y[idx(k)]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..n).map(|k| (y[idx(k)] - mx).exp()).sum();
                for k in 0..n {
                    let e = y[idx(k)] - mx;
                    y[idx(k)] = if self.log {
                        e - sum.ln()
                    } else {
                        e.exp() / sum
                    };
                }
            }
        }
        Tensor::from_f64(x.dtype(), d.to_vec(), y).map_err(|e| e.to_string())
    }
}

/// Local response normalization across channels:
/// `y = x / (bias + alpha / size * sum(x^2 over the window)) ^ beta`.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl LrnAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("size", self.size);
        w.f32("alpha", self.alpha);
        w.f32("beta", self.beta);
        w.f32("bias", self.bias);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(LrnAttrs {
            size: r.usize("size")?,
            alpha: r.f32("alpha")?,
            beta: r.f32("beta")?,
            bias: r.f32("bias")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if !x.dtype.is_float() || x.rank() < 3 {
            return Err(format!("input {x} must be a float tensor of rank >= 3"));
        }
        if self.size == 0 {
            return Err("size must be positive".into());
        }
        Ok(vec![(*x).clone()])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let d = x.dims();
        let c = d[1];
        let inner: usize = d[2..].iter().product();
        let xv = x.to_f64();
        let mut y = vec![0.0; xv.len()];
        let lo = (self.size - 1) / 2;
        let hi = self.size - 1 - lo;
        for n in 0..d[0] {
            for ch in 0..c {
                let c0 = ch.saturating_sub(lo);
                let c1 = (ch + hi).min(c - 1);
                for i in 0..inner {
                    let at = |k: usize| xv[(n * c + k) * inner + i];
                    let sq: f64 = (c0..=c1).map(|k| at(k) * at(k)).sum();
                    let den = (self.bias as f64 + self.alpha as f64 / self.size as f64 * sq)
                        .powf(self.beta as f64);
                    y[(n * c + ch) * inner + i] = at(ch) / den;
                }
            }
        }
        Tensor::from_f64(x.dtype(), d.to_vec(), y).map_err(|e| e.to_string())
    }
}
