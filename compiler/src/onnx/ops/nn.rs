//! Neural-network operators: convolutions, matrix products, normalizations,
//! softmax, pooling and LRN. `auto_pad` modes are resolved to explicit pads
//! here; normalizations without an IR op are expanded into IR ops.

use nnc_ir::op::{
    BatchNormAttrs, BinaryOp, ConvAttrs, ConvTransposeAttrs, GemmAttrs, GlobalPoolAttrs, LrnAttrs,
    PoolAttrs, PoolKind, ReduceAttrs, ReduceKind, ReshapeAttrs, SoftmaxAttrs, UnaryOp,
};
use nnc_ir::{Op, TensorType, Value};

use super::super::error::Result;
use super::super::import::Ctx;
use super::elementwise::scalar;
use super::{norm_axis, to_usizes};

pub(super) fn convert(cx: &mut Ctx<'_>, op: &str) -> Option<Result<Vec<Value>>> {
    Some(match op {
        "Conv" => conv(cx),
        "ConvTranspose" => conv_transpose(cx),
        "Gemm" => gemm(cx),
        "MatMul" => (|| {
            let (a, b) = (cx.input(0)?, cx.input(1)?);
            Ok(vec![cx.add(Op::MatMul, &[a, b])?])
        })(),
        "BatchNormalization" => batch_norm(cx),
        "InstanceNormalization" => instance_norm(cx),
        "LayerNormalization" => layer_norm(cx),
        "Softmax" => softmax(cx, false),
        "LogSoftmax" => softmax(cx, true),
        "MaxPool" => pool(cx, PoolKind::Max),
        "AveragePool" => pool(cx, PoolKind::Avg),
        "GlobalAveragePool" => global_pool(cx, PoolKind::Avg),
        "GlobalMaxPool" => global_pool(cx, PoolKind::Max),
        "LRN" => (|| {
            let x = cx.input(0)?;
            let Some(size) = cx.i_opt("size")? else {
                return cx.err("missing attribute `size`");
            };
            let a = LrnAttrs {
                size: to_usizes(cx, &[size], "size")?[0],
                alpha: cx.f("alpha", 1e-4)?,
                beta: cx.f("beta", 0.75)?,
                bias: cx.f("bias", 1.0)?,
            };
            Ok(vec![cx.add(Op::Lrn(a), &[x])?])
        })(),
        _ => return None,
    })
}

/// Explicit pads (begins then ends) from `auto_pad` / `pads` for a window
/// of `kernel` taps with the given strides and dilations.
fn resolve_pads(
    cx: &Ctx<'_>,
    in_sp: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<Vec<usize>> {
    let n = in_sp.len();
    let auto = cx.s_or("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" | "" => explicit_pads(cx, n),
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = in_sp[i].div_ceil(strides[i]);
                let span = dilations[i] * (kernel[i].max(1) - 1) + 1;
                let total = ((out.max(1) - 1) * strides[i] + span).saturating_sub(in_sp[i]);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[n + i] = e;
            }
            Ok(pads)
        }
        other => cx.err(format!("unknown auto_pad `{other}`")),
    }
}

fn spatial_attr(cx: &Ctx<'_>, name: &str, n: usize) -> Result<Vec<usize>> {
    match cx.ints(name)? {
        None => Ok(vec![1; n]),
        Some(v) if v.len() == n => to_usizes(cx, &v, name),
        Some(v) => cx.err(format!("{name} {v:?} must have {n} entries")),
    }
}

/// The `pads` attribute (all begins, then all ends), or no padding.
fn explicit_pads(cx: &Ctx<'_>, n: usize) -> Result<Vec<usize>> {
    match cx.ints("pads")? {
        None => Ok(vec![0; 2 * n]),
        Some(p) if p.len() == 2 * n => to_usizes(cx, &p, "pads"),
        Some(p) => cx.err(format!("pads {p:?} must have {} entries", 2 * n)),
    }
}

/// What Conv and ConvTranspose read alike: the input and weight (same
/// rank, at least 3), the spatial rank, kernel, strides and dilations
/// (positive) and group.
struct ConvCommon {
    x: Value,
    w: Value,
    tx: TensorType,
    n: usize,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    group: usize,
}

fn conv_common(cx: &mut Ctx<'_>) -> Result<ConvCommon> {
    conv_common_at(cx, 0, 1)
}

/// [`conv_common`] for an op whose input and weight are inputs `xi` and
/// `wi` (QLinearConv has scales and zero points between them).
fn conv_common_at(cx: &mut Ctx<'_>, xi: usize, wi: usize) -> Result<ConvCommon> {
    let x = cx.input(xi)?;
    let w = cx.input(wi)?;
    let (tx, tw) = (cx.ty(x), cx.ty(w));
    if tx.rank() < 3 || tw.rank() != tx.rank() {
        return cx.err(format!(
            "input {tx} and weight {tw} must have the same rank >= 3"
        ));
    }
    let n = tx.rank() - 2;
    let strides = spatial_attr(cx, "strides", n)?;
    let dilations = spatial_attr(cx, "dilations", n)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return cx.err("strides and dilations must be positive");
    }
    let group = to_usizes(cx, &[cx.i("group", 1)?], "group")?[0];
    Ok(ConvCommon {
        x,
        w,
        n,
        kernel: tw.dims[2..].to_vec(),
        tx,
        strides,
        dilations,
        group,
    })
}

/// `op` on inputs 0 and 1 and the optional input 2 (a bias, or Gemm's C).
fn add_with_bias(cx: &mut Ctx<'_>, op: Op, x: Value, w: Value) -> Result<Vec<Value>> {
    let mut ins = vec![x, w];
    if let Some(b) = cx.opt(2) {
        ins.push(b);
    }
    Ok(vec![cx.add(op, &ins)?])
}

fn conv(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, w, a) = conv_geometry(cx, 0, 1)?;
    add_with_bias(cx, Op::Conv(a), x, w)
}

/// The input, weight and geometry of a Conv-like node (Conv, ConvInteger,
/// QLinearConv) whose input and weight are inputs `xi` and `wi`.
pub(super) fn conv_geometry(
    cx: &mut Ctx<'_>,
    xi: usize,
    wi: usize,
) -> Result<(Value, Value, ConvAttrs)> {
    let c = conv_common_at(cx, xi, wi)?;
    if let Some(k) = cx.ints("kernel_shape")?
        && to_usizes(cx, &k, "kernel_shape")? != c.kernel
    {
        return cx.err(format!(
            "kernel_shape {k:?} does not match weight {}",
            cx.ty(c.w)
        ));
    }
    let pads = resolve_pads(cx, &c.tx.dims[2..], &c.kernel, &c.strides, &c.dilations)?;
    let a = ConvAttrs {
        strides: c.strides,
        pads,
        dilations: c.dilations,
        group: c.group,
        act: None,
    };
    Ok((c.x, c.w, a))
}

fn conv_transpose(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let ConvCommon {
        x,
        w,
        tx,
        n,
        kernel,
        strides,
        dilations,
        group,
    } = conv_common(cx)?;
    let mut output_padding = match cx.ints("output_padding")? {
        None => vec![0; n],
        Some(v) if v.len() == n => to_usizes(cx, &v, "output_padding")?,
        Some(v) => return cx.err(format!("output_padding {v:?} must have {n} entries")),
    };
    let auto = cx.s_or("auto_pad", "NOTSET")?;
    let output_shape = match cx.ints("output_shape")? {
        Some(s) if s.len() >= n => Some(to_usizes(cx, &s[s.len() - n..], "output_shape")?),
        Some(s) => return cx.err(format!("output_shape {s:?} has fewer than {n} entries")),
        None if auto == "SAME_UPPER" || auto == "SAME_LOWER" => {
            Some((0..n).map(|i| tx.dims[2 + i] * strides[i]).collect())
        }
        None => None,
    };
    let pads = match output_shape {
        Some(os) => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let full = (strides[i] * (tx.dims[2 + i].max(1) - 1)
                    + output_padding[i]
                    + (kernel[i].max(1) - 1) * dilations[i]
                    + 1) as i64;
                let total = full - os[i] as i64;
                if total < 0 {
                    // The requested output is larger than the full result:
                    // extend it at the end.
                    output_padding[i] += (-total) as usize;
                    continue;
                }
                let t = total as usize;
                let (b, e) = if auto == "SAME_UPPER" {
                    (t / 2, t - t / 2)
                } else {
                    (t - t / 2, t / 2)
                };
                pads[i] = b;
                pads[n + i] = e;
            }
            pads
        }
        None => explicit_pads(cx, n)?,
    };
    let a = ConvTransposeAttrs {
        strides,
        pads,
        dilations,
        output_padding,
        group,
    };
    add_with_bias(cx, Op::ConvTranspose(a), x, w)
}

fn gemm(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let a = cx.input(0)?;
    let b = cx.input(1)?;
    let attrs = GemmAttrs {
        alpha: cx.f("alpha", 1.0)?,
        beta: cx.f("beta", 1.0)?,
        trans_a: cx.i("transA", 0)? != 0,
        trans_b: cx.i("transB", 0)? != 0,
        act: None,
    };
    add_with_bias(cx, Op::Gemm(attrs), a, b)
}

fn batch_norm(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    if cx.i("training_mode", 0)? != 0 {
        return cx.err("training mode is not supported (nnc compiles for inference)");
    }
    let x = cx.input(0)?;
    if cx.opset < 9 && cx.i("spatial", 1)? == 0 && cx.ty(x).rank() > 2 {
        return cx.err("spatial=0 (per-activation statistics) is not supported");
    }
    let ins = [x, cx.input(1)?, cx.input(2)?, cx.input(3)?, cx.input(4)?];
    let a = BatchNormAttrs {
        epsilon: cx.f("epsilon", 1e-5)?,
    };
    Ok(vec![cx.add(Op::BatchNorm(a), &ins)?])
}

/// `(x - mean) / sqrt(var + eps)` over `axes`, both statistics computed
/// with reductions (population variance). Returns the result, the mean and
/// the standard deviation (the statistics keep the reduced axes as size 1).
fn normalize(
    cx: &mut Ctx<'_>,
    x: Value,
    axes: Vec<usize>,
    eps: f32,
) -> Result<(Value, Value, Value)> {
    let dt = cx.dtype(x);
    let mean_op = || {
        Op::Reduce(ReduceAttrs {
            kind: ReduceKind::Mean,
            axes: axes.clone(),
            keepdims: true,
        })
    };
    let mean = cx.add(mean_op(), &[x])?;
    let d = cx.add(Op::Binary(BinaryOp::Sub), &[x, mean])?;
    let d2 = cx.add(Op::Binary(BinaryOp::Mul), &[d, d])?;
    let var = cx.add(mean_op(), &[d2])?;
    let e = scalar(cx, dt, eps as f64)?;
    let ve = cx.add(Op::Binary(BinaryOp::Add), &[var, e])?;
    let sd = cx.add(Op::Unary(UnaryOp::Sqrt), &[ve])?;
    Ok((cx.add(Op::Binary(BinaryOp::Div), &[d, sd])?, mean, sd))
}

fn instance_norm(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let (s, b) = (cx.input(1)?, cx.input(2)?);
    let tx = cx.ty(x);
    if tx.rank() < 3 {
        return cx.err(format!("input {tx} must have rank >= 3"));
    }
    let eps = cx.f("epsilon", 1e-5)?;
    let (y, _, _) = normalize(cx, x, (2..tx.rank()).collect(), eps)?;
    let mut shape = vec![tx.dims[1]];
    shape.extend(std::iter::repeat_n(1, tx.rank() - 2));
    let s = cx.add(
        Op::Reshape(ReshapeAttrs {
            shape: shape.clone(),
        }),
        &[s],
    )?;
    let b = cx.add(Op::Reshape(ReshapeAttrs { shape }), &[b])?;
    let ys = cx.add(Op::Binary(BinaryOp::Mul), &[y, s])?;
    Ok(vec![cx.add(Op::Binary(BinaryOp::Add), &[ys, b])?])
}

fn layer_norm(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let s = cx.input(1)?;
    let tx = cx.ty(x);
    let axis = norm_axis(cx, cx.i("axis", -1)?, tx.rank())?;
    if cx.i("stash_type", 1)? != 1 {
        return cx.err("only stash_type=1 (float statistics) is supported");
    }
    let eps = cx.f("epsilon", 1e-5)?;
    let (y, mean, sd) = normalize(cx, x, (axis..tx.rank()).collect(), eps)?;
    let mut y = cx.add(Op::Binary(BinaryOp::Mul), &[y, s])?;
    if let Some(b) = cx.opt(2) {
        y = cx.add(Op::Binary(BinaryOp::Add), &[y, b])?;
    }
    let inv = cx.add(Op::Unary(UnaryOp::Reciprocal), &[sd])?;
    Ok(vec![y, mean, inv])
}

fn softmax(cx: &mut Ctx<'_>, log: bool) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    if tx.rank() == 0 {
        return cx.err("input must have rank >= 1");
    }
    let default = if cx.opset < 13 { 1 } else { -1 };
    let axis = norm_axis(cx, cx.i("axis", default)?, tx.rank())?;
    if cx.opset >= 13 || axis == tx.rank() - 1 {
        return Ok(vec![cx.add(Op::Softmax(SoftmaxAttrs { axis, log }), &[x])?]);
    }
    // Before opset 13 the input is flattened to 2-D at `axis`.
    let outer: usize = tx.dims[..axis].iter().product();
    let inner: usize = tx.dims[axis..].iter().product();
    let r = cx.add(
        Op::Reshape(ReshapeAttrs {
            shape: vec![outer, inner],
        }),
        &[x],
    )?;
    let s = cx.add(Op::Softmax(SoftmaxAttrs { axis: 1, log }), &[r])?;
    Ok(vec![cx.add(
        Op::Reshape(ReshapeAttrs {
            shape: tx.dims.clone(),
        }),
        &[s],
    )?])
}

fn pool(cx: &mut Ctx<'_>, kind: PoolKind) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    if tx.rank() < 3 {
        return cx.err(format!("input {tx} must have rank >= 3"));
    }
    let n = tx.rank() - 2;
    let Some(k) = cx.ints("kernel_shape")? else {
        return cx.err("missing attribute `kernel_shape`");
    };
    if k.len() != n {
        return cx.err(format!("kernel_shape {k:?} must have {n} entries"));
    }
    let kernel = to_usizes(cx, &k, "kernel_shape")?;
    let strides = spatial_attr(cx, "strides", n)?;
    let dilations = spatial_attr(cx, "dilations", n)?;
    if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
        return cx.err("kernel_shape, strides and dilations must be positive");
    }
    let pads = resolve_pads(cx, &tx.dims[2..], &kernel, &strides, &dilations)?;
    let a = PoolAttrs {
        kind,
        kernel,
        strides,
        pads,
        dilations,
        ceil_mode: cx.i("ceil_mode", 0)? != 0,
        count_include_pad: cx.i("count_include_pad", 0)? != 0,
    };
    Ok(vec![cx.add(Op::Pool(a), &[x])?])
}

fn global_pool(cx: &mut Ctx<'_>, kind: PoolKind) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    Ok(vec![
        cx.add(Op::GlobalPool(GlobalPoolAttrs { kind }), &[x])?,
    ])
}
