//! Channel-local steps in place: a depthwise convolution or a pooling whose
//! input dies with it runs over groups of channels, each group copied out
//! to a small buffer first and its output written over the channels it
//! came from, so the step needs its input plus one group instead of its
//! input plus its output.
//!
//! The output of group `g` covers bytes the input's first `g + 1` groups
//! occupied (an output plane is never larger than an input plane), all of
//! them copied out already, so no channel is overwritten before it is
//! read. The steps on the groups are the model's own steps on channel
//! slices, with the kernels selection picks for them; results are
//! unchanged.

use nnc_ir::Op;
use nnc_ir::op::QConvAttrs;
use nnc_ir::program::{Buffer, Kernel, Loc, Program, Step};

use super::partition::{Uses, uses};
use super::split::{channel_slice, ranges, row_slice};
use super::stream::reselect;
use crate::pass::{PassError, Result};

fn fail(msg: String) -> PassError {
    PassError::Failed {
        pass: "in-place".into(),
        msg,
    }
}

/// Is step `i` a channel-local step over a dying input that can run in
/// place by channel groups? Returns the input and output storages.
fn eligible(p: &Program, i: usize, u: &Uses) -> std::result::Result<(usize, usize), String> {
    let st = p.steps.get(i).ok_or_else(|| format!("no step {i}"))?;
    if p.loop_of(i).is_some() || !st.part.is_whole() || st.in_place || st.outputs.len() != 1 {
        return Err(format!("step {i} is already partitioned"));
    }
    let (x, y) = (&st.inputs[0], &st.outputs[0]);
    let local = match &st.op {
        Op::Conv(a) | Op::QConv(QConvAttrs { conv: a, .. }) => {
            a.group == x.ty.dims[1] && st.inputs[1].ty.dims[1] == 1 && y.ty.dims[1] == a.group
        }
        Op::Pool(_) => true,
        _ => false,
    };
    if !local || st.residual().is_some() {
        return Err(format!("step {i} is not channel-local"));
    }
    if x.ty.rank() < 3 || x.ty.dims[0] != 1 || x.ty.dims[1] != y.ty.dims[1] {
        return Err(format!("step {i}: {} is not batch-1 channels", x.ty));
    }
    if x.ty.dtype.size() != y.ty.dtype.size() || y.ty.bytes() > x.ty.bytes() || x.offset != 0 {
        return Err(format!("step {i}: the output does not fit its input"));
    }
    let (Loc::Temp(ki), Loc::Temp(ko)) = (x.loc, y.loc) else {
        return Err(format!("step {i} reads or writes caller memory"));
    };
    if u.of(ki).iter().any(|&s| s > i) {
        return Err(format!("step {i}'s input is read later"));
    }
    if y.offset != 0 || u.of(ko).iter().any(|&s| s < i) {
        return Err(format!("step {i}'s output storage is shared"));
    }
    Ok((ki, ko))
}

/// True when [`inplace_channels`] applies to step `i` (`u`: the storage
/// uses of `p`).
pub(super) fn channel_local(p: &Program, i: usize, u: &Uses) -> bool {
    eligible(p, i, u).is_ok()
}

/// What running a step in place by channel groups did.
#[derive(Clone, Debug, PartialEq)]
pub struct InPlace {
    pub groups: usize,
    /// Bytes copied out per inference (the whole input, once).
    pub copied_bytes: usize,
}

/// Runs channel-local step `i` of an unplaced program in place, in
/// `groups` groups of channels (see the module documentation).
pub fn inplace_channels(p: &Program, i: usize, groups: usize) -> Result<(Program, InPlace)> {
    let mut q = p.clone();
    let u = uses(&q);
    let s = inplace_mut(&mut q, i, groups, &u)?;
    q.verify_unplaced()?;
    Ok((q, s))
}

/// [`inplace_channels`] in place, without verifying the result; `u` are
/// the storage uses of `p`.
pub(super) fn inplace_mut(p: &mut Program, i: usize, groups: usize, u: &Uses) -> Result<InPlace> {
    let (ki, ko) = eligible(p, i, u).map_err(fail)?;
    let st = p.steps[i].clone();
    let (x, y) = (st.inputs[0].clone(), st.outputs[0].clone());
    let c = x.ty.dims[1];
    let slices = ranges(c, groups);
    let next = 1 + p
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter().chain(&s.outputs))
        .filter_map(|b| match b.loc {
            Loc::Temp(k) => Some(k),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let tmp_loc = Loc::Temp(next);
    // The output lives where the input was.
    let home = Buffer {
        loc: Loc::Temp(ki),
        ..y.clone()
    };
    let mut body = Vec::with_capacity(2 * slices.len());
    for &(lo, hi) in &slices {
        let part = channel_slice(&x, lo, hi);
        let tmp = Buffer::new(tmp_loc, part.ty.clone());
        body.push(Step {
            op: Op::Identity,
            kernel: Kernel::Copy,
            epilogue: vec![],
            part: Default::default(),
            inputs: vec![part],
            outputs: vec![tmp.clone()],
            name: format!("channels [{lo}, {hi}) of {}", st.name),
            in_place: false,
        });
        let mut s = st.clone();
        s.inputs[0] = tmp;
        s.outputs[0] = channel_slice(&home, lo, hi);
        match &mut s.op {
            Op::Conv(a) | Op::QConv(QConvAttrs { conv: a, .. }) => {
                a.group = hi - lo;
                s.inputs[1] = row_slice(&st.inputs[1], lo, hi);
                for k in 2..s.inputs.len() {
                    // Bias and per-channel requantization parameters.
                    if st.inputs[k].ty.len() == c {
                        s.inputs[k] = row_slice(&st.inputs[k], lo, hi);
                    }
                }
            }
            _ => {}
        }
        s.part = nnc_ir::program::Part {
            channels: Some((lo, hi)),
            ..Default::default()
        };
        reselect(p, &mut s)?;
        body.push(s);
    }
    let q = p;
    let n = body.len();
    q.steps.splice(i..=i, body);
    for l in &mut q.loops {
        if l.first > i {
            l.first += n - 1;
        }
    }
    for s in &mut q.steps[i + n..] {
        for b in s.inputs.iter_mut().chain(s.outputs.iter_mut()) {
            if b.loc == Loc::Temp(ko) {
                b.loc = Loc::Temp(ki);
            }
        }
    }
    q.stats.live_bytes.clear();
    Ok(InPlace {
        groups: slices.len(),
        copied_bytes: x.ty.bytes(),
    })
}
