//! Subcommands of `nnc`. Argument parsing (clap) and presentation live
//! here; the work is done by the library (`nnc::driver`, `nnc::io`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nnc::driver::{self, LoadOptions};
use nnc::io;
use nnc_ir::{ConstMode, Graph, PrintOptions, Tensor};
use nnc_passes::{OptLevel, PipelineOptions, PrintAfter};
use serde_json::json;

const ABOUT: &str = "nnc: an ahead-of-time neural-network compiler.\n\n\
Imports ONNX models into a typed graph IR, optimizes them, and runs them \
with the reference interpreter. MODEL is an ONNX file (.onnx) or an nnc \
text IR file (.nnir, as written by `nnc dump`).";

const AFTER_HELP: &str = "Optimization levels and their pipelines:\n\
  -O0  (none: the graph as imported)\n\
  -O1  fold-constants, remove-identity, cse, dce\n\
  -O2  fold-constants, remove-identity, egraph, dce (default)\n\
  -Os  as -O2, with the microcontroller cost model (latency plus memory)\n\n\
Passes (for --passes, --print-after, --stop-after):\n\
  fold-constants   evaluate nodes whose inputs are all constants\n\
  remove-identity  forward the inputs of identity nodes\n\
  cse              share identical nodes and identical constants\n\
  dce              remove nodes no output depends on\n\
  egraph           e-graph rewrites, all rule groups: clean-up, layout (transposes,\n\
                   reshapes), BatchNorm folding, bias/activation/scale fusion, pad folding\n\
  egraph-cleanup   e-graph with the clean-up and layout groups only\n\
  egraph-fuse      e-graph with the clean-up, BatchNorm, fusion and pad groups\n\n\
RUST_LOG=nnc_passes=info logs e-graph statistics; --egraph-report prints egg's report.";

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
    /// Show inputs, outputs, op histogram, parameters, MACs and activation sizes
    Info(InfoArgs),
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
    #[arg(long, value_delimiter = ',', value_name = "PASS,...")]
    passes: Option<Vec<String>>,
    /// Print the IR after PASS (`all` for every pass; repeatable or comma-separated)
    #[arg(long = "print-after", value_delimiter = ',', value_name = "PASS|all")]
    print_after: Vec<String>,
    /// Stop the pipeline after PASS
    #[arg(long = "stop-after", value_name = "PASS")]
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
}

impl Backend {
    fn driver(self) -> driver::Backend {
        match self {
            Backend::Interp => driver::Backend::Interp,
            Backend::C => driver::Backend::C,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Backend that executes the model
    #[arg(long, value_enum, default_value = "interp")]
    backend: Backend,
    /// Input tensor file (.npy or ONNX TensorProto .pb): `NAME=FILE`, or `FILE` when the model has one input (repeatable)
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,
    /// Write an output as .npy: `NAME=FILE`, or `FILE` when the model has one output (repeatable)
    #[arg(short, long = "output", value_name = "[NAME=]FILE")]
    outputs: Vec<String>,
    /// Compare an output with a reference tensor file and fail on mismatch (repeatable)
    #[arg(long = "expect", value_name = "[NAME=]FILE")]
    expect: Vec<String>,
    /// Relative tolerance for --expect
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Absolute tolerance for --expect
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Print load and run times to standard error
    #[arg(long)]
    time: bool,
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
    /// Output format
    #[arg(long, value_enum, default_value = "nnir")]
    format: DumpFormat,
    /// How constant data is written (default: external with -o, elide without)
    #[arg(long, value_enum)]
    weights: Option<WeightsMode>,
    /// Write to FILE instead of standard output
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Dump(a) => cmd_dump(a),
        Cmd::Info(a) => cmd_info(a),
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
    Ok(LoadOptions {
        input_shapes,
        opt_level: m.opt,
        pipeline: PipelineOptions {
            passes: m.passes.clone(),
            print_after,
            stop_after: m.stop_after.clone(),
            verify: m.verify,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Loads and optimizes a model. Dumps requested with --print-after go to
/// standard output for `dump` and to standard error otherwise.
fn load(
    m: &ModelArgs,
    hints: &HashMap<String, Vec<usize>>,
    dumps_to_stdout: bool,
) -> Result<Graph> {
    let mut opts = load_opts(m)?;
    opts.shape_hints = hints.clone();
    let emit = |s: String| {
        if dumps_to_stdout {
            print!("{s}");
        } else {
            eprint!("{s}");
        }
    };
    if opts.pipeline.print_after == PrintAfter::All {
        let g = driver::import(&m.model, &opts)
            .with_context(|| format!("loading `{}`", m.model.display()))?;
        emit(format!(
            "; ---- after import ({} nodes)\n{}",
            nnc_ir::stats::stats(&g).nodes,
            nnc_ir::print(&g)
        ));
    }
    let (g, report) = driver::load_with(&m.model, &opts, |rec, g| {
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
    if m.time_passes {
        eprint!("{}", report.timing_table());
    }
    if m.egraph_report {
        for r in &report.egraph_reports {
            eprint!("{r}");
        }
    }
    Ok(g)
}

/// Splits `NAME=FILE` into its parts when NAME is one of `names`.
fn split_named<'a>(spec: &'a str, names: &[String]) -> (Option<&'a str>, &'a str) {
    if let Some((n, f)) = spec.split_once('=')
        && names.iter().any(|x| x == n)
    {
        return (Some(n), f);
    }
    (None, spec)
}

/// Assigns `[NAME=]FILE` specs to names; an unnamed spec is allowed only
/// when there is exactly one name.
fn assign<'a>(specs: &'a [String], names: &[String], what: &str) -> Result<Vec<(usize, &'a str)>> {
    let mut out = Vec::new();
    for s in specs {
        let idx = match split_named(s, names) {
            (Some(n), f) => (names.iter().position(|x| x == n).expect("matched"), f),
            (None, f) if names.len() == 1 => (0, f),
            (None, _) => bail!(
                "{what} `{s}` needs a NAME= prefix; the model's {what}s are: {}",
                names.join(", ")
            ),
        };
        if out.iter().any(|(i, _)| *i == idx.0) {
            bail!("{what} `{}` given twice", names[idx.0]);
        }
        out.push(idx);
    }
    Ok(out)
}

fn model_input_names(path: &Path) -> Result<Vec<String>> {
    // Names are needed before the model is loaded, to read input shapes
    // from the files; decode the ONNX signature only.
    if driver::is_text_ir(path) {
        return Ok(vec![]);
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let m = nnc::onnx::decode(&bytes).with_context(|| format!("loading `{}`", path.display()))?;
    let g = m.graph.unwrap_or_default();
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(g.input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect())
}

fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    // Read input files first: their shapes fix symbolic dims.
    let pre_names = model_input_names(&a.model.model)?;
    let mut files: Vec<(Option<String>, PathBuf, Tensor)> = Vec::new();
    for s in &a.inputs {
        let (name, f) = split_named(s, &pre_names);
        let (_, t) = io::read_tensor(Path::new(f))?;
        files.push((name.map(str::to_string), PathBuf::from(f), t));
    }
    let mut hints = HashMap::new();
    for (i, (name, _, t)) in files.iter().enumerate() {
        let name = name
            .clone()
            .or_else(|| (pre_names.len() == 1 && i == 0).then(|| pre_names[0].clone()));
        if let Some(n) = name {
            hints.insert(n, t.dims().to_vec());
        }
    }
    let t_load = Instant::now();
    let g = load(&a.model, &hints, false)?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let in_names: Vec<String> = (0..g.inputs().len())
        .map(|i| g.input_name(i).to_string())
        .collect();
    let out_names: Vec<String> = g.outputs().iter().map(|o| o.name.clone()).collect();
    let assigned = assign(&a.inputs, &in_names, "input")?;
    let mut inputs: Vec<Option<Tensor>> = vec![None; in_names.len()];
    for ((idx, _), (_, _, t)) in assigned.into_iter().zip(files) {
        inputs[idx] = Some(t);
    }
    let missing: Vec<String> = inputs
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_none())
        .map(|(i, _)| format!("{} ({})", in_names[i], g.input_type(i)))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing input(s): {}; pass them with --input NAME=FILE",
            missing.join(", ")
        );
    }
    let inputs: Vec<Tensor> = inputs.into_iter().map(|t| t.expect("checked")).collect();
    let outputs_spec = assign(&a.outputs, &out_names, "output")?;
    let expect_spec = assign(&a.expect, &out_names, "output")?;
    let t0 = Instant::now();
    let outs = driver::execute(&g, a.backend.driver(), &inputs)?;
    let elapsed = t0.elapsed();
    for (idx, f) in &outputs_spec {
        io::write_npy(Path::new(f), &outs[*idx])?;
    }
    if outputs_spec.is_empty() {
        for (name, t) in out_names.iter().zip(&outs) {
            println!("{}", summarize(name, t));
        }
    }
    let mut failed = false;
    for (idx, f) in &expect_spec {
        let (_, want) = io::read_tensor(Path::new(f))?;
        let c = driver::compare(&outs[*idx], &want, a.rtol, a.atol);
        let name = &out_names[*idx];
        if let Some(m) = &c.shape_mismatch {
            println!("{name}: MISMATCH ({m})");
            failed = true;
        } else if c.ok() {
            println!(
                "{name}: ok (max abs err {:.3e}, max rel err {:.3e})",
                c.max_abs, c.max_rel
            );
        } else {
            println!(
                "{name}: MISMATCH: {} of {} elements outside rtol {} atol {} (max abs err {:.3e})",
                c.mismatches,
                want.len(),
                a.rtol,
                a.atol,
                c.max_abs
            );
            failed = true;
        }
    }
    if a.time {
        eprintln!(
            "time: load {load_ms:.2} ms, run {:.2} ms ({})",
            elapsed.as_secs_f64() * 1e3,
            a.model.opt
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One-line summary of a tensor plus its first values.
fn summarize(name: &str, t: &Tensor) -> String {
    let v = t.to_f64();
    let mut s = format!("{name}: {}", t.ty());
    if !v.is_empty() {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let argmax = v
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
        let _ = write!(
            s,
            "  min {min:.6} max {max:.6} mean {mean:.6} argmax {argmax}"
        );
        let shown: Vec<String> = v.iter().take(8).map(|x| format!("{x:.6}")).collect();
        let more = if v.len() > 8 { ", ..." } else { "" };
        let _ = write!(s, "\n  [{}{more}]", shown.join(", "));
    }
    s
}

fn cmd_dump(a: DumpArgs) -> Result<ExitCode> {
    let g = load(&a.model, &HashMap::new(), a.out.is_none())?;
    let text = match a.format {
        DumpFormat::Dot => nnc_ir::dot::to_dot(&g),
        DumpFormat::Nnir => {
            let mode = a.weights.unwrap_or(if a.out.is_some() {
                WeightsMode::External
            } else {
                WeightsMode::Elide
            });
            let consts = match mode {
                WeightsMode::Elide => ConstMode::Elide(8),
                WeightsMode::Inline => ConstMode::Inline,
                WeightsMode::External => {
                    let Some(out) = &a.out else {
                        bail!("--weights external needs -o FILE");
                    };
                    let file = format!(
                        "{}.bin",
                        out.file_name()
                            .map(|f| f.to_string_lossy())
                            .unwrap_or_default()
                    );
                    ConstMode::External {
                        file,
                        inline_max: 16,
                    }
                }
            };
            let (text, blob) = nnc_ir::print_with(&g, &PrintOptions { consts });
            if let (Some(blob), Some(out)) = (blob, &a.out) {
                let mut bin = out.clone().into_os_string();
                bin.push(".bin");
                std::fs::write(&bin, blob)
                    .with_context(|| format!("cannot write `{}`", PathBuf::from(&bin).display()))?;
            }
            text
        }
    };
    match &a.out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("cannot write `{}`", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn cmd_info(a: InfoArgs) -> Result<ExitCode> {
    let g = load(&a.model, &HashMap::new(), false)?;
    let s = nnc_ir::stats::stats(&g);
    let inputs: Vec<_> = (0..g.inputs().len())
        .map(|i| {
            let t = g.input_type(i);
            json!({"name": g.input_name(i), "dtype": t.dtype.name(), "shape": t.dims})
        })
        .collect();
    let outputs: Vec<_> = g
        .outputs()
        .iter()
        .map(|o| {
            let t = g.value_type(o.value);
            json!({"name": o.name, "dtype": t.dtype.name(), "shape": t.dims})
        })
        .collect();
    if a.json {
        let v = json!({
            "model": a.model.model.display().to_string(),
            "opt_level": a.model.opt.to_string(),
            "inputs": inputs,
            "outputs": outputs,
            "nodes": s.nodes,
            "ops": s.ops,
            "params": s.params,
            "param_bytes": s.param_bytes,
            "macs": s.macs,
            "activation_bytes": s.activation_bytes,
            "largest_activation_bytes": s.largest_activation_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model:       {} ({})", a.model.model.display(), a.model.opt);
    for i in 0..g.inputs().len() {
        println!("input:       {}: {}", g.input_name(i), g.input_type(i));
    }
    for o in g.outputs() {
        println!("output:      {}: {}", o.name, g.value_type(o.value));
    }
    let mut ops: Vec<(&String, &usize)> = s.ops.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let hist: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("nodes:       {}", s.nodes);
    println!("ops:         {}", hist.join(", "));
    println!("parameters:  {} ({})", s.params, human_bytes(s.param_bytes));
    println!("MACs:        {} ({:.2} M)", s.macs, s.macs as f64 / 1e6);
    println!(
        "activations: {} total, largest tensor {}",
        human_bytes(s.activation_bytes),
        human_bytes(s.largest_activation_bytes)
    );
    Ok(ExitCode::SUCCESS)
}
