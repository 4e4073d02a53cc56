//! Runs the keyword-spotting model through the bindings nnc generated and
//! checks the reference output. The bindings and the model are
//! `no_std`-compatible; this program uses std only to report.

include!(concat!(env!("OUT_DIR"), "/kws.rs"));

/// Little-endian f32s of a raw tensor file written by build.rs.
fn floats<const N: usize>(bytes: &[u8]) -> [f32; N] {
    assert_eq!(bytes.len(), 4 * N, "tensor size");
    let mut v = [0.0f32; N];
    for (x, b) in v.iter_mut().zip(bytes.chunks_exact(4)) {
        *x = f32::from_le_bytes(b.try_into().unwrap());
    }
    v
}

fn main() {
    let input: [f32; 490] = floats(include_bytes!(concat!(env!("OUT_DIR"), "/input_0.bin")));
    let want: [f32; 12] = floats(include_bytes!(concat!(env!("OUT_DIR"), "/output_0.bin")));
    let mut arena = Box::new(kws::Arena::new());
    let mut dense = [0.0f32; 12];
    kws::run(
        &kws::Inputs { input: &input },
        &mut kws::Outputs { dense: &mut dense },
        &mut arena,
    )
    .expect("kws_run failed");
    let mut worst = 0.0f32;
    for (g, w) in dense.iter().zip(&want) {
        let err = (g - w).abs();
        assert!(err <= 1e-5 + 1e-4 * w.abs(), "got {g}, want {w}");
        worst = worst.max(err);
    }
    let best = dense
        .iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > dense[b] { i } else { b });
    println!(
        "kws: class {best}, max abs err {worst:.3e} (arena {} bytes)",
        kws::ARENA_BYTES
    );
}
