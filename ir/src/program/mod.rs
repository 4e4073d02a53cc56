//! The lowered program: the second IR level, below the graph and above the
//! code generators. The graph says *what* is computed; the program says
//! *how*: a schedule of steps, each running one [`Kernel`] (with its tile
//! shape and other parameters, an [`Epilogue`] list and the [`Part`] of the
//! op's output it covers) on buffers that are graph inputs, graph outputs,
//! weights, or offsets in one arena. Lowering, kernel selection and memory
//! planning are passes in `nnc-passes`; the C and Cranelift backends only
//! render a program, so both execute exactly the same plan.

pub mod geometry;
pub mod kernel;
pub mod phases;
pub mod qdot;
pub mod rowband;
pub mod spec;
pub mod target;
pub mod tiles;
mod verify;
pub mod winograd;

use std::fmt::Write as _;
use std::sync::Arc;

use crate::dtype::TensorType;
use crate::op::Op;
use crate::tensor::Tensor;

pub use geometry::{Axis, Window};
pub use kernel::{
    ColRange, ConvBlocked, ConvRowTiles, DepthwiseChannelsLast, DepthwisePairs, DepthwiseRows,
    Epilogue, Family, GlobalPool, IntTiles, Kernel, MapExpr, MapKernel, MapOp, MatMulPacked,
    Operand, Part, PoolRows, QConvDot, QDwDot, QGemmDot, RowCopy, Winograd,
};
pub use phases::Phases;
pub use spec::{TARGET_GRAMMAR, TargetSpec, TargetSpecError};
pub use target::{Arch, Codegen, IntDot, Target};

/// Alignment of the arena and of every buffer the planner places in it.
pub const ARENA_ALIGN: usize = 16;

/// Where a buffer's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// Byte offset in the arena.
    Arena(usize),
    /// Arena storage `k`, not placed yet: programs that passes transform
    /// refer to storage by number, and placement ([`Program::place`] in
    /// `nnc-passes`) gives every storage its offset.
    Temp(usize),
    /// The caller's input `k` (read-only).
    Input(usize),
    /// The caller's output `k`.
    Output(usize),
    /// Weight `k` (read-only, in flash on an MCU).
    Const(usize),
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Arena(o) => write!(f, "arena+{o}"),
            Loc::Temp(k) => write!(f, "t{k}"),
            Loc::Input(k) => write!(f, "in{k}"),
            Loc::Output(k) => write!(f, "out{k}"),
            Loc::Const(k) => write!(f, "w{k}"),
        }
    }
}

/// A tensor as a step sees it: a location, a byte offset into it, and a
/// type. Views (reshapes) are the same location with another type; a part
/// of a tensor (the channels of one slice, with batch 1) is the same
/// location at an offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub loc: Loc,
    /// Bytes from the start of the location (0 for whole tensors).
    pub offset: usize,
    pub ty: TensorType,
    /// Inside a loop, bytes the buffer moves per iteration (iteration `it`
    /// is at `offset + it * step`); 0 elsewhere.
    pub step: usize,
}

impl Buffer {
    /// The whole tensor at `loc`.
    pub fn new(loc: Loc, ty: TensorType) -> Buffer {
        Buffer {
            loc,
            offset: 0,
            ty,
            step: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.ty.bytes()
    }

    /// Byte range in the arena, for arena buffers.
    pub fn arena_range(&self) -> Option<(usize, usize)> {
        match self.loc {
            Loc::Arena(o) => Some((o + self.offset, o + self.offset + self.bytes())),
            _ => None,
        }
    }

    /// True when both are the same bytes (location, offset and size).
    pub fn same_place(&self, other: &Buffer) -> bool {
        self.loc == other.loc
            && self.offset == other.offset
            && self.step == other.step
            && self.bytes() == other.bytes()
    }

    /// Bytes from the start of the location to the end of the buffer in
    /// its last iteration (of `count`).
    pub fn extent(&self, count: usize) -> usize {
        self.offset + count.saturating_sub(1) * self.step + self.bytes()
    }
}

impl std::fmt::Display for Buffer {
    /// `arena+512:f32[1,8]`, `in0+64:f32[1,4]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = if self.step > 0 {
            format!("+{}*it", self.step)
        } else {
            String::new()
        };
        match (self.loc, self.offset) {
            (Loc::Arena(o), off) => write!(f, "arena+{}{step}:{}", o + off, self.ty),
            (l, 0) if step.is_empty() => write!(f, "{l}:{}", self.ty),
            (l, off) => write!(f, "{l}+{off}{step}:{}", self.ty),
        }
    }
}

/// One kernel invocation.
#[derive(Clone, Debug)]
pub struct Step {
    /// The graph operation (its fused activation lives in `epilogue`).
    pub op: Op,
    /// How it is computed.
    pub kernel: Kernel,
    /// What the kernel does to each result before storing it (convolution
    /// and matrix kernels).
    pub epilogue: Vec<Epilogue>,
    /// Which part of the op's output this step computes.
    pub part: Part,
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
        self.outputs.iter().any(|o| {
            self.inputs
                .iter()
                .any(|i| i.loc == o.loc && i.offset == o.offset)
        })
    }

    /// The fused activations of the epilogue, in order.
    pub fn acts(&self) -> impl Iterator<Item = &crate::op::UnaryOp> {
        self.epilogue.iter().filter_map(|e| match e {
            Epilogue::Act(u) => Some(u),
            _ => None,
        })
    }

    /// The input slot of the bias, when the epilogue has one.
    pub fn bias(&self) -> Option<usize> {
        self.epilogue.iter().find_map(|e| match e {
            Epilogue::Bias { input } => Some(*input),
            _ => None,
        })
    }

    /// The requantization of an integer kernel: the input slots of its
    /// multipliers and shifts, and the output zero point.
    pub fn requantize(&self) -> Option<(usize, usize, i32)> {
        self.epilogue.iter().find_map(|e| match e {
            Epilogue::Requantize {
                mult,
                shift,
                zero_point,
            } => Some((*mult, *shift, *zero_point)),
            _ => None,
        })
    }

    /// The input slot of a residual add, when the epilogue has one.
    pub fn residual(&self) -> Option<usize> {
        self.epilogue.iter().find_map(|e| match e {
            Epilogue::Residual { input } => Some(*input),
            _ => None,
        })
    }
}

/// Steps `first .. first + len` run `count` times in a row. Inside a loop
/// the steps are the same every iteration; only row copies
/// ([`Kernel::RowCopy`]) read the iteration number, to move along the rows
/// of a tensor (streamed execution).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loop {
    pub first: usize,
    pub len: usize,
    pub count: usize,
}

impl Loop {
    /// One past the last step of the body.
    pub fn end(&self) -> usize {
        self.first + self.len
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
    /// The arena before partial execution (equal to `arena_bytes` when no
    /// chain streams).
    pub unpartitioned_bytes: usize,
    /// The chains that run streamed, in the order the search chose them.
    pub chains: Vec<ChainStat>,
    /// Every live piece of arena storage, by first step: what the memory
    /// picture draws and what a missed budget names.
    pub buffers: Vec<PlacedBuffer>,
    /// What channel split did, when the memory goal asked for it.
    pub channel_split: Option<ChannelSplitStat>,
}

/// Channel split (sliced chains chosen by the planner), tried before
/// partial execution and kept only when the final arena is smaller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelSplitStat {
    /// The chains split (in the program when `kept`).
    pub splits: Vec<SplitStat>,
    /// Sliced alternatives considered.
    pub candidates: usize,
    /// The final arena without channel split, and with it (when some
    /// split lowered the planned arena and the split program was lowered).
    pub arena_without: usize,
    pub arena_with: Option<usize>,
    /// The split program was kept (its arena is smaller).
    pub kept: bool,
    /// Multiply-accumulates (convolutions, pooling...) without and with
    /// the split; the split adds only the k - 1 partial-sum additions.
    pub macs_without: u64,
    pub macs_with: u64,
    /// Time the e-graph rules, the memory-aware extraction and the second
    /// lowering took, and of that the rules and extraction alone.
    pub millis: f64,
    pub extract_millis: f64,
}

impl ChannelSplitStat {
    /// One line: what was split and which arena was kept.
    pub fn summary(&self) -> String {
        match (self.arena_with, self.kept) {
            (Some(w), true) => format!(
                "channel split: {} chain(s) split, arena {} bytes with, {} without (kept), MACs {} -> {}",
                self.splits.len(),
                w,
                self.arena_without,
                self.macs_without,
                self.macs_with
            ),
            (Some(w), false) => format!(
                "channel split: not kept ({} chain(s) split give {} bytes, {} without)",
                self.splits.len(),
                w,
                self.arena_without
            ),
            (None, _) => format!(
                "channel split: none lowers the planned arena ({} alternative(s) tried)",
                self.candidates
            ),
        }
    }
}

/// One split chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplitStat {
    /// Source names of its ops, producer first.
    pub names: Vec<String>,
    /// `place` (slices concatenated) or `accumulate` (partial sums added).
    pub kind: String,
    pub slices: usize,
}

/// A piece of arena storage holding one value over a range of steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacedBuffer {
    /// Which storage (several values may share one in turn).
    pub storage: usize,
    pub offset: usize,
    pub bytes: usize,
    /// First and last step it is live at (inclusive).
    pub first: usize,
    pub last: usize,
    /// The source name of the step that starts it.
    pub name: String,
}

impl PlanStats {
    /// The buffers live while step `s` runs, largest first.
    pub fn live_at(&self, s: usize) -> Vec<&PlacedBuffer> {
        let mut v: Vec<&PlacedBuffer> = self
            .buffers
            .iter()
            .filter(|b| b.first <= s && s <= b.last)
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.offset.cmp(&b.offset)));
        v
    }
}

/// One chain of steps that runs streamed (row by row).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainStat {
    /// The ops and source names of its steps, first to last.
    pub ops: Vec<String>,
    pub names: Vec<String>,
    /// Its output overwrites a dying input.
    pub in_place: bool,
    /// Bytes its row copies move per inference.
    pub copied_bytes: usize,
    /// Column tiles it runs in (1: whole rows), and the multiply-accumulates
    /// their halos repeat.
    pub tiles: usize,
    pub extra_macs: u64,
    /// The arena after streaming it.
    pub arena_after: usize,
}

/// A model lowered for code generation.
#[derive(Clone, Debug)]
pub struct Program {
    /// The model's name (for comments; code uses the identifier the
    /// backend is given).
    pub name: String,
    /// What the kernels were selected for.
    pub target: Target,
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<(String, TensorType)>,
    pub weights: Vec<Weight>,
    pub steps: Vec<Step>,
    /// Loops over step ranges (sorted, not nested, not overlapping).
    pub loops: Vec<Loop>,
    /// Arena size in bytes (a multiple of [`ARENA_ALIGN`]).
    pub arena_bytes: usize,
    pub stats: PlanStats,
}

impl Program {
    /// Total bytes of the weights.
    pub fn weight_bytes(&self) -> usize {
        self.weights
            .iter()
            .map(|w| w.tensor.len() * w.tensor.dtype().size())
            .sum()
    }

    /// The weight values a buffer reads, when it is (a part of) a weight:
    /// the weight itself, or the elements at the buffer's offset shaped as
    /// the buffer.
    pub fn weight_view(&self, b: &Buffer) -> Option<std::borrow::Cow<'_, Tensor>> {
        let Loc::Const(w) = b.loc else {
            return None;
        };
        let t = self.weights.get(w)?.tensor.as_ref();
        if b.offset == 0 && t.dims() == b.ty.dims.as_slice() && t.dtype() == b.ty.dtype {
            return Some(std::borrow::Cow::Borrowed(t));
        }
        let es = t.dtype().size().max(1);
        let start = b.offset / es;
        let idx: Vec<usize> = (start..start + b.ty.len()).collect();
        if idx.last().is_some_and(|&i| i >= t.len()) || t.dtype() != b.ty.dtype {
            return None;
        }
        Tensor::new(b.ty.dims.clone(), t.data().gather(&idx))
            .ok()
            .map(std::borrow::Cow::Owned)
    }

    /// Checks the program's structure: every location exists and fits,
    /// every kernel belongs to its op's family, epilogue inputs exist,
    /// parts are consistent, and a step's inputs and outputs either
    /// coincide or do not overlap. Collects every problem.
    pub fn verify(&self) -> crate::Result<()> {
        verify::verify(self, true)
    }

    /// [`Program::verify`] for a program whose arena storage is not placed
    /// yet ([`Loc::Temp`]), as transforms see it.
    pub fn verify_unplaced(&self) -> crate::Result<()> {
        verify::verify(self, false)
    }

    /// The plan as text (`nnc dump --plan`): every step with its buffers,
    /// kernel, epilogue, part, the live bytes while it runs, and the peak.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "program @{}  ; target {}", self.name, self.target);
        let _ = writeln!(
            s,
            "  arena {} bytes (greedy-by-size {}, naive {}), weights {} bytes, schedule: {}",
            self.arena_bytes,
            self.stats.greedy_bytes,
            self.stats.naive_bytes,
            self.weight_bytes(),
            self.stats.order
        );
        if !self.stats.chains.is_empty() {
            let _ = writeln!(
                s,
                "  partial execution: arena {} bytes before, {} streamed chain(s), {} bytes of row copies",
                self.stats.unpartitioned_bytes,
                self.stats.chains.len(),
                self.stats
                    .chains
                    .iter()
                    .map(|c| c.copied_bytes)
                    .sum::<usize>()
            );
            for c in &self.stats.chains {
                let _ = writeln!(
                    s,
                    "    stream {} ({} steps{}{}): `{}` .. `{}`, arena then {} bytes",
                    c.ops.join(" > "),
                    c.ops.len(),
                    if c.in_place { ", in place" } else { "" },
                    if c.tiles > 1 {
                        format!(", {} column tiles, {} extra MACs", c.tiles, c.extra_macs)
                    } else {
                        String::new()
                    },
                    c.names.first().map(String::as_str).unwrap_or(""),
                    c.names.last().map(String::as_str).unwrap_or(""),
                    c.arena_after
                );
            }
        }
        // Only a split program says so (`nnc info` reports every attempt).
        if let Some(cs) = self.stats.channel_split.as_ref().filter(|c| c.kept) {
            let _ = writeln!(s, "  {}", cs.summary());
            for c in &cs.splits {
                let _ = writeln!(
                    s,
                    "    split {} x{}: `{}` .. `{}`",
                    c.kind,
                    c.slices,
                    c.names.first().map(String::as_str).unwrap_or(""),
                    c.names.last().map(String::as_str).unwrap_or("")
                );
            }
        }
        for (i, (n, t)) in self.inputs.iter().enumerate() {
            let _ = writeln!(s, "  in{i} {t}  \"{n}\"");
        }
        for (i, (n, t)) in self.outputs.iter().enumerate() {
            let _ = writeln!(s, "  out{i} {t}  \"{n}\"");
        }
        for (i, st) in self.steps.iter().enumerate() {
            if let Some(l) = self.loops.iter().find(|l| l.first == i) {
                let _ = writeln!(s, "  loop x{} {{", l.count);
            }
            let inside = self.loop_of(i).is_some();
            let _ = writeln!(
                s,
                "  {}{}",
                if inside { "  " } else { "" },
                self.step_line(i, st)
            );
            if self.loops.iter().any(|l| l.end() == i + 1) {
                let _ = writeln!(s, "  }}");
            }
        }
        s
    }

    /// The loop whose body holds step `i`.
    pub fn loop_of(&self, i: usize) -> Option<&Loop> {
        self.loops.iter().find(|l| l.first <= i && i < l.end())
    }

    /// One step of [`Program::dump`].
    pub fn step_line(&self, i: usize, st: &Step) -> String {
        let bufs = |bs: &[Buffer]| -> String {
            bs.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut w = crate::op::attr::AttrWriter::new();
        st.op.write_attrs(&mut w);
        let attrs = if w.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", w.join())
        };
        let mut how = format!("kernel={}", st.kernel);
        if !st.epilogue.is_empty() {
            let e: Vec<String> = st.epilogue.iter().map(|e| e.to_string()).collect();
            let _ = write!(how, " epilogue=[{}]", e.join(","));
        }
        if !st.part.is_whole() {
            let _ = write!(how, " {}", st.part);
        }
        let live = self.stats.live_bytes.get(i).copied().unwrap_or(0);
        format!(
            "{i:>3}: {} = {}{attrs} {}  {how}{}   ; live {live} B{}  {}",
            bufs(&st.outputs),
            st.op.name(),
            bufs(&st.inputs),
            if st.in_place { " (in place)" } else { "" },
            if i == self.stats.peak_step {
                " PEAK"
            } else {
                ""
            },
            st.name
        )
    }
}
