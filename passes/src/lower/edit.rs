//! A program transform computed but not yet applied: a range of steps
//! replaced by a body of new ones, with the loops they add and one storage
//! renamed in the steps after them.
//!
//! The partition search weighs hundreds of candidate chains per round.
//! Cloning the program for each (every step with its buffers and op
//! attributes) was most of the search's time; an [`Edit`] is measured
//! against the unchanged program ([`Edit::measure`]) and applied only to
//! the candidates the search keeps ([`Edit::apply`]).

use nnc_ir::program::{Buffer, Loc, Loop, Program, Step};

use super::plan::{Placement, overwrites, place};

/// Steps `first..=last` of a program replaced by `body`.
#[derive(Clone, Debug)]
pub struct Edit {
    pub first: usize,
    pub last: usize,
    pub body: Vec<Step>,
    /// Loops over body steps, in program indices after the edit.
    pub loops: Vec<Loop>,
    /// Storage `from` is `to` in every step after the body (an output
    /// moved over a dying input).
    pub rename: Option<(Loc, Loc)>,
}

impl Edit {
    /// Steps the program gains (or loses, negative).
    fn shift(&self) -> isize {
        self.body.len() as isize - (self.last + 1 - self.first) as isize
    }

    /// The program's loops after the edit.
    fn loops_after(&self, p: &Program) -> Vec<Loop> {
        let d = self.shift();
        let mut loops: Vec<Loop> = p
            .loops
            .iter()
            .map(|l| {
                let mut l = *l;
                if l.first > self.last {
                    l.first = (l.first as isize + d) as usize;
                }
                l
            })
            .chain(self.loops.iter().copied())
            .collect();
        loops.sort_by_key(|l| l.first);
        loops
    }

    /// Applies the edit.
    pub fn apply(self, p: &mut Program) {
        p.loops = self.loops_after(p);
        let after = self.first + self.body.len();
        p.steps.splice(self.first..=self.last, self.body);
        if let Some((from, to)) = self.rename {
            for st in &mut p.steps[after..] {
                for b in st.inputs.iter_mut().chain(st.outputs.iter_mut()) {
                    if b.loc == from {
                        b.loc = to;
                    }
                }
            }
        }
        p.stats.live_bytes.clear();
    }

    /// The placement of `p` with the edit applied, without building it:
    /// the same as `plan::measure` of the edited program.
    pub fn measure(&self, p: &Program) -> Placement {
        let renamed = |bs: &[Buffer]| -> Vec<Buffer> {
            bs.iter()
                .map(|b| match self.rename {
                    Some((from, to)) if b.loc == from => Buffer {
                        loc: to,
                        ..b.clone()
                    },
                    _ => b.clone(),
                })
                .collect()
        };
        let touches = |st: &Step| {
            self.rename
                .is_some_and(|(from, _)| st.inputs.iter().chain(&st.outputs).any(|b| b.loc == from))
        };
        // Owned copies of the few later steps that read or write the
        // renamed storage.
        let tail = &p.steps[self.last + 1..];
        let copies: Vec<Option<(Vec<Buffer>, Vec<Buffer>)>> = tail
            .iter()
            .map(|st| touches(st).then(|| (renamed(&st.inputs), renamed(&st.outputs))))
            .collect();
        fn view(st: &Step) -> (&[Buffer], &[Buffer], bool) {
            (st.inputs.as_slice(), st.outputs.as_slice(), overwrites(st))
        }
        let mut access: Vec<(&[Buffer], &[Buffer], bool)> =
            Vec::with_capacity(p.steps.len() + self.body.len());
        access.extend(p.steps[..self.first].iter().map(view));
        access.extend(self.body.iter().map(view));
        for (st, c) in tail.iter().zip(&copies) {
            access.push(match c {
                Some((i, o)) => (i.as_slice(), o.as_slice(), overwrites(st)),
                None => view(st),
            });
        }
        place(&access, &self.loops_after(p))
    }
}

#[cfg(test)]
mod tests {
    use nnc_ir::program::{Kernel, Target};
    use nnc_ir::{DType, Op, TensorType};

    use super::*;
    use crate::lower::plan::measure;

    fn copy(from: Loc, to: Loc, name: &str) -> Step {
        let ty = TensorType::new(DType::F32, vec![1, 8, 6, 6]);
        Step {
            op: Op::Identity,
            kernel: Kernel::Copy,
            epilogue: vec![],
            part: Default::default(),
            inputs: vec![Buffer::new(from, ty.clone())],
            outputs: vec![Buffer::new(to, ty)],
            name: name.into(),
            in_place: false,
        }
    }

    /// A measured edit is what measuring the edited program gives, and
    /// applying it is what splicing by hand gives.
    #[test]
    fn measuring_an_edit_matches_measuring_its_result() {
        let t = |k| Loc::Temp(k);
        let ty = TensorType::new(DType::F32, vec![1, 8, 6, 6]);
        let p = Program {
            name: "t".into(),
            target: Target::default(),
            inputs: vec![("x".into(), ty.clone())],
            outputs: vec![("y".into(), ty)],
            weights: vec![],
            steps: vec![
                copy(Loc::Input(0), t(0), "a"),
                copy(t(0), t(1), "b"),
                copy(t(1), t(2), "c"),
                copy(t(2), t(3), "d"),
                copy(t(3), Loc::Output(0), "e"),
            ],
            loops: vec![Loop {
                first: 3,
                len: 1,
                count: 1,
            }],
            arena_bytes: 0,
            stats: Default::default(),
        };
        // Step c written twice (a loop of two) into a fresh storage that
        // step d then reads; the input of c dies with it, so the rename
        // changes what may share.
        let mut c = p.steps[2].clone();
        c.outputs[0].loc = t(9);
        let e = Edit {
            first: 2,
            last: 2,
            body: vec![c.clone(), c],
            loops: vec![Loop {
                first: 2,
                len: 2,
                count: 1,
            }],
            rename: Some((t(2), t(9))),
        };
        let predicted = e.measure(&p);
        let mut q = p.clone();
        e.apply(&mut q);
        assert_eq!(q.steps.len(), 6);
        assert_eq!(q.steps[4].inputs[0].loc, t(9));
        assert_eq!(
            q.loops.iter().map(|l| (l.first, l.len)).collect::<Vec<_>>(),
            [(2, 2), (4, 1)]
        );
        let m = measure(&q);
        assert_eq!(predicted.arena, m.arena);
        assert_eq!(predicted.live, m.live);
        assert_eq!(predicted.offsets, m.offsets);
        assert_eq!(predicted.segments, m.segments);
        assert_ne!(measure(&p).live, m.live);
    }
}
