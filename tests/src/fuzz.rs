//! The bodies of the fuzz targets. The AFL binaries in `fuzz/` call these
//! on every input, and `tests/tests/fuzz_corpus.rs` replays the checked-in
//! corpora through the same functions, so a crash the fuzzer once found
//! stays fixed. Each function returns normally on any input, valid or not;
//! a panic (or an abort) is a bug: a crash, a broken invariant, or two
//! backends that disagree.

use nnc::cbuild::{CFlags, run_c};
use nnc::native::run_native;
use nnc_ir::program::{Arch, Target};
use nnc_ir::{ConstMode, Graph, PrintOptions, Tensor};
use nnc_passes::OptLevel;
use nnc_passes::lower::LowerOptions;

/// Graphs at most this big are also executed (the fuzzer must stay fast).
const RUN_MACS: u64 = 2_000_000;
const RUN_BYTES: usize = 8 << 20;

fn small(g: &Graph) -> bool {
    let s = nnc_ir::stats::stats(g);
    s.macs < RUN_MACS && s.activation_bytes < RUN_BYTES
}

fn zeros(g: &Graph) -> Vec<Tensor> {
    (0..g.inputs().len())
        .map(|i| Tensor::zeros(g.input_type(i)))
        .collect()
}

/// Invariants every graph that loads must keep: it verifies, its text
/// form parses back to the same text, and (when small) it runs and lowers.
fn exercise_graph(g: &Graph) {
    g.verify()
        .unwrap_or_else(|e| panic!("a loaded graph does not verify: {e}"));
    // Large constants go to an in-memory weights blob (printing a 16M
    // element constant inline would make every such input a timeout).
    let opts = PrintOptions {
        consts: ConstMode::External {
            file: "w.bin".into(),
            inline_max: 64,
        },
    };
    let (text, blob) = nnc_ir::print_with(g, &opts);
    let blob = blob.unwrap_or_default();
    let load = |_: &str| Ok(blob.clone());
    let back = nnc_ir::parse_with(&text, &load)
        .unwrap_or_else(|e| panic!("printed IR does not parse back: {e}\n{text}"));
    let (again, blob2) = nnc_ir::print_with(&back, &opts);
    assert_eq!(text, again, "the text format does not round-trip");
    assert_eq!(
        blob,
        blob2.unwrap_or_default(),
        "the weights do not round-trip"
    );
    if small(g) {
        // Errors are fine (e.g. Gather indices out of range); panics are not.
        let _ = nnc_ir::interp::run(g, &zeros(g));
        // Lowering (memory plan, kernel selection, program verifier) for a
        // host and a microcontroller target.
        for target in [
            nnc_backends::c::host_target(),
            Target::cortex_m(Arch::CortexM4),
        ] {
            let _ = nnc_passes::lower::lower(
                g,
                &LowerOptions {
                    name: "fuzz".into(),
                    target,
                    kernels: Vec::new(),
                    // Auto: microcontroller programs are partitioned.
                    memory: Default::default(),
                    max_recompute: nnc_passes::lower::partition::MAX_EXTRA_MACS_PERCENT,
                    channel_split: true,
                },
            );
        }
    }
}

/// The ONNX importer on arbitrary bytes.
pub fn onnx(data: &[u8]) {
    let opts = nnc::onnx::ImportOptions::default();
    let Ok(mut g) = nnc::onnx::import(data, &opts) else {
        return;
    };
    exercise_graph(&g);
    if small(&g) {
        let _ = nnc_passes::run_pipeline(&mut g, OptLevel::O1, &Default::default(), |_, _| {});
    }
}

/// The `.nnir` text parser on arbitrary bytes (weights files are not
/// reachable: a `weights` line fails to load).
pub fn nnir(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = nnc_ir::parse(text) {
        exercise_graph(&g);
    }
}

/// The tensor file readers (`.npy` and ONNX `.pb`) on arbitrary bytes:
/// anything they accept writes back as `.npy` and reads back the same.
pub fn tensor(data: &[u8]) {
    let Ok((_, t)) = nnc::io::tensor_from_bytes(data) else {
        return;
    };
    let npy = nnc_runtime::npy::write(&nnc::io::to_npy(&t));
    let (_, back) = nnc::io::tensor_from_bytes(&npy).expect("a written .npy reads back");
    assert!(back.bit_eq(&t), "a tensor changed through .npy");
}

/// The whole pipeline on the small valid graph the bytes describe
/// ([`crate::graphs::graph_from_bytes`]): -O0 and -O2, then the interpreter,
/// the native JIT and the C backend must agree.
pub fn pipeline(data: &[u8]) {
    let g0 = crate::graphs::graph_from_bytes(data);
    exercise_graph(&g0);
    let inputs = nnc_passes::check::random_inputs(&g0, data.len() as u64 + 1);
    let want = nnc_ir::interp::run(&g0, &inputs).expect("the interpreter runs generated graphs");
    for opt in [OptLevel::O0, OptLevel::O2] {
        let mut g = g0.clone();
        nnc_passes::run_pipeline(&mut g, opt, &Default::default(), |_, _| {})
            .unwrap_or_else(|e| panic!("{opt}: {e}\n{}", nnc_ir::print(&g0)));
        let check = |what: &str, got: Vec<Tensor>| {
            if let Err(e) = nnc_passes::check::close(&got[0], &want[0], 1e-4, 1e-5) {
                panic!(
                    "{what} at {opt} disagrees with the interpreter: {e}\n{}",
                    nnc_ir::print(&g0)
                );
            }
        };
        check(
            "the interpreter",
            nnc_ir::interp::run(&g, &inputs).expect("interp"),
        );
        let native = run_native(&g, &inputs)
            .unwrap_or_else(|e| panic!("native at {opt}: {e}\n{}", nnc_ir::print(&g0)));
        check("native", native);
        let c = run_c(&g, &inputs, &CFlags::default())
            .unwrap_or_else(|e| panic!("C at {opt}: {e}\n{}", nnc_ir::print(&g0)));
        check("C", c);
    }
}
