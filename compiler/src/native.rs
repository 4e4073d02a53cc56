//! The native backend from the driver's side: JIT runs in process
//! (`run --backend native`), and executables built from the Cranelift
//! object, the model header, the harness glue and the runtime harness,
//! linked by the system `cc` (`nnc compile`, `bench --backend native`).
//! Executables are cached by a hash of everything that goes into them.

use std::path::{Path, PathBuf};
use std::process::Command;

use nnc_backends::cranelift::{self, NativeObject, NativeOptions};
use nnc_ir::program::Program;
use nnc_ir::{Data, Tensor};
use nnc_runtime::harness::{HARNESS_C, HARNESS_H};

use crate::cache::{key, scratch_dir};
use crate::cbuild::{
    CFlags, backend_err, cache_dir, cached_build, cc, harness_glue, harness_object, run_tool, write,
};
use crate::driver::{DriverError, Result};

/// Lowers a graph for this machine and runs it through the JIT.
pub fn run_native(g: &nnc_ir::Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    run_native_with(g, inputs, &crate::driver::Lowering::default())
}

/// As [`run_native`], with kernels forced onto some steps.
pub fn run_native_with(
    g: &nnc_ir::Graph,
    inputs: &[Tensor],
    how: &crate::driver::Lowering,
) -> Result<Vec<Tensor>> {
    nnc_ir::interp::check_inputs(g, inputs)?;
    let target = cranelift::host_target().map_err(backend_err)?;
    let p = how.lower(g, "model", &target)?;
    let jit = cranelift::jit(&p).map_err(backend_err)?;
    run_jit(&jit, &p, inputs)
}

/// Runs a JIT-compiled program on tensors.
pub fn run_jit(jit: &cranelift::JitModel, p: &Program, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.data().to_le_bytes()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    let outs = jit.run(&refs).map_err(backend_err)?;
    outs.iter()
        .zip(&p.outputs)
        .map(|(b, (n, t))| {
            let data = Data::from_le_bytes(t.dtype, b).ok_or_else(|| {
                DriverError::Usage(format!("output `{n}`: {} bytes do not make a {t}", b.len()))
            })?;
            Ok(Tensor::new(t.dims.clone(), data)?)
        })
        .collect()
}

/// Compiles a program to an object for `opts.target`.
pub fn object(p: &Program, name: &str, opts: &NativeOptions) -> Result<NativeObject> {
    cranelift::compile_object(p, name, opts).map_err(backend_err)
}

/// Links an object with the harness into an executable (cached by content).
pub fn build_executable(p: &Program, obj: &NativeObject) -> Result<PathBuf> {
    let glue_c = harness_glue(p, &obj.name);
    let flags = CFlags::default();
    let k = key(&[
        &obj.object,
        obj.header.as_bytes(),
        glue_c.as_bytes(),
        HARNESS_C.as_bytes(),
        HARNESS_H.as_bytes(),
        cc().as_bytes(),
    ]);
    cached_build(
        &format!("{}-native-{k}", obj.name),
        &flags,
        |tmp, harness| link_in(tmp, obj, &glue_c, harness, Path::new("model")),
    )
}

/// Writes the header, object and glue into `dir` and links `out` there.
fn link_in(dir: &Path, obj: &NativeObject, glue_c: &str, harness: &Path, out: &Path) -> Result<()> {
    let name = &obj.name;
    write(&dir.join(format!("{name}.h")), &obj.header)?;
    std::fs::write(dir.join(format!("{name}.o")), &obj.object)
        .map_err(|e| DriverError::Usage(format!("cannot write the object: {e}")))?;
    write(&dir.join("nnc_harness.h"), HARNESS_H)?;
    write(&dir.join("nnc_glue.c"), glue_c)?;
    run_tool(
        Command::new(cc())
            .current_dir(dir)
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O1",
            ])
            .args(["-c", "nnc_glue.c", "-o", "glue.o"]),
        "compiling the harness glue",
    )?;
    run_tool(
        Command::new(cc())
            .current_dir(dir)
            .arg(format!("{name}.o"))
            .arg("glue.o")
            .arg(harness)
            .args(["-lm", "-o"])
            .arg(out),
        "linking",
    )
}

/// Builds a standalone executable at `out` (not cached). It is linked to a
/// temporary file next to `out` and renamed into place, so `out` is never
/// a half-written file.
pub fn link_executable(p: &Program, obj: &NativeObject, out: &Path) -> Result<()> {
    let glue_c = harness_glue(p, &obj.name);
    let base = cache_dir()?;
    crate::cache::clean_scratch(&base);
    let harness = harness_object(&base, &CFlags::default())?;
    let tmp = scratch_dir(&base, "link")?;
    let out_abs = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| DriverError::Usage(format!("no current folder: {e}")))?
            .join(out)
    };
    let tmp_out = crate::outfile::temp_path(&out_abs);
    let r = link_in(&tmp, obj, &glue_c, &harness, &tmp_out)
        .and_then(|()| crate::outfile::commit(&tmp_out, &out_abs).map_err(DriverError::from));
    let _ = std::fs::remove_file(&tmp_out);
    let _ = std::fs::remove_dir_all(&tmp);
    r
}
