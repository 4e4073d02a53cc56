//! The text format as an API: insta snapshots of the IR dumps of the MLPerf
//! Tiny models, and parse-then-print round trips (with inline and external
//! weights) on every shared float model, which must also compute the same.

use nnc::driver::{self, LoadOptions};
use nnc_ir::{ConstMode, PrintOptions, Tensor};
use nnc_passes::OptLevel;
use nnc_tests::shared::{FLOAT_MODELS, MLPERF_TINY_FP32, models_dir, require};

fn load(m: &str, opt: OptLevel) -> nnc_ir::Graph {
    let p = models_dir().join(m).join("model.onnx");
    require(&p);
    driver::load(
        &p,
        &LoadOptions {
            opt_level: opt,
            ..Default::default()
        },
    )
    .unwrap()
}

fn input(m: &str) -> Tensor {
    nnc::io::read_tensor(&models_dir().join(m).join("test_data_set_0/input_0.pb"))
        .unwrap()
        .1
}

#[test]
fn mlperf_tiny_dumps() {
    for m in MLPERF_TINY_FP32 {
        let g = load(m, OptLevel::O0);
        let name = m.rsplit('/').next().unwrap().to_string() + "_O0";
        insta::assert_snapshot!(name, nnc_ir::print(&g));
    }
}

#[test]
fn inline_round_trip_on_every_model() {
    for m in FLOAT_MODELS {
        let g = load(m, OptLevel::O0);
        let text = nnc_ir::print_full(&g);
        let parsed = nnc_ir::parse(&text).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(
            text,
            nnc_ir::print_full(&parsed),
            "{m}: print(parse(print(g))) differs"
        );
        // Elided dumps are stable across the round trip too.
        assert_eq!(nnc_ir::print(&g), nnc_ir::print(&parsed));
    }
}

#[test]
fn external_weights_round_trip_computes_the_same() {
    for m in MLPERF_TINY_FP32 {
        let g = load(m, OptLevel::O0);
        let opts = PrintOptions {
            consts: ConstMode::External {
                file: "w.bin".into(),
                inline_max: 8,
            },
        };
        let (text, blob) = nnc_ir::print_with(&g, &opts);
        let blob = blob.unwrap();
        let loader = |f: &str| {
            assert_eq!(f, "w.bin");
            Ok(blob.clone())
        };
        let parsed = nnc_ir::parse_with(&text, &loader).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(nnc_ir::print_full(&g), nnc_ir::print_full(&parsed), "{m}");
        let x = input(m);
        let a = nnc_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap();
        let b = nnc_ir::interp::run(&parsed, &[x]).unwrap();
        assert_eq!(a, b, "{m}");
    }
}
