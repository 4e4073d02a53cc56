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

/// Lowers a loaded graph for a target.
pub(super) fn lower(g: &Graph, name: &str) -> Result<nnc_backends::Program> {
    nnc_backends::lower(g, name).context("planning memory")
}

pub(super) fn cmd_emit(a: EmitArgs) -> Result<ExitCode> {
    let g = load_for(&a.model, &HashMap::new(), false, a.target.c().is_mcu())?;
    let mut name = model_ident(&a.model.model, &a.name);
    // A model file named `model.onnx` is common; its folder says more.
    if a.name.is_none()
        && name == "model"
        && let Some(dir) = a.model.model.parent().and_then(|d| d.file_name())
    {
        name = nnc_backends::c::ident(&dir.to_string_lossy());
    }
    let p = lower(&g, &name)?;
    let src = nnc_backends::c::emit(&p, &name, a.target.c()).context("generating C")?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create `{}`", a.out.display()))?;
    let h = a.out.join(format!("{name}.h"));
    let c = a.out.join(format!("{name}.c"));
    std::fs::write(&h, &src.header).with_context(|| format!("cannot write `{}`", h.display()))?;
    std::fs::write(&c, &src.source).with_context(|| format!("cannot write `{}`", c.display()))?;
    println!(
        "wrote {} and {} ({}): arena {} bytes, weights {} bytes, {} steps",
        h.display(),
        c.display(),
        a.target.c().name(),
        p.arena_bytes,
        p.weight_bytes(),
        p.steps.len()
    );
    Ok(ExitCode::SUCCESS)
}
