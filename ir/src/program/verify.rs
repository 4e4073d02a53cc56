//! The program verifier: structural checks of a lowered program, every
//! problem collected. Lowering runs it on what it produces, and so can any
//! pass that rewrites a program.

use super::{Buffer, Family, Kernel, Loc, Program, Step};
use crate::error::{IrError, Result};
use crate::op::Op;

pub(super) fn verify(p: &Program, placed: bool) -> Result<()> {
    let mut errs = Vec::new();
    check_loops(p, &mut errs);
    if !p.arena_bytes.is_multiple_of(super::ARENA_ALIGN) {
        errs.push(format!(
            "arena size {} is not a multiple of {}",
            p.arena_bytes,
            super::ARENA_ALIGN
        ));
    }
    for (i, st) in p.steps.iter().enumerate() {
        let what = format!("step {i} ({} `{}`)", st.op.name(), st.name);
        let count = p.loop_of(i).map_or(1, |l| l.count);
        for (k, b) in st.inputs.iter().enumerate() {
            check_loc(
                p,
                b,
                count,
                &format!("{what}: input {k}"),
                false,
                placed,
                &mut errs,
            );
        }
        for (k, b) in st.outputs.iter().enumerate() {
            check_loc(
                p,
                b,
                count,
                &format!("{what}: output {k}"),
                true,
                placed,
                &mut errs,
            );
        }
        for b in st.inputs.iter().chain(&st.outputs) {
            if b.step > 0 && (p.loop_of(i).is_none() || matches!(b.loc, Loc::Const(_))) {
                errs.push(format!(
                    "{what}: {b} moves per iteration but {}",
                    if matches!(b.loc, Loc::Const(_)) {
                        "is a weight"
                    } else {
                        "is not in a loop"
                    }
                ));
            }
        }
        if let Kernel::RowCopy(r) = &st.kernel {
            let count = p.loop_of(i).map_or(1, |l| l.count);
            check_row_copy(st, r, count, &what, &mut errs);
        }
        if !kernel_fits_op(&st.kernel, &st.op) {
            errs.push(format!(
                "{what}: kernel {} cannot compute {}",
                st.kernel.name(),
                st.op.name()
            ));
        }
        check_epilogue(st, &what, &mut errs);
        check_part(st, &what, &mut errs);
        if !st.in_place {
            check_disjoint(st, count, &what, &mut errs);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IrError::ProgramVerify(errs))
    }
}

fn check_loops(p: &Program, errs: &mut Vec<String>) {
    let mut end = 0;
    for l in &p.loops {
        if l.len == 0 || l.count == 0 {
            errs.push(format!(
                "loop at step {} runs {} steps {} times",
                l.first, l.len, l.count
            ));
        }
        if l.first < end {
            errs.push(format!(
                "loop at step {} overlaps the loop before it",
                l.first
            ));
        }
        if l.end() > p.steps.len() {
            errs.push(format!(
                "loop at step {} ends after the last step ({} steps)",
                l.first,
                p.steps.len()
            ));
        }
        end = l.end();
    }
}

/// A row copy's tensors agree on channels and row size, and every
/// destination row of every iteration exists.
fn check_row_copy(st: &Step, r: &super::RowCopy, count: usize, what: &str, errs: &mut Vec<String>) {
    let (Some(src), Some(dst)) = (st.inputs.first(), st.outputs.first()) else {
        errs.push(format!("{what}: a row copy has one input and one output"));
        return;
    };
    let (s, d) = (&src.ty, &dst.ty);
    let row = |t: &crate::TensorType| t.dims[3..].iter().product::<usize>();
    if s.rank() < 3 || d.rank() < 3 || s.dims[0] != 1 || d.dims[0] != 1 {
        errs.push(format!(
            "{what}: row copies move rows of batch-1 tensors, not {s} to {d}"
        ));
        return;
    }
    if let Some(c) = r.cols {
        if s.rank() != 4 || d.rank() != 4 || s.dims[1] != d.dims[1] || s.dtype != d.dtype {
            errs.push(format!(
                "{what}: column copies move columns of rank-4 tensors with the same channels and type, not {s} to {d}"
            ));
            return;
        }
        if c.src + c.n > s.dims[3] || c.dst + c.n > d.dims[3] {
            errs.push(format!(
                "{what}: columns {}..{} of {s} to {}..{} of {d} are out of range",
                c.src,
                c.src + c.n,
                c.dst,
                c.dst + c.n
            ));
        }
    } else if s.dims[1] != d.dims[1] || row(s) != row(d) || s.dtype != d.dtype {
        errs.push(format!(
            "{what}: {s} and {d} differ in channels, row size or type"
        ));
    }
    if r.rows == 0 {
        return;
    }
    let last = r.dst(count - 1, r.rows - 1);
    if last >= d.dims[2] {
        errs.push(format!(
            "{what}: destination row {last} is outside {d} (iteration {})",
            count - 1
        ));
    }
    if st.in_place || src.same_place(dst) {
        // Within one tensor only upward, in lock step.
        if r.src_step != r.dst_step as i64 || r.src_row < r.dst_row as i64 {
            errs.push(format!(
                "{what}: an in-place row copy must move rows up (source {} step {}, destination {} step {})",
                r.src_row, r.src_step, r.dst_row, r.dst_step
            ));
        }
    }
}

fn check_loc(
    p: &Program,
    b: &Buffer,
    count: usize,
    what: &str,
    output: bool,
    placed: bool,
    errs: &mut Vec<String>,
) {
    // What must fit the location: the buffer's end in its last iteration.
    let bytes = b.extent(count);
    if !b.offset.is_multiple_of(b.ty.dtype.size().max(1)) {
        errs.push(format!(
            "{what}: offset {} is not a multiple of the {} element size",
            b.offset, b.ty.dtype
        ));
    }
    match b.loc {
        Loc::Temp(k) => {
            if placed {
                errs.push(format!("{what}: storage t{k} was never placed"));
            }
        }
        Loc::Arena(o) => {
            if o + bytes > p.arena_bytes {
                errs.push(format!(
                    "{what}: {} bytes at arena+{} (last iteration) overrun the {}-byte arena",
                    b.bytes(),
                    o + bytes - b.bytes(),
                    p.arena_bytes
                ));
            }
        }
        Loc::Input(k) => match p.inputs.get(k) {
            _ if output => errs.push(format!("{what}: writes graph input {k}")),
            Some((_, t)) if t.bytes() < bytes => {
                errs.push(format!("{what}: {bytes} bytes do not fit input {k} ({t})"))
            }
            Some(_) => {}
            None => errs.push(format!("{what}: no graph input {k}")),
        },
        Loc::Output(k) => match p.outputs.get(k) {
            Some((_, t)) if t.bytes() < bytes => {
                errs.push(format!("{what}: {bytes} bytes do not fit output {k} ({t})"))
            }
            Some(_) => {}
            None => errs.push(format!("{what}: no graph output {k}")),
        },
        Loc::Const(k) => match p.weights.get(k) {
            _ if output => errs.push(format!("{what}: writes weight {k}")),
            Some(w) if w.tensor.len() * w.tensor.dtype().size() < bytes => errs.push(format!(
                "{what}: {bytes} bytes do not fit weight {k} ({})",
                w.tensor.ty()
            )),
            Some(_) => {}
            None => errs.push(format!("{what}: no weight {k}")),
        },
    }
}

/// The op families a kernel can compute.
fn kernel_fits_op(k: &Kernel, op: &Op) -> bool {
    match k {
        Kernel::QConvDot(_) | Kernel::QDwDot(_) => return matches!(op, Op::QConv(_)),
        Kernel::QGemmDot(_) => return matches!(op, Op::QGemm(_)),
        Kernel::Winograd(_) => return matches!(op, Op::Winograd(_)),
        _ if matches!(op, Op::Winograd(_)) => return false,
        Kernel::DepthwisePhases => return matches!(op, Op::Conv(_) | Op::Pool(_)),
        _ => {}
    }
    match k.family() {
        // The integer kernels for microcontrollers compute integer ops only.
        Family::Conv | Family::Depthwise => match k {
            Kernel::ConvIm2col(_) | Kernel::DepthwisePairs(_) => matches!(op, Op::QConv(_)),
            _ => matches!(op, Op::Conv(_) | Op::QConv(_)),
        },
        Family::ConvTranspose => matches!(op, Op::ConvTranspose(_)),
        Family::MatMul => match k {
            Kernel::MatMulPanels(_) => matches!(op, Op::QGemm(_)),
            _ => matches!(op, Op::Gemm(_) | Op::MatMul | Op::QGemm(_)),
        },
        Family::Pool => match k {
            Kernel::GlobalPool(_) => matches!(op, Op::Pool(_) | Op::GlobalPool(_)),
            _ => matches!(op, Op::Pool(_)),
        },
        Family::Map => matches!(
            op,
            Op::Unary(_)
                | Op::Binary(_)
                | Op::Where
                | Op::Cast(_)
                | Op::BatchNorm(_)
                | Op::Quantize(_)
                | Op::Dequantize(_)
                | Op::QBinary(_)
                | Op::Requant(_)
                | Op::Lut
        ),
        Family::Copy => match k {
            Kernel::Deinterleave { .. } => matches!(op, Op::Transpose(_)),
            Kernel::RowCopy(_) => matches!(op, Op::Identity),
            _ => matches!(
                op,
                Op::Identity
                    | Op::Reshape(_)
                    | Op::Transpose(_)
                    | Op::Concat(_)
                    | Op::Split(_)
                    | Op::Slice(_)
                    | Op::Expand(_)
                    | Op::Tile(_)
            ),
        },
        Family::Lookup => matches!(
            (k, op),
            (Kernel::PadTable, Op::Pad(_))
                | (Kernel::Gather, Op::Gather(_))
                | (Kernel::ResizeTable, Op::Resize(_))
        ),
        Family::Reduction => matches!(
            (k, op),
            (Kernel::Reduce { .. }, Op::Reduce(_))
                | (Kernel::ArgReduce, Op::ArgReduce(_))
                | (Kernel::Softmax, Op::Softmax(_) | Op::QSoftmax(_))
                | (Kernel::Lrn, Op::Lrn(_))
        ),
    }
}

fn check_epilogue(st: &Step, what: &str, errs: &mut Vec<String>) {
    let integer = matches!(st.op, Op::QConv(_) | Op::QGemm(_));
    if integer != st.requantize().is_some() {
        errs.push(format!(
            "{what}: {}",
            if integer {
                "an integer kernel needs a requantize epilogue"
            } else {
                "only integer kernels requantize"
            }
        ));
    }
    if integer
        && st.epilogue.iter().any(|e| {
            matches!(
                e,
                super::Epilogue::Act(_) | super::Epilogue::Residual { .. }
            )
        })
    {
        errs.push(format!(
            "{what}: an integer kernel takes no activation or residual (its clamp is the activation)"
        ));
    }
    if st.epilogue.is_empty() {
        return;
    }
    if !matches!(
        st.kernel.family(),
        Family::Conv | Family::Depthwise | Family::MatMul
    ) {
        errs.push(format!(
            "{what}: kernel {} takes no epilogue",
            st.kernel.name()
        ));
    }
    let out = st.outputs.first().map(|b| &b.ty);
    for e in &st.epilogue {
        match e {
            super::Epilogue::Bias { input } => match (st.inputs.get(*input), out) {
                (Some(b), Some(y)) if b.ty.len() == y.dims.get(1).copied().unwrap_or(0) => {}
                (Some(b), Some(y)) if matches!(st.op, Op::Gemm(_) | Op::MatMul | Op::QGemm(_)) => {
                    if b.ty.len() != *y.dims.last().unwrap_or(&0) {
                        errs.push(format!("{what}: bias {} does not match {y}", b.ty));
                    }
                }
                (Some(b), Some(y)) => {
                    errs.push(format!("{what}: bias {} does not match {y}", b.ty))
                }
                _ => errs.push(format!("{what}: bias input {input} does not exist")),
            },
            super::Epilogue::Residual { input } => match (st.inputs.get(*input), out) {
                (Some(b), Some(y)) if b.ty == *y => {}
                (Some(b), Some(y)) => errs.push(format!(
                    "{what}: residual {} does not match the output {y}",
                    b.ty
                )),
                _ => errs.push(format!("{what}: residual input {input} does not exist")),
            },
            super::Epilogue::Clamp { lo, hi }
                if lo.partial_cmp(hi) != Some(std::cmp::Ordering::Less) && lo != hi =>
            {
                errs.push(format!("{what}: clamp range [{lo}, {hi}] is empty"))
            }
            super::Epilogue::Requantize { mult, shift, .. } => {
                let channels = match (&st.op, out) {
                    (Op::QGemm(_), Some(y)) => y.dims.last().copied().unwrap_or(0),
                    (_, Some(y)) => y.dims.get(1).copied().unwrap_or(0),
                    _ => 0,
                };
                for (name, k) in [("multiplier", mult), ("shift", shift)] {
                    match st.inputs.get(*k) {
                        Some(b)
                            if b.ty.dtype == crate::DType::I32
                                && (b.ty.len() == 1 || b.ty.len() == channels) => {}
                        Some(b) => errs.push(format!(
                            "{what}: requantization {name} {} must be i32 with 1 or {channels} elements",
                            b.ty
                        )),
                        None => errs.push(format!(
                            "{what}: requantization {name} input {k} does not exist"
                        )),
                    }
                }
            }
            _ => {}
        }
    }
}

fn check_part(st: &Step, what: &str, errs: &mut Vec<String>) {
    let p = &st.part;
    for (name, r) in [
        ("channels", p.channels),
        ("in_channels", p.in_channels),
        ("rows", p.rows),
    ] {
        if let Some((a, b)) = r
            && a >= b
        {
            errs.push(format!("{what}: empty {name} range [{a}, {b})"));
        }
    }
    if let (Some((a, b)), Some(y)) = (p.channels, st.outputs.first()) {
        let have = match st.op {
            Op::Gemm(_) | Op::MatMul => y.ty.dims.last().copied(),
            _ => y.ty.dims.get(1).copied(),
        };
        if have != Some(b - a) {
            errs.push(format!(
                "{what}: channels [{a}, {b}) but the output buffer is {}",
                y.ty
            ));
        }
    }
    if p.accumulate {
        if !matches!(st.kernel.family(), Family::Conv | Family::MatMul) {
            errs.push(format!(
                "{what}: kernel {} cannot accumulate partial sums",
                st.kernel.name()
            ));
        }
        if st.bias().is_some() {
            errs.push(format!(
                "{what}: a bias on an accumulating slice would be added twice"
            ));
        }
        if st.requantize().is_some() {
            errs.push(format!(
                "{what}: an integer kernel stores narrowed values and cannot accumulate partial sums"
            ));
        }
    }
    if p.rows.is_some() {
        errs.push(format!(
            "{what}: kernel {} cannot compute a row range",
            st.kernel.name()
        ));
    }
}

/// A step that is not in place must not read what it writes: its buffers
/// either coincide or do not overlap (the C kernels use `restrict`).
fn check_disjoint(st: &Step, count: usize, what: &str, errs: &mut Vec<String>) {
    // (storage, start, step): the arena, or one unplaced storage.
    let start = |b: &Buffer| -> Option<(Option<usize>, i64)> {
        match b.loc {
            Loc::Temp(k) => Some((Some(k), b.offset as i64)),
            Loc::Arena(o) => Some((None, (o + b.offset) as i64)),
            _ => None,
        }
    };
    for o in &st.outputs {
        let Some((os, o0)) = start(o) else {
            continue;
        };
        for (k, i) in st.inputs.iter().enumerate() {
            if let Some((is, i0)) = start(i)
                && is == os
                && overlap_in_loop(
                    (i0, i.step as i64, i.bytes() as i64),
                    (o0, o.step as i64, o.bytes() as i64),
                    count,
                )
            {
                errs.push(format!(
                    "{what}: input {k} {i} overlaps the output {o} but the step is not in place"
                ));
            }
        }
    }
}

/// Do two byte ranges `[start + it * step, + len)` intersect in some
/// iteration `it < count`?
fn overlap_in_loop(a: (i64, i64, i64), b: (i64, i64, i64), count: usize) -> bool {
    if a.2 == 0 || b.2 == 0 || count == 0 {
        return false;
    }
    // a_start(it) < b_end(it) and b_start(it) < a_end(it): each is
    // `c + d * it > 0`, true on a half-line of iterations.
    let (mut lo, mut hi) = (0i64, count as i64 - 1);
    for (c, d) in [(b.0 + b.2 - a.0, b.1 - a.1), (a.0 + a.2 - b.0, a.1 - b.1)] {
        if d == 0 {
            if c <= 0 {
                return false;
            }
        } else if d > 0 {
            // it > -c / d
            lo = lo.max((-c).div_euclid(d) + 1);
        } else {
            // it < c / -d
            hi = hi.min((c - 1).div_euclid(-d));
        }
    }
    lo <= hi
}
