//! Shape and data-movement operators. Reshape, Flatten, Squeeze and
//! Unsqueeze all become IR `reshape` with the target shape resolved here;
//! Slice, Pad, Split and friends get their bounds normalized to every axis.

use nnc_ir::op::elementwise::broadcast_dims;
use nnc_ir::op::{
    ConcatAttrs, ExpandAttrs, GatherAttrs, PadAttrs, PadMode, ReshapeAttrs, SliceAttrs, SplitAttrs,
    TileAttrs, TransposeAttrs,
};
use nnc_ir::{Op, TensorType, Value, dtype::checked_numel};

use super::super::error::Result;
use super::super::import::Ctx;
use super::{norm_axis, to_usizes};

pub(super) fn convert(cx: &mut Ctx<'_>, op: &str) -> Option<Result<Vec<Value>>> {
    Some(match op {
        "Reshape" => reshape(cx),
        "Flatten" => flatten(cx),
        "Squeeze" => squeeze(cx),
        "Unsqueeze" => unsqueeze(cx),
        "Transpose" => transpose(cx),
        "Concat" => concat(cx),
        "Split" => split(cx),
        "Slice" => slice(cx),
        "Pad" => pad(cx),
        "Expand" => expand(cx),
        "Tile" => tile(cx),
        "Gather" => gather(cx),
        "DepthToSpace" => depth_to_space(cx),
        "SpaceToDepth" => space_to_depth(cx),
        _ => return super::tensors::convert(cx, op),
    })
}

pub(super) fn reshape_to(cx: &mut Ctx<'_>, x: Value, shape: Vec<usize>) -> Result<Value> {
    if cx.ty(x).dims == shape {
        return cx.add(Op::Identity, &[x]);
    }
    cx.add(Op::Reshape(ReshapeAttrs { shape }), &[x])
}

fn reshape(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let spec = if cx.opset < 5 {
        cx.ints("shape")?
    } else {
        cx.const_ints(1, "the target shape")?
    };
    let Some(spec) = spec else {
        return cx.err("missing the target shape");
    };
    let allowzero = cx.i("allowzero", 0)? != 0;
    let mut dims = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            -1 => return cx.err(format!("shape {spec:?} has more than one -1")),
            0 if !allowzero => match tx.dims.get(i) {
                Some(&d) => dims.push(d),
                None => {
                    return cx.err(format!("shape {spec:?}: 0 at {i} has no input dim to copy"));
                }
            },
            s if s >= 0 => dims.push(s as usize),
            s => return cx.err(format!("shape {spec:?} has the invalid entry {s}")),
        }
    }
    if let Some(i) = infer {
        let known: usize = dims.iter().product();
        if known == 0 || !tx.len().is_multiple_of(known) {
            return cx.err(format!("cannot reshape {tx} to {spec:?}"));
        }
        dims[i] = tx.len() / known;
    }
    if checked_numel(&dims) != Some(tx.len()) {
        return cx.err(format!("cannot reshape {tx} to {spec:?}"));
    }
    Ok(vec![reshape_to(cx, x, dims)?])
}

fn flatten(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let a = cx.i("axis", 1)?;
    let r = tx.rank() as i64;
    let axis = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&axis) {
        return cx.err(format!("axis {a} out of range for {tx}"));
    }
    let axis = axis as usize;
    let outer: usize = tx.dims[..axis].iter().product();
    let inner: usize = tx.dims[axis..].iter().product();
    Ok(vec![reshape_to(cx, x, vec![outer, inner])?])
}

fn axes_arg(cx: &Ctx<'_>, since_input: i64) -> Result<Option<Vec<i64>>> {
    if cx.opset < since_input {
        cx.ints("axes")
    } else {
        cx.const_ints(1, "axes")
    }
}

fn squeeze(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let axes = axes_arg(cx, 13)?;
    let dims: Vec<usize> = match axes {
        None => tx.dims.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let mut drop = vec![false; tx.rank()];
            for a in axes {
                let a = norm_axis(cx, a, tx.rank())?;
                if tx.dims[a] != 1 {
                    return cx.err(format!(
                        "cannot squeeze axis {a} of {tx}: its size is not 1"
                    ));
                }
                drop[a] = true;
            }
            (0..tx.rank())
                .filter(|&i| !drop[i])
                .map(|i| tx.dims[i])
                .collect()
        }
    };
    Ok(vec![reshape_to(cx, x, dims)?])
}

fn unsqueeze(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let Some(axes) = axes_arg(cx, 13)? else {
        return cx.err("missing axes");
    };
    let out_rank = tx.rank() + axes.len();
    let mut ins = vec![false; out_rank];
    for a in axes {
        let a = norm_axis(cx, a, out_rank)?;
        if std::mem::replace(&mut ins[a], true) {
            return cx.err(format!("axis {a} given twice"));
        }
    }
    let mut src = tx.dims.iter();
    let dims: Vec<usize> = ins
        .iter()
        .map(|&new| if new { 1 } else { *src.next().unwrap_or(&1) })
        .collect();
    Ok(vec![reshape_to(cx, x, dims)?])
}

fn transpose(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let r = cx.ty(x).rank();
    let perm = match cx.ints("perm")? {
        Some(p) => to_usizes(cx, &p, "perm")?,
        None => (0..r).rev().collect(),
    };
    Ok(vec![cx.add(Op::Transpose(TransposeAttrs { perm }), &[x])?])
}

fn concat(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let ins: Vec<Value> = (0..cx.ins.len())
        .map(|i| cx.input(i))
        .collect::<Result<_>>()?;
    let Some(&first) = ins.first() else {
        return cx.err("needs at least one input");
    };
    let r = cx.ty(first).rank();
    let axis = match cx.i_opt("axis")? {
        Some(a) => norm_axis(cx, a, r)?,
        None if cx.opset < 4 => 1.min(r.saturating_sub(1)),
        None => return cx.err("missing attribute `axis`"),
    };
    if ins.len() == 1 {
        return Ok(vec![cx.add(Op::Identity, &ins)?]);
    }
    Ok(vec![cx.add(Op::Concat(ConcatAttrs { axis }), &ins)?])
}

fn split(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let axis = norm_axis(cx, cx.i("axis", 0)?, tx.rank())?;
    let d = tx.dims[axis];
    let n_out = cx.node.output.len();
    let given = if cx.opset < 13 {
        cx.ints("split")?
    } else {
        cx.const_ints(1, "split sizes")?
    };
    let sizes = match given {
        Some(s) => to_usizes(cx, &s, "split sizes")?,
        None => {
            let parts = match cx.i_opt("num_outputs")? {
                Some(k) if k > 0 => k as usize,
                Some(k) => return cx.err(format!("num_outputs {k} must be positive")),
                None => n_out,
            };
            if parts == 0 {
                return cx.err("no outputs");
            }
            if cx.opset >= 18 {
                // Opset 18: ceil-sized chunks, the last one smaller.
                let chunk = d.div_ceil(parts);
                (0..parts)
                    .map(|i| chunk.min(d.saturating_sub(i * chunk)))
                    .collect()
            } else {
                if !d.is_multiple_of(parts) {
                    return cx.err(format!("cannot split {d} into {parts} equal parts"));
                }
                vec![d / parts; parts]
            }
        }
    };
    if sizes.len() != n_out {
        return cx.err(format!("{} split sizes for {n_out} outputs", sizes.len()));
    }
    cx.add_multi(Op::Split(SplitAttrs { axis, sizes }), &[x])
}

fn slice(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        (cx.ints("starts")?, cx.ints("ends")?, cx.ints("axes")?, None)
    } else {
        (
            cx.const_ints(1, "starts")?,
            cx.const_ints(2, "ends")?,
            cx.const_ints(3, "axes")?,
            cx.const_ints(4, "steps")?,
        )
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return cx.err("missing starts or ends");
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return cx.err("starts, ends, axes and steps differ in length");
    }
    let r = tx.rank();
    let mut a = SliceAttrs {
        starts: vec![0; r],
        ends: tx.dims.iter().map(|&d| d as i64).collect(),
        steps: vec![1; r],
    };
    let mut seen = vec![false; r];
    for i in 0..k {
        let ax = norm_axis(cx, axes[i], r)?;
        if std::mem::replace(&mut seen[ax], true) {
            return cx.err(format!("axis {ax} sliced twice"));
        }
        if steps[i] == 0 {
            return cx.err("slice step 0");
        }
        let (s, e) = SliceAttrs::normalize(starts[i], ends[i], steps[i], tx.dims[ax]);
        a.starts[ax] = s;
        a.ends[ax] = e;
        a.steps[ax] = steps[i];
    }
    Ok(vec![cx.add(Op::Slice(a), &[x])?])
}

fn pad(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let r = tx.rank();
    let mode_s = cx.s_or("mode", "constant")?;
    let Some(mode) = PadMode::from_name(&mode_s) else {
        return cx.err(format!("unknown pad mode `{mode_s}`"));
    };
    let (raw, value, axes) = if cx.opset < 11 {
        let raw = match cx.ints("pads")? {
            Some(p) => p,
            None => cx.ints("paddings")?.unwrap_or_default(),
        };
        (raw, cx.f("value", 0.0)? as f64, None)
    } else {
        let Some(raw) = cx.const_ints(1, "pads")? else {
            return cx.err("missing pads");
        };
        let value = match cx.konst(2, "constant_value")? {
            Some(t) => match t.scalar_f64() {
                Some(v) => v,
                None if t.is_empty() => 0.0,
                None => return cx.err("constant_value must be a scalar"),
            },
            None => 0.0,
        };
        (raw, value, cx.const_ints(3, "axes")?)
    };
    let axes: Vec<usize> = match axes {
        None => (0..r).collect(),
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(cx, a, r))
            .collect::<Result<_>>()?,
    };
    if raw.len() != 2 * axes.len() {
        return cx.err(format!("pads {raw:?} must have {} entries", 2 * axes.len()));
    }
    let mut pads = vec![0i64; 2 * r];
    let k = axes.len();
    for (i, &ax) in axes.iter().enumerate() {
        pads[ax] = raw[i];
        pads[r + ax] = raw[k + i];
    }
    let a = PadAttrs { mode, pads, value };
    Ok(vec![cx.add(Op::Pad(a), &[x])?])
}

fn expand(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let Some(shape) = cx.const_ints(1, "shape")? else {
        return cx.err("missing shape");
    };
    let shape = to_usizes(cx, &shape, "shape")?;
    let Some(out) = broadcast_dims(&tx.dims, &shape) else {
        return cx.err(format!("cannot expand {tx} to {shape:?}"));
    };
    if out == tx.dims {
        return Ok(vec![cx.add(Op::Identity, &[x])?]);
    }
    Ok(vec![cx.add(Op::Expand(ExpandAttrs { shape: out }), &[x])?])
}

fn tile(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let Some(r) = cx.const_ints(1, "repeats")? else {
        return cx.err("missing repeats");
    };
    let repeats = to_usizes(cx, &r, "repeats")?;
    Ok(vec![cx.add(Op::Tile(TileAttrs { repeats }), &[x])?])
}

fn gather(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let (x, i) = (cx.input(0)?, cx.input(1)?);
    let axis = norm_axis(cx, cx.i("axis", 0)?, cx.ty(x).rank())?;
    Ok(vec![cx.add(Op::Gather(GatherAttrs { axis }), &[x, i])?])
}

fn blocksize(cx: &Ctx<'_>, tx: &TensorType) -> Result<usize> {
    let Some(b) = cx.i_opt("blocksize")? else {
        return cx.err("missing attribute `blocksize`");
    };
    if b <= 0 || tx.rank() != 4 {
        return cx.err(format!(
            "needs a positive blocksize and a 4-D input, got {b} and {tx}"
        ));
    }
    Ok(b as usize)
}

fn depth_to_space(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let b = blocksize(cx, &tx)?;
    let [n, c, h, w] = [tx.dims[0], tx.dims[1], tx.dims[2], tx.dims[3]];
    if c % (b * b) != 0 {
        return cx.err(format!("{c} channels are not divisible by blocksize^2"));
    }
    let cb = c / (b * b);
    let (shape, perm) = match cx.s_or("mode", "DCR")?.as_str() {
        "DCR" => (vec![n, b, b, cb, h, w], vec![0, 3, 4, 1, 5, 2]),
        "CRD" => (vec![n, cb, b, b, h, w], vec![0, 1, 4, 2, 5, 3]),
        m => return cx.err(format!("unknown mode `{m}`")),
    };
    let r = cx.add(Op::Reshape(ReshapeAttrs { shape }), &[x])?;
    let t = cx.add(Op::Transpose(TransposeAttrs { perm }), &[r])?;
    Ok(vec![reshape_to(cx, t, vec![n, cb, h * b, w * b])?])
}

fn space_to_depth(cx: &mut Ctx<'_>) -> Result<Vec<Value>> {
    let x = cx.input(0)?;
    let tx = cx.ty(x);
    let b = blocksize(cx, &tx)?;
    let [n, c, h, w] = [tx.dims[0], tx.dims[1], tx.dims[2], tx.dims[3]];
    if h % b != 0 || w % b != 0 {
        return cx.err(format!("spatial dims of {tx} are not divisible by {b}"));
    }
    let r = cx.add(
        Op::Reshape(ReshapeAttrs {
            shape: vec![n, c, h / b, b, w / b, b],
        }),
        &[x],
    )?;
    let t = cx.add(
        Op::Transpose(TransposeAttrs {
            perm: vec![0, 3, 5, 1, 2, 4],
        }),
        &[r],
    )?;
    Ok(vec![reshape_to(cx, t, vec![n, c * b * b, h / b, w / b])?])
}
