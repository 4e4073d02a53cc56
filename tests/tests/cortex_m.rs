//! The MLPerf Tiny models on an emulated Cortex-M4: C generated for
//! `cortex-m4`, compiled with arm-none-eabi-gcc (`-Werror -pedantic`),
//! linked with the startup code and linker script of `examples/cortex-m`,
//! run under `qemu-system-arm -M mps2-an386`; the firmware compares its
//! outputs with the reference outputs, prints how many are off and exits
//! non-zero on a mismatch; the test checks both. A negative control runs a
//! firmware against a deliberately wrong reference, which must fail.
//! `arm-none-eabi-size` of each image is printed and written to
//! `target/cortex-m4-size.txt`.
//!
//! The toolchain and QEMU come from `scripts/setup.sh`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nnc::driver::{self, LoadOptions};
use nnc_backends::c;
use nnc_ir::program::{Arch, Target};
use nnc_ir::{DType, Tensor};
use nnc_passes::{OptLevel, PipelineOptions};
use nnc_tests::shared::{INT8_MODELS, MLPERF_TINY_FP32, models_dir, require};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn qemu() -> PathBuf {
    if let Some(q) = std::env::var_os("NNC_QEMU") {
        return PathBuf::from(q);
    }
    let tools = std::env::var_os("NNC_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/nnc-tools")
        });
    let q = tools.join("qemu/usr/bin/qemu-system-arm");
    assert!(
        q.exists(),
        "qemu-system-arm not found at {} (run scripts/setup.sh)",
        q.display()
    );
    q
}

fn array(name: &str, t: &Tensor) -> String {
    let ty = match t.dtype() {
        DType::F32 => "float",
        DType::I8 => "int8_t",
        DType::U8 => "uint8_t",
        d => panic!("unexpected dtype {d}"),
    };
    let vals: Vec<String> = if t.dtype() == DType::F32 {
        t.as_f32()
            .unwrap()
            .iter()
            .map(|v| format!("{v:?}f"))
            .collect()
    } else {
        t.to_i64().iter().map(|v| v.to_string()).collect()
    };
    format!(
        "static const {ty} {name}[{}] = {{{}}};\n",
        vals.len(),
        vals.join(", ")
    )
}

fn check_main(name: &str, input: &Tensor, expected: &Tensor, out_ty: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include \"{name}.h\""
    );
    s.push_str(&array("input0", input));
    s.push_str(&array("expected0", expected));
    let _ = writeln!(
        s,
        "static uint8_t arena[{name}_ARENA_BYTES > 0 ? {name}_ARENA_BYTES : 1] __attribute__((aligned({name}_ARENA_ALIGN)));"
    );
    let _ = writeln!(s, "static {out_ty} output0[{}];", expected.len());
    let _ = writeln!(
        s,
        r#"int main(void) {{
    const void *ins[] = {{input0}};
    void *outs[] = {{output0}};
    double worst = 0;
    unsigned i, bad = 0;
    int rc = {name}_run(ins, outs, arena);
    if (rc != 0) {{
        printf("{name}: run failed with %d\n", rc);
        return 2;
    }}
    for (i = 0; i < {n}; ++i) {{
        double d = fabs((double)output0[i] - (double)expected0[i]);
        if (d > worst) worst = d;
        if (d > {atol} + 1e-4 * fabs((double)expected0[i])) ++bad;
    }}
    printf("{name}: %u of {n} outputs off, max abs err %g\n", bad, worst);
    return bad ? 1 : 0;
}}"#,
        n = expected.len(),
        atol = if out_ty == "float" { "1e-5" } else { "1.0" },
    );
    s
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// What a firmware run reported.
struct Run {
    status: std::process::ExitStatus,
    /// The firmware's output (`NAME: K of N outputs off, ...`).
    text: String,
    /// Elements of the reference output.
    outputs: usize,
    /// `text data bss` of the image.
    sizes: String,
    arena: usize,
    weights: usize,
}

/// Builds the firmware of `rel` checking its outputs against the
/// reference output after `tamper`, and runs it under QEMU.
fn build_and_run(rel: &str, dir: &Path, tamper: impl Fn(&mut Vec<f64>)) -> Run {
    let d = models_dir().join(rel);
    require(&d);
    let opts = LoadOptions {
        opt_level: OptLevel::O2,
        pipeline: PipelineOptions {
            target: Target::cortex_m(Arch::CortexM4),
            ..Default::default()
        },
        ..Default::default()
    };
    let g = driver::load(&d.join("model.onnx"), &opts).unwrap();
    let name = c::ident(rel.rsplit('/').next().unwrap());
    let p = driver::lower(&g, &name, &Target::cortex_m(Arch::CortexM4), &[]).unwrap();
    let src = c::emit(&p, &name).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.h")), &src.header).unwrap();
    std::fs::write(dir.join(format!("{name}.c")), &src.source).unwrap();
    let (_, x) = nnc::io::read_tensor(&d.join("test_data_set_0/input_0.pb")).unwrap();
    let (_, y) = nnc::io::read_tensor(&d.join("test_data_set_0/output_0.pb")).unwrap();
    let mut vals = y.to_f64();
    tamper(&mut vals);
    let y = Tensor::from_f64(y.dtype(), y.dims().to_vec(), vals).unwrap();
    let out_ty = match y.dtype() {
        DType::F32 => "float",
        DType::I8 => "int8_t",
        _ => "uint8_t",
    };
    std::fs::write(dir.join("main.c"), check_main(&name, &x, &y, out_ty)).unwrap();
    let ex = repo().join("examples/cortex-m");
    let cpu = [
        "-mcpu=cortex-m4",
        "-mthumb",
        "-mfloat-abi=hard",
        "-mfpu=fpv4-sp-d16",
    ];
    let elf = dir.join(format!("{name}.elf"));
    run(
        Command::new("arm-none-eabi-gcc")
            .current_dir(dir)
            .args(cpu)
            .args([
                "-std=c99",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-ffunction-sections",
                "-fdata-sections",
            ])
            .args(["-c", &format!("{name}.c"), "-o", "model.o"]),
        "arm-none-eabi-gcc (model, -Werror -pedantic)",
    );
    run(
        Command::new("arm-none-eabi-gcc")
            .current_dir(dir)
            .args(cpu)
            .args(["-O2", "-ffunction-sections", "-fdata-sections", "-T"])
            .arg(ex.join("mps2_an386.ld"))
            .args([
                "-nostartfiles",
                "--specs=rdimon.specs",
                "-Wl,--gc-sections",
                "main.c",
                "model.o",
            ])
            .arg(ex.join("startup.c"))
            .args(["-lm", "-o"])
            .arg(&elf),
        "arm-none-eabi-gcc (firmware)",
    );
    let size = run(
        Command::new("arm-none-eabi-size").arg(&elf),
        "arm-none-eabi-size",
    );
    let mut child = Command::new(qemu())
        .args([
            "-M",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
            "-nographic",
            "-semihosting",
            "-kernel",
        ])
        .arg(&elf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start qemu");
    // A hung firmware must fail the test, not the CI run.
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("{rel}: qemu did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sizes = size
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Run {
        status,
        text,
        outputs: y.len(),
        sizes,
        arena: p.arena_bytes,
        weights: p.weight_bytes(),
    }
}

#[test]
fn mlperf_tiny_runs_on_emulated_cortex_m4() {
    let base = std::env::temp_dir().join(format!("nnc-cortex-m-{}", std::process::id()));
    let mut report = String::new();
    for m in MLPERF_TINY_FP32.iter().chain(INT8_MODELS.iter()) {
        let run = build_and_run(m, &base.join(m.replace('/', "_")), |_| {});
        // The exit status and the firmware's own count must both say so.
        let clean = format!(": 0 of {} outputs off", run.outputs);
        assert!(
            run.status.success() && run.text.contains(&clean),
            "{m} on Cortex-M4 ({}):\n{}",
            run.status,
            run.text
        );
        let line = format!(
            "{m}: {} | text data bss = {} | arena {} B, weights {} B",
            run.text.trim(),
            run.sizes,
            run.arena,
            run.weights
        );
        println!("{line}");
        report.push_str(&line);
        report.push('\n');
    }
    let _ = std::fs::create_dir_all(repo().join("target"));
    let _ = std::fs::write(repo().join("target/cortex-m4-size.txt"), report);
    let _ = std::fs::remove_dir_all(&base);
}

/// The negative control: a firmware checked against a deliberately wrong
/// reference (two elements off, one by far, one just past the tolerance)
/// must report exactly those two and exit with status 1, so a passing run
/// above means the outputs were compared.
#[test]
fn a_wrong_reference_fails_on_the_board() {
    let base = std::env::temp_dir().join(format!("nnc-cortex-m-neg-{}", std::process::id()));
    let m = "mlperf_tiny/ad_fc_autoencoder_fp32";
    let run = build_and_run(m, &base, |v| {
        v[0] += 0.5;
        let last = v.len() - 1;
        v[last] += 3e-5 + 2e-4 * v[last].abs();
    });
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(run.status.code(), Some(1), "{}", run.text);
    assert!(
        run.text
            .contains(&format!(": 2 of {} outputs off", run.outputs)),
        "{}",
        run.text
    );
}
