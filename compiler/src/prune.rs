//! What pruning cost: calibration inputs (`--calib DIR`, else the model's
//! test data sets, else seeded random tensors), and the comparison of a
//! pruned graph with the unpruned one: parameters, MACs, flash (weights)
//! and peak SRAM (arena) before and after, and the output deviation on the
//! calibration inputs through the reference interpreter (max abs error,
//! SNR in dB, top-1 agreement).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nnc_ir::program::Target;
use nnc_ir::{Graph, Tensor};

use crate::driver::Lowering;

/// Input sets the deviation is measured on without `--calib`: the model's
/// test data, topped up with seeded random sets to this many.
pub const RANDOM_SETS: u64 = 16;

/// Seeds of the deviation's random sets start here, so that they are not
/// the sets reconstruction was fitted on (seeds 1 to 64).
pub const DEVIATION_SEED: u64 = 1001;

/// Where calibration inputs came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CalibSource {
    Dir(PathBuf),
    TestData(PathBuf, usize, u64),
    Random(u64),
}

impl fmt::Display for CalibSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibSource::Dir(d) => write!(f, "files in {}", d.display()),
            CalibSource::TestData(d, n, 0) => {
                write!(f, "{n} test data set(s) in {}", d.display())
            }
            CalibSource::TestData(d, n, r) => write!(
                f,
                "{n} test data set(s) in {} and {r} seeded random input sets",
                d.display()
            ),
            CalibSource::Random(n) => write!(f, "{n} seeded random input sets"),
        }
    }
}

fn tensor_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "npy" || e == "pb"))
        .collect();
    v.sort();
    Ok(v)
}

/// One input set from the files of a folder whose names start with
/// `input` (a test data set), in name order.
fn set_from_dir(g: &Graph, dir: &Path) -> Result<Option<Vec<Tensor>>> {
    let files: Vec<PathBuf> = tensor_files(dir)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("input"))
        })
        .collect();
    if files.len() != g.inputs().len() {
        return Ok(None);
    }
    let mut set = vec![];
    for f in files {
        set.push(crate::io::read_tensor(&f)?.1);
    }
    Ok(Some(set))
}

/// Calibration inputs for `g` (loaded from `model`): the `.npy`/`.pb`
/// files of `calib` (one file per set for a one-input model; otherwise one
/// folder per set, its `input*` files in name order); else, with
/// `test_data`, the model's `test_data_set_*` folders; topped up to `n`
/// sets with seeded random inputs (seeds from `seed`). Every set is
/// checked against the graph's inputs.
pub fn calib_inputs(
    g: &Graph,
    model: &Path,
    calib: Option<&Path>,
    n: u64,
    seed: u64,
    test_data: bool,
) -> Result<(Vec<Vec<Tensor>>, CalibSource)> {
    let check = |sets: Vec<Vec<Tensor>>, src: CalibSource| -> Result<_> {
        for (i, s) in sets.iter().enumerate() {
            nnc_ir::interp::check_inputs(g, s)
                .with_context(|| format!("calibration set {i} ({src})"))?;
        }
        Ok((sets, src))
    };
    if let Some(dir) = calib {
        let mut sets = vec![];
        if g.inputs().len() == 1 {
            for f in tensor_files(dir)? {
                sets.push(vec![crate::io::read_tensor(&f)?.1]);
            }
        }
        if sets.is_empty() {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read `{}`", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            for s in subs {
                if let Some(set) = set_from_dir(g, &s)? {
                    sets.push(set);
                }
            }
        }
        if sets.is_empty() {
            bail!(
                "--calib `{}`: no calibration inputs (.npy or .pb files; one folder per set for \
                 a model with several inputs)",
                dir.display()
            );
        }
        return check(sets, CalibSource::Dir(dir.to_path_buf()));
    }
    let parent = model.parent().unwrap_or(Path::new("."));
    let mut sets = vec![];
    if test_data && let Ok(rd) = std::fs::read_dir(parent) {
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set"))
            })
            .collect();
        dirs.sort();
        for d in dirs {
            if let Some(s) = set_from_dir(g, &d)?
                && nnc_ir::interp::check_inputs(g, &s).is_ok()
            {
                sets.push(s);
            }
        }
    }
    let found = sets.len();
    let random = n.saturating_sub(found as u64);
    sets.extend((seed..seed + random).map(|s| nnc_passes::check::random_inputs(g, s)));
    if found > 0 {
        return check(
            sets,
            CalibSource::TestData(parent.to_path_buf(), found, random),
        );
    }
    check(sets, CalibSource::Random(random))
}

/// How far the pruned graph's outputs are from the original's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deviation {
    pub max_abs: f64,
    /// Signal (the original outputs) to error power, in dB; infinite when
    /// the outputs are equal.
    pub snr_db: f64,
    /// Share of rows (of the first output, last axis) whose argmax agrees.
    pub top1: f64,
    pub sets: usize,
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max abs error {:.4e}, SNR {:.2} dB, top-1 agreement {:.1}% over {} input set(s)",
            self.max_abs,
            self.snr_db,
            100.0 * self.top1,
            self.sets
        )
    }
}

fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let v = t.to_f64();
    let k = t.dims().last().copied().unwrap_or(1).max(1);
    v.chunks(k)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, x)| if *x > b.1 { (i, *x) } else { b },
                )
                .0
        })
        .collect()
}

/// Runs both graphs on every set with the interpreter and compares all
/// their outputs.
pub fn deviation(orig: &Graph, pruned: &Graph, sets: &[Vec<Tensor>]) -> Result<Deviation> {
    let (mut sig, mut err, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    let (mut agree, mut rows) = (0usize, 0usize);
    for s in sets {
        let a = nnc_ir::interp::run(orig, s)?;
        let b = nnc_ir::interp::run(pruned, s)?;
        for (x, y) in a.iter().zip(&b) {
            for (p, q) in x.to_f64().iter().zip(y.to_f64()) {
                sig += p * p;
                err += (p - q) * (p - q);
                max_abs = max_abs.max((p - q).abs());
            }
        }
        if let (Some(x), Some(y)) = (a.first(), b.first()) {
            let (ra, rb) = (argmax_rows(x), argmax_rows(y));
            agree += ra.iter().zip(&rb).filter(|(p, q)| p == q).count();
            rows += ra.len();
        }
    }
    let snr_db = if err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / err).log10()
    };
    Ok(Deviation {
        max_abs,
        snr_db,
        top1: if rows == 0 {
            1.0
        } else {
            agree as f64 / rows as f64
        },
        sets: sets.len(),
    })
}

/// Model figures before and after.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub params: usize,
    pub macs: u64,
    /// Weight bytes of the lowered program (flash).
    pub flash: usize,
    /// Arena bytes of the lowered program (peak SRAM).
    pub peak: usize,
}

/// The figures of `g` lowered for `target` as `how` says.
pub fn figures(g: &Graph, target: &Target, how: &Lowering) -> Result<Figures> {
    Ok(figures_of(g, &how.lower(g, "model", target)?))
}

/// The figures of `g`, lowered already to `p`.
pub fn figures_of(g: &Graph, p: &nnc_ir::program::Program) -> Figures {
    let s = nnc_ir::stats::stats(g);
    Figures {
        params: s.params,
        macs: s.macs,
        flash: p.weight_bytes(),
        peak: p.stats.arena_bytes,
    }
}

/// The cost of a pruning: figures before and after and the deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Cost {
    pub before: Figures,
    pub after: Figures,
    pub deviation: Deviation,
    pub calib: CalibSource,
}

fn row(f: &mut fmt::Formatter<'_>, what: &str, a: u64, b: u64) -> fmt::Result {
    let pct = if a == 0 {
        0.0
    } else {
        100.0 * (a as f64 - b as f64) / a as f64
    };
    writeln!(f, "  {what:<11} {a:>12} -> {b:>12}  (-{pct:.1}%)")
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pruning cost:")?;
        row(
            f,
            "parameters",
            self.before.params as u64,
            self.after.params as u64,
        )?;
        row(f, "MACs", self.before.macs, self.after.macs)?;
        row(
            f,
            "flash B",
            self.before.flash as u64,
            self.after.flash as u64,
        )?;
        row(
            f,
            "peak SRAM B",
            self.before.peak as u64,
            self.after.peak as u64,
        )?;
        writeln!(f, "  deviation:  {} ({})", self.deviation, self.calib)
    }
}

/// Compares `pruned` with `orig` (the same model optimized without
/// pruning).
pub fn cost(
    orig: &Graph,
    pruned: &Graph,
    target: &Target,
    how: &Lowering,
    sets: &[Vec<Tensor>],
    calib: CalibSource,
) -> Result<Cost> {
    Ok(Cost {
        before: figures(orig, target, how)?,
        after: figures(pruned, target, how)?,
        deviation: deviation(orig, pruned, sets)?,
        calib,
    })
}

/// Prunes an imported graph as `opts.pipeline.prune` says and removes the
/// dead channels, without optimizing it: the result is still the graph as
/// imported (float or QDQ), which is what `nnc prune` writes as ONNX.
pub fn prune_imported(
    imported: Graph,
    opts: &crate::driver::LoadOptions,
) -> Result<(Graph, nnc_passes::PipelineReport)> {
    let mut passes = vec!["fold-constants", "remove-identity"];
    if let Some(p) = &opts.pipeline.prune {
        passes.push(p.method.name());
    }
    passes.push("prune-dead");
    let mut o = opts.clone();
    o.pipeline.passes = Some(passes.iter().map(|s| s.to_string()).collect());
    o.pipeline.print_after = nnc_passes::PrintAfter::Never;
    o.pipeline.stop_after = None;
    Ok(crate::driver::optimize(imported, &o, |_, _| {})?)
}
