//! Program-to-program splits of one step into steps over channel slices:
//! the building block of partial execution (channel-split scheduling).
//!
//! - [`split_out_channels`]: a convolution (or depthwise convolution)
//!   computes its output channels in slices; each slice reads its rows of
//!   the weights (and, for a depthwise convolution, its input channels) and
//!   writes its part of the output.
//! - [`split_in_channels`]: a convolution reduces over its input channels
//!   in slices; the first slice starts from the bias, later ones add to the
//!   partial sum already in the output (`Part::accumulate`), and only the
//!   last applies the activation. For floats this changes the order of the
//!   summation (each slice's sum is rounded to f32 before the next adds to
//!   it); integer partial sums would be exact.
//!
//! Slices of a batch-1 NCHW tensor along channels are contiguous, so every
//! slice is the same buffer at an offset: no kernel needs to know about
//! slicing. Kernels are selected again for each slice (a narrower step may
//! want other tiles).

use std::sync::Arc;

use nnc_ir::program::{Buffer, Epilogue, Loc, Part, Program, Step, Weight};
use nnc_ir::{Op, Tensor, TensorType};

use super::select::{self, StepCx};
use crate::pass::{PassError, Result};

fn fail(msg: String) -> PassError {
    PassError::Failed {
        pass: "split".into(),
        msg,
    }
}

/// `n` split into `k` near-equal consecutive ranges.
pub(super) fn ranges(n: usize, k: usize) -> Vec<(usize, usize)> {
    let k = k.clamp(1, n.max(1));
    (0..k).map(|i| (i * n / k, (i + 1) * n / k)).collect()
}

/// Channels `[a, b)` of a batch-1 tensor buffer as a buffer of its own.
pub(super) fn channel_slice(b: &Buffer, a: usize, e: usize) -> Buffer {
    let plane: usize = b.ty.dims[2..].iter().product();
    let mut dims = b.ty.dims.clone();
    dims[1] = e - a;
    Buffer {
        loc: b.loc,
        offset: b.offset + a * plane * b.ty.dtype.size(),
        ty: TensorType::new(b.ty.dtype, dims),
        step: b.step,
    }
}

/// Rows `[a, b)` of a weight or bias buffer (its first dim) as a buffer.
pub(super) fn row_slice(b: &Buffer, a: usize, e: usize) -> Buffer {
    let row: usize = b.ty.dims[1..].iter().product();
    let mut dims = b.ty.dims.clone();
    dims[0] = e - a;
    Buffer {
        loc: b.loc,
        offset: b.offset + a * row * b.ty.dtype.size(),
        ty: TensorType::new(b.ty.dtype, dims),
        step: b.step,
    }
}

/// Checks what every split needs and returns the step.
fn splittable(p: &Program, i: usize) -> Result<&Step> {
    let st = p.steps.get(i).ok_or_else(|| fail(format!("no step {i}")))?;
    let what = format!("step {i} ({} `{}`)", st.op.name(), st.name);
    if !matches!(st.op, Op::Conv(_)) {
        return Err(fail(format!("{what}: only convolutions split by channel")));
    }
    if !st.part.is_whole() {
        return Err(fail(format!("{what} is already a part")));
    }
    let x = &st.inputs[0].ty;
    if x.dims.first() != Some(&1) {
        return Err(fail(format!(
            "{what}: channel slices are contiguous only with batch 1, not {x}"
        )));
    }
    if !matches!(st.inputs[1].loc, Loc::Const(_)) {
        return Err(fail(format!("{what}: the weights are not constants")));
    }
    Ok(st)
}

/// Selects the kernel of a new slice step and checks it (`what` names the
/// step in the error).
pub(super) fn reselect(p: &Program, st: &mut Step, what: &str) -> Result<()> {
    let views: Vec<_> = st.inputs.iter().map(|b| p.weight_view(b)).collect();
    let act = st.acts().next().copied();
    let cx = StepCx {
        op: &st.op,
        act: act.as_ref(),
        ins: st.inputs.iter().map(|b| &b.ty).collect(),
        consts: views.iter().map(|v| v.as_deref()).collect(),
        outs: st.outputs.iter().map(|b| &b.ty).collect(),
        target: &p.target,
    };
    let k = select::select(&cx);
    select::check(&k, &cx).map_err(|e| fail(format!("{what}: kernel {k}: {e}")))?;
    st.kernel = k;
    Ok(())
}

/// Replaces step `i` by `parts`, repeating its live bytes for each.
fn replace(p: &Program, i: usize, parts: Vec<Step>) -> Result<Program> {
    let mut q = p.clone();
    let n = parts.len();
    q.steps.splice(i..=i, parts);
    if let Some(&live) = p.stats.live_bytes.get(i) {
        q.stats
            .live_bytes
            .splice(i..=i, std::iter::repeat_n(live, n));
    }
    if q.stats.peak_step > i {
        q.stats.peak_step += n - 1;
    }
    q.verify()?;
    Ok(q)
}

/// Splits convolution step `i` into `k` steps over slices of its output
/// channels (a depthwise convolution slices its input channels with them).
pub fn split_out_channels(p: &Program, i: usize, k: usize) -> Result<Program> {
    let st = splittable(p, i)?;
    let Op::Conv(a) = &st.op else {
        unreachable!("checked by splittable")
    };
    let (x, w, y) = (&st.inputs[0].ty, &st.inputs[1].ty, &st.outputs[0].ty);
    let m = y.dims[1];
    let depthwise = a.group > 1 && a.group == x.dims[1] && w.dims[1] == 1 && m == a.group;
    if a.group != 1 && !depthwise {
        return Err(fail(format!(
            "step {i}: grouped convolutions split only when depthwise"
        )));
    }
    let mut parts = Vec::new();
    for (lo, hi) in ranges(m, k) {
        let mut s = st.clone();
        s.outputs[0] = channel_slice(&st.outputs[0], lo, hi);
        s.inputs[1] = row_slice(&st.inputs[1], lo, hi);
        if let Some(b) = st.bias() {
            s.inputs[b] = row_slice(&st.inputs[b], lo, hi);
        }
        for e in &st.epilogue {
            if let Epilogue::Residual { input } = e {
                s.inputs[*input] = channel_slice(&st.inputs[*input], lo, hi);
            }
        }
        if depthwise {
            s.inputs[0] = channel_slice(&st.inputs[0], lo, hi);
            let mut a2 = a.clone();
            a2.group = hi - lo;
            s.op = Op::Conv(a2);
        }
        s.part = Part {
            channels: Some((lo, hi)),
            ..Part::default()
        };
        s.in_place = false;
        reselect(p, &mut s, &format!("step {i} channels [{lo}, {hi})"))?;
        parts.push(s);
    }
    replace(p, i, parts)
}

/// Splits convolution step `i` into `k` steps that each reduce over a
/// slice of its input channels, accumulating into the output.
pub fn split_in_channels(p: &Program, i: usize, k: usize) -> Result<Program> {
    let st = splittable(p, i)?;
    let Op::Conv(a) = &st.op else {
        unreachable!("checked by splittable")
    };
    if a.group != 1 {
        return Err(fail(format!(
            "step {i}: only ungrouped convolutions split their reduction"
        )));
    }
    if st.residual().is_some() {
        return Err(fail(format!(
            "step {i}: a residual epilogue belongs to the last slice only; not supported"
        )));
    }
    let c = st.inputs[0].ty.dims[1];
    let wt = p
        .weight_view(&st.inputs[1])
        .ok_or_else(|| fail(format!("step {i}: unreadable weights")))?;
    let wd = wt.dims().to_vec();
    let taps: usize = wd[2..].iter().product();
    let wv = wt.data();
    let slices = ranges(c, k);
    let last = slices.len() - 1;
    let mut q = p.clone();
    let mut parts = Vec::new();
    for (j, &(lo, hi)) in slices.iter().enumerate() {
        let mut s = st.clone();
        s.inputs[0] = channel_slice(&st.inputs[0], lo, hi);
        // Columns [lo, hi) of [M, C, K...] are not contiguous: a weight of
        // their own (the slices together hold exactly the original values).
        let idx: Vec<usize> = (0..wd[0])
            .flat_map(|o| (lo * taps..hi * taps).map(move |t| o * c * taps + t))
            .collect();
        let mut dims = wd.clone();
        dims[1] = hi - lo;
        let tensor = Tensor::new(dims.clone(), wv.gather(&idx))?;
        q.weights.push(Weight {
            name: format!("{} [:, {lo}:{hi}]", p.weights_name(&st.inputs[1])),
            tensor: Arc::new(tensor),
        });
        s.inputs[1] = Buffer::new(
            Loc::Const(q.weights.len() - 1),
            TensorType::new(wt.dtype(), dims),
        );
        if j > 0 {
            // The bias belongs to the first slice.
            if let Some(b) = st.bias() {
                s.inputs.remove(b);
            }
            s.epilogue.retain(|e| !matches!(e, Epilogue::Bias { .. }));
        }
        if j < last {
            s.epilogue.retain(|e| matches!(e, Epilogue::Bias { .. }));
        }
        s.part = Part {
            in_channels: Some((lo, hi)),
            accumulate: j > 0,
            ..Part::default()
        };
        s.in_place = false;
        reselect(&q, &mut s, &format!("step {i} input channels [{lo}, {hi})"))?;
        parts.push(s);
    }
    replace(&q, i, parts)
}

trait WeightName {
    fn weights_name(&self, b: &Buffer) -> String;
}

impl WeightName for Program {
    fn weights_name(&self, b: &Buffer) -> String {
        match b.loc {
            Loc::Const(k) => self
                .weights
                .get(k)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        assert_eq!(ranges(10, 3), vec![(0, 3), (3, 6), (6, 10)]);
        assert_eq!(ranges(2, 5), vec![(0, 1), (1, 2)]);
        assert_eq!(ranges(4, 1), vec![(0, 4)]);
    }
}
