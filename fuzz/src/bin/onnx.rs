//! Fuzz target: The ONNX importer (and the interpreter on what imports).
//! The body is `nnc_tests::fuzz::onnx`; see `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        nnc_tests::fuzz::onnx(data);
    });
}
