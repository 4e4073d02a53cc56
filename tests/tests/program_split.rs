//! Steps that cover part of a tensor: real models are lowered, some of
//! their convolutions are split program-to-program into steps over channel
//! slices (output channels, or input channels accumulated into the
//! output), and the split programs must still match the reference outputs
//! through the C and the native backend.

use nnc::driver;
use nnc_ir::Tensor;
use nnc_ir::program::{Kernel, Program};
use nnc_passes::lower::split::{split_in_channels, split_out_channels};
use nnc_tests::shared::load_o2;
use nnc_tests::targets::run_program;

fn load(m: &str) -> (nnc_ir::Graph, Tensor, Tensor) {
    let (d, g) = load_o2(m, &Default::default());
    let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
    let (_, y) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
    (g, x, y)
}

/// Splits every step `split` selects (from the last, so indices stay
/// valid) and returns the program and how many steps were split.
fn split_all(
    mut p: Program,
    pick: impl Fn(&Program, usize) -> Option<(bool, usize)>,
) -> (Program, usize) {
    let mut n = 0;
    for i in (0..p.steps.len()).rev() {
        if let Some((input_side, k)) = pick(&p, i) {
            p = if input_side {
                split_in_channels(&p, i, k)
            } else {
                split_out_channels(&p, i, k)
            }
            .unwrap_or_else(|e| panic!("split step {i}: {e}"));
            n += 1;
        }
    }
    (p, n)
}

/// Pointwise convolutions reduce over input slices, other convolutions
/// (depthwise included) compute output slices.
fn pick(p: &Program, i: usize) -> Option<(bool, usize)> {
    let st = &p.steps[i];
    let nnc_ir::Op::Conv(_) = &st.op else {
        return None;
    };
    let w = &st.inputs[1].ty;
    let pointwise = w.dims[2..].iter().all(|&k| k == 1) && w.dims[1] > 4;
    Some((pointwise && std::env::var("NOSPLITIN").is_err(), 3))
}

#[test]
fn split_programs_match_the_reference_on_both_backends() {
    for m in [
        "mlperf_tiny/kws_dscnn_fp32",
        "mlperf_tiny/vww_mbv1_025_96_fp32",
        "mlperf_tiny/ic_resnet8_fp32",
    ] {
        let (g, x, want) = load(m);
        for (backend, target) in [
            ("c", nnc_backends::c::host_target()),
            ("native", nnc_backends::cranelift::host_target().unwrap()),
        ] {
            let p = driver::lower(&g, "split", &target, &[]).unwrap();
            let before = p.steps.len();
            let (q, n) = split_all(p, pick);
            assert!(n >= 3, "{m}: only {n} steps split");
            assert!(
                q.steps.len() >= before + 2 * n,
                "{m}: {before} -> {}",
                q.steps.len()
            );
            let parts = q.steps.iter().filter(|s| !s.part.is_whole()).count();
            let accumulating = q.steps.iter().filter(|s| s.part.accumulate).count();
            assert!(parts >= 3 * n && accumulating > 0, "{m}:\n{}", q.dump());
            let got = run_program(&q, std::slice::from_ref(&x)).unwrap().remove(0);
            let c = driver::compare(&got, &want, 1e-4, 1e-5);
            assert!(c.ok(), "{m} split, {backend}: {c:?}\n{}", q.dump());
        }
    }
}

#[test]
fn split_steps_show_their_part_in_the_plan() {
    let (g, _, _) = load("mlperf_tiny/kws_dscnn_fp32");
    let p = driver::lower(&g, "kws", &nnc_backends::c::host_target(), &[]).unwrap();
    // Step 1 is a depthwise convolution, step 2 a pointwise one.
    assert!(
        matches!(p.steps[1].kernel, Kernel::DepthwiseGrid),
        "{}",
        p.dump()
    );
    let q = split_out_channels(&p, 1, 2).unwrap();
    let text = q.dump();
    assert!(text.contains("channels=[0,32)"), "{text}");
    assert!(text.contains("channels=[32,64)"), "{text}");
    let r = split_in_channels(&q, 3, 2).unwrap();
    let text = r.dump();
    assert!(text.contains("in_channels=[0,32)"), "{text}");
    assert!(text.contains("in_channels=[32,64) accumulate"), "{text}");
    // The bias goes with the first slice, the activation with the last.
    let first = &r.steps[3];
    let last = &r.steps[4];
    assert!(first.bias().is_some() && first.acts().next().is_none());
    assert!(last.bias().is_none() && last.acts().next().is_some());
    // Impossible splits are refused with the reason.
    let e = split_in_channels(&p, 1, 2).unwrap_err().to_string();
    assert!(e.contains("ungrouped"), "{e}");
    let e = split_out_channels(&p, 10, 2).unwrap_err().to_string();
    assert!(e.contains("only convolutions"), "{e}");
}
