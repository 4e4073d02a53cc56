//! Fuzz target: The whole pipeline on small generated graphs: interpreter, native and C agree.
//! The body is `nnc_tests::fuzz::pipeline`; see `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        nnc_tests::fuzz::pipeline(data);
    });
}
