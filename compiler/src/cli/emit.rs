//! `nnc emit-c`: write the model as dependency-free C.

use super::*;

/// The identifier for a model: `--name`, else the file stem.
pub(super) fn model_ident(path: &Path, name: &Option<String>) -> String {
    let base = name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    nnc_backends::c::ident(&base)
}

/// Lowers a loaded graph for a target, with the forced kernels; fails
/// naming the bottleneck when the arena misses `--sram-budget`.
pub(super) fn lower(
    g: &Graph,
    name: &str,
    target: &Target,
    k: &KernelArgs,
) -> Result<nnc_ir::program::Program> {
    let p = lower_unchecked(g, name, target, k)?;
    if let Some(msg) = k
        .sram_budget
        .and_then(|b| nnc_passes::lower::plan::over_budget(&p, b))
    {
        bail!("{msg}");
    }
    Ok(p)
}

/// Lowers a loaded graph for a target, with the forced kernels, whatever
/// the arena.
pub(super) fn lower_unchecked(
    g: &Graph,
    name: &str,
    target: &Target,
    k: &KernelArgs,
) -> Result<nnc_ir::program::Program> {
    k.lowering().lower(g, name, target).context("lowering")
}

pub(super) fn cmd_emit(a: EmitArgs) -> Result<ExitCode> {
    let target = a.target.c()?;
    let model = read_model(&a.model.model)?;
    let fit = FitRequest::of(&a.fit, &a.kernel)?;
    let (g, _) = load_with_inputs_fit(&model, &a.model, &a.inputs, &target, fit.as_ref())?;
    let mut name = model_ident(&a.model.model, &a.name);
    // A model file named `model.onnx` is common; its folder says more.
    if a.name.is_none()
        && name == "model"
        && let Some(dir) = a.model.model.parent().and_then(|d| d.file_name())
    {
        name = nnc_backends::c::ident(&dir.to_string_lossy());
    }
    let h = a.out.join(format!("{name}.h"));
    let c = a.out.join(format!("{name}.c"));
    let inputs = command_inputs(&model, &spec_files(&model, &a.inputs));
    refuse_inputs(&h, &inputs)?;
    refuse_inputs(&c, &inputs)?;
    let p = lower(&g, &name, &target, &a.kernel)?;
    let src = {
        let _p = Progress::start("generating the C");
        let opts = nnc_backends::c::COptions {
            weights: a.weights.form(),
        };
        nnc_backends::c::emit_with(&p, &name, &opts).context("generating C")?
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create `{}`", a.out.display()))?;
    // Both written in full first; the header is renamed into place before
    // the source, so a new NAME.c never goes with an old NAME.h.
    nnc::outfile::write_all(&[(&h, src.header.as_bytes()), (&c, src.source.as_bytes())])?;
    let form = if a.weights.form().blob_for(p.weight_bytes()) {
        "blob"
    } else {
        "literal"
    };
    outln!(
        "wrote {} and {} ({}): arena {} bytes, weights {} bytes ({form}), {} steps",
        h.display(),
        c.display(),
        target.spec(),
        p.arena_bytes,
        p.weight_bytes(),
        p.steps.len()
    );
    Ok(ExitCode::SUCCESS)
}
