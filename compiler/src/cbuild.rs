//! Building generated C with the system compiler and running it: the
//! model's C plus the runtime harness become an executable that reads
//! `.npy` / `.pb` inputs and writes `.npy` outputs. Builds are cached by a
//! hash of everything that goes into them, so tests and repeated runs do
//! not recompile (see [`crate::cache`] for how the cache is kept safe).

use std::path::{Path, PathBuf};
use std::process::Command;

use nnc_backends::c::CSource;
use nnc_ir::Tensor;
use nnc_ir::program::Program;
use nnc_runtime::harness::{FMA_PEAK_C, HARNESS_C, HARNESS_H, IoDesc, StepDesc, glue};

pub use crate::cache::cache_dir;
use crate::cache::{self, key, lookup, publish, scratch_dir};
use crate::driver::{DriverError, Result};
use crate::io;

/// How to compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CFlags {
    /// Optimization flags, e.g. `["-O2"]` or `["-O3", "-march=native"]`.
    pub opt: Vec<String>,
    /// Build with AddressSanitizer and UndefinedBehaviorSanitizer.
    pub sanitize: bool,
    /// Compile the per-step profiling hooks in (`-DNNC_PROFILE`).
    pub profile: bool,
}

impl Default for CFlags {
    fn default() -> Self {
        CFlags {
            opt: vec!["-O2".into()],
            sanitize: false,
            profile: false,
        }
    }
}

impl CFlags {
    /// Flags for benchmarks: `-O3 -march=native`.
    pub fn bench() -> Self {
        CFlags {
            opt: vec![
                "-O3".into(),
                "-march=native".into(),
                "-mprefer-vector-width=512".into(),
            ],
            ..Default::default()
        }
    }
}

/// The C compiler: `$CC`, else `cc`.
pub fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

fn io_desc(list: &[(String, nnc_ir::TensorType)]) -> Vec<IoDesc> {
    list.iter()
        .map(|(n, t)| IoDesc {
            name: n.clone(),
            dtype: t.dtype.name().to_string(),
            dims: t.dims.clone(),
            bytes: t.bytes(),
        })
        .collect()
}

/// Step descriptions for `--profile` tables.
pub fn step_descs(p: &Program) -> Vec<StepDesc> {
    p.steps
        .iter()
        .map(|s| {
            let ins: Vec<&nnc_ir::TensorType> = s.inputs.iter().map(|b| &b.ty).collect();
            let outs: Vec<nnc_ir::TensorType> = s.outputs.iter().map(|b| b.ty.clone()).collect();
            StepDesc {
                op: s.op.name().to_string(),
                output: outs
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                name: s.name.clone(),
                macs: nnc_ir::stats::op_macs(&s.op, &ins, &outs),
            }
        })
        .collect()
}

/// The harness glue (`nnc_glue.c`) for a program compiled as `name`.
pub fn harness_glue(p: &Program, name: &str) -> String {
    glue(
        name,
        &format!("{name}.h"),
        &io_desc(&p.inputs),
        &io_desc(&p.outputs),
        &step_descs(p),
    )
}

pub(crate) fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        DriverError::Usage(format!(
            "cannot run `{}` ({what}): {e}",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(DriverError::Usage(format!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        )));
    }
    Ok(())
}

pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| DriverError::Usage(format!("cannot write `{}`: {e}", path.display())))
}

pub(crate) fn sanitize_flags(flags: &CFlags) -> Vec<&'static str> {
    if flags.sanitize {
        vec![
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-g",
        ]
    } else {
        vec![]
    }
}

/// The harness object, compiled once per harness version and flag set.
pub(crate) fn harness_object(base: &Path, flags: &CFlags) -> Result<PathBuf> {
    let san = sanitize_flags(flags);
    let k = key(&[
        HARNESS_C.as_bytes(),
        HARNESS_H.as_bytes(),
        san.join(" ").as_bytes(),
        cc().as_bytes(),
    ]);
    let entry = base.join(format!("harness-{k}"));
    if let Some(obj) = lookup(&entry, "harness.o") {
        return Ok(obj);
    }
    let tmp = scratch_dir(base, "harness")?;
    let built = (|| {
        write(&tmp.join("nnc_harness.h"), HARNESS_H)?;
        write(&tmp.join("harness.c"), HARNESS_C)?;
        run_tool(
            Command::new(cc())
                .current_dir(&tmp)
                .args(["-std=c11", "-Wall", "-Wextra", "-O2"])
                .args(&san)
                .args(["-c", "harness.c", "-o", "harness.o"]),
            "compiling the harness",
        )
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    publish(&tmp, &entry, "harness.o")
}

/// Compiles a model's C and glue and links them with the harness into an
/// executable (cached by content).
pub fn build_executable(src: &CSource, glue_c: &str, flags: &CFlags) -> Result<PathBuf> {
    let san = sanitize_flags(flags);
    let prof: Vec<&str> = if flags.profile {
        vec!["-DNNC_PROFILE"]
    } else {
        vec![]
    };
    let all = format!(
        "{} {} {}",
        flags.opt.join(" "),
        san.join(" "),
        prof.join(" ")
    );
    let k = key(&[
        src.header.as_bytes(),
        src.source.as_bytes(),
        glue_c.as_bytes(),
        HARNESS_C.as_bytes(),
        HARNESS_H.as_bytes(),
        all.as_bytes(),
        cc().as_bytes(),
    ]);
    cached_build(&format!("{}-{k}", src.name), flags, |tmp, harness| {
        let name = &src.name;
        write(&tmp.join(format!("{name}.h")), &src.header)?;
        write(&tmp.join(format!("{name}.c")), &src.source)?;
        write(&tmp.join("nnc_harness.h"), HARNESS_H)?;
        write(&tmp.join("nnc_glue.c"), glue_c)?;
        let strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
        run_tool(
            Command::new(cc())
                .current_dir(tmp)
                .args(strict)
                .args(&flags.opt)
                .args(&san)
                .args(&prof)
                .args(["-c", &format!("{name}.c"), "-o", "model.o"]),
            "compiling the generated C",
        )?;
        run_tool(
            Command::new(cc())
                .current_dir(tmp)
                .args(strict)
                .args(["-O1"])
                .args(&san)
                .args(["-c", "nnc_glue.c", "-o", "glue.o"]),
            "compiling the harness glue",
        )?;
        run_tool(
            Command::new(cc())
                .current_dir(tmp)
                .args(&san)
                .args(["model.o", "glue.o"])
                .arg(harness)
                .args(["-lm", "-o", "model"]),
            "linking",
        )
    })
}

/// The multiply-add peak of C compiled with `flags`: what the profiled
/// steps' own code can reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CPeak {
    pub gflops: f64,
    /// f32 lanes per multiply-add (the vector width the flags enable).
    pub lanes: usize,
    /// The multiply-adds are fused (FMA hardware).
    pub fused: bool,
}

/// Measures [`CPeak`] for `flags`: twelve chains of `NNC_FMA` as wide as
/// the vector unit the flags enable, compiled as the model is (same
/// compiler, same optimization flags) and timed (the program is cached).
pub fn fma_peak(flags: &CFlags) -> Result<CPeak> {
    let k = key(&[
        FMA_PEAK_C.as_bytes(),
        flags.opt.join(" ").as_bytes(),
        cc().as_bytes(),
    ]);
    let plain = CFlags {
        opt: flags.opt.clone(),
        ..Default::default()
    };
    let exe = cached_build(&format!("fma-peak-{k}"), &plain, |tmp, _| {
        write(&tmp.join("fma_peak.c"), FMA_PEAK_C)?;
        run_tool(
            Command::new(cc())
                .current_dir(tmp)
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
                .args(&flags.opt)
                .args(["fma_peak.c", "-lm", "-o", "model"]),
            "compiling the multiply-add peak loop",
        )
    })?;
    let out = Command::new(&exe)
        .output()
        .map_err(|e| DriverError::Usage(format!("cannot run `{}`: {e}", exe.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    match (out.status.success(), f.as_slice()) {
        (true, [g, l, fu]) => match (g.parse(), l.parse(), fu.parse::<u8>()) {
            (Ok(gflops), Ok(lanes), Ok(fused)) => Ok(CPeak {
                gflops,
                lanes,
                fused: fused == 1,
            }),
            _ => Err(DriverError::Usage(format!(
                "the multiply-add peak loop printed `{}`",
                text.trim()
            ))),
        },
        _ => Err(DriverError::Usage(format!(
            "the multiply-add peak loop failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The cached executable `<cache>/<dir>/model`: built by `build` (given a
/// scratch folder and the harness object) when missing or damaged, then
/// published atomically, so concurrent builds of the same thing are safe.
pub(crate) fn cached_build(
    dir: &str,
    flags: &CFlags,
    build: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let base = cache_dir()?;
    let entry = base.join(dir);
    if let Some(exe) = lookup(&entry, "model") {
        return Ok(exe);
    }
    cache::clean_scratch(&base);
    let harness = harness_object(&base, flags)?;
    let tmp = scratch_dir(&base, "build")?;
    if let Err(e) = build(&tmp, &harness) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    publish(&tmp, &entry, "model")
}

/// Runs a harness executable on tensors and returns its outputs.
pub fn run_executable(exe: &Path, p: &Program, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let dir = scratch_dir(&cache_dir()?, "run")?;
    let result = (|| {
        let mut cmd = Command::new(exe);
        for (i, t) in inputs.iter().enumerate() {
            let f = dir.join(format!("in{i}.npy"));
            io::write_npy(&f, t)?;
            cmd.arg("--input")
                .arg(format!("{}={}", p.inputs[i].0, f.display()));
        }
        let outs: Vec<PathBuf> = (0..p.outputs.len())
            .map(|i| dir.join(format!("out{i}.npy")))
            .collect();
        for (i, f) in outs.iter().enumerate() {
            cmd.arg("--output")
                .arg(format!("{}={}", p.outputs[i].0, f.display()));
        }
        let out = cmd
            .output()
            .map_err(|e| DriverError::Usage(format!("cannot run `{}`: {e}", exe.display())))?;
        if !out.status.success() {
            return Err(DriverError::Usage(format!(
                "the compiled model failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        outs.iter().map(|f| Ok(io::read_tensor(f)?.1)).collect()
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Lowers, emits, builds (cached) and runs a graph through the C backend.
pub fn run_c(g: &nnc_ir::Graph, inputs: &[Tensor], flags: &CFlags) -> Result<Vec<Tensor>> {
    run_c_with(g, inputs, flags, &crate::driver::Lowering::default())
}

/// As [`run_c`], with kernels forced onto some steps.
pub fn run_c_with(
    g: &nnc_ir::Graph,
    inputs: &[Tensor],
    flags: &CFlags,
    how: &crate::driver::Lowering,
) -> Result<Vec<Tensor>> {
    nnc_ir::interp::check_inputs(g, inputs)?;
    let name = nnc_backends::c::ident(if g.name.is_empty() { "model" } else { &g.name });
    let p = how.lower(g, &name, &nnc_backends::c::host_target())?;
    let src = nnc_backends::c::emit(&p, &name).map_err(backend_err)?;
    let glue_h = harness_glue(&p, &src.name);
    let exe = build_executable(&src, &glue_h, flags)?;
    run_executable(&exe, &p, inputs)
}

/// Converts a backend error.
pub fn backend_err(e: nnc_backends::BackendError) -> DriverError {
    DriverError::Backend(e)
}
