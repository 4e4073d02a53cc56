//! Zero-copy concatenation: producers write straight into their part of a
//! concatenation's output, and the concatenation step disappears.
//!
//! A concatenation along an axis whose leading dimensions are all 1 lays
//! each input out as one contiguous block of the output. When every input
//! is arena storage that exactly one earlier step writes whole and only the
//! concatenation reads, each producer's output becomes a view of its block
//! (the output's location at the block's byte offset), and the copy is
//! gone: the inputs never exist beside the output, which saves their bytes
//! at the peak and the time of the copy. The result is bit-identical.

use std::collections::HashMap;

use nnc_ir::Op;
use nnc_ir::program::{Buffer, Loc, Program};

/// What eliding concatenations did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Elided {
    /// Concatenation steps removed.
    pub steps: usize,
    /// Bytes those steps copied per inference.
    pub copied_bytes: usize,
}

/// Every touch of every arena storage: storage -> (step, writes it).
fn touches(p: &Program) -> HashMap<usize, Vec<(usize, bool)>> {
    let mut t: HashMap<usize, Vec<(usize, bool)>> = HashMap::new();
    for (s, st) in p.steps.iter().enumerate() {
        for b in &st.inputs {
            if let Loc::Temp(k) = b.loc {
                t.entry(k).or_default().push((s, false));
            }
        }
        for b in &st.outputs {
            if let Loc::Temp(k) = b.loc {
                t.entry(k).or_default().push((s, true));
            }
        }
    }
    t
}

/// The input storage of concatenation step `s` and where each block goes,
/// if the step can be elided.
fn plan(
    p: &Program,
    s: usize,
    t: &HashMap<usize, Vec<(usize, bool)>>,
) -> Option<Vec<(usize, usize)>> {
    let st = &p.steps[s];
    let Op::Concat(a) = &st.op else { return None };
    if !p.loops.is_empty() || st.outputs.len() != 1 || st.in_place {
        return None;
    }
    let y = &st.outputs[0];
    if y.offset != 0 || y.step != 0 || y.ty.dims[..a.axis].iter().any(|&d| d != 1) {
        return None;
    }
    if matches!(y.loc, Loc::Input(_) | Loc::Const(_)) {
        return None;
    }
    let mut blocks = Vec::with_capacity(st.inputs.len());
    let mut off = 0;
    for x in &st.inputs {
        let Loc::Temp(k) = x.loc else { return None };
        if x.offset != 0 || x.step != 0 || Loc::Temp(k) == y.loc {
            return None;
        }
        if blocks.iter().any(|&(j, _)| j == k) {
            return None;
        }
        // One whole write by a plain earlier step, then this read only.
        let touch = t.get(&k)?;
        let [(w, true), (r, false)] = touch.as_slice() else {
            return None;
        };
        let producer = &p.steps[*w];
        if *r != s
            || producer.in_place
            || producer.part.accumulate
            || producer.outputs.len() != 1
            || producer.outputs[0].offset != 0
            || producer.outputs[0].ty.bytes() != x.ty.bytes()
            || producer.inputs.iter().any(|b| b.loc == y.loc)
        {
            return None;
        }
        blocks.push((k, off));
        off += x.ty.bytes();
    }
    (off == y.ty.bytes()).then_some(blocks)
}

/// Elides every concatenation of an unplaced program that can be (see the
/// module documentation).
pub fn elide(p: &mut Program) -> Elided {
    let mut done = Elided::default();
    loop {
        let t = touches(p);
        let Some((s, blocks)) = (0..p.steps.len()).find_map(|s| plan(p, s, &t).map(|b| (s, b)))
        else {
            return done;
        };
        let y = p.steps[s].outputs[0].clone();
        for (k, off) in blocks {
            for st in &mut p.steps {
                for b in st.inputs.iter_mut().chain(st.outputs.iter_mut()) {
                    if b.loc == Loc::Temp(k) {
                        *b = Buffer {
                            loc: y.loc,
                            offset: off,
                            ty: b.ty.clone(),
                            step: 0,
                        };
                    }
                }
            }
        }
        done.steps += 1;
        done.copied_bytes += y.ty.bytes();
        p.steps.remove(s);
    }
}
