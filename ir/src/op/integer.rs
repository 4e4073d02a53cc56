//! ONNX's integer operators, with the arithmetic the ONNX specification
//! and its reference implementation define: `conv_integer` and
//! `matmul_integer` (ConvInteger, MatMulInteger) multiply 8-bit operands
//! less their zero points and accumulate exactly in int32; `rescale` is the
//! float requantization that QLinearConv and QLinearMatMul end with. The
//! importer builds QLinearConv and QLinearMatMul from them, and the
//! e-graph turns those chains into the TFLite-style integer ops of
//! [`super::qlinear`] when the parameters are constants.
//!
//! Zero points and multipliers are tensor inputs, as in ONNX (the node
//! tests feed them at run time).

use super::conv::{ConvAttrs, window_pairs};
use super::elementwise::{broadcast_dims, broadcast_offsets};
use super::matmul::{eval_matmul, infer_matmul};
use crate::dtype::{DType, TensorType};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

fn is_q8(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

/// A zero point of `of`: the same integer type, and a shape that
/// broadcasts to `of` without growing it.
fn check_zp(what: &str, zp: &TensorType, of: &TensorType) -> R<()> {
    if zp.dtype != of.dtype {
        return Err(format!("{what} zero point {zp} must have the type of {of}"));
    }
    if broadcast_dims(&of.dims, &zp.dims).as_deref() != Some(&of.dims[..]) {
        return Err(format!("{what} zero point {zp} does not broadcast to {of}"));
    }
    Ok(())
}

/// `t - zp` with broadcasting, as i32 values in i64.
fn minus_zp(t: &Tensor, zp: &Tensor) -> Vec<i64> {
    let (tv, zv) = (t.to_i64(), zp.to_i64());
    let off = broadcast_offsets(zp.dims(), t.dims());
    tv.iter().zip(off).map(|(&v, o)| v - zv[o]).collect()
}

/// ConvInteger: inputs x (i8/u8 `[N, C, D...]`), w (i8/u8 `[M, C/group,
/// K...]`), x's zero point (one element) and w's (one, or one per output
/// channel). Output: int32 `sum (x - x_zp) (w - w_zp[m])`; padding reads as
/// `x_zp`, so it adds nothing.
pub fn infer_conv_integer(a: &ConvAttrs, ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [x, w, xz, wz] = ins else {
        return Err(format!(
            "expects 4 inputs (x, w, x_zero_point, w_zero_point), got {}",
            ins.len()
        ));
    };
    if a.act.is_some() {
        return Err("an integer convolution has no activation".into());
    }
    if !is_q8(x.dtype) || !is_q8(w.dtype) {
        return Err(format!("x {x} and w {w} must be i8 or u8"));
    }
    let y = a
        .infer(&[&x.with_dtype(DType::F32), &w.with_dtype(DType::F32)])?
        .remove(0);
    if xz.dtype != x.dtype || xz.len() != 1 || xz.rank() > 1 {
        return Err(format!("x zero point {xz} must be one {}", x.dtype));
    }
    let m = w.dims[0];
    if wz.dtype != w.dtype || wz.rank() > 1 || (wz.len() != 1 && wz.len() != m) {
        return Err(format!(
            "w zero point {wz} must be one {} or {m} (one per output channel)",
            w.dtype
        ));
    }
    Ok(vec![y.with_dtype(DType::I32)])
}

pub fn eval_conv_integer(a: &ConvAttrs, ins: &[&Tensor]) -> R<Tensor> {
    let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
    let yt = infer_conv_integer(a, &tys.iter().collect::<Vec<_>>())?.remove(0);
    let (x, w) = (ins[0], ins[1]);
    let xz = ins[2].to_i64()[0];
    let wz = ins[3].to_i64();
    let (xv, wv) = (x.to_i64(), w.to_i64());
    let n_sp = x.rank() - 2;
    let (batch, c, mo) = (x.dims()[0], x.dims()[1], yt.dims[1]);
    let (cg, mg) = (c / a.group, mo / a.group);
    let (in_sp, out_sp, k_sp) = (&x.dims()[2..], &yt.dims[2..], &w.dims()[2..]);
    let pairs = window_pairs(
        in_sp,
        out_sp,
        k_sp,
        &a.strides,
        &a.pads[..n_sp],
        &a.dilations,
    );
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let mut y = Vec::with_capacity(yt.len());
    for n in 0..batch {
        for o in 0..mo {
            let g = o / mg;
            let wzo = wz[if wz.len() == 1 { 0 } else { o }];
            let mut acc = vec![0i64; osz];
            for ic in 0..cg {
                let ci = g * cg + ic;
                let xs = &xv[(n * c + ci) * isz..][..isz];
                let ws = &wv[(o * cg + ic) * ksz..][..ksz];
                for (k, pk) in pairs.iter().enumerate() {
                    let wk = ws[k] - wzo;
                    for &(op, ip) in pk {
                        acc[op] += (xs[ip] - xz) * wk;
                    }
                }
            }
            // int32 accumulation: wraps like the 32-bit reference.
            y.extend(acc.iter().map(|&v| v as i32 as i64));
        }
    }
    Tensor::from_i64(DType::I32, yt.dims, y).map_err(|e| e.to_string())
}

/// MatMulInteger: `(a - a_zp) @ (b - b_zp)` in int32 with numpy's matmul
/// batching. a and b are i8/u8; each zero point broadcasts to its operand
/// (one value, a column `[M, 1]` for per-row zero points of a, a row `[N]`
/// for per-column zero points of b).
pub fn infer_matmul_integer(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [a, b, az, bz] = ins else {
        return Err(format!(
            "expects 4 inputs (a, b, a_zero_point, b_zero_point), got {}",
            ins.len()
        ));
    };
    if !is_q8(a.dtype) || !is_q8(b.dtype) {
        return Err(format!("a {a} and b {b} must be i8 or u8"));
    }
    check_zp("a", az, a)?;
    check_zp("b", bz, b)?;
    let y = infer_matmul(&[&a.with_dtype(DType::I32), &b.with_dtype(DType::I32)])?.remove(0);
    Ok(vec![y])
}

pub fn eval_matmul_integer(ins: &[&Tensor]) -> R<Tensor> {
    let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
    infer_matmul_integer(&tys.iter().collect::<Vec<_>>())?;
    let widen = |t: &Tensor, z: &Tensor| {
        Tensor::from_i64(DType::I32, t.dims().to_vec(), minus_zp(t, z)).map_err(|e| e.to_string())
    };
    eval_matmul(&widen(ins[0], ins[2])?, &widen(ins[1], ins[3])?)
}

/// Rescale: the float requantization of QLinearConv and QLinearMatMul.
/// Inputs: an int32 accumulator, an f32 multiplier (`x_scale * w_scale /
/// y_scale`, per tensor or broadcasting per channel) and the output zero
/// point (i8 or u8, broadcasting; its type is the output type). Output:
/// `saturate(round_half_even(acc * multiplier + zp))`, the product and
/// sum in double precision, exactly as ONNX's reference implementation
/// computes it.
pub fn infer_rescale(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [acc, m, zp] = ins else {
        return Err(format!(
            "expects 3 inputs (acc, multiplier, zero_point), got {}",
            ins.len()
        ));
    };
    if acc.dtype != DType::I32 {
        return Err(format!("the accumulator {acc} must be i32"));
    }
    if m.dtype != DType::F32 {
        return Err(format!("the multiplier {m} must be f32"));
    }
    if !is_q8(zp.dtype) {
        return Err(format!("the zero point {zp} must be i8 or u8"));
    }
    for (what, t) in [("multiplier", m), ("zero point", zp)] {
        if broadcast_dims(&acc.dims, &t.dims).as_deref() != Some(&acc.dims[..]) {
            return Err(format!("the {what} {t} does not broadcast to {acc}"));
        }
    }
    Ok(vec![acc.with_dtype(zp.dtype)])
}

/// One element of [`infer_rescale`]'s op.
pub fn rescale_one(acc: i32, m: f32, zp: i32, lo: i64, hi: i64) -> i64 {
    let r = (acc as f64 * m as f64 + zp as f64).round_ties_even();
    if r.is_nan() {
        return zp as i64;
    }
    (r.clamp(lo as f64, hi as f64)) as i64
}

pub fn eval_rescale(ins: &[&Tensor]) -> R<Tensor> {
    let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
    let yt = infer_rescale(&tys.iter().collect::<Vec<_>>())?.remove(0);
    let (acc, m, zp) = (ins[0], ins[1], ins[2]);
    let (lo, hi) = yt.dtype.int_range().expect("i8 or u8");
    let (av, mv, zv) = (acc.to_i64(), m.to_f64(), zp.to_i64());
    let mo = broadcast_offsets(m.dims(), acc.dims());
    let zo = broadcast_offsets(zp.dims(), acc.dims());
    let y: Vec<i64> = (0..av.len())
        .map(|i| rescale_one(av[i] as i32, mv[mo[i]] as f32, zv[zo[i]] as i32, lo, hi))
        .collect();
    Tensor::from_i64(yt.dtype, yt.dims, y).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(d: DType, dims: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::from_i64(d, dims, v).unwrap()
    }

    #[test]
    fn conv_integer_subtracts_per_channel_zero_points_and_pads_with_x_zp() {
        let mut a = ConvAttrs::new(1);
        a.pads = vec![1, 0];
        let x = t(DType::U8, vec![1, 1, 3], vec![12, 10, 7]);
        let w = t(DType::U8, vec![2, 1, 2], vec![1, 2, 200, 130]);
        let xz = t(DType::U8, vec![], vec![10]);
        let wz = t(DType::U8, vec![2], vec![0, 128]);
        let y = eval_conv_integer(&a, &[&x, &w, &xz, &wz]).unwrap();
        // x - 10 = [2, 0, -3], padded on the left with 0.
        // o0, w = [1, 2]: [0 + 4, 2 + 0, 0 - 6]
        // o1, w - 128 = [72, 2]: [0 + 4, 144 + 0, 0 - 6]
        assert_eq!(y.dtype(), DType::I32);
        assert_eq!(y.to_i64(), vec![4, 2, -6, 4, 144, -6]);
    }

    #[test]
    fn matmul_integer_broadcasts_zero_points() {
        let a = t(DType::U8, vec![2, 2], vec![3, 4, 5, 6]);
        let b = t(DType::I8, vec![2, 2], vec![1, -1, 2, 0]);
        // Per-row zero points of a, per-column of b.
        let az = t(DType::U8, vec![2, 1], vec![3, 5]);
        let bz = t(DType::I8, vec![2], vec![0, -1]);
        let y = eval_matmul_integer(&[&a, &b, &az, &bz]).unwrap();
        // a - az = [[0, 1], [0, 1]]; b - bz = [[1, 0], [2, 1]].
        assert_eq!(y.to_i64(), vec![2, 1, 2, 1]);
    }

    #[test]
    fn rescale_rounds_half_to_even_after_adding_the_zero_point() {
        let acc = t(DType::I32, vec![4], vec![5, 7, -3, 1000]);
        let m = Tensor::scalar_f32(0.5);
        let zp = t(DType::U8, vec![], vec![1]);
        let y = eval_rescale(&[&acc, &m, &zp]).unwrap();
        // 3.5 -> 4, 4.5 -> 4, -0.5 -> 0 (saturated), 501 -> 255.
        assert_eq!(y.dtype(), DType::U8);
        assert_eq!(y.to_i64(), vec![4, 4, 0, 255]);
        assert!(
            infer_rescale(&[&acc.ty(), &TensorType::new(DType::F32, vec![3]), &zp.ty()]).is_err()
        );
    }
}
