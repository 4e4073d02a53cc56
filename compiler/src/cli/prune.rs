//! `nnc prune`: prune a model and write it back as ONNX.

use super::*;

pub(super) fn cmd_prune(a: PruneArgs) -> Result<ExitCode> {
    let m = &a.model;
    let model = read_model(&m.model)?;
    refuse_inputs(&a.out, &command_inputs(&model, &[]))?;
    if m.passes.is_some() {
        bail!("nnc prune runs its own passes (the --prune method, then prune-dead); drop --passes");
    }
    m.check_prune(false)?;
    let mut opts = load_opts(m)?;
    let imported = model
        .import(&opts)
        .with_context(|| format!("loading `{}`", m.model.display()))?;
    if let Some(p) = &mut opts.pipeline.prune
        && p.reconstruct
    {
        let random = nnc_passes::prune::reconstruct::DEFAULT_CALIB;
        let (sets, src) =
            nnc::prune::calib_inputs(&imported, &m.model, m.calib.as_deref(), random, 1, false)?;
        eprintln!("reconstruction calibration: {src}");
        p.calib = sets;
    }
    let (pruned, report) = nnc::prune::prune_imported(imported.clone(), &opts)
        .with_context(|| format!("pruning `{}`", m.model.display()))?;
    for r in &report.prune_reports {
        eprint!("{r}");
    }
    // The figures are those of the compiled model, at the chosen level.
    let mut level = opts.clone();
    level.pipeline.prune = None;
    level.pipeline.passes = None;
    level.pipeline.print_after = PrintAfter::Never;
    level.pipeline.stop_after = None;
    let (after, _) = driver::optimize(pruned.clone(), &level, |_, _| {})?;
    let cost = prune_cost(
        &imported,
        m,
        &level,
        &after,
        &a.target.c()?,
        &driver::Lowering::default(),
    )?;
    let bytes = nnc::onnx::export::export(&pruned)?;
    create_parent(&a.out)?;
    nnc::outfile::write(&a.out, &bytes)?;
    outln!(
        "wrote {} ({} bytes): parameters {} -> {}, MACs {} -> {}",
        a.out.display(),
        bytes.len(),
        cost.before.params,
        cost.after.params,
        cost.before.macs,
        cost.after.macs
    );
    Ok(ExitCode::SUCCESS)
}
