//! Memory-planner benchmark: how long a pass that searches over rewrites
//! waits for an answer to "what is the peak of this graph?". For each
//! shared model at -O2: the median time of `nnc_passes::lower::memory`
//! (plan only), of a full lowering with kernel selection, and of the
//! program verifier, with the arena and the bottleneck step.
//!
//! ```text
//! cargo run --release -p nnc-tests --bin plan-bench -- [--runs N] [MODEL_DIR...]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use nnc::driver::{self, LoadOptions};
use nnc_passes::lower::{LowerOptions, lower, memory};
use nnc_tests::shared::{FLOAT_MODELS, INT8_MODELS, models_dir};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut t = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        last = Some(f());
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    (median(t), last.expect("at least one run"))
}

fn main() {
    let mut runs = 51usize;
    let mut dirs: Vec<PathBuf> = vec![];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(runs)
                    .max(1)
            }
            "-h" | "--help" => {
                println!("usage: plan-bench [--runs N] [MODEL_DIR...]");
                return;
            }
            d => dirs.push(PathBuf::from(d)),
        }
    }
    if dirs.is_empty() {
        dirs = FLOAT_MODELS
            .iter()
            .chain(INT8_MODELS.iter())
            .map(|m| models_dir().join(m))
            .collect();
    }
    let target = nnc_backends::c::host_target();
    println!(
        "| model | steps | arena B | bottleneck step | memory plan ms | lower + select ms | verify ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for d in dirs {
        let g = match driver::load(&d.join("model.onnx"), &LoadOptions::default()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{}: {e}", d.display());
                continue;
            }
        };
        let (plan_ms, plan) = time(runs, || memory(&g).expect("plans"));
        let opts = LowerOptions {
            name: "bench".into(),
            target: target.clone(),
            kernels: vec![],
            memory: Default::default(),
            max_recompute: nnc_passes::lower::partition::MAX_EXTRA_MACS_PERCENT,
            channel_split: true,
        };
        let (lower_ms, p) = time(runs, || lower(&g, &opts).expect("lowers"));
        let (verify_ms, _) = time(runs, || p.verify().expect("verifies"));
        let name = d
            .strip_prefix(models_dir())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| d.display().to_string());
        println!(
            "| {name} | {} | {} | {} | {plan_ms:.3} | {lower_ms:.3} | {verify_ms:.3} |",
            p.steps.len(),
            plan.arena_bytes,
            plan.peak_step,
        );
    }
}
