//! E-graph benchmark: for each shared model, the node counts at -O0 and
//! -O2 and the median time of saturation and extraction of the `egraph`
//! pass over repeated runs, with the stop reason.
//!
//! ```text
//! cargo run --release -p nnc-tests --bin egraph-bench -- [--runs N] [MODEL_DIR...]
//! ```

use std::path::PathBuf;

use nnc::driver::{self, LoadOptions};
use nnc_passes::egraph::{EgraphPass, run_egraph_with_stats};
use nnc_passes::{OptLevel, PassCx};
use nnc_tests::shared::{FLOAT_MODELS, models_dir};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut runs = 21usize;
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
                println!("usage: egraph-bench [--runs N] [MODEL_DIR...]");
                return;
            }
            d => dirs.push(PathBuf::from(d)),
        }
    }
    if dirs.is_empty() {
        dirs = FLOAT_MODELS.iter().map(|m| models_dir().join(m)).collect();
    }
    println!(
        "| model | nodes -O0 | nodes -O2 | e-graph nodes / classes | iterations | stop reason | saturation ms (median) | extraction ms (median) |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|");
    for d in dirs {
        let model = d.join("model.onnx");
        let load = |opt| {
            driver::load(
                &model,
                &LoadOptions {
                    opt_level: opt,
                    ..Default::default()
                },
            )
        };
        let (g0, g2) = match (load(OptLevel::O0), load(OptLevel::O2)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{}: {e}", d.display());
                continue;
            }
        };
        // The e-graph pass sees the graph after the passes before it.
        let pre = load(OptLevel::O1).expect("loads at -O0");
        let (mut sat, mut ext) = (vec![], vec![]);
        let mut last = None;
        for _ in 0..runs {
            let mut cx = PassCx::default();
            let (_, s) =
                run_egraph_with_stats(&mut EgraphPass::all(), &pre, &mut cx).expect("egraph");
            sat.push(s.saturate_ms);
            ext.push(s.extract_ms);
            last = Some(s);
        }
        let s = last.expect("at least one run");
        let name = d
            .strip_prefix(models_dir())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| d.display().to_string());
        println!(
            "| {name} | {} | {} | {} / {} | {} | {} | {:.2} | {:.2} |",
            nnc_ir::stats::stats(&g0).nodes,
            nnc_ir::stats::stats(&g2).nodes,
            s.nodes,
            s.classes,
            s.iterations,
            s.stop_reason,
            median(sat),
            median(ext)
        );
    }
}
