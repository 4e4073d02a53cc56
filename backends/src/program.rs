//! The lowered program both backends consume: a schedule of steps, each an
//! op with its constant attributes and its buffers, where every buffer is a
//! graph input, a graph output, a weight, or an offset in one arena. The
//! C code and the native object execute exactly this, so the memory report
//! is exact for both.

use std::fmt::Write as _;
use std::sync::Arc;

use nnc_ir::{Op, Tensor, TensorType};

/// Where a buffer's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// Byte offset in the arena.
    Arena(usize),
    /// The caller's input `k` (read-only).
    Input(usize),
    /// The caller's output `k`.
    Output(usize),
    /// Weight `k` (read-only, in flash on an MCU).
    Const(usize),
}

/// A tensor as a step sees it: a location and a type. Views (reshapes) are
/// the same location with another type.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub loc: Loc,
    pub ty: TensorType,
}

impl Buffer {
    pub fn bytes(&self) -> usize {
        self.ty.bytes()
    }
}

/// One kernel invocation.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub inputs: Vec<Buffer>,
    pub outputs: Vec<Buffer>,
    /// Source name (ONNX node names, `+`-joined for fused nodes).
    pub name: String,
    /// The output overwrites an input in place (same location).
    pub in_place: bool,
}

impl Step {
    /// True when some output shares its location with some input.
    pub fn aliases(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| self.inputs.iter().any(|i| i.loc == o.loc))
    }
}

/// A named weight.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub tensor: Arc<Tensor>,
}

/// Memory statistics of the plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanStats {
    /// One buffer per intermediate tensor, no reuse.
    pub naive_bytes: usize,
    /// TFLite Micro's greedy-by-size placement on the plain topological order.
    pub greedy_bytes: usize,
    /// This plan's arena.
    pub arena_bytes: usize,
    /// Bytes of live arena tensors while each step runs.
    pub live_bytes: Vec<usize>,
    /// The step with the most live bytes.
    pub peak_step: usize,
    /// Which schedule the planner chose.
    pub order: String,
    /// Steps computed in place.
    pub in_place_steps: usize,
}

/// A model lowered for code generation.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<(String, TensorType)>,
    pub weights: Vec<Weight>,
    pub steps: Vec<Step>,
    /// Arena size in bytes (a multiple of [`ARENA_ALIGN`]).
    pub arena_bytes: usize,
    pub stats: PlanStats,
}

/// Alignment of the arena and of every buffer in it.
pub const ARENA_ALIGN: usize = 16;

impl Program {
    /// Total bytes of the weights.
    pub fn weight_bytes(&self) -> usize {
        self.weights
            .iter()
            .map(|w| w.tensor.len() * w.tensor.dtype().size())
            .sum()
    }

    /// The plan as text (`nnc dump --plan`).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "program @{}", self.name);
        let _ = writeln!(
            s,
            "  arena {} bytes (greedy-by-size {}, naive {}), weights {} bytes, schedule: {}",
            self.arena_bytes,
            self.stats.greedy_bytes,
            self.stats.naive_bytes,
            self.weight_bytes(),
            self.stats.order
        );
        for (i, (n, t)) in self.inputs.iter().enumerate() {
            let _ = writeln!(s, "  in{i} {t}  \"{n}\"");
        }
        for (i, (n, t)) in self.outputs.iter().enumerate() {
            let _ = writeln!(s, "  out{i} {t}  \"{n}\"");
        }
        let loc = |l: &Loc| match l {
            Loc::Arena(o) => format!("arena+{o}"),
            Loc::Input(k) => format!("in{k}"),
            Loc::Output(k) => format!("out{k}"),
            Loc::Const(k) => format!("w{k}"),
        };
        for (i, st) in self.steps.iter().enumerate() {
            let ins: Vec<String> = st
                .inputs
                .iter()
                .map(|b| format!("{}:{}", loc(&b.loc), b.ty))
                .collect();
            let outs: Vec<String> = st
                .outputs
                .iter()
                .map(|b| format!("{}:{}", loc(&b.loc), b.ty))
                .collect();
            let mut w = nnc_ir::op::attr::AttrWriter::new();
            st.op.write_attrs(&mut w);
            let attrs = if w.is_empty() {
                String::new()
            } else {
                format!(" {{{}}}", w.join())
            };
            let live = self.stats.live_bytes.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "  {i:>3}: {} = {}{attrs} {}{}   ; live {live} B{}  {}",
                outs.join(", "),
                st.op.name(),
                ins.join(", "),
                if st.in_place { " (in place)" } else { "" },
                if i == self.stats.peak_step {
                    " PEAK"
                } else {
                    ""
                },
                st.name
            );
        }
        s
    }
}
