//! Fuzz target: The .nnir text parser and printer.
//! The body is `nnc_tests::fuzz::nnir`; see `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        nnc_tests::fuzz::nnir(data);
    });
}
