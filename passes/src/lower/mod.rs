//! Lowering: an optimized graph becomes a [`Program`] for a target.
//!
//! Three steps, each a module: the memory planner ([`plan`]) schedules the
//! nodes and gives every value its buffer; the epilogue of each step is
//! taken from its op (bias and fused activation); kernel selection
//! ([`select`]) picks every step's kernel and parameters from the target
//! description, unless the caller forces one ([`KernelChoice`]). The
//! program is verified before it is returned.
//!
//! This lives in `nnc-passes` rather than in the backends because passes
//! need it: a rewrite that trades memory for compute asks the planner what
//! it does to the peak ([`plan::memory`]), and program-to-program passes
//! (channel split) transform what lowering produces.

mod check;
pub mod concat;
pub mod edit;
pub mod inplace;
pub mod partition;
pub mod plan;
mod qselect;
pub mod select;
pub mod split;
pub mod stream;
pub(crate) mod wselect;

use std::fmt;

use nnc_ir::op::UnaryOp;
use nnc_ir::program::{Epilogue, Kernel, Loc, Part, PlanStats, Program, Step, Target, Weight};
use nnc_ir::{Graph, Op, Tensor, TensorType};

use crate::pass::{PassError, Result};

pub use plan::{MemoryPlan, memory};

/// Which steps a forced kernel applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Step `k` of the program.
    Step(usize),
    /// Every step of this op (`conv`, `gemm`, `max_pool`, ...).
    Op(String),
    /// The step whose source name is this (a fused step matches any of
    /// its `+`-joined names).
    Node(String),
}

/// A kernel forced onto some steps: `SELECTOR=NAME(key=value,...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelChoice {
    pub selector: Selector,
    pub kernel: String,
    pub params: Vec<(String, String)>,
}

impl KernelChoice {
    /// Parses `SELECTOR=KERNEL` or `SELECTOR=KERNEL(key=value,...)`, where
    /// SELECTOR is a step number, `op:NAME`, `node:NAME`, or a bare name
    /// (an op name if some op has it, else a node name).
    pub fn parse(s: &str) -> std::result::Result<KernelChoice, String> {
        let s = s.trim();
        // The selector ends at the first `=` outside the parameter list.
        let open = s.find('(').unwrap_or(s.len());
        let eq = s[..open]
            .rfind('=')
            .ok_or_else(|| format!("`{s}`: expected SELECTOR=KERNEL, e.g. conv=conv_direct"))?;
        let (sel, spec) = (s[..eq].trim(), s[eq + 1..].trim());
        if sel.is_empty() {
            return Err(format!("`{s}`: the selector before `=` is empty"));
        }
        let selector = if let Ok(k) = sel.parse::<usize>() {
            Selector::Step(k)
        } else if let Some(n) = sel.strip_prefix("op:") {
            Selector::Op(n.to_string())
        } else if let Some(n) = sel.strip_prefix("node:") {
            Selector::Node(n.to_string())
        } else if OP_NAMES.contains(&sel) {
            Selector::Op(sel.to_string())
        } else {
            Selector::Node(sel.to_string())
        };
        let (kernel, params) = match spec.find('(') {
            None => (spec.to_string(), vec![]),
            Some(i) => {
                let inner = spec[i + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| format!("`{s}`: the parameter list is not closed with `)`"))?;
                let mut params = Vec::new();
                for item in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = item
                        .split_once('=')
                        .ok_or_else(|| format!("`{s}`: parameter `{item}` is not key=value"))?;
                    params.push((k.trim().to_string(), v.trim().to_string()));
                }
                (spec[..i].trim().to_string(), params)
            }
        };
        if !Kernel::NAMES.contains(&kernel.as_str()) {
            return Err(format!(
                "`{s}`: unknown kernel `{kernel}` (kernels: {})",
                Kernel::NAMES.join(", ")
            ));
        }
        Ok(KernelChoice {
            selector,
            kernel,
            params,
        })
    }

    fn matches(&self, index: usize, op: &Op, name: &str) -> bool {
        match &self.selector {
            Selector::Step(k) => *k == index,
            Selector::Op(o) => op.name() == o,
            Selector::Node(n) => name == n || name.split('+').any(|p| p == n),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Step(k) => write!(f, "step {k}"),
            Selector::Op(o) => write!(f, "op `{o}`"),
            Selector::Node(n) => write!(f, "node `{n}`"),
        }
    }
}

/// Op names a bare selector is read as.
const OP_NAMES: &[&str] = &[
    "conv",
    "winograd",
    "qconv",
    "qgemm",
    "qadd",
    "qmul",
    "qsoftmax",
    "requant",
    "lut",
    "conv_transpose",
    "gemm",
    "matmul",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "transpose",
    "concat",
    "batch_norm",
    "softmax",
    "reduce_mean",
    "reduce_sum",
    "resize",
    "pad",
];

/// How to lower.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// The program's name.
    pub name: String,
    pub target: Target,
    /// Kernels forced onto steps (later choices win where several match).
    pub kernels: Vec<KernelChoice>,
    /// How hard to work on the arena (partial execution).
    pub memory: partition::MemoryGoal,
    /// Extra multiply-accumulates column tiles may add, in percent of the
    /// program's (0: whole rows only).
    pub max_recompute: f64,
    /// Try channel split (sliced chains, kept only when the arena shrinks)
    /// when the memory goal asks for partial execution.
    pub channel_split: bool,
}

/// Lowers an optimized graph to a program for `opts.target`.
///
/// When the memory goal asks for it (`Auto` on microcontrollers,
/// `Minimize`, or a `Budget` the plain program misses), channel split is
/// tried first ([`crate::egraph::memextract`]): the graph with the sliced
/// chains the planner chose is lowered too, partial execution and all,
/// and the program with the smaller arena is kept, so channel split never
/// makes an arena larger.
pub fn lower(g: &Graph, opts: &LowerOptions) -> Result<Program> {
    let plain = lower_one(g, opts)?;
    let wanted = match opts.memory {
        partition::MemoryGoal::Off => false,
        partition::MemoryGoal::Auto => opts.target.is_mcu(),
        partition::MemoryGoal::Minimize => true,
        partition::MemoryGoal::Budget(b) => plain.arena_bytes > b,
    };
    if !wanted || !opts.channel_split {
        return Ok(plain);
    }
    let t0 = std::time::Instant::now();
    let cs = match crate::egraph::memextract::channel_split(g, opts.target.is_mcu()) {
        Ok(cs) => cs,
        Err(e) => {
            log::warn!("channel split: {e}; lowering unsplit");
            return Ok(plain);
        }
    };
    let macs = nnc_ir::stats::stats(g).macs;
    let mut stat = nnc_ir::program::ChannelSplitStat {
        splits: cs
            .splits
            .iter()
            .map(|s| nnc_ir::program::SplitStat {
                names: s.names.clone(),
                kind: s.kind.name().to_string(),
                slices: s.k,
            })
            .collect(),
        candidates: cs.candidates,
        arena_without: plain.arena_bytes,
        arena_with: None,
        kept: false,
        macs_without: macs,
        macs_with: macs,
        millis: 0.0,
        extract_millis: cs.millis,
    };
    let mut out = plain;
    if !cs.splits.is_empty() {
        match lower_one(&cs.graph, opts) {
            Ok(p) => {
                stat.arena_with = Some(p.arena_bytes);
                stat.macs_with = nnc_ir::stats::stats(&cs.graph).macs;
                if p.arena_bytes < out.arena_bytes {
                    stat.kept = true;
                    out = p;
                }
            }
            Err(e) => log::warn!("channel split: the split graph does not lower: {e}"),
        }
    }
    stat.millis = t0.elapsed().as_secs_f64() * 1e3;
    log::info!("{} ({:.1} ms)", stat.summary(), stat.millis);
    out.stats.channel_split = Some(stat);
    Ok(out)
}

/// [`lower`] without channel split.
fn lower_one(g: &Graph, opts: &LowerOptions) -> Result<Program> {
    g.verify()?;
    let (consts, weight_of) = plan::weights(g)?;
    let weights: Vec<Weight> = consts
        .iter()
        .map(|&(c, id)| Weight {
            name: g.node(id).name.clone(),
            tensor: g.constant(c).expect("verified").clone(),
        })
        .collect();
    let sched = plan::schedule(g, &weight_of)?;
    let best = sched.best;
    let mut used = vec![false; opts.kernels.len()];
    let mut steps = Vec::with_capacity(best.steps.len());
    let mut errs = Vec::new();
    for (i, ps) in best.steps.into_iter().enumerate() {
        let (op, name) = match ps.node {
            Some(id) => (g.node(id).op.clone(), g.node(id).name.clone()),
            None => {
                let k = match ps.outputs[0].loc {
                    Loc::Output(k) => k,
                    _ => 0,
                };
                (
                    Op::Identity,
                    format!("copy to output `{}`", g.outputs()[k].name),
                )
            }
        };
        let (op, act) = strip_act(op);
        let mut epilogue = Vec::new();
        if matches!(op, Op::Conv(_) | Op::Winograd(_)) && ps.inputs.len() > 2 {
            epilogue.push(Epilogue::Bias { input: 2 });
        }
        if let Some(u) = act {
            epilogue.push(Epilogue::Act(u));
        }
        if let Op::QConv(nnc_ir::op::QConvAttrs { q, .. })
        | Op::QGemm(nnc_ir::op::QGemmAttrs { q, .. }) = &op
        {
            // Integer kernels: bias, requantization, clamp to the output
            // range (the fused activation), narrowing store.
            epilogue.push(Epilogue::Bias { input: 2 });
            epilogue.push(Epilogue::Requantize {
                mult: 3,
                shift: 4,
                zero_point: q.y_zp,
            });
            epilogue.push(Epilogue::Clamp {
                lo: q.lo as f64,
                hi: q.hi as f64,
            });
        }
        let ins: Vec<&TensorType> = ps.inputs.iter().map(|b| &b.ty).collect();
        let outs: Vec<&TensorType> = ps.outputs.iter().map(|b| &b.ty).collect();
        let cs: Vec<Option<&Tensor>> = ps
            .inputs
            .iter()
            .map(|b| match b.loc {
                Loc::Const(k) => Some(weights[k].tensor.as_ref()),
                _ => None,
            })
            .collect();
        let cx = select::StepCx {
            op: &op,
            act: act.as_ref(),
            ins,
            consts: cs,
            outs,
            target: &opts.target,
        };
        if matches!(op, Op::ConvInteger(_) | Op::MatMulInteger | Op::Rescale) {
            errs.push(format!(
                "step {i} ({} `{name}`): the C and native backends have no kernel for ONNX's \
                 integer ops; at -O1 and above the QOperator rules turn them into qconv / qgemm",
                op.name()
            ));
            continue;
        }
        let mut kernel = select::select(&cx);
        for (c, u) in opts.kernels.iter().zip(used.iter_mut()) {
            if c.matches(i, &op, &name) {
                *u = true;
                match select::with_params(&c.kernel, &c.params, &cx) {
                    Ok(k) => kernel = k,
                    Err(e) => errs.push(format!(
                        "--kernel {}={}: step {i} ({} `{name}`): {e}",
                        c.selector,
                        c.kernel,
                        op.name()
                    )),
                }
            }
        }
        if let Err(e) = select::check(&kernel, &cx) {
            errs.push(format!(
                "step {i} ({} `{name}`): kernel {kernel}: {e}",
                op.name()
            ));
        }
        steps.push(Step {
            op,
            kernel,
            epilogue,
            part: Part::default(),
            inputs: ps.inputs,
            outputs: ps.outputs,
            name,
            in_place: ps.in_place,
        });
    }
    for (c, u) in opts.kernels.iter().zip(&used) {
        if !u {
            errs.push(format!(
                "--kernel {}={}: {} matches no step",
                c.selector, c.kernel, c.selector
            ));
        }
    }
    if !errs.is_empty() {
        return Err(PassError::Failed {
            pass: "lower".into(),
            msg: errs.join("; "),
        });
    }
    let p = Program {
        name: opts.name.clone(),
        target: opts.target.clone(),
        inputs: (0..g.inputs().len())
            .map(|i| (g.input_name(i).to_string(), g.input_type(i).clone()))
            .collect(),
        outputs: g
            .outputs()
            .iter()
            .map(|o| (o.name.clone(), g.value_type(o.value).clone()))
            .collect(),
        weights,
        arena_bytes: 0,
        stats: PlanStats {
            naive_bytes: sched.naive_bytes,
            greedy_bytes: sched.greedy_bytes,
            order: best.order.to_string(),
            ..Default::default()
        },
        steps,
        loops: vec![],
    };
    p.verify_unplaced()?;
    let (mut p, report) = partition::partition(p, opts.memory, opts.max_recompute)?;
    p.stats.unpartitioned_bytes = report.arena_before;
    p.stats.chains = report
        .chains
        .into_iter()
        .map(|c| nnc_ir::program::ChainStat {
            ops: c.ops,
            names: c.names,
            in_place: c.streamed.in_place,
            copied_bytes: c.streamed.copied_bytes,
            tiles: c.streamed.tiles,
            extra_macs: c.streamed.extra_macs,
            arena_after: c.arena_after,
        })
        .collect();
    plan::place_program(&mut p);
    p.verify()?;
    Ok(p)
}

/// Moves an op's fused activation out of its attributes.
fn strip_act(op: Op) -> (Op, Option<UnaryOp>) {
    match op {
        Op::Conv(mut a) => {
            let act = a.act.take();
            (Op::Conv(a), act)
        }
        Op::Gemm(mut a) => {
            let act = a.act.take();
            (Op::Gemm(a), act)
        }
        Op::Winograd(mut a) => {
            let act = a.act.take();
            (Op::Winograd(a), act)
        }
        op => (op, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_choices_parse() {
        let c = KernelChoice::parse("conv=conv_blocked(p=4, c=8)").unwrap();
        assert_eq!(c.selector, Selector::Op("conv".into()));
        assert_eq!(c.kernel, "conv_blocked");
        assert_eq!(
            c.params,
            vec![("p".into(), "4".into()), ("c".into(), "8".into())]
        );
        let c = KernelChoice::parse("3=conv_direct").unwrap();
        assert_eq!(c.selector, Selector::Step(3));
        let c = KernelChoice::parse("Conv__58=dw_rows").unwrap();
        assert_eq!(c.selector, Selector::Node("Conv__58".into()));
        let c = KernelChoice::parse("node:conv=conv_direct").unwrap();
        assert_eq!(c.selector, Selector::Node("conv".into()));
        assert!(KernelChoice::parse("conv").is_err());
        assert!(KernelChoice::parse("conv=warp_drive").is_err());
        assert!(KernelChoice::parse("conv=conv_blocked(p=4").is_err());
        assert!(KernelChoice::parse("conv=conv_blocked(p)").is_err());
        assert!(KernelChoice::parse("=conv_direct").is_err());
    }
}
