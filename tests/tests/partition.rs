//! Partial execution on every shared model: the arena on a Cortex-M4
//! against nnc's own greedy-by-size plan, the placement's buffers never
//! overlapping, the memory picture well-formed and true to the plan, and
//! partitioned programs computing exactly what unpartitioned ones do, on
//! C and native code (the Cortex-M4 itself runs the partitioned plans in
//! `cortex_m.rs`).

use nnc::driver::{self, Backend, Lowering};
use nnc_ir::Graph;
use nnc_ir::program::{Arch, Program, Target};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_tests::shared::{FLOAT_MODELS, INT8_MODELS, load_o2, models_dir};

/// How many times smaller than greedy-by-size the arena must be, at
/// least (1.0: never larger). VWW reaches 4x with its early chains run in
/// column tiles.
fn floor(m: &str) -> f64 {
    match m {
        m if m.contains("vww") => 4.0,
        m if m.contains("mobilenet_v2") => 4.0,
        m if m.contains("kws") => 1.75,
        m if m.contains("resnet8") => 1.4,
        m if m.contains("squeezenet") => 1.5,
        m if m.contains("sww") => 1.7,
        _ => 1.0,
    }
}

fn models() -> Vec<&'static str> {
    FLOAT_MODELS
        .iter()
        .chain(INT8_MODELS.iter())
        .copied()
        .collect()
}

fn load(m: &str, target: &Target) -> Graph {
    load_o2(m, target).1
}

fn lower(g: &Graph, target: &Target, memory: MemoryGoal) -> Program {
    Lowering {
        kernels: vec![],
        memory,
        ..Default::default()
    }
    .lower(g, "model", target)
    .unwrap()
}

/// The memory picture parses as SVG, and its buffer rectangles are the
/// plan's buffers, drawn where the plan puts them, never overlapping.
fn check_picture(m: &str, p: &Program) {
    let svg = nnc::memsvg::render(p, Some(p.arena_bytes / 2));
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{m}: SVG: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{m}");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let num = |n: roxmltree::Node, a: &str| -> f64 {
        n.attribute(a)
            .unwrap_or_else(|| panic!("{m}: a rect without {a}"))
            .parse()
            .unwrap_or_else(|e| panic!("{m}: {a}: {e}"))
    };
    let rects: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("buffer"))
        .collect();
    assert_eq!(
        rects.len(),
        p.stats.buffers.len(),
        "{m}: one rectangle per buffer"
    );
    // (first, last, offset, bytes) per rectangle, and its geometry.
    let mut boxes = Vec::new();
    for r in &rects {
        let (first, last) = (num(*r, "data-first"), num(*r, "data-last"));
        let (off, bytes) = (num(*r, "data-offset"), num(*r, "data-bytes"));
        assert!(first <= last, "{m}: steps {first}-{last}");
        assert!(
            off + bytes <= p.arena_bytes as f64,
            "{m}: a buffer ends past the arena"
        );
        let (x, w) = (num(*r, "x"), num(*r, "width"));
        let (y, h) = (num(*r, "y"), num(*r, "height"));
        assert!(w > 0.0 && h >= 0.0, "{m}: empty rectangle");
        boxes.push((first, last, off, bytes, x, x + w, y, y + h));
    }
    // Scales: x from steps, y from bytes, the same for every rectangle.
    let (b0, _) = (boxes[0], ());
    let sx = (b0.5 - b0.4) / (b0.1 - b0.0 + 1.0);
    for (i, a) in boxes.iter().enumerate() {
        assert!(
            ((a.5 - a.4) / (a.1 - a.0 + 1.0) - sx).abs() < 1e-2,
            "{m}: x scale"
        );
        for b in &boxes[i + 1..] {
            let time = a.0 <= b.1 && b.0 <= a.1;
            let space = a.2 < b.2 + b.3 && b.2 < a.2 + a.3;
            assert!(
                !(time && space && a.3 > 0.0 && b.3 > 0.0),
                "{m}: buffers overlap in time and address: {a:?} {b:?}"
            );
            // Drawn: rectangles overlap (beyond rounding to 1/1000 px)
            // only where the numbers do.
            let e = 2e-3;
            let drawn = a.4 < b.5 - e && b.4 < a.5 - e && a.6 < b.7 - e && b.6 < a.7 - e;
            assert!(
                !drawn || (time && space),
                "{m}: rectangles overlap: {a:?} {b:?}"
            );
        }
    }
    let peaks = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("peak"))
        .count();
    assert_eq!(peaks, 1, "{m}: the peak is marked once");
    assert!(svg.contains("class=\"budget\""), "{m}: the budget is drawn");
}

#[test]
fn partial_execution_shrinks_every_model_on_cortex_m4() {
    let target = Target::cortex_m(Arch::CortexM4);
    let mut table = String::new();
    for m in models() {
        let g = load(m, &target);
        let off = lower(&g, &target, MemoryGoal::Off);
        let p = lower(&g, &target, MemoryGoal::Minimize);
        let greedy = p.stats.greedy_bytes;
        assert_eq!(off.arena_bytes, p.stats.unpartitioned_bytes, "{m}");
        assert!(
            p.arena_bytes <= off.arena_bytes && p.arena_bytes <= greedy,
            "{m}"
        );
        let ratio = greedy as f64 / p.arena_bytes as f64;
        assert!(
            ratio >= floor(m),
            "{m}: arena {} B is {ratio:.2}x below greedy-by-size {greedy} B (want {}x)",
            p.arena_bytes,
            floor(m)
        );
        nnc::memsvg::check_no_overlap(&p.stats.buffers).unwrap_or_else(|e| panic!("{m}: {e}"));
        // The buffers live at each step add up to its live bytes.
        for (s, &l) in p.stats.live_bytes.iter().enumerate() {
            let sum: usize = p.stats.live_at(s).iter().map(|b| b.bytes).sum();
            assert_eq!(sum, l, "{m}: step {s}");
        }
        check_picture(m, &p);
        check_picture(m, &off);
        table.push_str(&format!(
            "{m}: arena {} B, greedy-by-size {greedy} B ({ratio:.2}x), {} streamed chains\n",
            p.arena_bytes,
            p.stats.chains.len()
        ));
    }
    println!("{table}");
}

/// `--max-recompute 0` leaves whole rows only (the arena of `--memory
/// auto`, no extra MACs); the default cap lets VWW's column tiles lower it.
#[test]
fn the_recompute_cap_bounds_column_tiles() {
    let target = Target::cortex_m(Arch::CortexM4);
    let m = "mlperf_tiny/vww_mbv1_025_96_int8_qdq";
    let g = load(m, &target);
    let with = |memory, max_recompute| {
        Lowering {
            kernels: vec![],
            memory,
            max_recompute,
            channel_split: true,
        }
        .lower(&g, "model", &target)
        .unwrap()
    };
    let extra = |p: &Program| p.stats.chains.iter().map(|c| c.extra_macs).sum::<u64>();
    let rows = with(MemoryGoal::Auto, 10.0);
    let capped = with(MemoryGoal::Minimize, 0.0);
    assert_eq!(capped.arena_bytes, rows.arena_bytes, "{m}");
    assert_eq!(extra(&capped), 0);
    assert!(capped.stats.chains.iter().all(|c| c.tiles == 1));
    let tiled = lower(&g, &target, MemoryGoal::Minimize);
    assert!(
        tiled.arena_bytes < rows.arena_bytes,
        "{m}: {} B tiled, {} B in rows",
        tiled.arena_bytes,
        rows.arena_bytes
    );
    let macs: u64 = nnc_ir::stats::stats(&g).macs;
    assert!(extra(&tiled) > 0 && extra(&tiled) * 10 <= macs, "{m}");
}

#[test]
fn an_impossible_budget_names_the_bottleneck() {
    let target = Target::cortex_m(Arch::CortexM4);
    let g = load("mlperf_tiny/vww_mbv1_025_96_int8_qdq", &target);
    let p = lower(&g, &target, MemoryGoal::Budget(4096));
    let msg = nnc_passes::lower::plan::over_budget(&p, 4096).expect("4 KiB cannot fit");
    assert!(msg.contains("the SRAM budget is 4096 B (4.0 KiB)"), "{msg}");
    assert!(msg.contains("; bottleneck step"), "{msg}");
    let peak = &p.steps[p.stats.peak_step];
    assert!(msg.contains(&peak.name), "{msg}");
    let biggest = p.stats.live_at(p.stats.peak_step)[0];
    assert!(
        msg.contains(&format!("`{}` {} B", biggest.name, biggest.bytes)),
        "{msg}"
    );
    // A budget that fits is met with no more partitioning than needed.
    let loose = lower(&g, &target, MemoryGoal::Budget(p.stats.unpartitioned_bytes));
    assert!(
        loose.stats.chains.is_empty(),
        "{:?}",
        loose.stats.chains.len()
    );
    assert!(nnc_passes::lower::plan::over_budget(&loose, loose.arena_bytes).is_none());
}

#[test]
fn partitioned_float_programs_compute_what_unpartitioned_ones_do() {
    same_results(&FLOAT_MODELS);
}

/// The integer models, a test of their own so that the harness runs the
/// two halves side by side.
#[test]
fn partitioned_int8_programs_compute_what_unpartitioned_ones_do() {
    same_results(&INT8_MODELS);
}

fn same_results(models: &[&str]) {
    for &m in models {
        let g = load(m, &Target::default());
        let d = models_dir().join(m);
        let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
        let (_, want) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
        for backend in [Backend::C, Backend::Native] {
            let run = |memory| {
                let how = Lowering {
                    kernels: vec![],
                    memory,
                    ..Default::default()
                };
                driver::execute_with(&g, backend, std::slice::from_ref(&x), &how)
                    .unwrap_or_else(|e| panic!("{m} on {}: {e}", backend.name()))
            };
            let whole = run(MemoryGoal::Off);
            let parts = run(MemoryGoal::Minimize);
            if want.dtype().is_int() {
                assert_eq!(parts, whole, "{m} on {}", backend.name());
                assert_eq!(parts[0], want, "{m} on {}", backend.name());
            } else {
                let c = driver::compare(&parts[0], &whole[0], 1e-4, 1e-5);
                assert!(c.ok(), "{m} on {}: {c:?}", backend.name());
                let c = driver::compare(&parts[0], &want, 1e-4, 1e-5);
                assert!(
                    c.ok(),
                    "{m} on {} against the reference: {c:?}",
                    backend.name()
                );
            }
        }
    }
}
