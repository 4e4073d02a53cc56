//! `nnc compile`: a native executable or object file through Cranelift.

use nnc_backends::cranelift::NativeOptions;

use super::*;

pub(super) fn cmd_compile(a: CompileArgs) -> Result<ExitCode> {
    if a.backend != Backend::Native {
        bail!(
            "--backend {}: `nnc compile` writes executables and objects from native code \
             (--backend native); for C sources use `nnc emit-c`{}",
            a.backend.name(),
            if a.backend == Backend::C {
                ", and `nnc run --backend c` or `nnc bench --backend c` run them"
            } else {
                ""
            }
        );
    }
    if a.target.0.is_mcu() {
        bail!(
            "--target {t}: the native backend has no Cortex-M code generator (Cranelift has no \
             32-bit Arm backend); write C for it with `nnc emit-c --target {t}`",
            t = a.target.0
        );
    }
    let target = a.target.native()?;
    if a.emit == EmitKind::Exe && !nnc_backends::cranelift::runs_here(&target) {
        bail!(
            "--target {} cannot run on this machine: use --emit obj and link it on the target",
            a.target.0
        );
    }
    let model = read_model(&a.model.model)?;
    let inputs = command_inputs(&model, &spec_files(&model, &a.inputs));
    refuse_inputs(&a.out, &inputs)?;
    let h = a.out.with_extension("h");
    if a.emit == EmitKind::Obj {
        if h == a.out {
            bail!(
                "-o {}: the object and its header would be the same file; name the object NAME.o",
                a.out.display()
            );
        }
        refuse_inputs(&h, &inputs)?;
        if a.out.exists() && !nnc::outfile::is_object_file(&a.out) {
            bail!(
                "`{}` exists and is not an object file; --emit obj would replace it (remove it or pick another -o)",
                a.out.display()
            );
        }
    }
    let fit = FitRequest::of(&a.fit, &a.kernel)?;
    let (g, _) = load_with_inputs_fit(&model, &a.model, &a.inputs, &target, fit.as_ref())?;
    let stem = a
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let name = nnc_backends::c::ident(a.name.as_deref().unwrap_or(&stem));
    let p = emit::lower(&g, &name, &target, &a.kernel)?;
    let opts = NativeOptions { profile: a.profile };
    let obj = {
        let _p = Progress::start("generating native code");
        nnc::native::object(&p, &name, &opts).context("generating native code")?
    };
    create_parent(&a.out)?;
    match a.emit {
        EmitKind::Obj => {
            // The header goes into place first, the object last.
            nnc::outfile::write_all(&[(&h, obj.header.as_bytes()), (&a.out, &obj.object)])?;
            outln!(
                "wrote {} and {} ({}): entry {name}_run, code {} bytes, arena {} bytes, weights {} bytes",
                a.out.display(),
                h.display(),
                obj.isa,
                obj.code_bytes,
                p.arena_bytes,
                p.weight_bytes()
            );
        }
        EmitKind::Exe => {
            {
                let _p = Progress::start("linking");
                nnc::native::link_executable(&p, &obj, &a.out).context("linking")?;
            }
            outln!(
                "wrote {} ({}): code {} bytes, arena {} bytes, weights {} bytes, compiled in {:.0} ms",
                a.out.display(),
                obj.isa,
                obj.code_bytes,
                p.arena_bytes,
                p.weight_bytes(),
                obj.compile_ms
            );
            // A bare file name is not found on PATH: show it as `./NAME`.
            let exe = if a.out.is_relative() && a.out.components().count() == 1 {
                Path::new(".").join(&a.out)
            } else {
                a.out.clone()
            };
            outln!(
                "run it: {} --input [NAME=]FILE.npy|.pb ... --output [NAME=]FILE.npy ...  (or --bench N)",
                exe.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
