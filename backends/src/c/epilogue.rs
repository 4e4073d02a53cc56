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
}

impl<'a> Epi<'a> {
    pub fn of(st: &'a Step) -> Epi<'a> {
        let d = st.outputs.first().map(|b| b.ty.dtype).unwrap_or(DType::F32);
        Epi {
            items: &st.epilogue,
            d,
            accumulate: st.part.accumulate,
            extra_bias: None,
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

    /// The stored value of result `v` whose output element is at the C
    /// pointer expression `at` (into `out0`): each item in order.
    pub fn apply(&self, v: &str, at: &str) -> String {
        let mut e = v.to_string();
        for it in self.items {
            e = match it {
                Epilogue::Bias { .. } => e,
                Epilogue::Act(u) => unary_expr(u, &e, self.d),
                Epilogue::Residual { input } => format!("({e} + in{input}[({at}) - out0])"),
                Epilogue::Clamp { lo, hi } => {
                    unary_expr(&UnaryOp::Clip { min: *lo, max: *hi }, &e, self.d)
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
}
