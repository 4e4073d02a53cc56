//! `nnc compile`: a native executable or object file through Cranelift.

use nnc_backends::cranelift::NativeOptions;

use super::*;

pub(super) fn cmd_compile(a: CompileArgs) -> Result<ExitCode> {
    let target = nnc_backends::cranelift::target(&a.target)?;
    if a.emit == EmitKind::Exe && !nnc_backends::cranelift::runs_here(&target) {
        bail!(
            "--target {} cannot run on this machine: use --emit obj and link it on the target",
            a.target
        );
    }
    let (g, _) = load_with_inputs(&a.model, &a.inputs, &target)?;
    let stem = a
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let name = nnc_backends::c::ident(a.name.as_deref().unwrap_or(&stem));
    let p = emit::lower(&g, &name, &target, &a.kernel)?;
    let opts = NativeOptions { profile: a.profile };
    let obj = nnc::native::object(&p, &name, &opts).context("generating native code")?;
    create_parent(&a.out)?;
    match a.emit {
        EmitKind::Obj => {
            let h = a.out.with_extension("h");
            std::fs::write(&a.out, &obj.object)
                .with_context(|| format!("cannot write `{}`", a.out.display()))?;
            std::fs::write(&h, &obj.header)
                .with_context(|| format!("cannot write `{}`", h.display()))?;
            println!(
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
            nnc::native::link_executable(&p, &obj, &a.out).context("linking")?;
            println!(
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
            println!(
                "run it: {} --input [NAME=]FILE.npy|.pb ... --output [NAME=]FILE.npy ...  (or --bench N)",
                exe.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
