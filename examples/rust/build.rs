//! Compiles the MLPerf Tiny KWS model shipped in `models/` to C with nnc's
//! build API, builds the C with the `cc` crate, and turns the reference
//! input and output into raw little-endian bytes for `main.rs`.

use std::path::{Path, PathBuf};

fn main() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/kws_dscnn_fp32");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let art = nnc::build::Build::new(models.join("model.onnx"))
        .backend(nnc::build::BuildBackend::C)
        .target("host")
        .name("kws")
        .compile()
        .unwrap_or_else(|e| panic!("nnc: {e}"));
    cc::Build::new()
        .file(art.source.as_ref().unwrap())
        .include(&out)
        .flag_if_supported("-std=c99")
        .opt_level(2)
        .compile("kws");
    art.link();
    for f in ["input_0.pb", "output_0.pb"] {
        let path = models.join("test_data_set_0").join(f);
        println!("cargo:rerun-if-changed={}", path.display());
        let (_, t) = nnc::io::read_tensor(&path).unwrap();
        let raw = out.join(f.replace(".pb", ".bin"));
        std::fs::write(raw, t.data().to_le_bytes()).unwrap();
    }
}
