//! Fuzz target: The .npy and .pb tensor file readers.
//! The body is `nnc_tests::fuzz::tensor`; see `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        nnc_tests::fuzz::tensor(data);
    });
}
