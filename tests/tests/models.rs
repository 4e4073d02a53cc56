//! The shared real models end to end: import, run through the interpreter
//! on their test inputs, compare with the stored reference outputs.

use std::path::PathBuf;

use nnc::driver::{self, Backend, LoadOptions};
use nnc_passes::OptLevel;
use nnc_tests::shared::{FLOAT_MODELS, INT8_MODELS, models_dir, require};

fn case(m: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = models_dir().join(m);
    require(&d);
    (
        d.join("model.onnx"),
        d.join("test_data_set_0/input_0.pb"),
        d.join("test_data_set_0/output_0.pb"),
    )
}

fn check(m: &str, backend: Backend, opt: OptLevel) {
    let (model, input, output) = case(m);
    let g = driver::load(
        &model,
        &LoadOptions {
            opt_level: opt,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{m}: {e}"));
    let (_, x) = nnc::io::read_tensor(&input).unwrap();
    let (_, want) = nnc::io::read_tensor(&output).unwrap();
    let out = driver::execute(&g, backend, &[x]).unwrap_or_else(|e| panic!("{m}: {e}"));
    assert_eq!(out.len(), 1, "{m}");
    let c = driver::compare(&out[0], &want, 1e-4, 1e-5);
    assert!(c.ok(), "{m} ({}, {opt}): {c:?}", backend.name());
}

fn load(m: &str, opt: OptLevel) -> nnc_ir::Graph {
    let (model, _, _) = case(m);
    driver::load(
        &model,
        &LoadOptions {
            opt_level: opt,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{m}: {e}"))
}

#[test]
fn float_models_match_reference_in_interpreter() {
    for m in FLOAT_MODELS {
        check(m, Backend::Interp, OptLevel::O0);
    }
}

#[test]
fn float_models_match_reference_after_every_level() {
    for opt in [OptLevel::O1, OptLevel::O2, OptLevel::Os] {
        for m in FLOAT_MODELS {
            check(m, Backend::Interp, opt);
        }
    }
}

/// The int8 QDQ models match their (TFLite-exact) int8 outputs exactly.
#[test]
fn int8_models_match_reference_exactly() {
    for opt in [OptLevel::O0, OptLevel::O2] {
        for m in INT8_MODELS {
            check(m, Backend::Interp, opt);
        }
    }
}

/// At -O2 the int8 models compute on integers only: every node reads and
/// writes integers (no dequantize, no float island), and convolutions and
/// matrix products are the integer ops.
#[test]
fn int8_models_have_no_float_op_at_o2() {
    for m in INT8_MODELS {
        let g = load(m, OptLevel::O2);
        let s = nnc_ir::stats::stats(&g);
        assert!(
            s.float_nodes.is_empty(),
            "{m}: float nodes at -O2: {:?}",
            s.float_nodes
        );
        assert!(s.integer_nodes > 0, "{m}");
        for gone in [
            "conv",
            "gemm",
            "matmul",
            "quantize",
            "dequantize",
            "softmax",
        ] {
            assert!(!s.ops.contains_key(gone), "{m}: {gone} at -O2: {:?}", s.ops);
        }
        assert!(
            s.ops.contains_key("qconv") || s.ops.contains_key("qgemm"),
            "{m}: {:?}",
            s.ops
        );
        // What is left of the weights is integer too: no float constant.
        for id in g.node_ids() {
            if let nnc_ir::Op::Const(c) = g.node(id).op {
                let t = g.constant(c).unwrap();
                assert!(!t.dtype().is_float(), "{m}: float constant {}", t.ty());
            }
        }
    }
}

/// -O0 and -O2 agree on random inputs too, not only on the test input.
#[test]
fn optimized_models_agree_on_random_inputs() {
    for m in FLOAT_MODELS {
        let (a, b) = (load(m, OptLevel::O0), load(m, OptLevel::O2));
        let sets: Vec<Vec<nnc_ir::Tensor>> = (0..2)
            .map(|seed| nnc_passes::check::random_inputs(&a, 100 + seed))
            .collect();
        // Two inputs, not one twice.
        assert_ne!(sets[0], sets[1], "{m}: the random inputs repeat");
        for (seed, inputs) in sets.iter().enumerate() {
            nnc_passes::check::same_outputs(&a, &b, inputs, 1e-4, 1e-5)
                .unwrap_or_else(|e| panic!("{m} seed {seed}: {e}"));
        }
    }
}

fn ops(g: &nnc_ir::Graph) -> std::collections::BTreeMap<String, usize> {
    nnc_ir::stats::stats(g).ops
}

/// The fusions the pass engine promises, on the models that need them.
#[test]
fn optimized_graphs_lose_the_expected_nodes() {
    for m in FLOAT_MODELS {
        let (a, b) = (load(m, OptLevel::O0), load(m, OptLevel::O2));
        let (na, nb) = (
            nnc_ir::stats::stats(&a).nodes,
            nnc_ir::stats::stats(&b).nodes,
        );
        assert!(nb < na, "{m}: {na} nodes at -O0, {nb} at -O2");
        let o = ops(&b);
        for gone in ["batch_norm", "identity", "clip", "matmul"] {
            assert!(!o.contains_key(gone), "{m}: {gone} left at -O2: {o:?}");
        }
    }
    let mb = ops(&load("torchvision/mobilenet_v2", OptLevel::O2));
    assert_eq!(mb.get("conv"), Some(&52), "{mb:?}");
    assert!(
        !mb.contains_key("clip") && !mb.contains_key("batch_norm"),
        "{mb:?}"
    );
    let resnet = ops(&load("mlperf_tiny/ic_resnet8_fp32", OptLevel::O2));
    assert!(
        resnet.get("transpose").copied().unwrap_or(0) <= 1,
        "{resnet:?}"
    );
    let sww = ops(&load("mlperf_tiny/sww_dscnn_fp32", OptLevel::O2));
    assert!(
        !sww.contains_key("batch_norm") && !sww.contains_key("relu"),
        "{sww:?}"
    );
}
