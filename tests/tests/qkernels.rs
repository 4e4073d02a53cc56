//! The integer dot-product kernels (`qconv_dot`, `qdw_dot`, `qgemm_dot`).

use nnc::cbuild::{CFlags, run_c};
use nnc::driver::{self, Backend, LoadOptions};
use nnc_passes::OptLevel;
use nnc_tests::shared::{INT8_MODELS, models_dir, require};

fn load(m: &str) -> nnc_ir::Graph {
    let d = models_dir().join(m);
    require(&d);
    driver::load(
        &d.join("model.onnx"),
        &LoadOptions {
            opt_level: OptLevel::O2,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{m}: {e}"))
}

fn io(m: &str) -> (nnc_ir::Tensor, nnc_ir::Tensor) {
    let d = models_dir().join(m).join("test_data_set_0");
    let (_, x) = nnc::io::read_tensor(&d.join("input_0.pb")).unwrap();
    let (_, want) = nnc::io::read_tensor(&d.join("output_0.pb")).unwrap();
    (x, want)
}

#[test]
fn int8_models_exact_with_host_intrinsics() {
    let flags = CFlags {
        opt: vec!["-O2".into(), "-march=native".into()],
        ..Default::default()
    };
    for m in INT8_MODELS {
        let g = load(m);
        let (x, want) = io(m);
        let out =
            run_c(&g, std::slice::from_ref(&x), &flags).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(out[0], want, "{m} through C -march=native");
        let out = driver::execute(&g, Backend::Native, &[x]).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(out[0], want, "{m} native");
    }
}
