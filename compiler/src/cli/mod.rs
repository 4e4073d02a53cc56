//! Subcommands of `nnc`. Argument parsing (clap) and presentation live
//! here, one module per subcommand; the work is done by the library
//! (`nnc::driver`, `nnc::io`, `nnc::cbuild`).

/// `print!` to standard output, returning write errors (a closed pipe, a
/// full disk) to the caller instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($t)*)?
    }};
}

/// `println!` to standard output, returning write errors.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

mod bench;
mod bench_mcu;
mod compile;
mod dump;
mod emit;
mod info;
mod progress;
mod prune;
mod run;

use progress::Progress;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nnc::driver::{self, LoadOptions};
use nnc::io;
use nnc_ir::program::{Target, TargetSpec, TargetSpecError};
use nnc_ir::{ConstMode, Graph, PrintOptions, Tensor};
use nnc_passes::lower::KernelChoice;
use nnc_passes::{OptLevel, PipelineOptions, PrintAfter};
use serde_json::json;

const ABOUT: &str = "nnc: an ahead-of-time neural-network compiler.\n\n\
Imports ONNX models into a typed graph IR, optimizes them with e-graph \
rewrites, plans their memory, and compiles them to native code (Cranelift: \
executables, object files, in-process runs) or to dependency-free C for \
microcontrollers; the reference interpreter runs any of it for comparison. \
MODEL is an ONNX file (.onnx) or an nnc text IR file (.nnir, as written by \
`nnc dump`).";

const AFTER_HELP: &str = "Conventions (the same in every command):\n\
  -o PATH          a file for the commands that write one (run: per output, dump, compile,\n\
                   compile --emit obj with its .h beside it); a folder for emit-c, which\n\
                   writes NAME.h and NAME.c into it. Missing folders are created.\n\
  --target T       host (default: this machine), x86_64 (baseline), x86_64:CPU (avx2, avx512,\n\
                   avx512vnni, avxvnni, x86-64-v2..v4 for both backends; any Cranelift CPU\n\
                   preset such as skylake for native), aarch64, cortex-m0, cortex-m4, cortex-m7.\n\
                   A command refuses a target its backend has no code generator for.\n\
  --backend B      native (default: Cranelift, in process), c (the generated C built with\n\
                   `cc`), interp (the reference interpreter, run only); a Cortex-M target\n\
                   defaults to c, the one backend that has one.\n\n\
Optimization levels and their pipelines:\n\
  -O0  (none: the graph as imported)\n\
  -O1  fold-constants, remove-identity, cse, dce\n\
  -O2  fold-constants, remove-identity, prune-dead, egraph, dce (default)\n\
  -Os  as -O2, with the microcontroller cost model (latency plus memory)\n\n\
Passes (for --passes, --print-after, --stop-after):\n\
  fold-constants   evaluate nodes whose inputs are all constants\n\
  remove-identity  forward the inputs of identity nodes\n\
  cse              share identical nodes and identical constants\n\
  dce              remove nodes no output depends on\n\
  prune-dead       remove channels that cannot change an output (all-zero filters and\n\
                   bias, zero BatchNorm scale and shift, channels no layer reads)\n\
  l1-filter        structured pruning: remove the filters with the smallest L1 norm\n\
  slimming         structured pruning: remove the channels with the smallest BatchNorm scale\n\
  magnitude        unstructured pruning: zero the smallest weights (they stay dense)\n\
                   (ratio and scope from --prune METHOD:RATIO[:global], default 0.25 per layer)\n\
  egraph           e-graph rewrites, all rule groups: clean-up, layout (transposes,\n\
                   reshapes), BatchNorm folding, bias/activation/scale fusion, pad folding,\n\
                   QDQ patterns to integer ops (qconv, qgemm, qadd, lut, ...)\n\
  egraph-cleanup   e-graph with the clean-up and layout groups only\n\
  egraph-fuse      e-graph with the clean-up, BatchNorm, fusion and pad groups\n\
                   (QDQ models keep their float arithmetic)\n\n\
RUST_LOG=nnc_passes=info logs e-graph statistics; --egraph-report prints egg's report.\n\n\
Environment: CC (the C compiler), NNC_CACHE_DIR (build cache; default \
$XDG_CACHE_HOME/nnc or ~/.cache/nnc, private to you), NNC_CACHE_MAX_MB (its \
size bound, default 1024), NNC_PROGRESS_DELAY_MS (long work shows a progress line on \
standard error after this many milliseconds, default 500, when it is a terminal; never when \
it is piped).";

#[derive(Debug, Parser)]
#[command(name = "nnc", version, about = ABOUT, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a model on input tensors and print or save its outputs
    Run(RunArgs),
    /// Print the IR of a model as text (.nnir) or Graphviz
    Dump(DumpArgs),
    /// Show inputs, outputs, op histogram, parameters, MACs, and the memory plan
    Info(InfoArgs),
    /// Write dependency-free C (NAME.h, NAME.c) for a host or a microcontroller
    EmitC(EmitArgs),
    /// Compile to a native executable or object file with Cranelift
    Compile(CompileArgs),
    /// Measure latency on this machine, or guest instructions per inference on an emulated Cortex-M
    Bench(BenchArgs),
    /// Prune a model (--prune METHOD:RATIO; prune-dead always) and write it as ONNX
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The ONNX file to write (opset 13; missing folders are created)
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: PathBuf,
    /// Target of the peak SRAM and flash figures in the report (as for `info`)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
}

/// A `--target`: one grammar for every command ([`TargetSpec`]: `host`,
/// `x86_64[:CPU]`, `aarch64`, `cortex-m0|m4|m7`), checked when parsed.
/// Each command turns it into the description its backend needs, and the
/// backend refuses what it cannot generate code for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetArg(TargetSpec);

impl TargetArg {
    /// The target description for C.
    fn c(&self) -> Result<Target> {
        nnc_backends::c::target_for(&self.0).with_context(|| format!("--target {}", self.0))
    }

    /// The target description for Cranelift.
    fn native(&self) -> Result<Target> {
        nnc_backends::cranelift::target_for(&self.0).with_context(|| format!("--target {}", self.0))
    }

    /// The description for the code generator of `backend` (the
    /// interpreter runs on this machine only).
    fn for_backend(&self, backend: Backend) -> Result<Target> {
        match backend {
            Backend::C => self.c(),
            Backend::Native => self.native(),
            Backend::Interp if self.0 == TargetSpec::Host => Ok(Target::default()),
            Backend::Interp => bail!(
                "--target {}: the interpreter runs on this machine only (--target host); \
                 use --backend c or native",
                self.0
            ),
        }
    }
}

fn parse_target(s: &str) -> Result<TargetArg, String> {
    s.parse()
        .map(TargetArg)
        .map_err(|e: TargetSpecError| e.to_string())
}

/// Kernels forced onto steps, for tuning experiments.
#[derive(Debug, Args, Clone)]
struct KernelArgs {
    /// Force a kernel onto steps: `SELECTOR=KERNEL[(key=value,...)]`, where SELECTOR is a
    /// step number, an op name (`conv`), or a node name; e.g. `conv=conv_direct`,
    /// `3=conv_blocked(p=4,c=8)` (repeatable; `nnc dump --plan` shows every step's kernel)
    #[arg(long = "kernel", value_name = "SEL=KERNEL", value_parser = parse_kernel)]
    kernels: Vec<KernelChoice>,
    /// Partial execution (streamed chains, in-place steps) to shrink the arena: `auto`
    /// (on microcontroller targets, no recompute; on hosts only zero-copy concatenation),
    /// `min` (everywhere, as far as it helps,
    /// chains in column tiles too: at most --max-recompute extra MACs, reported), `off`
    #[arg(long, value_name = "auto|min|off", default_value = "auto", value_parser = parse_memory)]
    memory: MemoryArg,
    /// SRAM budget: partition just enough that the arena fits this many bytes (65536,
    /// 64KiB = 64K = 65536, 64kB = 64000, 1MiB, 1MB), and fail naming the bottleneck when
    /// it cannot (with `--memory off`: only check it)
    #[arg(
        long = "sram-budget",
        value_name = "BYTES",
        value_parser = parse_bytes,
        allow_negative_numbers = true
    )]
    sram_budget: Option<usize>,
    /// Most multiply-accumulates the column tiles of `--memory min` / `--sram-budget` may
    /// recompute in their halos, in percent of the model's (0 to 100; 0: whole rows only, no
    /// column tiles)
    #[arg(
        long = "max-recompute",
        value_name = "PCT",
        default_value = "10",
        value_parser = parse_percent,
        allow_negative_numbers = true
    )]
    max_recompute: f64,
    /// Channel split with a memory goal (`auto` on microcontrollers, `min`, a budget the plain
    /// plan misses): conv chains run in k channel slices, joined by concatenation or by adding
    /// partial sums, where the planner finds the arena smaller; the program is lowered with and
    /// without and the smaller arena kept (`nnc info` says which)
    #[arg(long = "channel-split", value_name = "on|off", default_value = "on", value_parser = parse_on_off)]
    channel_split: OnOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

fn parse_on_off(s: &str) -> Result<OnOff, String> {
    match s {
        "on" => Ok(OnOff::On),
        "off" => Ok(OnOff::Off),
        _ => Err(format!("`{s}`: use on or off")),
    }
}

/// A percentage from 0 to 100 (`10`, `2.5`, `10%`).
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a percentage from 0 to 100, e.g. 10"))?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}`: the percentage must be from 0 to 100"));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum MemoryArg {
    #[default]
    Auto,
    Min,
    Off,
}

fn parse_memory(s: &str) -> Result<MemoryArg, String> {
    match s {
        "auto" => Ok(MemoryArg::Auto),
        "min" => Ok(MemoryArg::Min),
        "off" => Ok(MemoryArg::Off),
        _ => Err(format!("`{s}`: use auto, min or off")),
    }
}

impl KernelArgs {
    /// How to lower: forced kernels and the memory goal.
    fn lowering(&self) -> driver::Lowering {
        use nnc_passes::lower::partition::MemoryGoal;
        driver::Lowering {
            kernels: self.kernels.clone(),
            memory: match (self.sram_budget, self.memory) {
                // `--memory off` with a budget only checks it.
                (_, MemoryArg::Off) => MemoryGoal::Off,
                (Some(b), _) => MemoryGoal::Budget(b),
                (None, MemoryArg::Auto) => MemoryGoal::Auto,
                (None, MemoryArg::Min) => MemoryGoal::Minimize,
            },
            max_recompute: self.max_recompute,
            channel_split: self.channel_split == OnOff::On,
        }
    }
}

/// `--prune-to-fit` (info, emit-c, compile).
#[derive(Debug, Args, Clone, Default)]
struct FitArgs {
    /// With --sram-budget: when channel split alone cannot fit the budget, prune the least
    /// important channels at the memory bottleneck (ranked by --prune METHOD, default
    /// l1-filter; a ratio given with it prunes that much first), re-plan and repeat until
    /// the plan fits; never a whole layer. The channels removed per layer, the arena before
    /// and after and the pruning cost (parameters, MACs, flash, peak SRAM, output deviation
    /// on --calib inputs) go to standard error; a budget that cannot be met is refused
    /// naming the bottleneck
    #[arg(long = "prune-to-fit", requires = "sram_budget")]
    prune_to_fit: bool,
}

fn parse_kernel(s: &str) -> Result<KernelChoice, String> {
    KernelChoice::parse(s)
}

/// Options shared by every subcommand that loads a model.
#[derive(Debug, Args)]
struct ModelArgs {
    /// Model file (.onnx or .nnir)
    model: PathBuf,
    /// Optimization level: -O0, -O1, -O2 (default) or -Os
    #[arg(short = 'O', value_name = "LEVEL", default_value = "2", value_parser = parse_opt)]
    opt: OptLevel,
    /// Fix the shape of an input with symbolic dims, e.g. `input=1,3,224,224` (repeatable)
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<String>,
    /// Run these passes instead of the level's pipeline (see `nnc --help` for names)
    #[arg(long, value_delimiter = ',', value_name = "PASS,...", value_parser = parse_pass)]
    passes: Option<Vec<String>>,
    /// Print the IR after PASS (`all` for every pass; repeatable or comma-separated)
    #[arg(
        long = "print-after",
        value_delimiter = ',',
        value_name = "PASS|all",
        value_parser = parse_pass_or_all
    )]
    print_after: Vec<String>,
    /// Stop the pipeline after PASS
    #[arg(long = "stop-after", value_name = "PASS", value_parser = parse_pass)]
    stop_after: Option<String>,
    /// Print how long each pass took and the node count after it
    #[arg(long = "time-passes")]
    time_passes: bool,
    /// Run the verifier after every pass (always on in debug builds)
    #[arg(long)]
    verify: bool,
    /// Print egg's saturation report (iterations, nodes, stop reason) for every e-graph run
    #[arg(long = "egraph-report")]
    egraph_report: bool,
    /// Prune the model before optimizing it: `l1-filter:RATIO` (filters with the smallest L1
    /// norm), `slimming:RATIO` (smallest BatchNorm scale) or `magnitude:RATIO` (smallest
    /// weights, kept dense); RATIO of every layer's channels, or of all layers ranked together
    /// with `:global`. Never a whole layer; residual branches stay aligned. The cost
    /// (channels per layer, parameters, MACs, flash, peak SRAM, output deviation) goes to
    /// standard error
    /// (on info, emit-c and compile with --prune-to-fit, `METHOD` alone picks the ranking)
    #[arg(long, value_name = "METHOD:RATIO[:global]", value_parser = parse_prune)]
    prune: Option<PruneArg>,
    /// With --prune l1-filter or slimming: refit the layers that lost input channels by
    /// least squares on calibration inputs (float weights)
    #[arg(long, requires = "prune")]
    reconstruct: bool,
    /// Calibration inputs for --prune's deviation and --reconstruct: a folder of .npy/.pb
    /// files, one per input set (one folder per set for several inputs); default: the
    /// model's test_data_set_* folders, else seeded random inputs (16; 64 to reconstruct)
    #[arg(long, value_name = "DIR")]
    calib: Option<PathBuf>,
    /// Winograd convolution for 3x3 (and 1x3, 3x1) stride-1 float convolutions: `auto` where
    /// the cost model prefers it (16 input channels or more), `f23` / `f43` forced on every
    /// eligible one, or `off`
    #[arg(long, value_name = "off|auto|f23|f43", default_value = "auto", value_parser = parse_winograd)]
    winograd: nnc_passes::WinogradMode,
}

/// A `--prune`: the spec, and whether it was a bare `METHOD` (no ratio,
/// only meaningful with --prune-to-fit, where it picks the ranking).
#[derive(Debug, Clone, PartialEq)]
struct PruneArg {
    spec: nnc_passes::prune::PruneSpec,
    bare: bool,
}

fn parse_prune(s: &str) -> Result<PruneArg, String> {
    if !s.contains(':') && nnc_passes::prune::Method::parse(s).is_some() {
        let spec = nnc_passes::prune::PruneSpec::parse(&format!("{s}:0"))?;
        return Ok(PruneArg { spec, bare: true });
    }
    Ok(PruneArg {
        spec: nnc_passes::prune::PruneSpec::parse(s)?,
        bare: false,
    })
}

impl ModelArgs {
    /// Fails on a bare `--prune METHOD` without `--prune-to-fit`.
    fn check_prune(&self, fit: bool) -> Result<()> {
        if let Some(p) = &self.prune
            && p.bare
            && !fit
        {
            bail!(
                "--prune {m}: give a ratio (`{m}:0.25`), or add --sram-budget B --prune-to-fit \
                 (where a bare METHOD picks the ranking)",
                m = p.spec.method.name()
            );
        }
        Ok(())
    }
}

fn parse_winograd(s: &str) -> Result<nnc_passes::WinogradMode, String> {
    s.parse()
}

fn parse_opt(s: &str) -> Result<OptLevel, String> {
    s.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The reference interpreter
    Interp,
    /// Generated C compiled with the system `cc` (-O2) and run
    C,
    /// Native code from Cranelift (compiled in process for `run`)
    Native,
}

impl Backend {
    /// The name `--backend` takes.
    fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::C => "c",
            Backend::Native => "native",
        }
    }

    fn driver(self) -> driver::Backend {
        match self {
            Backend::Interp => driver::Backend::Interp,
            Backend::C => driver::Backend::C,
            Backend::Native => driver::Backend::Native,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Backend that executes the model (native: Cranelift, compiled in process; c: the
    /// generated C built with `cc`; interp: the reference interpreter)
    #[arg(long, value_enum, default_value = "native")]
    backend: Backend,
    /// Input tensor file (.npy or ONNX TensorProto .pb): `NAME=FILE`, or `FILE` when the model has one input (repeatable)
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,
    /// Write an output as .npy: `NAME=FILE`, or `FILE` when the model has one output
    /// (repeatable; missing folders are created)
    #[arg(short, long = "output", value_name = "[NAME=]FILE")]
    outputs: Vec<String>,
    /// Compare an output with a reference tensor file and fail on mismatch (repeatable)
    #[arg(long = "expect", value_name = "[NAME=]FILE")]
    expect: Vec<String>,
    #[command(flatten)]
    tol: Tolerance,
    /// Print load and run times to standard error
    #[arg(long)]
    time: bool,
}

/// How closely outputs must match `--expect` references.
#[derive(Debug, Args, Clone)]
struct Tolerance {
    /// Relative tolerance for --expect (float outputs; finite, at least 0)
    #[arg(long, default_value_t = 1e-4, value_parser = parse_tolerance)]
    rtol: f64,
    /// Absolute tolerance for --expect (float outputs; finite, at least 0)
    #[arg(long, default_value_t = 1e-5, value_parser = parse_tolerance)]
    atol: f64,
    /// Integer outputs may differ from --expect by this many units in the last place
    /// (e.g. 1 for int8 models whose kernels compute in float)
    #[arg(long, default_value_t = 0, value_name = "N")]
    lsb: u64,
    /// With --expect, a NaN matches a NaN (by default any NaN is a mismatch, as in numpy.isclose)
    #[arg(long = "equal-nan")]
    equal_nan: bool,
}

/// A comparison tolerance: a finite number, at least zero.
fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a tolerance (use a finite number >= 0)")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// The line `--expect` prints for one output, and whether it matched.
fn check_line(
    name: &str,
    c: &driver::Comparison,
    elements: usize,
    t: &Tolerance,
    dtype: nnc_ir::DType,
) -> (String, bool) {
    if let Some(m) = &c.shape_mismatch {
        return (format!("{name}: MISMATCH ({m})"), false);
    }
    if c.ok() {
        return (
            format!(
                "{name}: ok (max abs err {:.3e}, max rel err {:.3e})",
                c.max_abs, c.max_rel
            ),
            true,
        );
    }
    let within = if dtype.is_float() {
        format!("rtol {} atol {}", t.rtol, t.atol)
    } else {
        format!("lsb {}", t.lsb)
    };
    let nans = match c.nan_mismatches {
        0 => String::new(),
        n if t.equal_nan => format!(", {n} where only one side is NaN"),
        n => format!(", {n} with a NaN (--equal-nan takes NaN = NaN)"),
    };
    (
        format!(
            "{name}: MISMATCH: {} of {elements} elements outside {within} (max abs err {:.3e}{nans})",
            c.mismatches, c.max_abs
        ),
        false,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DumpFormat {
    /// nnc text IR (parses back with `nnc dump` / `nnc run`)
    Nnir,
    /// Graphviz dot
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WeightsMode {
    /// Large constants as `...` (for reading; cannot be parsed back)
    Elide,
    /// Every constant inline in the text
    Inline,
    /// Large constants in FILE.bin next to the -o FILE
    External,
}

#[derive(Debug, Args)]
struct DumpArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "nnir")]
    format: DumpFormat,
    /// How constant data is written (default: external with -o, elide without)
    #[arg(long, value_enum)]
    weights: Option<WeightsMode>,
    /// Write to FILE instead of standard output (missing folders are created)
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the lowered program instead of the IR: every step's buffers, kernel and
    /// parameters, epilogue, live bytes, and the memory plan
    #[arg(long)]
    plan: bool,
    /// Code generator the plan's kernels are selected for (with --plan; default native,
    /// and c for a Cortex-M target)
    #[arg(long, value_enum)]
    backend: Option<PlanBackend>,
    /// Target of the plan (with --plan): host, x86_64[:CPU], aarch64, cortex-m0|m4|m7 (see
    /// `nnc --help`; Cortex-M needs --backend c)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanBackend {
    /// C source
    C,
    /// Cranelift native code
    Native,
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    fit: FitArgs,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
    /// Target of the memory plan (the C backend's): host, x86_64[:CPU], aarch64,
    /// cortex-m0|m4|m7 (see `nnc --help`; microcontrollers use the memory-aware cost model)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
    /// Fail when the weights exceed this many bytes (1MiB = 1M = 1048576, 1MB = 1000000)
    #[arg(
        long = "flash-budget",
        value_name = "BYTES",
        value_parser = parse_bytes,
        allow_negative_numbers = true
    )]
    flash_budget: Option<usize>,
    /// List the live arena bytes of every step
    #[arg(long)]
    steps: bool,
    /// Draw the memory plan as SVG into FILE (x: step, y: arena offset, one rectangle per
    /// buffer; loops, the peak, the buffers live there and the SRAM budget marked; missing
    /// folders are created)
    #[arg(long = "memory-svg", value_name = "FILE")]
    memory_svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EmitArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    fit: FitArgs,
    /// Take the shape of an input with symbolic dims from a tensor file (.npy or .pb), as
    /// `run` does: `NAME=FILE`, or `FILE` when the model has one input (repeatable)
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,
    /// Folder to write NAME.h and NAME.c into (created if needed)
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    out: PathBuf,
    /// Identifier for the files, the entry point NAME_run and the macros (default: the model file name)
    #[arg(long)]
    name: Option<String>,
    /// Target: host (this CPU), x86_64 (SSE2), x86_64:CPU (avx2, avx512, avx512vnni,
    /// avxvnni, x86-64-v2..v4), aarch64, or a microcontroller: cortex-m0, cortex-m4,
    /// cortex-m7 (kernels and tiles are chosen for it)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
    /// How the weights are written: `literal` (an initializer list of numbers), `blob` (each
    /// array's bytes as one string literal in a union with the typed array: standard C,
    /// still `static const`, compiles about ten times faster), `auto` (blob above 1 MiB of
    /// weights)
    #[arg(long, value_enum, default_value = "auto")]
    weights: CWeights,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CWeights {
    /// Initializer lists of numbers
    Literal,
    /// One string literal of the bytes per array
    Blob,
    /// Blob above 1 MiB of weights, literal below
    Auto,
}

impl CWeights {
    fn form(self) -> nnc_backends::c::WeightForm {
        use nnc_backends::c::WeightForm;
        match self {
            CWeights::Literal => WeightForm::Literal,
            CWeights::Blob => WeightForm::Blob,
            CWeights::Auto => WeightForm::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EmitKind {
    /// A standalone executable (the model linked with the runtime harness)
    Exe,
    /// A relocatable object file plus a C header, for linking into your program
    Obj,
}

#[derive(Debug, Args)]
struct CompileArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    fit: FitArgs,
    /// Take the shape of an input with symbolic dims from a tensor file (.npy or .pb), as
    /// `run` does: `NAME=FILE`, or `FILE` when the model has one input (repeatable)
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,
    /// Output file: the executable, or the object (its header is written next to it as .h;
    /// missing folders are created)
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: PathBuf,
    /// What to write
    #[arg(long, value_enum, default_value = "exe")]
    emit: EmitKind,
    /// Code generator: native (Cranelift) is the one that writes executables and objects;
    /// for C sources use `nnc emit-c`
    #[arg(long, value_enum, default_value = "native")]
    backend: Backend,
    /// Instruction set: `host` (this machine with all its ISA extensions), `x86_64`
    /// (x86-64-v2), `x86_64:CPU` (a Cranelift CPU preset such as x86-64-v3 or skylake, or
    /// avx2 / avx512 / avx512vnni / avxvnni), or `aarch64` (objects only)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
    /// Identifier for the entry point NAME_run and the header macros (default: the output file name)
    #[arg(long)]
    name: Option<String>,
    /// Compile in the per-step timing hooks (the executable's --bench N --profile)
    #[arg(long)]
    profile: bool,
}

const BENCH_HELP: &str = "On this machine (--target host) bench reports latency: median and p90 \
milliseconds. On a microcontroller (--backend c --target cortex-m4, cortex-m7 or cortex-m0) it \
builds the model as firmware with arm-none-eabi-gcc -O2 and runs it under qemu-system-arm \
-icount shift=0 on an Arm MPS2 board (cortex-m4: mps2-an386, cortex-m7: mps2-an500; cortex-m0: \
the M0 code on the mps2-an385's Cortex-M3, as QEMU has no M0 board). The firmware runs the \
inference once to warm up, then --runs times, and reads an exact instruction clock around each \
inference only. It reports GUEST INSTRUCTIONS PER INFERENCE (median, min, max): instructions \
executed under QEMU, NOT CYCLES; QEMU has no pipeline, cache or flash wait-state model. It also \
prints the image's flash and RAM (arm-none-eabi-size) and the arena. --profile adds the \
instructions of every step (a second image with the per-step hooks) and compares their sum \
with the whole inference; --expect checks the outputs on the device. The tools come from \
scripts/setup.sh (PATH, $NNC_TOOLS_DIR, $NNC_QEMU).";

#[derive(Debug, Args)]
#[command(after_help = BENCH_HELP)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Backend to measure (default: native, and c for a Cortex-M target, the one backend
    /// that has one): `native` is Cranelift for this host, `c` compiles with -O3
    /// -march=native on the host and arm-none-eabi-gcc -O2 for a Cortex-M
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Where to measure: `host` (latency on this machine), or `cortex-m4`, `cortex-m7`,
    /// `cortex-m0` (with --backend c: guest instructions per inference under QEMU, not cycles)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    target: TargetArg,
    /// Timed runs (default: about two seconds' worth, 10 to 10000; on a Cortex-M 3, after one
    /// warm-up run)
    #[arg(long, value_parser = parse_runs, allow_negative_numbers = true)]
    runs: Option<usize>,
    /// Input tensor files, whose shapes also fix symbolic dims (default: deterministic
    /// pseudo-random inputs)
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,
    /// Check an output against a reference tensor file (on the device for a Cortex-M) and
    /// fail on mismatch (repeatable)
    #[arg(long = "expect", value_name = "[NAME=]FILE")]
    expect: Vec<String>,
    #[command(flatten)]
    tol: Tolerance,
    /// Print JSON (host: `median_ms`, `p90_ms`, `runs`; Cortex-M: `median_instructions`,
    /// `min_instructions`, `max_instructions`, `runs`, image sizes)
    #[arg(long)]
    json: bool,
    /// Print every step instead: time and GFLOP/s on the host, guest instructions with the
    /// step's op, kernel and name on a Cortex-M
    #[arg(long)]
    profile: bool,
    /// Cortex-M: give up on a QEMU run after this many seconds
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout: u64,
}

impl BenchArgs {
    /// The backend measured: `--backend`, else native, or C for a
    /// microcontroller (the one backend that has one).
    fn backend(&self) -> Backend {
        self.backend.unwrap_or(if self.target.0.is_mcu() {
            Backend::C
        } else {
            Backend::Native
        })
    }
}

/// Parses a size in bytes: a plain number (`65536`) or a number with a
/// unit, in either convention: binary `K`, `KiB`, `M`, `MiB`, `G`, `GiB`
/// (powers of 1024) or decimal `kB`/`KB`, `MB`, `GB` (powers of 1000);
/// units are case-insensitive (`64kib`, `1.5MiB`).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let usage = "a size in bytes: 65536, 64KiB (= 64K, 1024 bytes each), 64kB (1000 bytes \
                 each), 1MiB, 1MB";
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not {usage}"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        u => return Err(format!("unknown size unit `{u}` in `{s}`: use {usage}")),
    };
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not {usage}: sizes are not negative"));
    }
    let bytes = v * mul;
    if bytes >= usize::MAX as f64 {
        return Err(format!("`{s}` is too large"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("`{s}` is not a whole number of bytes"));
    }
    Ok(bytes as usize)
}

/// Parses a run count: at least one.
fn parse_runs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0 runs measure nothing: give at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of runs (1 or more)")),
    }
}

/// Checks a pass name of `--passes`, `--print-after` and `--stop-after`
/// when the flag is parsed, so a misspelt pass is a usage error.
fn parse_pass(s: &str) -> Result<String, String> {
    if nnc_passes::manager::make_pass(s).is_some() {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown pass `{s}` (passes: {})",
            nnc_passes::PASS_NAMES.join(", ")
        ))
    }
}

/// A pass name for `--print-after`, or `all`.
fn parse_pass_or_all(s: &str) -> Result<String, String> {
    if s == "all" {
        return Ok(s.to_string());
    }
    parse_pass(s).map_err(|e| format!("{e}, or all"))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run(a) => run::cmd_run(a),
        Cmd::Dump(a) => dump::cmd_dump(a),
        Cmd::Info(a) => info::cmd_info(a),
        Cmd::EmitC(a) => emit::cmd_emit(a),
        Cmd::Compile(a) => compile::cmd_compile(a),
        Cmd::Bench(a) => bench::cmd_bench(a),
        Cmd::Prune(a) => prune::cmd_prune(a),
    }
}

fn parse_dims(s: &str) -> Result<Vec<usize>> {
    if s.trim().is_empty() {
        return Ok(vec![]);
    }
    s.split([',', 'x'])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| anyhow!("`{d}` is not a dimension"))
        })
        .collect()
}

fn load_opts(m: &ModelArgs) -> Result<LoadOptions> {
    let mut input_shapes = HashMap::new();
    for s in &m.input_shapes {
        let (name, dims) = s
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("--input-shape `{s}`: expected NAME=D1,D2,..."))?;
        let dims = parse_dims(dims).with_context(|| format!("--input-shape `{s}`"))?;
        input_shapes.insert(name.to_string(), dims);
    }
    let print_after = if m.print_after.iter().any(|p| p == "all") {
        PrintAfter::All
    } else if m.print_after.is_empty() {
        PrintAfter::Never
    } else {
        PrintAfter::Passes(m.print_after.clone())
    };
    let pipeline = PipelineOptions {
        passes: m.passes.clone(),
        print_after,
        stop_after: m.stop_after.clone(),
        verify: m.verify,
        prune: m.prune.clone().map(|a| {
            let mut p = a.spec;
            p.reconstruct = m.reconstruct;
            p
        }),
        winograd: m.winograd,
        ..Default::default()
    };
    // The names are checked when parsed; what is left is whether
    // --print-after and --stop-after name passes of this pipeline.
    nnc_passes::manager::resolve(m.opt, &pipeline)
        .map_err(|e| anyhow!("--print-after / --stop-after: {e}"))?;
    Ok(LoadOptions {
        input_shapes,
        opt_level: m.opt,
        pipeline,
        ..Default::default()
    })
}

/// Imports and optimizes a model read for `target`. Dumps requested with
/// --print-after go to standard output for `dump` and to standard error
/// otherwise; a microcontroller target selects the memory-aware cost model.
fn load_model(
    model: &driver::Model,
    m: &ModelArgs,
    hints: &HashMap<String, Vec<usize>>,
    dumps_to_stdout: bool,
    target: &Target,
) -> Result<Graph> {
    Ok(load_model_fit(model, m, hints, dumps_to_stdout, target, None)?.0)
}

/// What `--prune-to-fit` is asked for: the budget and the lowering
/// (forced kernels) of the command.
struct FitRequest {
    budget: usize,
    lowering: driver::Lowering,
}

impl FitRequest {
    /// The request of a command's flags, if `--prune-to-fit` is given.
    fn of(f: &FitArgs, k: &KernelArgs) -> Result<Option<FitRequest>> {
        if !f.prune_to_fit {
            return Ok(None);
        }
        let Some(budget) = k.sram_budget else {
            bail!("--prune-to-fit needs --sram-budget BYTES (the budget to fit)");
        };
        if k.memory == MemoryArg::Off {
            bail!(
                "--prune-to-fit splits channels before it prunes; --memory off only checks the \
                 budget: drop --memory off"
            );
        }
        Ok(Some(FitRequest {
            budget,
            lowering: k.lowering(),
        }))
    }
}

/// What `--prune-to-fit` did and cost.
struct FitOutcome {
    report: nnc::fit::FitReport,
    cost: nnc::prune::Cost,
}

impl FitOutcome {
    fn json(&self) -> serde_json::Value {
        let mut v = self.report.json();
        let c = &self.cost;
        let fig = |f: &nnc::prune::Figures| {
            json!({"params": f.params, "macs": f.macs, "flash_bytes": f.flash,
                   "peak_sram_bytes": f.peak})
        };
        let d = &c.deviation;
        v["before"] = fig(&c.before);
        v["after"] = fig(&c.after);
        v["deviation"] = json!({
            "max_abs": d.max_abs,
            "snr_db": if d.snr_db.is_finite() { json!(d.snr_db) } else { json!(null) },
            "top1": d.top1,
            "sets": d.sets,
            "inputs": c.calib.to_string(),
        });
        v
    }
}

/// [`load_model`], pruning to fit the budget of `fit` when given: the
/// graph as imported (pruned first by a `--prune METHOD:RATIO`) is pruned
/// at the memory bottleneck until it fits ([`nnc::fit::fit`]); the graph
/// returned is the pruned one, optimized.
fn load_model_fit(
    model: &driver::Model,
    m: &ModelArgs,
    hints: &HashMap<String, Vec<usize>>,
    dumps_to_stdout: bool,
    target: &Target,
    fit: Option<&FitRequest>,
) -> Result<(Graph, Option<FitOutcome>)> {
    m.check_prune(fit.is_some())?;
    let mut opts = load_opts(m)?;
    opts.shape_hints = hints.clone();
    opts.pipeline.target = target.clone();
    // Dumps are written from inside the pipeline; the first write error
    // is kept and returned once it has finished.
    let failed: std::cell::RefCell<Option<std::io::Error>> = Default::default();
    let emit = |s: String| {
        use std::io::Write as _;
        let r = if dumps_to_stdout {
            std::io::stdout().write_all(s.as_bytes())
        } else {
            std::io::stderr().write_all(s.as_bytes())
        };
        if let Err(e) = r {
            failed.borrow_mut().get_or_insert(e);
        }
    };
    let g = model
        .import(&opts)
        .with_context(|| format!("loading `{}`", m.model.display()))?;
    let imported = g.clone();
    if let Some(p) = &mut opts.pipeline.prune
        && p.reconstruct
    {
        let random = nnc_passes::prune::reconstruct::DEFAULT_CALIB;
        let (sets, src) =
            nnc::prune::calib_inputs(&g, &m.model, m.calib.as_deref(), random, 1, false)?;
        eprintln!("reconstruction calibration: {src}");
        p.calib = sets;
    }
    let mut fitted = None;
    let g = match fit {
        None => g,
        Some(f) => {
            let mut start = g;
            if opts.pipeline.prune.as_ref().is_some_and(|p| p.ratio > 0.0) {
                let (pruned, rep) = nnc::prune::prune_imported(start, &opts)
                    .with_context(|| format!("pruning `{}`", m.model.display()))?;
                for r in &rep.prune_reports {
                    eprint!("{r}");
                }
                start = pruned;
            }
            let method = opts
                .pipeline
                .prune
                .as_ref()
                .map_or(nnc_passes::prune::Method::L1Filter, |p| p.method);
            let mut plain = opts.clone();
            plain.pipeline.prune = None;
            plain.pipeline.print_after = PrintAfter::Never;
            let r = {
                let _p = Progress::start("pruning to fit the SRAM budget");
                nnc::fit::fit(&start, &plain, target, &f.lowering, f.budget, method)
                    .with_context(|| format!("--prune-to-fit `{}`", m.model.display()))?
            };
            eprint!("{}", r.report);
            opts.pipeline.prune = None;
            let g = r.imported.clone();
            fitted = Some(r);
            g
        }
    };
    // The fit optimized the pruned graph already: run the pipeline again
    // only for what it prints.
    let reuse = fitted.is_some()
        && opts.pipeline.print_after == PrintAfter::Never
        && !m.time_passes
        && !m.egraph_report;
    if reuse && let Some(r) = fitted.take() {
        let cost = fit_cost(&imported, m, &r)?;
        return Ok((
            r.optimized,
            Some(FitOutcome {
                report: r.report,
                cost,
            }),
        ));
    }
    if opts.pipeline.print_after == PrintAfter::All {
        emit(format!(
            "; ---- after import ({} nodes)\n{}",
            nnc_ir::stats::stats(&g).nodes,
            nnc_ir::print(&g)
        ));
    }
    let (g, report) = driver::optimize(g, &opts, |rec, g| {
        if rec.print {
            let state = if rec.changed { "changed" } else { "unchanged" };
            emit(format!(
                "; ---- after pass {} ({state}, {} nodes)\n{}",
                rec.name,
                rec.nodes,
                nnc_ir::print(g)
            ));
        }
    })
    .with_context(|| format!("loading `{}`", m.model.display()))?;
    if let Some(e) = failed.into_inner() {
        return Err(e.into());
    }
    if m.time_passes {
        eprint!("{}", report.timing_table());
    }
    if m.egraph_report {
        for r in &report.egraph_reports {
            eprint!("{r}");
        }
    }
    for r in &report.prune_reports {
        if (m.prune.is_some() && fit.is_none()) || r.channels_removed > 0 {
            eprint!("{r}");
        }
    }
    let mut plain = opts.clone();
    plain.pipeline.prune = None;
    plain.pipeline.print_after = PrintAfter::Never;
    if let Some(r) = fitted {
        let cost = fit_cost(&imported, m, &r)?;
        return Ok((
            g,
            Some(FitOutcome {
                report: r.report,
                cost,
            }),
        ));
    }
    if m.prune.is_some() {
        prune_cost(
            &imported,
            m,
            &plain,
            &g,
            target,
            &driver::Lowering::default(),
        )?;
    }
    Ok((g, None))
}

/// Prints `--prune`'s cost report: `pruned` (compiled) against the imported
/// model compiled with `plain` (the same options without pruning).
fn prune_cost(
    imported: &Graph,
    m: &ModelArgs,
    plain: &LoadOptions,
    pruned: &Graph,
    target: &Target,
    how: &driver::Lowering,
) -> Result<nnc::prune::Cost> {
    let (orig, _) = driver::optimize(imported.clone(), plain, |_, _| {})?;
    report_cost(imported, m, |sets, src| {
        nnc::prune::cost(&orig, pruned, target, how, sets, src)
    })
}

/// Prints `--prune-to-fit`'s cost report: the fit's figures before and
/// after (both lowered with the budget during the fit) and the deviation
/// of the pruned graph from the original.
fn fit_cost(imported: &Graph, m: &ModelArgs, r: &nnc::fit::Fitted) -> Result<nnc::prune::Cost> {
    report_cost(imported, m, |sets, calib| {
        Ok(nnc::prune::Cost {
            before: r.before.clone(),
            after: nnc::prune::figures_of(&r.optimized, &r.program),
            deviation: nnc::prune::deviation(&r.original, &r.optimized, sets)?,
            calib,
        })
    })
}

/// Measures a cost report with `measure` on the deviation inputs
/// (`--calib`, else the test data topped up with seeded random sets) and
/// prints it.
fn report_cost(
    imported: &Graph,
    m: &ModelArgs,
    measure: impl FnOnce(&[Vec<Tensor>], nnc::prune::CalibSource) -> Result<nnc::prune::Cost>,
) -> Result<nnc::prune::Cost> {
    let (sets, src) = nnc::prune::calib_inputs(
        imported,
        &m.model,
        m.calib.as_deref(),
        nnc::prune::RANDOM_SETS,
        nnc::prune::DEVIATION_SEED,
        true,
    )?;
    let cost = {
        let _p = Progress::start("measuring the pruning cost");
        measure(&sets, src)?
    };
    eprint!("{cost}");
    Ok(cost)
}

/// Splits `NAME=FILE` when NAME is one of `names`: the longest such prefix
/// before an `=` (names may contain `=`, file names too).
fn split_named<'a>(spec: &'a str, names: &[String]) -> (Option<&'a str>, &'a str) {
    let mut best = None;
    for (i, _) in spec.match_indices('=') {
        let (n, f) = (&spec[..i], &spec[i + 1..]);
        if names.iter().any(|x| x == n) {
            best = Some((n, f));
        }
    }
    match best {
        Some((n, f)) => (Some(n), f),
        None => (None, spec),
    }
}

/// Assigns `[NAME=]FILE` specs to names. A spec without a known NAME is a
/// plain FILE, allowed only when there is exactly one name and the spec has
/// no `=` (a mistyped name is an error, not a file called `nope=x.npy`).
fn assign<'a>(specs: &'a [String], names: &[String], what: &str) -> Result<Vec<(usize, &'a str)>> {
    let mut out = Vec::new();
    let list = || {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for s in specs {
        let idx = match split_named(s, names) {
            (Some(n), f) => (names.iter().position(|x| x == n).expect("matched"), f),
            (None, _) if s.contains('=') => bail!(
                "{what} `{}` is not one of the model's {what}s: {} (a file name with `=` needs the NAME= prefix)",
                s.split('=').next().unwrap_or_default(),
                list()
            ),
            (None, f) if names.len() == 1 => (0, f),
            (None, _) => bail!(
                "{what} `{s}` needs a NAME= prefix; the model's {what}s are: {}",
                list()
            ),
        };
        if out.iter().any(|(i, _)| *i == idx.0) {
            bail!("{what} `{}` given twice", names[idx.0]);
        }
        out.push(idx);
    }
    Ok(out)
}

/// Reads a model once: its input names are needed before it is imported,
/// to read input shapes from the input files.
fn read_model(path: &Path) -> Result<driver::Model> {
    driver::Model::read(path).with_context(|| format!("loading `{}`", path.display()))
}

/// Reads the `[NAME=]FILE` input files of a command before the model is
/// imported: their shapes fix the model's symbolic dims. Returns those
/// shapes by input name, and the tensors in the order of `specs`.
fn read_input_files(
    model: &driver::Model,
    specs: &[String],
) -> Result<(HashMap<String, Vec<usize>>, Vec<Tensor>)> {
    let names = model.input_names();
    let mut hints = HashMap::new();
    let mut tensors = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let (name, f) = split_named(s, &names);
        let (_, t) = io::read_tensor(Path::new(f))?;
        let name = name
            .map(str::to_string)
            .or_else(|| (names.len() == 1 && i == 0).then(|| names[0].clone()));
        if let Some(n) = name {
            hints.insert(n, t.dims().to_vec());
        }
        tensors.push(t);
    }
    Ok((hints, tensors))
}

/// Reads the `-i` files of a model read and imports it, the files' shapes
/// fixing symbolic dims (for `bench`, `compile`, `emit-c`). Returns the
/// graph and its inputs in signature order: the files, checked against the
/// graph's input types, and deterministic pseudo-random tensors for the
/// inputs no file gives.
fn load_with_inputs(
    model: &driver::Model,
    m: &ModelArgs,
    specs: &[String],
    target: &Target,
) -> Result<(Graph, Vec<Tensor>)> {
    load_with_inputs_fit(model, m, specs, target, None)
}

/// [`load_with_inputs`] with `--prune-to-fit` (the outcome is reported on
/// standard error).
fn load_with_inputs_fit(
    model: &driver::Model,
    m: &ModelArgs,
    specs: &[String],
    target: &Target,
    fit: Option<&FitRequest>,
) -> Result<(Graph, Vec<Tensor>)> {
    let (hints, files) = read_input_files(model, specs)?;
    let g = load_model_fit(model, m, &hints, false, target, fit)?.0;
    let names: Vec<String> = (0..g.inputs().len())
        .map(|i| g.input_name(i).to_string())
        .collect();
    let mut inputs = nnc_passes::check::random_inputs(&g, 1);
    for ((idx, _), t) in assign(specs, &names, "input")?.into_iter().zip(files) {
        inputs[idx] = t;
    }
    nnc_ir::interp::check_inputs(&g, &inputs)?;
    Ok((g, inputs))
}

/// Creates the missing folders above an output file: every `-o FILE` (and
/// `--memory-svg FILE`) may name a folder that does not exist yet, as
/// `emit-c -o DIR` may. Called only once the output is ready to write.
fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    Ok(())
}

/// The files named by `[NAME=]FILE` specs (`-i`, `--expect`).
fn spec_files(model: &driver::Model, specs: &[String]) -> Vec<PathBuf> {
    let names = model.input_names();
    specs
        .iter()
        .map(|s| PathBuf::from(split_named(s, &names).1))
        .collect()
}

/// The files a command reads: the model's own files and `extra` (tensor
/// files given with -i / --expect).
fn command_inputs(model: &driver::Model, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = model.files();
    v.extend_from_slice(extra);
    v
}

/// Fails when `out` is one of `inputs` (gcc's rule: never overwrite an input).
fn refuse_inputs(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    nnc::outfile::check_not_input(out, inputs).map_err(anyhow::Error::msg)
}
