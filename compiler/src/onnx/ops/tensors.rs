//! Operators that make constants at import (Shape, Size, Constant,
//! ConstantOfShape, Range), Resize / Upsample, and reductions.

use nnc_ir::op::{
    ArgReduceAttrs, CoordMode, NearestMode, ReduceAttrs, ReduceKind, ResizeAttrs, ResizeMode,
};
use nnc_ir::{DType, Op, Tensor, Value, dtype::checked_numel};

use super::super::error::Result;
use super::super::import::Ctx;
use super::super::tensor::{from_proto, from_sparse};
use super::{norm_axis, to_usizes};

/// Largest constant the importer creates (elements).
const MAX_CONST: usize = 1 << 24;

pub(super) fn convert(cx: &mut Ctx<'_>, op: &str) -> Option<Result<Vec<Value>>> {
    let reduce = match op {
        "ReduceMean" => Some(ReduceKind::Mean),
        "ReduceSum" => Some(ReduceKind::Sum),
        "ReduceMax" => Some(ReduceKind::Max),
        "ReduceMin" => Some(ReduceKind::Min),
        "ReduceProd" => Some(ReduceKind::Prod),
        "ReduceL1" => Some(ReduceKind::L1),
        "ReduceL2" => Some(ReduceKind::L2),
        "ReduceLogSum" => Some(ReduceKind::LogSum),
        "ReduceLogSumExp" => Some(ReduceKind::LogSumExp),
        "ReduceSumSquare" => Some(ReduceKind::SumSquare),
        _ => None,
    };
    if let Some(k) = reduce {
        return Some(reduction(cx, k));
    }
    Some(match op {
        "ArgMax" => arg_reduce(cx, true),
        "ArgMin" => arg_reduce(cx, false),
        "Shape" => shape(cx),
        "Size" => (|| {
            let n = cx.ty(cx.input(0)?).len() as i64;
            let t = Tensor::from_i64s(vec![], vec![n]).or_else(|e| cx.err(e.to_string()))?;
            Ok(vec![cx.constant(t)?])
        })(),
        "Constant" => constant(cx),
        "ConstantOfShape" => constant_of_shape(cx),
        "Range" => range(cx),
        "Resize" => resize(cx),
        "Upsample" => upsample(cx),
        "QuantizeLinear" => quantize(cx),
        "DequantizeLinear" => dequantize(cx),
        _ => return None,
    })
}

fn shape(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let tx = cx.ty(cx.input(0)?);
    let r = tx.rank() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clampi(cx.i("start", 0)?);
    let end = clampi(cx.i("end", r)?);
    let dims: Vec<i64> = tx.dims[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    let t = Tensor::from_i64s(vec![dims.len()], dims).or_else(|e| cx.err(e.to_string()))?;
    Ok(vec![cx.constant(t)?])
}

fn constant(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let t = if let Some(t) = cx.t("value")? {
        t
    } else if let Some(a) = cx.attr("sparse_value") {
        match &a.sparse_tensor {
            Some(s) => from_sparse(s, cx.base)?,
            None => return cx.err("sparse_value holds no tensor"),
        }
    } else if let Some(f) = cx.f_opt("value_float")? {
        Tensor::scalar_f32(f)
    } else if let Some(v) = cx.floats("value_floats")? {
        Tensor::from_f32(vec![v.len()], v).or_else(|e| cx.err(e.to_string()))?
    } else if let Some(i) = cx.i_opt("value_int")? {
        Tensor::from_i64s(vec![], vec![i]).or_else(|e| cx.err(e.to_string()))?
    } else if let Some(v) = cx.ints("value_ints")? {
        Tensor::from_i64s(vec![v.len()], v).or_else(|e| cx.err(e.to_string()))?
    } else if cx.attr("value_string").is_some() || cx.attr("value_strings").is_some() {
        return cx.err("string constants are not supported");
    } else {
        return cx.err("no value attribute");
    };
    Ok(vec![cx.model_constant(t)])
}

fn constant_of_shape(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let Some(shape) = cx.const_ints(0, "shape")? else {
        return cx.err("missing shape");
    };
    let dims = to_usizes(cx, &shape, "shape")?;
    let Some(n) = checked_numel(&dims).filter(|&n| n <= MAX_CONST) else {
        return cx.err(format!("shape {dims:?} is too large for a constant"));
    };
    let value = match cx.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => from_proto(t, cx.base)?,
        None => Tensor::scalar_f32(0.0),
    };
    if value.len() != 1 {
        return cx.err("value must hold exactly one element");
    }
    let idx = vec![0usize; n];
    let t = Tensor::new(dims, value.data().gather(&idx)).or_else(|e| cx.err(e.to_string()))?;
    Ok(vec![cx.constant(t)?])
}

fn range(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let get = |cx: &Ctx<'_>, i: usize, what: &str| -> Result<Tensor> {
        match cx.konst(i, what)? {
            Some(t) if t.len() == 1 => Ok(t.as_ref().clone()),
            Some(_) => cx.err(format!("{what} must be a scalar")),
            None => cx.err(format!("missing {what}")),
        }
    };
    let (s, l, d) = (
        get(cx, 0, "start")?,
        get(cx, 1, "limit")?,
        get(cx, 2, "delta")?,
    );
    let dt = s.dtype();
    let t = if dt.is_float() {
        let (s, l, d) = (s.to_f64()[0], l.to_f64()[0], d.to_f64()[0]);
        if d == 0.0 || !d.is_finite() {
            return cx.err("delta must be finite and non-zero");
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > MAX_CONST as f64 || n.is_nan() {
            return cx.err("range too large");
        }
        // The reference computes in the input type, one step at a time.
        let v: Vec<f64> = if dt == DType::F32 {
            let (s, d) = (s as f32, d as f32);
            (0..n as usize).map(|i| (s + i as f32 * d) as f64).collect()
        } else {
            (0..n as usize).map(|i| s + i as f64 * d).collect()
        };
        Tensor::from_f64(dt, vec![v.len()], v)
    } else {
        let (s, l, d) = (s.to_i64()[0], l.to_i64()[0], d.to_i64()[0]);
        if d == 0 {
            return cx.err("delta must be non-zero");
        }
        let span = l as i128 - s as i128;
        let n = if (span > 0) == (d > 0) && span != 0 {
            (span.abs() + d.abs() as i128 - 1) / d.abs() as i128
        } else {
            0
        };
        if n > MAX_CONST as i128 {
            return cx.err("range too large");
        }
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        Tensor::from_i64(dt, vec![v.len()], v)
    }
    .or_else(|e| cx.err(e.to_string()))?;
    Ok(vec![cx.constant(t)?])
}

fn reduction(cx: &mut Ctx<'_>, kind: ReduceKind) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let r = cx.ty(x).rank();
    let since = if kind == ReduceKind::Sum { 13 } else { 18 };
    let axes = if cx.opset < since {
        cx.ints("axes")?
    } else {
        cx.const_ints(1, "axes")?
    };
    let keepdims = cx.i("keepdims", 1)? != 0;
    let noop = cx.i("noop_with_empty_axes", 0)? != 0;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => {
            let mut v: Vec<usize> = a
                .iter()
                .map(|&a| norm_axis(cx, a, r))
                .collect::<Result<_>>()?;
            v.sort();
            v.dedup();
            v
        }
        _ if noop => return Ok(vec![cx.add(Op::Identity, &[x])?]),
        _ => (0..r).collect(),
    };
    let a = ReduceAttrs {
        kind,
        axes,
        keepdims,
    };
    Ok(vec![cx.add(Op::Reduce(a), &[x])?])
}

fn arg_reduce(cx: &mut Ctx<'_>, max: bool) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let axis = norm_axis(cx, cx.i("axis", 0)?, cx.ty(x).rank())?;
    let a = ArgReduceAttrs {
        max,
        axis,
        keepdims: cx.i("keepdims", 1)? != 0,
        select_last: cx.i("select_last_index", 0)? != 0,
    };
    Ok(vec![cx.add(Op::ArgReduce(a), &[x])?])
}

fn mode_of(cx: &Ctx<'_>) -> Result<ResizeMode> {
    let m = cx.s_or("mode", "nearest")?;
    match m.as_str() {
        "nearest" => Ok(ResizeMode::Nearest),
        "linear" | "bilinear" => Ok(ResizeMode::Linear),
        "cubic" => Ok(ResizeMode::Cubic),
        _ => cx.err(format!("unknown mode `{m}`")),
    }
}

/// Nearest rounding of opset 10 Resize and Upsample: floor when enlarging,
/// ceil when shrinking (what ONNX Runtime does for these versions).
fn legacy_nearest(scales: &[f32]) -> NearestMode {
    if scales.iter().all(|&s| s <= 1.0) && scales.iter().any(|&s| s < 1.0) {
        NearestMode::Ceil
    } else {
        NearestMode::Floor
    }
}

fn scaled_sizes(dims: &[usize], scales: &[f32]) -> Vec<usize> {
    dims.iter()
        .zip(scales)
        .map(|(&d, &s)| (d as f64 * s as f64).floor().max(0.0) as usize)
        .collect()
}

fn legacy_resize(cx: &mut Ctx<'_>, x: Value, scales: Vec<f32>) -> Result<Vec<Value>> {
    let tx = cx.ty(x);
    if scales.len() != tx.rank() {
        return cx.err(format!("scales {scales:?} must have {} entries", tx.rank()));
    }
    let a = ResizeAttrs {
        mode: mode_of(cx)?,
        coord: CoordMode::Asymmetric,
        nearest: legacy_nearest(&scales),
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        sizes: scaled_sizes(&tx.dims, &scales),
        scales,
        roi: vec![],
    };
    Ok(vec![cx.add(Op::Resize(a), &[x])?])
}

fn upsample(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let scales = if cx.opset < 9 {
        cx.floats("scales")?
    } else {
        cx.konst(1, "scales")?
            .map(|t| t.to_f64().iter().map(|&v| v as f32).collect())
    };
    let Some(scales) = scales else {
        return cx.err("missing scales");
    };
    legacy_resize(cx, x, scales)
}

fn resize(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let r = tx.rank();
    if cx.opset < 11 {
        let Some(s) = cx.konst(1, "scales")? else {
            return cx.err("missing scales");
        };
        let scales = s.to_f64().iter().map(|&v| v as f32).collect();
        return legacy_resize(cx, x, scales);
    }
    let mode = mode_of(cx)?;
    let coord_s = cx.s_or("coordinate_transformation_mode", "half_pixel")?;
    let coord = match CoordMode::from_name(&coord_s) {
        Some(c) => c,
        None => {
            return cx.err(format!(
                "unknown coordinate_transformation_mode `{coord_s}`"
            ));
        }
    };
    let nearest_s = cx.s_or("nearest_mode", "round_prefer_floor")?;
    let Some(nearest) = NearestMode::from_name(&nearest_s) else {
        return cx.err(format!("unknown nearest_mode `{nearest_s}`"));
    };
    let axes: Vec<usize> = match cx.ints("axes")? {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(cx, a, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let non_empty = |t: Option<std::sync::Arc<Tensor>>| t.filter(|t| !t.is_empty());
    let roi_t = non_empty(cx.konst(1, "roi")?);
    let scales_t = non_empty(cx.konst(2, "scales")?);
    let sizes_t = non_empty(cx.konst(3, "sizes")?);
    let k = axes.len();
    let mut roi = vec![0.0f32; r];
    roi.extend(vec![1.0f32; r]);
    if let Some(t) = &roi_t {
        let v = t.to_f64();
        if v.len() != 2 * k {
            return cx.err(format!("roi must have {} entries", 2 * k));
        }
        for (i, &ax) in axes.iter().enumerate() {
            roi[ax] = v[i] as f32;
            roi[r + ax] = v[k + i] as f32;
        }
    }
    let mut scales = vec![1.0f32; r];
    let mut sizes = tx.dims.clone();
    match (&scales_t, &sizes_t) {
        (Some(s), None) => {
            let v = s.to_f64();
            if v.len() != k {
                return cx.err(format!("scales must have {k} entries"));
            }
            for (i, &ax) in axes.iter().enumerate() {
                scales[ax] = v[i] as f32;
                let span = if coord == CoordMode::TfCropAndResize {
                    (roi[r + ax] - roi[ax]) as f64
                } else {
                    1.0
                };
                sizes[ax] = (tx.dims[ax] as f64 * span * v[i] as f32 as f64)
                    .floor()
                    .max(0.0) as usize;
            }
        }
        (None, Some(s)) => {
            let v = to_usizes(cx, &s.to_i64(), "sizes")?;
            if v.len() != k {
                return cx.err(format!("sizes must have {k} entries"));
            }
            let policy = cx.s_or("keep_aspect_ratio_policy", "stretch")?;
            let ratio = |i: usize| v[i] as f64 / tx.dims[axes[i]].max(1) as f64;
            let common = match policy.as_str() {
                "stretch" => None,
                "not_larger" => Some((0..k).map(ratio).fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some((0..k).map(ratio).fold(0.0, f64::max)),
                p => return cx.err(format!("unknown keep_aspect_ratio_policy `{p}`")),
            };
            for (i, &ax) in axes.iter().enumerate() {
                match common {
                    None => {
                        sizes[ax] = v[i];
                        scales[ax] = (v[i] as f64 / tx.dims[ax].max(1) as f64) as f32;
                    }
                    Some(c) => {
                        sizes[ax] = (c * tx.dims[ax] as f64).round_ties_even() as usize;
                        scales[ax] = c as f32;
                    }
                }
            }
        }
        (Some(_), Some(_)) => return cx.err("give either scales or sizes, not both"),
        (None, None) => return cx.err("needs scales or sizes"),
    }
    if cx.i("antialias", 0)? != 0 && mode != ResizeMode::Nearest && scales.iter().any(|&s| s < 1.0)
    {
        return cx.err("antialiased downscaling is not supported");
    }
    let a = ResizeAttrs {
        mode,
        coord,
        nearest,
        cubic_a: cx.f("cubic_coeff_a", -0.75)?,
        exclude_outside: cx.i("exclude_outside", 0)? != 0,
        extrapolation: cx.f("extrapolation_value", 0.0)?,
        scales,
        roi: if coord == CoordMode::TfCropAndResize {
            roi
        } else {
            vec![]
        },
        sizes,
    };
    if a.sizes == tx.dims
        && a.scales.iter().all(|&s| s == 1.0)
        && coord != CoordMode::TfCropAndResize
    {
        return Ok(vec![cx.add(Op::Identity, &[x])?]);
    }
    Ok(vec![cx.add(Op::Resize(a), &[x])?])
}

/// The quantization axis; irrelevant (0) for per-tensor scales.
fn quant_axis(cx: &Ctx<'_>, x: Value, scale: Value) -> Result<usize> {
    if cx.i("block_size", 0)? != 0 {
        return cx.err("blocked quantization is not supported");
    }
    if cx.ty(scale).len() == 1 {
        return Ok(0);
    }
    norm_axis(cx, cx.i("axis", 1)?, cx.ty(x).rank())
}

pub(super) fn quantize(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, s) = (cx.input(0)?, cx.input(1)?);
    let axis = quant_axis(cx, x, s)?;
    let to = match (cx.opt(2), cx.i_opt("output_dtype")?) {
        (Some(z), _) => cx.dtype(z),
        (None, Some(code)) if code != 0 => match super::super::tensor::dtype_of(code as i32) {
            Ok(d) => d,
            Err(m) => return cx.err(m),
        },
        (None, _) => DType::U8,
    };
    let mut ins = vec![x, s];
    ins.extend(cx.opt(2));
    let op = Op::Quantize(nnc_ir::op::QuantizeAttrs { axis, to });
    Ok(vec![cx.add(op, &ins)?])
}

pub(super) fn dequantize(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, s) = (cx.input(0)?, cx.input(1)?);
    let axis = quant_axis(cx, x, s)?;
    let mut ins = vec![x, s];
    ins.extend(cx.opt(2));
    let op = Op::Dequantize(nnc_ir::op::DequantizeAttrs { axis });
    Ok(vec![cx.add(op, &ins)?])
}
