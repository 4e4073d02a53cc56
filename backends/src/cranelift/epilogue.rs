//! The epilogue of convolution and matrix kernels in Cranelift: what
//! happens to an accumulated result before it is stored (activation,
//! residual add, clamp), on scalars or f32x4 vectors, and the in-place
//! form the direct kernels run over a finished row or plane.

use cranelift_codegen::ir::{InstBuilder, Value};
use nnc_ir::DType;
use nnc_ir::op::UnaryOp;
use nnc_ir::program::{Epilogue, Step};

use super::Args;
use super::kb::{F32X4, Kb};
use super::scalar::{self, cl};
use crate::error::Result;

/// A step's epilogue as the native kernels apply it.
#[derive(Clone, Debug)]
pub(crate) struct Epi<'a> {
    items: &'a [Epilogue],
    d: DType,
    /// The output's base and each residual input's: the residual element
    /// of an output address is at the same byte offset from its base.
    out: Value,
    residual: Vec<(usize, Value)>,
    /// Later slice of a partial sum: start from the output, no bias.
    pub accumulate: bool,
}

impl<'a> Epi<'a> {
    pub fn new(kb: &mut Kb, st: &'a Step, args: &Args) -> Result<Epi<'a>> {
        let mut residual = Vec::new();
        for e in &st.epilogue {
            if let Epilogue::Residual { input } = e {
                residual.push((*input, args.x(kb, *input)?));
            }
        }
        Ok(Epi {
            items: &st.epilogue,
            d: st.outputs.first().map(|b| b.ty.dtype).unwrap_or(DType::F32),
            out: args.outs[0],
            residual,
            accumulate: st.part.accumulate,
        })
    }

    /// The input slot of the bias.
    pub fn bias(&self) -> Option<usize> {
        self.items.iter().find_map(|e| match e {
            Epilogue::Bias { input } => Some(*input),
            _ => None,
        })
    }

    /// Nothing happens after the accumulation.
    pub fn is_identity(&self) -> bool {
        self.items
            .iter()
            .all(|e| matches!(e, Epilogue::Bias { .. }))
    }

    /// The epilogue reads a residual input (so it must be applied where
    /// each element's address is known).
    pub fn has_residual(&self) -> bool {
        !self.residual.is_empty()
    }

    /// The stored value of result `v` (a scalar or an f32x4 of contiguous
    /// elements) bound for `addr + off` in the output.
    pub fn apply(&self, kb: &mut Kb, v: Value, addr: Value, off: i64) -> Result<Value> {
        let mut r = v;
        for it in self.items {
            r = match it {
                Epilogue::Bias { .. } => r,
                Epilogue::Act(u) => act(kb, u, r, self.d)?,
                Epilogue::Clamp { lo, hi } => {
                    act(kb, &UnaryOp::Clip { min: *lo, max: *hi }, r, self.d)?
                }
                Epilogue::Requantize { .. } => {
                    return Err(crate::error::BackendError::Other(
                        "a requantizing epilogue on a float kernel".into(),
                    ));
                }
                Epilogue::Residual { input } => {
                    let rb = self
                        .residual
                        .iter()
                        .find(|(k, _)| k == input)
                        .map(|(_, b)| *b)
                        .ok_or_else(|| {
                            crate::error::BackendError::Other(format!(
                                "residual input {input} has no buffer"
                            ))
                        })?;
                    let delta = kb.b.ins().isub(addr, self.out);
                    let ra = kb.b.ins().iadd(rb, delta);
                    let ty = kb.ty(r);
                    let x = kb.load(ty, ra, off);
                    if self.d.is_float() {
                        kb.b.ins().fadd(r, x)
                    } else {
                        kb.b.ins().iadd(r, x)
                    }
                }
            };
        }
        Ok(r)
    }

    /// Applies the epilogue in place over `n` contiguous elements at `ptr`.
    pub fn in_place(&self, kb: &mut Kb, ptr: Value, n: usize) -> Result<()> {
        if self.is_identity() {
            return Ok(());
        }
        let d = self.d;
        let n = n as i64;
        let mut done = 0;
        if d == DType::F32 {
            done = n / 4 * 4;
            kb.for_range(0, done, 4, |kb, i| {
                let a = kb.at(ptr, i, 4);
                let v = kb.load(F32X4, a, 0);
                let r = self.apply(kb, v, a, 0)?;
                kb.store(r, a, 0);
                Ok(())
            })?;
        }
        kb.for_range(done, n, 1, |kb, i| {
            let a = kb.at(ptr, i, d.size() as i64);
            let v = kb.load(cl(d), a, 0);
            let r = self.apply(kb, v, a, 0)?;
            kb.store(r, a, 0);
            Ok(())
        })
    }
}

/// An activation on a scalar or an f32x4 (lane by lane when it has no
/// vector form).
fn act(kb: &mut Kb, u: &UnaryOp, v: Value, d: DType) -> Result<Value> {
    if kb.ty(v) == F32X4 && !scalar::unary_vectorizes(u) {
        return kb.per_lane(v, |kb, s| scalar::unary_float(kb, u, s));
    }
    scalar::unary(kb, u, v, d)
}
