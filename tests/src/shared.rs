//! Locations of the shared data (`../shared` beside the repository): real
//! models with reference data and the ONNX backend test suites. Tests read
//! them in place.

use std::path::{Path, PathBuf};

/// The shared folder: `$NNC_SHARED_DIR`, else the nearest `shared` folder
/// (holding `models/`) beside the repository or one of its ancestors, so a
/// clone anywhere under the workspace finds it.
pub fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("NNC_SHARED_DIR") {
        return PathBuf::from(d);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for a in here.ancestors() {
        let c = a.join("shared");
        if c.join("models").is_dir() {
            return c;
        }
    }
    here.join("../../shared")
}

/// Folder of the ONNX backend test suites.
pub fn onnx_tests_dir() -> PathBuf {
    shared_dir().join("onnx-tests")
}

/// Folder of the shared models.
pub fn models_dir() -> PathBuf {
    shared_dir().join("models")
}

/// The float models every backend must run, relative to [`models_dir`].
pub const FLOAT_MODELS: [&str; 8] = [
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/sww_dscnn_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
    "torchvision/mobilenet_v2",
    "torchvision/squeezenet1_1",
    "onnx_light/light_squeezenet_randw",
];

/// The MLPerf Tiny int8 models (QDQ graphs; integer outputs compare exactly).
pub const INT8_MODELS: [&str; 5] = [
    "mlperf_tiny/ad_fc_autoencoder_int8_qdq",
    "mlperf_tiny/ic_resnet8_int8_qdq",
    "mlperf_tiny/kws_dscnn_int8_qdq",
    "mlperf_tiny/sww_dscnn_int8_qdq",
    "mlperf_tiny/vww_mbv1_025_96_int8_qdq",
];

/// The five MLPerf Tiny float models.
pub const MLPERF_TINY_FP32: [&str; 5] = [
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/sww_dscnn_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
];

/// Panics with a clear message when the shared data is missing: these
/// tests must not pass vacuously.
pub fn require(p: &Path) {
    assert!(
        p.exists(),
        "shared test data not found at {} (set NNC_SHARED_DIR)",
        p.display()
    );
}

/// The options of `-O2` for `target`: what a command loads a model with.
pub fn o2(target: &nnc_ir::program::Target) -> nnc::driver::LoadOptions {
    nnc::driver::LoadOptions {
        opt_level: nnc_passes::OptLevel::O2,
        pipeline: nnc_passes::PipelineOptions {
            target: target.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The shared model `rel` (relative to [`models_dir`]): its folder and its
/// graph loaded at `-O2` for `target`.
pub fn load_o2(rel: &str, target: &nnc_ir::program::Target) -> (PathBuf, nnc_ir::Graph) {
    let d = models_dir().join(rel);
    require(&d);
    let g = nnc::driver::load(&d.join("model.onnx"), &o2(target))
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    (d, g)
}
