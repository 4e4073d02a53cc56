//! The epilogue of convolution and matrix kernels in C: what happens to an
//! accumulated result before it is stored (activation, residual add,
//! clamp), and how a partial-sum slice starts from the output it adds to.

use nnc_ir::DType;
use nnc_ir::op::UnaryOp;
use nnc_ir::program::{Epilogue, Step};

use super::elementwise::unary_expr;
use super::writer::lit;

/// A step's epilogue as the C kernels apply it.
#[derive(Debug, Clone, Copy)]
pub struct Epi<'a> {
    items: &'a [Epilogue],
    d: DType,
    /// Later slice of a partial sum: start from the output, no bias.
    pub accumulate: bool,
    /// A bias input outside the epilogue list (a transposed convolution's).
    extra_bias: Option<usize>,
    /// Activations call the vectorizable `nnc_expf` (host targets).
    fast_exp: bool,
}

impl<'a> Epi<'a> {
    pub fn of(st: &'a Step) -> Epi<'a> {
        let d = st.outputs.first().map(|b| b.ty.dtype).unwrap_or(DType::F32);
        Epi {
            items: &st.epilogue,
            d,
            accumulate: st.part.accumulate,
            extra_bias: None,
            fast_exp: false,
        }
    }

    /// The same epilogue, its activations with `nnc_expf` when `on`.
    pub fn fast_exp(self, on: bool) -> Epi<'a> {
        Epi {
            fast_exp: on,
            ..self
        }
    }

    /// The same epilogue with the bias in input `k` (for kernels whose op
    /// carries its bias as an operand).
    pub fn with_bias(self, k: usize) -> Epi<'a> {
        Epi {
            extra_bias: Some(k),
            ..self
        }
    }

    /// True when the kernel adds the bias input `in{k}`.
    pub fn bias(&self) -> Option<usize> {
        self.items
            .iter()
            .find_map(|e| match e {
                Epilogue::Bias { input } => Some(*input),
                _ => None,
            })
            .or(self.extra_bias)
    }

    /// True when nothing happens after the accumulation.
    pub fn is_identity(&self) -> bool {
        self.items
            .iter()
            .all(|e| matches!(e, Epilogue::Bias { .. }))
    }

    /// True when every item is a function of the value alone (no residual
    /// read at the output's position, no partial sum): it can be applied
    /// wherever the value is, before the store.
    pub fn is_pointwise(&self) -> bool {
        !self.accumulate
            && self
                .items
                .iter()
                .all(|e| !matches!(e, Epilogue::Residual { .. }))
    }

    /// The stored value of result `v` whose output element is at the C
    /// pointer expression `at` (into `out0`): each item in order.
    pub fn apply(&self, v: &str, at: &str) -> String {
        let mut e = v.to_string();
        for it in self.items {
            e = match it {
                Epilogue::Bias { .. } => e,
                Epilogue::Act(u) => unary_expr(u, &e, self.d, self.fast_exp),
                Epilogue::Residual { input } => format!("({e} + in{input}[({at}) - out0])"),
                Epilogue::Clamp { lo, hi } => {
                    unary_expr(&UnaryOp::Clip { min: *lo, max: *hi }, &e, self.d, false)
                }
                Epilogue::Requantize { .. } => {
                    unreachable!("integer epilogues are rendered by store_int")
                }
            };
        }
        e
    }

    /// The initial accumulator of the output element at `at` in channel
    /// `o` (a C expression): the output itself for an accumulating slice,
    /// else the bias or zero.
    pub fn init(&self, at: &str, o: &str) -> String {
        if self.accumulate {
            return format!("*({at})");
        }
        match self.bias() {
            Some(k) => format!("in{k}[{o}]"),
            None => lit(0.0, self.d),
        }
    }

    /// The initial int32 accumulator of an integer kernel for output
    /// channel `ch`: the bias or zero.
    pub fn init_int(&self, ch: &str) -> String {
        match self.bias() {
            Some(k) => format!("in{k}[{ch}]"),
            None => "0".into(),
        }
    }

    /// The stored value of an integer kernel's int32 accumulator `acc` for
    /// output channel `ch` (an int32 C expression in the output's range):
    /// requantization, then the clamp, each item in order.
    pub fn store_int(&self, st: &Step, acc: &str, ch: &str) -> String {
        let per = |k: usize| {
            if st.inputs.get(k).is_some_and(|b| b.ty.len() > 1) {
                format!("in{k}[{ch}]")
            } else {
                format!("in{k}[0]")
            }
        };
        let mut e = format!("(int64_t){acc}");
        let mut clamped = false;
        for it in self.items {
            match it {
                Epilogue::Requantize {
                    mult,
                    shift,
                    zero_point,
                } => {
                    e = format!(
                        "((int64_t){zero_point} + nnc_rq((int32_t)({e}), {}, {}))",
                        per(*mult),
                        per(*shift)
                    );
                    clamped = false;
                }
                Epilogue::Clamp { lo, hi } => {
                    e = format!("(int64_t)nnc_sat({e}, {}, {})", *lo as i64, *hi as i64);
                    clamped = true;
                }
                Epilogue::Bias { .. } => {}
                Epilogue::Act(_) | Epilogue::Residual { .. } => {
                    unreachable!("integer kernels fold activations into the clamp")
                }
            }
        }
        if !clamped {
            let (lo, hi) = self
                .d
                .int_range()
                .unwrap_or((i32::MIN as i64, i32::MAX as i64));
            e = format!("(int64_t)nnc_sat({e}, {lo}, {hi})");
        }
        e
    }
}
