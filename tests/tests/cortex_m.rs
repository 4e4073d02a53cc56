//! The MLPerf Tiny models on an emulated Cortex-M4: C generated for
//! `cortex-m4`, built by `nnc::mcu` into benchmark firmware
//! (arm-none-eabi-gcc, the model's C with `-Werror -pedantic`, the startup
//! code and linker script of `runtime/mcu`), run under
//! `qemu-system-arm -M mps2-an386 -icount shift=0`; the firmware compares
//! its outputs with the reference outputs on the device. The image sizes
//! and the guest instructions per inference of each model are printed and
//! written to `target/cortex-m4-size.txt`.
//!
//! The toolchain and QEMU come from `scripts/setup.sh`.

use std::path::{Path, PathBuf};

use nnc::driver;
use nnc::mcu::{BenchOptions, bench_program};
use nnc_backends::c;
use nnc_ir::program::{Arch, Target};
use nnc_passes::lower::partition::MemoryGoal;
use nnc_tests::shared::{INT8_MODELS, MLPERF_TINY_FP32, load_o2, models_dir, o2, require};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The model folder of `rel` and its graph loaded at -O2 for the Cortex-M4.
fn load_m4(rel: &str) -> (PathBuf, nnc_ir::Graph) {
    load_o2(rel, &Target::cortex_m(Arch::CortexM4))
}

fn build_and_run(rel: &str) -> String {
    build_and_run_with(rel, MemoryGoal::Auto)
}

fn build_and_run_with(rel: &str, memory: MemoryGoal) -> String {
    build_and_run_form(rel, memory, c::WeightForm::Auto).0
}

/// Builds and runs `rel` with its weights in `form`; returns the report
/// line, the instructions per inference and the image's text + data.
fn build_and_run_form(rel: &str, memory: MemoryGoal, form: c::WeightForm) -> (String, u64, u64) {
    let (d, g) = load_m4(rel);
    let target = Target::cortex_m(Arch::CortexM4);
    let name = c::ident(rel.rsplit('/').next().unwrap());
    let p = driver::Lowering {
        kernels: vec![],
        memory,
        ..Default::default()
    }
    .lower(&g, &name, &target)
    .unwrap();
    if let MemoryGoal::Budget(b) = memory {
        assert!(
            p.arena_bytes <= b,
            "{rel}: arena {} B over the budget {b} B",
            p.arena_bytes
        );
    }
    let src = c::emit_with(&p, &name, &c::COptions { weights: form }).unwrap();
    assert_eq!(
        src.source.contains("_u = {"),
        form.blob_for(p.weight_bytes()),
        "{rel}: weights as {}",
        form.name()
    );
    let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
    let (_, y) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
    // Integer kernels are exact; float outputs compare within tolerance.
    let lsb = 0;
    let b = bench_program(
        &p,
        &src,
        &[x],
        &BenchOptions {
            runs: 1,
            expect: vec![(0, y)],
            lsb,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{rel} on Cortex-M4: {e}"));
    let checks = &b.plain.report.checks;
    assert_eq!(checks.len(), 1, "{rel}: {checks:?}");
    assert_eq!(
        checks[0].mismatches, 0,
        "{rel}: outputs differ on the device: {checks:?}"
    );
    let n = b.instructions()[0];
    assert!(n > 0, "{rel}: {n} instructions");
    let img = &b.plain.firmware.image;
    let line = format!(
        "{rel}: {n} instructions per inference, max abs err {:.3e} | text data bss = {} {} {} | arena {} B, weights {} B",
        checks[0].max_abs,
        img.text,
        img.data,
        img.bss,
        p.arena_bytes,
        p.weight_bytes()
    );
    (line, n, img.text + img.data)
}

/// Weights as blobs (one string literal per array) in the firmware: the
/// same flash image size and the same instructions as literals, and the
/// same outputs on the device, for float and int8 weights.
#[test]
fn blob_weights_run_on_emulated_cortex_m4() {
    for m in [
        "mlperf_tiny/kws_dscnn_fp32",
        "mlperf_tiny/kws_dscnn_int8_qdq",
    ] {
        let (_, lit_n, lit_size) = build_and_run_form(m, MemoryGoal::Auto, c::WeightForm::Literal);
        let (_, blob_n, blob_size) = build_and_run_form(m, MemoryGoal::Auto, c::WeightForm::Blob);
        assert_eq!(lit_n, blob_n, "{m}: instructions per inference");
        assert_eq!(lit_size, blob_size, "{m}: flash image (text + data)");
    }
}

#[test]
fn mlperf_tiny_runs_on_emulated_cortex_m4() {
    let mut report = String::new();
    for m in MLPERF_TINY_FP32.iter().chain(INT8_MODELS.iter()) {
        let line = build_and_run(m);
        println!("{line}");
        report.push_str(&line);
        report.push('\n');
    }
    let _ = std::fs::create_dir_all(repo().join("target"));
    let _ = std::fs::write(repo().join("target/cortex-m4-size.txt"), report);
}

/// SRAM budgets as fractions of nnc's own greedy-by-size arena: the
/// partitioned firmware builds within them and still computes the
/// reference outputs on the device, exactly (int8), which the unsplit
/// plan computes too.
#[test]
fn budgets_build_and_run_on_emulated_cortex_m4() {
    let target = Target::cortex_m(Arch::CortexM4);
    // (model, numerator, denominator): 4/7 for KWS; a quarter for VWW
    // (its early chains then run in column tiles).
    for (m, num, den) in [
        ("mlperf_tiny/kws_dscnn_int8_qdq", 4, 7),
        ("mlperf_tiny/vww_mbv1_025_96_int8_qdq", 1, 4),
    ] {
        let (d, g) = load_m4(m);
        let how = driver::Lowering {
            kernels: vec![],
            memory: MemoryGoal::Off,
            ..Default::default()
        };
        let greedy = how.lower(&g, "m", &target).unwrap().stats.greedy_bytes;
        let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
        let (_, y) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
        let whole = driver::execute_with(&g, driver::Backend::Native, &[x], &how).unwrap();
        assert_eq!(whole[0], y, "{m}: the unsplit plan against the reference");
        let budget = greedy * num / den;
        let line = build_and_run_with(m, MemoryGoal::Budget(budget));
        println!("budget {budget} B ({num}/{den} of {greedy} B): {line}");
    }
}

/// `--prune-to-fit` at a quarter of VWW int8's channel-split arena (as
/// measured, the arena `--memory min` gives): the pruned model's firmware
/// fits the budget and computes exactly (int8) what nnc's interpreter
/// computes for the pruned graph.
#[test]
fn vww_int8_pruned_to_a_quarter_runs_on_emulated_cortex_m4() {
    let rel = "mlperf_tiny/vww_mbv1_025_96_int8_qdq";
    let target = Target::cortex_m(Arch::CortexM4);
    let d = models_dir().join(rel);
    require(&d);
    let opts = o2(&target);
    let imported = driver::import(&d.join("model.onnx"), &opts).unwrap();
    let (g, _) = driver::optimize(imported.clone(), &opts, |_, _| {}).unwrap();
    let split = driver::Lowering {
        kernels: vec![],
        memory: MemoryGoal::Minimize,
        ..Default::default()
    }
    .lower(&g, "m", &target)
    .unwrap()
    .arena_bytes;
    let budget = split / 4;
    let how = driver::Lowering::default();
    let f = nnc::fit::fit(
        &imported,
        &opts,
        &target,
        &how,
        budget,
        nnc_passes::prune::Method::L1Filter,
    )
    .unwrap_or_else(|e| panic!("{rel} at {budget} B: {e:#}"));
    assert!(f.report.channels_removed > 0, "{}", f.report);
    let name = c::ident("vww_pruned");
    let p = driver::Lowering {
        kernels: vec![],
        memory: MemoryGoal::Budget(budget),
        ..Default::default()
    }
    .lower(&f.optimized, &name, &target)
    .unwrap();
    assert!(p.arena_bytes <= budget, "arena {} B", p.arena_bytes);
    let src = c::emit_with(&p, &name, &c::COptions::default()).unwrap();
    let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
    let want = driver::run_interp(&f.optimized, std::slice::from_ref(&x)).unwrap();
    let b = bench_program(
        &p,
        &src,
        &[x],
        &BenchOptions {
            runs: 1,
            expect: vec![(0, want[0].clone())],
            lsb: 0,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("pruned {rel} on Cortex-M4: {e}"));
    let checks = &b.plain.report.checks;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].mismatches, 0, "outputs differ: {checks:?}");
    assert_eq!(checks[0].max_abs, 0.0, "int8 is exact: {checks:?}");
    println!(
        "{rel} pruned to fit {budget} B (1/4 of {split} B): {}arena {} B, {} instructions per \
         inference, outputs equal to the interpreter's",
        f.report,
        p.arena_bytes,
        b.instructions()[0]
    );
}

/// The negative control: a firmware checked against a deliberately wrong
/// reference (two elements moved just past the tolerance) must report
/// exactly those two on the device.
#[test]
fn a_wrong_reference_fails_on_the_board() {
    let rel = "mlperf_tiny/ad_fc_autoencoder_fp32";
    let (d, g) = load_m4(rel);
    let target = Target::cortex_m(Arch::CortexM4);
    let p = driver::lower(&g, "ae", &target, &[]).unwrap();
    let src = c::emit(&p, "ae").unwrap();
    let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
    let (_, y) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
    let mut v = y.as_f32().unwrap().to_vec();
    v[0] += 0.5;
    let last = v.len() - 1;
    v[last] += 3e-5 + 2e-4 * v[last].abs();
    let wrong = nnc_ir::Tensor::from_f32(y.ty().dims.clone(), v).unwrap();
    let b = bench_program(
        &p,
        &src,
        &[x],
        &BenchOptions {
            runs: 1,
            expect: vec![(0, wrong)],
            ..Default::default()
        },
    );
    match b {
        Ok(b) => {
            let checks = &b.plain.report.checks;
            assert_eq!(checks.len(), 1, "{checks:?}");
            assert_eq!(checks[0].mismatches, 2, "{checks:?}");
        }
        Err(e) => assert!(e.to_string().contains("2 of"), "{e}"),
    }
}
