//! The integer dot-product kernels (`qconv_dot`, `qdw_dot`, `qgemm_dot`).

use nnc::cbuild::{CFlags, run_c};
use nnc::driver::{self, Backend};
use nnc_passes::lower::KernelChoice;
use nnc_tests::shared::{INT8_MODELS, load_o2, models_dir};

fn load(m: &str) -> nnc_ir::Graph {
    load_o2(m, &Default::default()).1
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

/// The graph of a plan file test, without its comments.
fn plan_graph(file: &str) -> nnc_ir::Graph {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plantests")
        .join(file);
    nnc_ir::parse(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every parameter value of the dot kernels on both backends: the
/// convolutions of `q_conv_c.nnir` (im2col over three channels, a strided
/// depthwise one with asymmetric padding, a grouped pointwise one, uint8
/// with a weight zero point and dilation) and the Gemms of `q_ops_c.nnir`,
/// forced to each (lanes, dot, v, c, im2col), match the interpreter.
#[test]
fn dot_kernels_match_the_interpreter_for_every_parameter() {
    let conv = plan_graph("q_conv_c.nnir");
    let ops = plan_graph("q_ops_c.nnir");
    let (mut runs, mut expected) = (0, 0);
    for (c, target, lanes) in [
        (true, "x86_64:avx512vnni", &[4usize, 8, 16][..]),
        (false, "host", &[4][..]),
    ] {
        let t = if c {
            nnc_backends::c::target(target).unwrap()
        } else {
            nnc_backends::cranelift::target(target).unwrap()
        };
        if !nnc_tests::targets::host_can_run(&t) {
            println!("{target}: not run, this CPU lacks its ISA");
            continue;
        }
        expected += 2 * lanes.len() * 2 * 2 * 4;
        for &l in lanes {
            for dot in [2, 4] {
                for v in [1, 3] {
                    for (ch, im2col) in [(1, 0), (4, 1), (2, 0), (3, 1)] {
                        let cv =
                            format!("qconv_dot(lanes={l},v={v},c={ch},dot={dot},im2col={im2col})");
                        let kernels: Vec<KernelChoice> = [
                            format!("0={cv}"),
                            format!("1=qdw_dot(lanes={l},v={v},dot={dot})"),
                            format!("2={cv}"),
                            format!("3={cv}"),
                        ]
                        .iter()
                        .map(|s| KernelChoice::parse(s).unwrap())
                        .collect();
                        let gk: Vec<KernelChoice> = (0..2)
                            .map(|s| {
                                KernelChoice::parse(&format!(
                                    "{s}=qgemm_dot(lanes={l},v={v},dot={dot})"
                                ))
                                .unwrap()
                            })
                            .collect();
                        for (g, ks) in [(&conv, &kernels), (&ops, &gk)] {
                            let p = driver::lower(g, "sweep", &t, ks)
                                .unwrap_or_else(|e| panic!("{target} {cv}: {e}"));
                            for seed in [5, 17] {
                                let inputs = nnc_passes::check::random_inputs(g, seed);
                                let want = nnc_ir::interp::run(g, &inputs).unwrap();
                                let got = nnc_tests::targets::run_program(&p, &inputs)
                                    .unwrap_or_else(|e| panic!("{target} {cv}: {e}"));
                                assert_eq!(got, want, "{target} {cv} seed {seed}:\n{}", p.dump());
                            }
                            runs += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(expected > 0);
    assert_eq!(runs, expected);
}
