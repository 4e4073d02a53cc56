//! The shared real models end to end: import, run through the interpreter
//! on their test inputs, compare with the stored reference outputs.

use std::path::PathBuf;

use nnc::driver::{self, Backend, LoadOptions};
use nnc_passes::OptLevel;
use nnc_tests::shared::{FLOAT_MODELS, models_dir, require};

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

#[test]
fn float_models_match_reference_in_interpreter() {
    for m in FLOAT_MODELS {
        check(m, Backend::Interp, OptLevel::O0);
    }
}
