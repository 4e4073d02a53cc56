//! `nnc dump`: the IR as text or Graphviz, or the memory plan.

use super::*;

pub(super) fn cmd_dump(a: DumpArgs) -> Result<ExitCode> {
    let backend = a.backend.unwrap_or(if a.target.0.is_mcu() {
        PlanBackend::C
    } else {
        PlanBackend::Native
    });
    let target = match backend {
        PlanBackend::C => a.target.c()?,
        PlanBackend::Native => a.target.native()?,
    };
    let model = read_model(&a.model.model)?;
    let inputs = command_inputs(&model, &[]);
    if let Some(out) = &a.out {
        refuse_inputs(out, &inputs)?;
        refuse_inputs(&bin_path(out), &inputs)?;
    }
    let g = load_model(&model, &a.model, &HashMap::new(), a.out.is_none(), &target)?;
    if a.plan {
        let name = emit::model_ident(&a.model.model, &None);
        let p = emit::lower(&g, &name, &target, &a.kernel)?;
        match &a.out {
            Some(f) => {
                create_parent(f)?;
                nnc::outfile::write(f, p.dump().as_bytes())?
            }
            None => out!("{}", p.dump()),
        }
        return Ok(ExitCode::SUCCESS);
    }
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
                create_parent(out)?;
                // The weights first, the text that names them last.
                nnc::outfile::write_all(&[(&bin_path(out), &blob), (out, text.as_bytes())])?;
                return Ok(ExitCode::SUCCESS);
            }
            text
        }
    };
    match &a.out {
        Some(p) => {
            create_parent(p)?;
            nnc::outfile::write(p, text.as_bytes())?
        }
        None => out!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `FILE.bin`, where the weights of `-o FILE` go.
fn bin_path(out: &Path) -> PathBuf {
    let mut bin = out.to_path_buf().into_os_string();
    bin.push(".bin");
    PathBuf::from(bin)
}
