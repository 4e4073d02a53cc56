//! Matrix products: Gemm (2-D, transposes, alpha/beta, broadcast C) and
//! MatMul (numpy semantics with batch broadcasting and 1-D promotion).

use super::attr::{AttrReader, AttrWriter};
use super::elementwise::{UnaryOp, broadcast_dims, broadcast_offsets};
use super::read_act;
use crate::dtype::{DType, TensorType, checked_numel};
use crate::tensor::{Data, Tensor};

type R<T> = Result<T, String>;

/// Gemm: `act(alpha * op(A) @ op(B) + beta * C)`, A and B 2-D, C
/// broadcastable to the `[M, N]` result.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub act: Option<UnaryOp>,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: None,
        }
    }
}

impl GemmAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        if self.alpha != 1.0 {
            w.f32("alpha", self.alpha);
        }
        if self.beta != 1.0 {
            w.f32("beta", self.beta);
        }
        if self.trans_a {
            w.bool("trans_a", true);
        }
        if self.trans_b {
            w.bool("trans_b", true);
        }
        if let Some(act) = &self.act {
            let mut inner = AttrWriter::new();
            act.write_attrs(&mut inner);
            w.nested("act", act.name(), inner);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(GemmAttrs {
            alpha: r.f32_or("alpha", 1.0)?,
            beta: r.f32_or("beta", 1.0)?,
            trans_a: r.bool_or("trans_a", false)?,
            trans_b: r.bool_or("trans_b", false)?,
            act: read_act(r)?,
        })
    }

    /// (M, K, N) of the product.
    fn mkn(&self, a: &TensorType, b: &TensorType) -> R<(usize, usize, usize)> {
        if a.rank() != 2 || b.rank() != 2 {
            return Err(format!("A {a} and B {b} must be 2-D"));
        }
        let (m, k) = if self.trans_a {
            (a.dims[1], a.dims[0])
        } else {
            (a.dims[0], a.dims[1])
        };
        let (k2, n) = if self.trans_b {
            (b.dims[1], b.dims[0])
        } else {
            (b.dims[0], b.dims[1])
        };
        if k != k2 {
            return Err(format!("inner dimensions differ: {a} and {b}"));
        }
        Ok((m, k, n))
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (a, b, c) = match ins {
            [a, b] => (a, b, None),
            [a, b, c] => (a, b, Some(c)),
            _ => return Err(format!("expects 2 or 3 inputs, got {}", ins.len())),
        };
        if !a.dtype.is_float() && !a.dtype.is_int() || a.dtype != b.dtype {
            return Err(format!("A and B must share a numeric type: {a}, {b}"));
        }
        let (m, _, n) = self.mkn(a, b)?;
        if let Some(c) = c {
            if c.dtype != a.dtype {
                return Err(format!("C type {} differs from A {}", c.dtype, a.dtype));
            }
            if broadcast_dims(&c.dims, &[m, n]).as_deref() != Some(&[m, n][..]) {
                return Err(format!("C {c} does not broadcast to [{m},{n}]"));
            }
        }
        if let Some(act) = &self.act {
            act.infer(&[a])?;
        }
        Ok(vec![TensorType::new(a.dtype, vec![m, n])])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let (a, b) = (ins[0], ins[1]);
        let (m, k, n) = self.mkn(&a.ty(), &b.ty())?;
        let av = a.to_f64();
        let bv = b.to_f64();
        let at = |i: usize, p: usize| {
            if self.trans_a {
                av[p * m + i]
            } else {
                av[i * k + p]
            }
        };
        let bt = |p: usize, j: usize| {
            if self.trans_b {
                bv[j * k + p]
            } else {
                bv[p * n + j]
            }
        };
        let c = ins.get(2).map(|c| {
            let cv = c.to_f64();
            broadcast_offsets(c.dims(), &[m, n])
                .into_iter()
                .map(|i| cv[i])
                .collect::<Vec<f64>>()
        });
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += at(i, p) * bt(p, j);
                }
                let mut v = self.alpha as f64 * s;
                if let Some(c) = &c {
                    v += self.beta as f64 * c[i * n + j];
                }
                if let Some(act) = &self.act {
                    v = act.apply_f64(v);
                }
                y[i * n + j] = v;
            }
        }
        Tensor::from_f64(a.dtype(), vec![m, n], y).map_err(|e| e.to_string())
    }
}

/// Output type of numpy `matmul`.
pub fn infer_matmul(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [a, b] = ins else {
        return Err(format!("expects 2 inputs, got {}", ins.len()));
    };
    if a.dtype != b.dtype || a.dtype == DType::Bool {
        return Err(format!("A and B must share a numeric type: {a}, {b}"));
    }
    if a.rank() == 0 || b.rank() == 0 {
        return Err("operands must not be scalars".into());
    }
    let (ad, bd) = promote(&a.dims, &b.dims);
    let ka = ad[ad.len() - 1];
    let kb = bd[bd.len() - 2];
    if ka != kb {
        return Err(format!("inner dimensions differ: {a} and {b}"));
    }
    let batch = broadcast_dims(&ad[..ad.len() - 2], &bd[..bd.len() - 2])
        .ok_or_else(|| format!("batch dimensions of {a} and {b} do not broadcast"))?;
    let mut dims = batch;
    if a.rank() > 1 {
        dims.push(ad[ad.len() - 2]);
    }
    if b.rank() > 1 {
        dims.push(bd[bd.len() - 1]);
    }
    checked_numel(&dims).ok_or("output too large")?;
    Ok(vec![TensorType::new(a.dtype, dims)])
}

/// 1-D operands become matrices: `[k]` is `[1, k]` on the left and `[k, 1]` on the right.
fn promote(a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let ad = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let bd = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    (ad, bd)
}

pub fn eval_matmul(a: &Tensor, b: &Tensor) -> R<Tensor> {
    let out = infer_matmul(&[&a.ty(), &b.ty()])?.remove(0);
    let (ad, bd) = promote(a.dims(), b.dims());
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = broadcast_dims(&ad[..ad.len() - 2], &bd[..bd.len() - 2]).expect("checked");
    // Offsets of each batch's matrix in A and B, via broadcasting of batch dims.
    let a_off = broadcast_offsets(&ad[..ad.len() - 2], &batch);
    let b_off = broadcast_offsets(&bd[..bd.len() - 2], &batch);
    let nb = a_off.len();
    let int = a.dtype().is_int();
    let data = if int {
        let (av, bv) = (a.to_i64(), b.to_i64());
        let mut y = vec![0i64; nb * m * n];
        for bi in 0..nb {
            let (ao, bo) = (a_off[bi] * m * k, b_off[bi] * k * n);
            for i in 0..m {
                for p in 0..k {
                    let x = av[ao + i * k + p];
                    for j in 0..n {
                        let t = &mut y[(bi * m + i) * n + j];
                        *t = t.wrapping_add(x.wrapping_mul(bv[bo + p * n + j]));
                    }
                }
            }
        }
        Data::from_i64(out.dtype, y)
    } else {
        let (av, bv) = (a.to_f64(), b.to_f64());
        let mut y = vec![0f64; nb * m * n];
        for bi in 0..nb {
            let (ao, bo) = (a_off[bi] * m * k, b_off[bi] * k * n);
            for i in 0..m {
                for p in 0..k {
                    let x = av[ao + i * k + p];
                    for j in 0..n {
                        y[(bi * m + i) * n + j] += x * bv[bo + p * n + j];
                    }
                }
            }
        }
        Data::from_f64(out.dtype, y)
    };
    Tensor::new(out.dims, data).map_err(|e| e.to_string())
}

/// Element strides `(row, column)` of Gemm's C broadcast to `[m, n]`
/// (C may be a scalar, `[n]`, `[1, n]`, `[m, 1]` or `[m, n]`).
pub fn gemm_c_strides(c_dims: &[usize], m: usize, n: usize) -> (usize, usize) {
    let off = broadcast_offsets(c_dims, &[m, n]);
    let row = if m > 1 { off[n] } else { 0 };
    let col = if n > 1 { off[1] } else { 0 };
    (row, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_shapes() {
        let t = |d: &[usize]| TensorType::new(DType::F32, d.to_vec());
        let s = |a: &[usize], b: &[usize]| infer_matmul(&[&t(a), &t(b)]).map(|v| v[0].dims.clone());
        assert_eq!(s(&[2, 3], &[3, 4]), Ok(vec![2, 4]));
        assert_eq!(s(&[3], &[3, 4]), Ok(vec![4]));
        assert_eq!(s(&[2, 3], &[3]), Ok(vec![2]));
        assert_eq!(s(&[3], &[3]), Ok(vec![]));
        assert_eq!(s(&[5, 1, 2, 3], &[4, 3, 6]), Ok(vec![5, 4, 2, 6]));
        assert!(s(&[2, 3], &[4, 3]).is_err());
    }

    #[test]
    fn matmul_batched_values() {
        let a = Tensor::from_f32(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_f32(vec![2, 1], vec![10.0, 100.0]).unwrap();
        let y = eval_matmul(&a, &b).unwrap();
        assert_eq!(y.dims(), &[2, 1, 1]);
        assert_eq!(y.as_f32().unwrap(), &[210.0, 430.0]);
    }
}
