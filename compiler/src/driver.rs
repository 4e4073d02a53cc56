//! The compilation session: load a model (ONNX or `.nnir` text), apply the
//! pipeline for the optimization level, and run it on tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nnc_ir::program::{Program, Target};
use nnc_ir::{Graph, IrError, Tensor};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_passes::lower::{KernelChoice, LowerOptions};
use nnc_passes::manager::PassRecord;
use nnc_passes::{OptLevel, PassError, PipelineOptions, PipelineReport};
use thiserror::Error;

use crate::io::IoError;
use crate::onnx::{self, ImportError, ImportOptions};

/// Errors from the driver.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Backend(#[from] nnc_backends::BackendError),
    #[error("`{path}`: {source}")]
    Text { path: PathBuf, source: IrError },
    #[error("{0}")]
    Usage(String),
}

/// Result alias for the driver.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Shapes for inputs with symbolic dims (`--input-shape`).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Shapes of the tensors that will be fed; they fill unknown dims only.
    pub shape_hints: HashMap<String, Vec<usize>>,
    pub opt_level: OptLevel,
    /// Custom pass list, dumps, verification, e-graph limits.
    pub pipeline: PipelineOptions,
}

/// True when the path names an `.nnir` text file.
pub fn is_text_ir(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "nnir")
}

/// A model file read (and, for ONNX, decoded) once: callers that need its
/// input names before importing it, or import it and then optimize it, do
/// not read or decode it again.
#[derive(Debug)]
pub struct Model {
    pub path: PathBuf,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Onnx(Box<onnx::proto::ModelProto>),
    Text(String),
}

impl Model {
    /// Reads an ONNX file or an `.nnir` dump.
    pub fn read(path: &Path) -> Result<Model> {
        let source = if is_text_ir(path) {
            Source::Text(
                std::fs::read_to_string(path).map_err(|source| IoError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            )
        } else {
            let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Source::Onnx(Box::new(onnx::decode(&bytes)?))
        };
        Ok(Model {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The names of the inputs a caller feeds (for `.nnir`, from its
    /// signature line; empty if that does not parse, which importing then
    /// reports).
    pub fn input_names(&self) -> Vec<String> {
        match &self.source {
            Source::Onnx(m) => onnx::input_names(m),
            Source::Text(t) => nnc_ir::parse::signature_names(t)
                .map(|s| s.0)
                .unwrap_or_default(),
        }
    }

    /// The files the model is read from: the model itself and its ONNX
    /// external data files or `.nnir` weights files. Commands refuse to
    /// write over them.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        let dir = self.path.parent().unwrap_or(Path::new(""));
        match &self.source {
            Source::Text(text) => files.extend(
                nnc_ir::parse::weights_files(text)
                    .iter()
                    .map(|f| dir.join(f)),
            ),
            Source::Onnx(m) => {
                for t in m.graph.iter().flat_map(|g| &g.initializer) {
                    for e in t.external_data.iter().filter(|e| e.key == "location") {
                        files.push(dir.join(&e.value));
                    }
                }
            }
        }
        files
    }

    /// The graph as written (no passes).
    pub fn import(&self, opts: &LoadOptions) -> Result<Graph> {
        let path = &self.path;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        match &self.source {
            Source::Text(text) => {
                // Weights files, like ONNX external data, stay inside the
                // model's folder.
                let loader =
                    move |f: &str| crate::confine::read(&dir, f).map_err(std::io::Error::other);
                nnc_ir::parse_with(text, &loader).map_err(|source| DriverError::Text {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Source::Onnx(m) => {
                let iopts = ImportOptions {
                    input_shapes: opts.input_shapes.clone(),
                    shape_hints: opts.shape_hints.clone(),
                    base_dir: Some(dir),
                };
                let mut g = onnx::import_model(m, &iopts)?;
                if g.name.is_empty() {
                    g.name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                }
                Ok(g)
            }
        }
    }
}

/// Loads an ONNX model or an `.nnir` dump and applies the pipeline.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Graph> {
    Ok(load_with(path, opts, |_, _| {})?.0)
}

/// Loads the graph as written (no passes).
pub fn import(path: &Path, opts: &LoadOptions) -> Result<Graph> {
    Model::read(path)?.import(opts)
}

/// Like [`load`], calling `on_pass` after every pass (for `--print-after`)
/// and returning the pipeline report (timings, e-graph reports).
pub fn load_with(
    path: &Path,
    opts: &LoadOptions,
    on_pass: impl FnMut(&PassRecord, &Graph),
) -> Result<(Graph, PipelineReport)> {
    let g = import(path, opts)?;
    optimize(g, opts, on_pass)
}

/// Applies the pipeline of `opts` to an imported graph.
pub fn optimize(
    mut g: Graph,
    opts: &LoadOptions,
    on_pass: impl FnMut(&PassRecord, &Graph),
) -> Result<(Graph, PipelineReport)> {
    let report = nnc_passes::run_pipeline(&mut g, opts.opt_level, &opts.pipeline, on_pass)?;
    Ok((g, report))
}

/// Runs a graph with the reference interpreter.
pub fn run_interp(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    Ok(nnc_ir::interp::run(g, inputs)?)
}

/// Result of comparing an output with a reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Largest |actual - expected| over the elements where both are
    /// finite (NaN positions are counted in `nan_mismatches` instead).
    pub max_abs: f64,
    pub max_rel: f64,
    /// Elements outside `atol + rtol * |expected|`, NaN mismatches included.
    pub mismatches: usize,
    /// Elements where exactly one side is NaN, or both are and NaN is not
    /// taken as equal to NaN.
    pub nan_mismatches: usize,
    /// Shape or dtype differ.
    pub shape_mismatch: Option<String>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.shape_mismatch.is_none()
    }
}

/// Compares `actual` with `expected` as `numpy.testing.assert_allclose`
/// does (NaN equals NaN), integers exactly: see [`compare_within`].
pub fn compare(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Comparison {
    compare_within(actual, expected, rtol, atol, 0, true)
}

/// Compares `actual` with `expected` as `numpy.isclose` does: floats within
/// `atol + rtol * |expected|`, infinities only equal to themselves, a NaN
/// equal to a NaN only with `equal_nan`; integers within `lsb` (int8
/// outputs of float kernels can round the other way).
pub fn compare_within(
    actual: &Tensor,
    expected: &Tensor,
    rtol: f64,
    atol: f64,
    lsb: u64,
    equal_nan: bool,
) -> Comparison {
    let mut c = Comparison {
        max_abs: 0.0,
        max_rel: 0.0,
        mismatches: 0,
        nan_mismatches: 0,
        shape_mismatch: None,
    };
    if actual.ty() != expected.ty() {
        c.shape_mismatch = Some(format!("got {}, expected {}", actual.ty(), expected.ty()));
        return c;
    }
    let exact = !expected.dtype().is_float();
    if exact {
        let (a, e) = (actual.to_i64(), expected.to_i64());
        for (x, y) in a.iter().zip(&e) {
            let d = (*x as f64 - *y as f64).abs();
            c.max_abs = c.max_abs.max(d);
            if x.abs_diff(*y) > lsb {
                c.mismatches += 1;
            }
        }
        return c;
    }
    let (a, e) = (actual.to_f64(), expected.to_f64());
    for (&x, &y) in a.iter().zip(&e) {
        if x.is_nan() || y.is_nan() {
            if !(equal_nan && x.is_nan() && y.is_nan()) {
                c.mismatches += 1;
                c.nan_mismatches += 1;
            }
            continue;
        }
        if x.is_infinite() || y.is_infinite() {
            if x != y {
                c.mismatches += 1;
                c.max_abs = f64::INFINITY;
            }
            continue;
        }
        let d = (x - y).abs();
        c.max_abs = c.max_abs.max(d);
        if y != 0.0 {
            c.max_rel = c.max_rel.max(d / y.abs());
        }
        if d > atol + rtol * y.abs() {
            c.mismatches += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_equal_only_when_asked() {
        let t = |v: Vec<f32>| Tensor::from_f32(vec![v.len()], v).unwrap();
        let a = t(vec![1.0, f32::NAN, f32::NAN, f32::INFINITY]);
        let b = t(vec![1.0, f32::NAN, 2.0, f32::INFINITY]);
        let strict = compare_within(&a, &b, 1e-4, 1e-5, 0, false);
        assert_eq!((strict.mismatches, strict.nan_mismatches), (2, 2));
        let loose = compare_within(&a, &b, 1e-4, 1e-5, 0, true);
        assert_eq!((loose.mismatches, loose.nan_mismatches), (1, 1));
        assert!(!loose.ok());
        let c = compare_within(
            &t(vec![1.0, 2.0]),
            &t(vec![1.0, 2.918]),
            1e-4,
            1e-5,
            0,
            false,
        );
        assert!(!c.ok() && (c.max_abs - 0.918).abs() < 1e-3);
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The reference interpreter.
    Interp,
    /// Generated C, compiled with the system `cc`.
    C,
    /// Cranelift native code, compiled in process (JIT).
    Native,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Interp, Backend::C, Backend::Native];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::C => "c",
            Backend::Native => "native",
        }
    }
}

/// How to lower for a backend: kernels forced onto steps, and the memory
/// goal of partial execution.
#[derive(Clone, Debug, PartialEq)]
pub struct Lowering {
    pub kernels: Vec<KernelChoice>,
    pub memory: MemoryGoal,
    /// Extra multiply-accumulates column tiles may add, in percent of the
    /// model's (`--max-recompute`; 0: no column tiles).
    pub max_recompute: f64,
    /// Try channel split when the memory goal asks for partial execution
    /// (`--channel-split`).
    pub channel_split: bool,
}

impl Default for Lowering {
    fn default() -> Self {
        Lowering {
            kernels: vec![],
            memory: MemoryGoal::default(),
            max_recompute: nnc_passes::lower::partition::MAX_EXTRA_MACS_PERCENT,
            channel_split: true,
        }
    }
}

impl Lowering {
    /// Lowers a graph for `target` this way.
    pub fn lower(&self, g: &Graph, name: &str, target: &Target) -> Result<Program> {
        Ok(nnc_passes::lower::lower(
            g,
            &LowerOptions {
                name: name.to_string(),
                target: target.clone(),
                kernels: self.kernels.clone(),
                memory: self.memory,
                max_recompute: self.max_recompute,
                channel_split: self.channel_split,
            },
        )?)
    }
}

/// Runs a graph on the given backend.
pub fn execute(g: &Graph, backend: Backend, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    execute_with(g, backend, inputs, &Lowering::default())
}

/// Runs a graph on the given backend, lowered as `how` says.
pub fn execute_with(
    g: &Graph,
    backend: Backend,
    inputs: &[Tensor],
    how: &Lowering,
) -> Result<Vec<Tensor>> {
    match backend {
        Backend::Interp => run_interp(g, inputs),
        Backend::C => crate::cbuild::run_c_with(g, inputs, &crate::cbuild::CFlags::default(), how),
        Backend::Native => crate::native::run_native_with(g, inputs, how),
    }
}

/// Lowers a graph to a program for `target`: memory plan and kernel
/// selection, with `kernels` forced onto the steps they select.
pub fn lower(g: &Graph, name: &str, target: &Target, kernels: &[KernelChoice]) -> Result<Program> {
    lower_with(g, name, target, kernels, MemoryGoal::Auto)
}

/// [`lower`] with a memory goal for partial execution (streamed chains).
pub fn lower_with(
    g: &Graph,
    name: &str,
    target: &Target,
    kernels: &[KernelChoice],
    memory: MemoryGoal,
) -> Result<Program> {
    Lowering {
        kernels: kernels.to_vec(),
        memory,
        ..Default::default()
    }
    .lower(g, name, target)
}
