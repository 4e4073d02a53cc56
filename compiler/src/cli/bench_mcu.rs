//! `nnc bench --backend c --target cortex-mN`: guest instructions per
//! inference of the model built as firmware and run under QEMU
//! (`nnc::mcu`).

use std::time::Duration;

use nnc::mcu::bench::{self as mb, ModelBench, stats};
use nnc::mcu::clock::Check;
use nnc_ir::program::Program;

use super::bench::{Checks, references};
use super::*;

const NOT_CYCLES: &str = "guest instructions executed under QEMU -icount, not cycles: \
QEMU has no pipeline, cache or wait-state model";

pub(super) fn cmd_bench_mcu(a: BenchArgs, target: Target) -> Result<ExitCode> {
    let model = read_model(&a.model.model)?;
    let (g, inputs) = load_with_inputs(&model, &a.model, &a.inputs, &target)?;
    let out_names: Vec<String> = g.outputs().iter().map(|o| o.name.clone()).collect();
    let mut name = emit::model_ident(&a.model.model, &None);
    if name == "model"
        && let Some(dir) = a.model.model.parent().and_then(|d| d.file_name())
    {
        name = nnc_backends::c::ident(&dir.to_string_lossy());
    }
    let p = emit::lower(&g, &name, &target, &a.kernel)?;
    let src = nnc_backends::c::emit(&p, &name).context("generating C")?;
    let opts = mb::BenchOptions {
        runs: a.runs.unwrap_or(3).max(1),
        profile: a.profile,
        timeout: Duration::from_secs(a.timeout.max(1)),
        expect: references(&a, &out_names)?,
        rtol: a.tol.rtol,
        atol: a.tol.atol,
        lsb: a.tol.lsb,
        equal_nan: a.tol.equal_nan,
    };
    let progress = Progress::start(format!(
        "building the firmware and running it under QEMU ({})",
        target.spec()
    ));
    let b = mb::bench_program(&p, &src, &inputs, &opts).with_context(|| {
        format!(
            "benchmarking `{}` on {}",
            a.model.model.display(),
            target.spec()
        )
    })?;
    drop(progress);
    let checks = device_checks(&a, &opts, &out_names, &b.plain.report.checks);
    if a.json {
        outln!("{}", to_json(&a, &p, &b, &checks));
    } else {
        print_text(&p, &b, &checks)?;
    }
    Ok(checks.exit_code())
}

/// The device's comparisons as `nnc run --expect` prints them.
fn device_checks(
    a: &BenchArgs,
    opts: &mb::BenchOptions,
    out_names: &[String],
    found: &[Check],
) -> Checks {
    let mut c = Checks::default();
    for (k, want) in &opts.expect {
        let name = &out_names[*k];
        let (line, ok) = match found.iter().find(|x| x.output == *k) {
            Some(x) => {
                let cmp = driver::Comparison {
                    max_abs: x.max_abs,
                    max_rel: x.max_rel,
                    mismatches: x.mismatches as usize,
                    nan_mismatches: x.nan_mismatches as usize,
                    shape_mismatch: None,
                };
                check_line(name, &cmp, want.len(), &a.tol, want.dtype())
            }
            None => (format!("{name}: not checked by the firmware"), false),
        };
        c.rows.push((name.clone(), line, ok));
    }
    c
}

fn board_line(b: &ModelBench) -> String {
    format!(
        "{} on QEMU {} (-cpu {}, -icount shift=0)",
        b.core.name(),
        b.core.machine(),
        b.core.qemu_cpu()
    )
}

fn print_text(p: &Program, b: &ModelBench, checks: &Checks) -> Result<()> {
    let fw = &b.plain.firmware;
    outln!("{}", board_line(b));
    if let Some(c) = b.core.caveat() {
        outln!("note: {c}");
    }
    outln!(
        "image: flash {} B (text {} + data {}), RAM {} B (data {} + bss {}) of the board's {} / {} B; \
         arena {} B, weights {} B, the model's object {} B",
        fw.image.flash(),
        fw.image.text,
        fw.image.data,
        fw.image.ram(),
        fw.image.data,
        fw.image.bss,
        b.core.flash_bytes(),
        b.core.ram_bytes(),
        p.arena_bytes,
        p.weight_bytes(),
        fw.model.flash()
    );
    checks.print()?;
    if let Some(steps) = b.step_instructions() {
        print_profile(p, b, &steps)?;
    }
    let runs = b.instructions();
    let (median, min, max) = stats(&runs);
    outln!(
        "instructions per inference: median {median}, min {min}, max {max} over {} run{} (after a warm-up)",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    outln!("  ({NOT_CYCLES})");
    Ok(())
}

fn print_profile(p: &Program, b: &ModelBench, steps: &[u64]) -> Result<()> {
    let descs = nnc::cbuild::step_descs(p);
    let sum: u64 = steps.iter().sum();
    outln!(
        "step  op               kernel                         instructions   share  instr/MAC  output / name"
    );
    for (i, ((n, d), st)) in steps.iter().zip(&descs).zip(&p.steps).enumerate() {
        let share = if sum > 0 {
            100.0 * *n as f64 / sum as f64
        } else {
            0.0
        };
        let per_mac = if d.macs > 0 {
            format!("{:9.2}", *n as f64 / d.macs as f64)
        } else {
            "        -".to_string()
        };
        outln!(
            "{i:4}  {:<15}  {:<29} {n:13}  {share:5.1}%  {per_mac}  {}  {}",
            d.op,
            st.kernel.to_string(),
            d.output,
            d.name
        );
    }
    let (whole, _, _) = stats(&b.instructions());
    outln!(
        "sum of steps {sum} (each step counts from the end of the previous hook, so it includes \
         its own hook call); whole inference without hooks {whole}: difference {:+}",
        sum as i64 - whole as i64
    );
    if let Some(pr) = &b.profiled
        && let Some(r) = pr.report.runs.first()
    {
        outln!(
            "profiled image: whole inference {} = steps {} + hooks {} + the entry point's own {}",
            r.instructions,
            r.steps().iter().sum::<u64>(),
            r.hooks(),
            r.instructions as i64 - r.steps().iter().sum::<u64>() as i64 - r.hooks() as i64
        );
    }
    Ok(())
}

fn size_json(s: &nnc::mcu::ImageSize) -> serde_json::Value {
    json!({"text": s.text, "data": s.data, "bss": s.bss, "flash": s.flash(), "ram": s.ram()})
}

fn to_json(a: &BenchArgs, p: &Program, b: &ModelBench, checks: &Checks) -> serde_json::Value {
    let runs = b.instructions();
    let (median, min, max) = stats(&runs);
    let fw = &b.plain.firmware;
    let mut v = json!({
        "model": a.model.model.display().to_string(),
        "backend": "c",
        "target": b.core.name(),
        "opt_level": a.model.opt.to_string(),
        "board": b.core.machine(),
        "qemu_cpu": b.core.qemu_cpu(),
        "unit": NOT_CYCLES,
        "median_instructions": median,
        "min_instructions": min,
        "max_instructions": max,
        "instructions": runs,
        "runs": runs.len(),
        "image": size_json(&fw.image),
        "model_object": size_json(&fw.model),
        "board_flash_bytes": b.core.flash_bytes(),
        "board_ram_bytes": b.core.ram_bytes(),
        "arena_bytes": p.arena_bytes,
        "weight_bytes": p.weight_bytes(),
    });
    if let Some(c) = b.core.caveat() {
        v["note"] = json!(c);
    }
    if let (Some(steps), Some(pr)) = (b.step_instructions(), &b.profiled) {
        let descs = nnc::cbuild::step_descs(p);
        v["steps"] = steps
            .iter()
            .zip(&descs)
            .zip(&p.steps)
            .enumerate()
            .map(|(i, ((n, d), st))| {
                json!({
                    "step": i, "op": d.op, "kernel": st.kernel.to_string(), "output": d.output,
                    "name": d.name, "macs": d.macs, "instructions": n,
                })
            })
            .collect();
        v["steps_sum"] = json!(steps.iter().sum::<u64>());
        if let Some(r) = pr.report.runs.first() {
            v["profiled_instructions"] = json!(r.instructions);
            v["hook_instructions"] = json!(r.hooks());
        }
        v["profiled_image"] = size_json(&pr.firmware.image);
    }
    checks.add_to(&mut v);
    v
}
