//! `nnc bench`: latency of a backend on this machine, median and 90th
//! percentile (a Cortex-M target is measured in `bench_mcu`).

use std::process::Command;

use super::*;

fn report(a: &BenchArgs, median: f64, p90: f64, runs: usize, checks: &Checks) -> Result<()> {
    if a.json {
        let mut v = json!({
            "model": a.model.model.display().to_string(),
            "backend": a.backend().name(),
            "opt_level": a.model.opt.to_string(),
            "median_ms": median,
            "p90_ms": p90,
            "runs": runs,
        });
        checks.add_to(&mut v);
        outln!("{v}");
    } else {
        checks.print()?;
        outln!("median {median:.4} ms, p90 {p90:.4} ms over {runs} runs");
    }
    Ok(())
}

/// The `--expect` comparisons of a bench.
#[derive(Debug, Default)]
pub(super) struct Checks {
    /// (output name, printed line, matched)
    pub rows: Vec<(String, String, bool)>,
}

impl Checks {
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| !r.2)
    }

    pub fn print(&self) -> Result<()> {
        for (_, line, _) in &self.rows {
            outln!("{line}");
        }
        Ok(())
    }

    /// `"checks": [{"output", "ok", "result"}]` when there are any.
    pub fn add_to(&self, v: &mut serde_json::Value) {
        if self.rows.is_empty() {
            return;
        }
        v["checks"] = self
            .rows
            .iter()
            .map(|(n, line, ok)| json!({"output": n, "ok": ok, "result": line}))
            .collect();
    }

    pub fn exit_code(&self) -> ExitCode {
        if self.failed() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The `--expect` references as (output index, tensor).
pub(super) fn references(a: &BenchArgs, out_names: &[String]) -> Result<Vec<(usize, Tensor)>> {
    assign(&a.expect, out_names, "output")?
        .into_iter()
        .map(|(i, f)| Ok((i, io::read_tensor(Path::new(f))?.1)))
        .collect()
}

/// Compares host outputs with the references.
fn check_host(a: &BenchArgs, out_names: &[String], outs: &[Tensor]) -> Result<Checks> {
    let mut c = Checks::default();
    for (i, want) in references(a, out_names)? {
        let cmp = driver::compare_within(
            &outs[i],
            &want,
            a.tol.rtol,
            a.tol.atol,
            a.tol.lsb,
            a.tol.equal_nan,
        );
        let (line, ok) = check_line(&out_names[i], &cmp, want.len(), &a.tol, want.dtype());
        c.rows.push((out_names[i].clone(), line, ok));
    }
    Ok(c)
}

/// Picks a run count worth about two seconds from one timed run.
fn auto_runs(one_ms: f64) -> usize {
    ((2000.0 / one_ms.max(1e-3)) as usize).clamp(10, 10_000)
}

pub(super) fn cmd_bench(a: BenchArgs) -> Result<ExitCode> {
    let target = a.target.for_backend(a.backend())?;
    if target.is_mcu() {
        return bench_mcu::cmd_bench_mcu(a, target);
    }
    if !target.host {
        bail!(
            "`nnc bench` measures on this machine (--target host) or on an emulated Cortex-M \
             (--target cortex-m0, cortex-m4 or cortex-m7); `{}` is neither",
            a.target.0
        );
    }
    let model = read_model(&a.model.model)?;
    let (g, inputs) = load_with_inputs(&model, &a.model, &a.inputs, &Target::default())?;
    let names: Vec<String> = (0..g.inputs().len())
        .map(|i| g.input_name(i).to_string())
        .collect();
    let out_names: Vec<String> = g.outputs().iter().map(|o| o.name.clone()).collect();
    if a.profile && a.backend() == Backend::Interp {
        bail!("--profile needs a compiled backend (--backend c or native)");
    }
    match a.backend() {
        Backend::Interp => {
            let t0 = Instant::now();
            let outs = driver::run_interp(&g, &inputs)?;
            let checks = check_host(&a, &out_names, &outs)?;
            let runs = a
                .runs
                .unwrap_or_else(|| auto_runs(t0.elapsed().as_secs_f64() * 1e3));
            let measuring = Progress::start(format!("measuring {runs} runs"));
            let mut t: Vec<f64> = (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    let _ = driver::run_interp(&g, &inputs);
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            drop(measuring);
            t.sort_by(|x, y| x.total_cmp(y));
            report(
                &a,
                t[runs / 2],
                t[(runs * 9 / 10).min(runs - 1)],
                runs,
                &checks,
            )?;
            Ok(checks.exit_code())
        }
        Backend::C | Backend::Native => {
            let name = nnc_backends::c::ident(if g.name.is_empty() { "model" } else { &g.name });
            let target = if a.backend() == Backend::C {
                nnc_backends::c::host_target()
            } else {
                nnc_backends::cranelift::host_target()?
            };
            let p = emit::lower(&g, &name, &target, &a.kernel)?;
            let building = Progress::start(if a.backend() == Backend::C {
                "generating and building the C"
            } else {
                "compiling native code"
            });
            let exe = if a.backend() == Backend::C {
                let src = nnc_backends::c::emit(&p, &name)?;
                let glue = nnc::cbuild::harness_glue(&p, &src.name);
                let flags = nnc::cbuild::CFlags {
                    profile: a.profile,
                    ..nnc::cbuild::CFlags::bench()
                };
                nnc::cbuild::build_executable(&src, &glue, &flags)?
            } else {
                let opts = nnc_backends::cranelift::NativeOptions { profile: a.profile };
                let obj = nnc::native::object(&p, &name, &opts)?;
                nnc::native::build_executable(&p, &obj)?
            };
            drop(building);
            let checks = if a.expect.is_empty() {
                Checks::default()
            } else {
                let outs = nnc::cbuild::run_executable(&exe, &p, &inputs)?;
                check_host(&a, &out_names, &outs)?
            };
            let dir = std::env::temp_dir().join(format!("nnc-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut args = Vec::new();
            for (i, t) in inputs.iter().enumerate() {
                let f = dir.join(format!("in{i}.npy"));
                io::write_npy(&f, t)?;
                args.push("--input".to_string());
                args.push(format!("{}={}", names[i], f.display()));
            }
            let run = |n: usize| -> Result<(f64, f64)> {
                let _p = Progress::start(format!("measuring {n} runs"));
                let out = Command::new(&exe)
                    .args(&args)
                    .args(["--bench", &n.to_string(), "--json"])
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "benchmark failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                Ok((
                    v["median_ms"].as_f64().unwrap_or(f64::NAN),
                    v["p90_ms"].as_f64().unwrap_or(f64::NAN),
                ))
            };
            if a.profile {
                let runs = a.runs.unwrap_or(200).max(1);
                let profiling = Progress::start(format!("profiling {runs} runs"));
                let out = Command::new(&exe)
                    .args(&args)
                    .args(["--bench", &runs.to_string(), "--profile", "--json"])
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "profile failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                drop(profiling);
                let peak = if a.backend() == Backend::C {
                    let c = nnc::cbuild::fma_peak(&nnc::cbuild::CFlags::bench())?;
                    Peak {
                        gflops: c.gflops,
                        what: format!(
                            "f32x{} {} peak of the C code ({} {})",
                            c.lanes,
                            if c.fused { "FMA" } else { "multiply-add" },
                            nnc::cbuild::cc(),
                            nnc::cbuild::CFlags::bench().opt.join(" ")
                        ),
                        lanes: c.lanes,
                    }
                } else {
                    Peak {
                        gflops: nnc_backends::cranelift::fma_peak_gflops()?,
                        what: "f32x4 FMA peak of the native code (Cranelift)".into(),
                        lanes: 4,
                    }
                };
                print_profile(&a, &p, &v, &peak, runs, &checks)?;
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(checks.exit_code());
            }
            let runs = match a.runs {
                Some(n) => n.max(1),
                None => auto_runs(run(3)?.0),
            };
            let (median, p90) = run(runs)?;
            let _ = std::fs::remove_dir_all(&dir);
            report(&a, median, p90, runs, &checks)?;
            Ok(checks.exit_code())
        }
    }
}

/// The measured multiply-add peak of the code being profiled: Cranelift's
/// f32x4 loop for native code, a C loop built with the model's compiler
/// and flags (as wide as the vectors they enable) for C.
struct Peak {
    gflops: f64,
    /// What was measured, for the table's last line.
    what: String,
    lanes: usize,
}

/// The per-step table: time, share, achieved GFLOP/s and its fraction of
/// the measured multiply-add peak of the code being profiled.
fn print_profile(
    a: &BenchArgs,
    p: &nnc_ir::program::Program,
    v: &serde_json::Value,
    peak: &Peak,
    runs: usize,
    checks: &Checks,
) -> Result<()> {
    let descs = nnc::cbuild::step_descs(p);
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    let total = v["total_ms"].as_f64().unwrap_or(0.0);
    if a.json {
        let rows: Vec<serde_json::Value> = steps
            .iter()
            .zip(&descs)
            .map(|(s, d)| {
                let gf = s["gflops"].as_f64().unwrap_or(0.0);
                json!({
                    "op": d.op, "output": d.output, "name": d.name,
                    "ms": s["ms"], "gflops": gf, "macs": d.macs,
                    "peak_share": gf / peak.gflops,
                })
            })
            .collect();
        let mut o = json!({
            "backend": a.backend().name(),
            "steps": rows,
            "total_ms": total,
            "runs": runs,
            "fma_peak_gflops": peak.gflops,
            "fma_peak_lanes": peak.lanes,
        });
        checks.add_to(&mut o);
        outln!("{o}");
        return Ok(());
    }
    checks.print()?;
    outln!("step  op               ms/run   share   GFLOP/s  %peak  output / name");
    for (i, (s, d)) in steps.iter().zip(&descs).enumerate() {
        let ms = s["ms"].as_f64().unwrap_or(0.0);
        let gf = s["gflops"].as_f64().unwrap_or(0.0);
        let share = if total > 0.0 { 100.0 * ms / total } else { 0.0 };
        let pk = if d.macs > 0 {
            format!("{:5.0}%", 100.0 * gf / peak.gflops)
        } else {
            "     -".to_string()
        };
        outln!(
            "{i:4}  {:<15} {ms:8.4}  {share:5.1}%  {gf:8.2} {pk}  {}  {}",
            d.op,
            d.output,
            d.name
        );
    }
    outln!("total {total:.4} ms/run over {runs} runs");
    outln!(
        "{}: {:.1} GFLOP/s (measured; %peak compares each step with it)",
        peak.what,
        peak.gflops
    );
    Ok(())
}
