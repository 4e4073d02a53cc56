//! The program verifier: structural checks of a lowered program, every
//! problem collected. Lowering runs it on what it produces, and so can any
//! pass that rewrites a program.

use super::{Buffer, Family, Kernel, Loc, Program, Step};
use crate::error::{IrError, Result};
use crate::op::Op;

pub(super) fn verify(p: &Program) -> Result<()> {
    let mut errs = Vec::new();
    if !p.arena_bytes.is_multiple_of(super::ARENA_ALIGN) {
        errs.push(format!(
            "arena size {} is not a multiple of {}",
            p.arena_bytes,
            super::ARENA_ALIGN
        ));
    }
    for (i, st) in p.steps.iter().enumerate() {
        let what = format!("step {i} ({} `{}`)", st.op.name(), st.name);
        for (k, b) in st.inputs.iter().enumerate() {
            check_loc(p, b, &format!("{what}: input {k}"), false, &mut errs);
        }
        for (k, b) in st.outputs.iter().enumerate() {
            check_loc(p, b, &format!("{what}: output {k}"), true, &mut errs);
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
            check_disjoint(st, &what, &mut errs);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IrError::ProgramVerify(errs))
    }
}

fn check_loc(p: &Program, b: &Buffer, what: &str, output: bool, errs: &mut Vec<String>) {
    // What must fit the location: the buffer's end.
    let bytes = b.offset + b.bytes();
    if !b.offset.is_multiple_of(b.ty.dtype.size().max(1)) {
        errs.push(format!(
            "{what}: offset {} is not a multiple of the {} element size",
            b.offset, b.ty.dtype
        ));
    }
    match b.loc {
        Loc::Arena(o) => {
            if o + bytes > p.arena_bytes {
                errs.push(format!(
                    "{what}: {} bytes at arena+{} overrun the {}-byte arena",
                    b.bytes(),
                    o + b.offset,
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
        _ => {}
    }
    match k.family() {
        Family::Conv | Family::Depthwise => matches!(op, Op::Conv(_) | Op::QConv(_)),
        Family::ConvTranspose => matches!(op, Op::ConvTranspose(_)),
        Family::MatMul => matches!(op, Op::Gemm(_) | Op::MatMul | Op::QGemm(_)),
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
fn check_disjoint(st: &Step, what: &str, errs: &mut Vec<String>) {
    for o in &st.outputs {
        let Some((o0, o1)) = o.arena_range() else {
            continue;
        };
        for (k, i) in st.inputs.iter().enumerate() {
            if let Some((i0, i1)) = i.arena_range()
                && i0 < o1
                && o0 < i1
            {
                errs.push(format!(
                    "{what}: input {k} [{i0}, {i1}) overlaps the output [{o0}, {o1}) but the step is not in place"
                ));
            }
        }
    }
}
