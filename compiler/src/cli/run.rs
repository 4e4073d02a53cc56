//! `nnc run`: execute a model on tensor files.

use super::*;

pub(super) fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    // Read input files first: their shapes fix symbolic dims.
    let model = read_model(&a.model.model)?;
    let (hints, files) = read_input_files(&model, &a.inputs)?;
    let read_files = spec_files(&model, &a.inputs);
    let t_load = Instant::now();
    let g = load_model(&model, &a.model, &hints, false, &Target::default())?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let in_names: Vec<String> = (0..g.inputs().len())
        .map(|i| g.input_name(i).to_string())
        .collect();
    let out_names: Vec<String> = g.outputs().iter().map(|o| o.name.clone()).collect();
    let assigned = assign(&a.inputs, &in_names, "input")?;
    let mut inputs: Vec<Option<Tensor>> = vec![None; in_names.len()];
    for ((idx, _), t) in assigned.into_iter().zip(files) {
        inputs[idx] = Some(t);
    }
    let missing: Vec<String> = inputs
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_none())
        .map(|(i, _)| format!("{} ({})", in_names[i], g.input_type(i)))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing input(s): {}; pass them with --input NAME=FILE",
            missing.join(", ")
        );
    }
    let inputs: Vec<Tensor> = inputs.into_iter().map(|t| t.expect("checked")).collect();
    let outputs_spec = assign(&a.outputs, &out_names, "output")?;
    let expect_spec = assign(&a.expect, &out_names, "output")?;
    let mut read = read_files;
    read.extend(expect_spec.iter().map(|(_, f)| PathBuf::from(f)));
    let inputs_read = command_inputs(&model, &read);
    for (i, (_, f)) in outputs_spec.iter().enumerate() {
        refuse_inputs(Path::new(f), &inputs_read)?;
        if outputs_spec[..i].iter().any(|(_, g)| g == f) {
            bail!("two outputs would be written to `{f}`");
        }
    }
    let t0 = Instant::now();
    let outs = {
        let _p = Progress::start(match a.backend {
            Backend::C => "building and running the C",
            Backend::Native => "compiling and running native code",
            Backend::Interp => "running the interpreter",
        });
        driver::execute_with(&g, a.backend.driver(), &inputs, &a.kernel.lowering())?
    };
    let elapsed = t0.elapsed();
    for (idx, f) in &outputs_spec {
        create_parent(Path::new(f))?;
        io::write_npy(Path::new(f), &outs[*idx])?;
    }
    if outputs_spec.is_empty() {
        for (name, t) in out_names.iter().zip(&outs) {
            outln!("{}", summarize(name, t));
        }
    }
    let mut failed = false;
    for (idx, f) in &expect_spec {
        let (_, want) = io::read_tensor(Path::new(f))?;
        let c = driver::compare_within(
            &outs[*idx],
            &want,
            a.tol.rtol,
            a.tol.atol,
            a.tol.lsb,
            a.tol.equal_nan,
        );
        let (line, ok) = check_line(&out_names[*idx], &c, want.len(), &a.tol, want.dtype());
        outln!("{line}");
        failed |= !ok;
    }
    if a.time {
        eprintln!(
            "time: load {load_ms:.2} ms, run {:.2} ms ({})",
            elapsed.as_secs_f64() * 1e3,
            a.model.opt
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One-line summary of a tensor plus its first values (integers and
/// booleans as integers, floats with six decimals).
fn summarize(name: &str, t: &Tensor) -> String {
    let v = t.to_f64();
    let float = t.dtype().is_float();
    let num = |x: f64| {
        if float {
            format!("{x:.6}")
        } else {
            format!("{x}")
        }
    };
    let mut s = format!("{name}: {}", t.ty());
    if !v.is_empty() {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let argmax = v
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
        let _ = write!(
            s,
            "  min {} max {} mean {mean:.6} argmax {argmax}",
            num(min),
            num(max)
        );
        let shown: Vec<String> = v.iter().take(8).map(|&x| num(x)).collect();
        let more = if v.len() > 8 { ", ..." } else { "" };
        let _ = write!(s, "\n  [{}{more}]", shown.join(", "));
    }
    s
}
