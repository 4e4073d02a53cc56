//! A lowered program as benchmark firmware: the generated C, a generated
//! main that holds the inputs (and the references for `--expect`) as
//! constant arrays and describes the model to the benchmark runtime
//! (`runtime/mcu/nnc_mcu.c`), built for the core's board and run under
//! QEMU. With a profile, a second image with `-DNNC_PROFILE` times every
//! step; the plain image's count stays the figure for the whole inference.

use std::fmt::Write as _;
use std::time::Duration;

use nnc_backends::c::CSource;
use nnc_ir::program::Program;
use nnc_ir::{DType, Tensor};
use nnc_runtime::mcu::MIN_STACK_BYTES;

use super::clock::{self, Report};
use super::firmware::{self, Firmware, Source};
use super::{Core, McuError, Result, Toolchain};

/// How to benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Measured runs (after one warm-up run).
    pub runs: usize,
    /// Also build and run the image with per-step hooks.
    pub profile: bool,
    /// Limit for each QEMU run.
    pub timeout: Duration,
    /// References for outputs, by output index, compared on the device.
    pub expect: Vec<(usize, Tensor)>,
    /// Float outputs: |actual - expected| <= atol + rtol * |expected|.
    pub rtol: f64,
    pub atol: f64,
    /// Integer outputs: |actual - expected| <= lsb.
    pub lsb: u64,
    /// A NaN matches a NaN (otherwise any NaN is a mismatch, as in
    /// `numpy.isclose`).
    pub equal_nan: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runs: 3,
            profile: false,
            timeout: Duration::from_secs(600),
            expect: vec![],
            rtol: 1e-4,
            atol: 1e-5,
            lsb: 0,
            equal_nan: false,
        }
    }
}

/// One image and what its run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub firmware: Firmware,
    pub report: Report,
}

/// The result of [`bench_program`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBench {
    pub core: Core,
    /// The image without hooks: the whole-inference counts and the checks.
    pub plain: Measured,
    /// The image with per-step hooks (`--profile`).
    pub profiled: Option<Measured>,
}

/// Median, minimum and maximum of some counts (the lower median for an
/// even number).
pub fn stats(v: &[u64]) -> (u64, u64, u64) {
    let mut s = v.to_vec();
    s.sort_unstable();
    match (s.first(), s.last()) {
        (Some(&lo), Some(&hi)) => (s[(s.len() - 1) / 2], lo, hi),
        _ => (0, 0, 0),
    }
}

impl ModelBench {
    /// Instructions of each measured run of the plain image.
    pub fn instructions(&self) -> Vec<u64> {
        self.plain
            .report
            .runs
            .iter()
            .map(|r| r.instructions)
            .collect()
    }

    /// Per step, the median over the profiled runs.
    pub fn step_instructions(&self) -> Option<Vec<u64>> {
        let rep = &self.profiled.as_ref()?.report;
        let per_run: Vec<Vec<u64>> = rep.runs.iter().map(|r| r.steps()).collect();
        Some(
            (0..rep.steps)
                .map(|i| stats(&per_run.iter().map(|s| s[i]).collect::<Vec<_>>()).0)
                .collect(),
        )
    }
}

fn dtype_code(d: DType) -> &'static str {
    match d {
        DType::F32 => "NNC_MCU_F32",
        DType::F64 => "NNC_MCU_F64",
        DType::I8 => "NNC_MCU_I8",
        DType::U8 => "NNC_MCU_U8",
        DType::I16 => "NNC_MCU_I16",
        DType::U16 => "NNC_MCU_U16",
        DType::I32 => "NNC_MCU_I32",
        DType::U32 => "NNC_MCU_U32",
        DType::I64 => "NNC_MCU_I64",
        DType::Bool => "NNC_MCU_BOOL",
    }
}

/// A `static const` byte array with a tensor's little-endian bytes.
fn bytes_array(s: &mut String, name: &str, t: &Tensor) {
    let b = t.data().to_le_bytes();
    let _ = write!(
        s,
        "static const uint8_t {name}[{}] __attribute__((aligned(16))) = {{",
        b.len().max(1)
    );
    if b.is_empty() {
        s.push('0');
    }
    for (i, x) in b.iter().enumerate() {
        s.push_str(if i % 16 == 0 { "\n    " } else { " " });
        let _ = write!(s, "{x:#04x},");
    }
    s.push_str("\n};\n");
}

/// Checks what the firmware will be given against the program.
fn check_io(p: &Program, inputs: &[Tensor], o: &BenchOptions) -> Result<()> {
    if inputs.len() != p.inputs.len() {
        return Err(McuError::Usage(format!(
            "the model has {} input(s), {} given",
            p.inputs.len(),
            inputs.len()
        )));
    }
    for ((n, ty), t) in p.inputs.iter().zip(inputs) {
        if t.ty() != *ty {
            return Err(McuError::Usage(format!(
                "input `{n}` is {ty}, the tensor given is {}",
                t.ty()
            )));
        }
    }
    for (k, t) in &o.expect {
        let Some((n, ty)) = p.outputs.get(*k) else {
            return Err(McuError::Usage(format!("the model has no output {k}")));
        };
        if t.ty() != *ty {
            return Err(McuError::Usage(format!(
                "output `{n}` is {ty}, the reference is {}",
                t.ty()
            )));
        }
    }
    Ok(())
}

/// The generated firmware main for a program compiled as `name`.
pub fn firmware_main(
    p: &Program,
    name: &str,
    inputs: &[Tensor],
    o: &BenchOptions,
) -> Result<String> {
    check_io(p, inputs, o)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/* Generated by nnc: benchmark firmware main for `{}`. */\n#include <stdint.h>\n\n#include \"{name}.h\"\n#include \"nnc_mcu.h\"\n",
        nnc_backends::c::comment_safe(&p.name)
    );
    for (i, t) in inputs.iter().enumerate() {
        bytes_array(&mut s, &format!("nnc_in{i}"), t);
    }
    for (k, t) in &o.expect {
        bytes_array(&mut s, &format!("nnc_ref{k}"), t);
    }
    for (k, (_, ty)) in p.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "static uint8_t nnc_out{k}[{}] __attribute__((aligned(16)));",
            ty.bytes().max(1)
        );
    }
    let _ = writeln!(
        s,
        "static uint8_t nnc_arena[{name}_ARENA_BYTES > 0 ? {name}_ARENA_BYTES : 1] __attribute__((aligned({name}_ARENA_ALIGN)));"
    );
    let _ = writeln!(
        s,
        "#ifdef NNC_PROFILE\nuint32_t nnc_mcu_prof[{} * 8];\n#endif",
        p.steps.len() + 1
    );
    let list = |n: usize, f: &dyn Fn(usize) -> String| -> String {
        if n == 0 {
            "0".into()
        } else {
            (0..n).map(f).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(
        s,
        "static const void *const nnc_inputs[] = {{{}}};",
        list(inputs.len(), &|i| format!("nnc_in{i}"))
    );
    let _ = writeln!(
        s,
        "static void *const nnc_outputs[] = {{{}}};",
        list(p.outputs.len(), &|k| format!("nnc_out{k}"))
    );
    let outs = list(p.outputs.len(), &|k| {
        let ty = &p.outputs[k].1;
        let reference = if o.expect.iter().any(|(i, _)| *i == k) {
            format!("nnc_ref{k}")
        } else {
            "0".into()
        };
        format!(
            "{{{}, {}u, nnc_out{k}, {reference}}}",
            dtype_code(ty.dtype),
            ty.len()
        )
    });
    let _ = writeln!(
        s,
        "static const struct nnc_mcu_output nnc_outs[] = {{{}}};",
        if p.outputs.is_empty() {
            "{NNC_MCU_U8, 0u, 0, 0}".to_string()
        } else {
            outs
        }
    );
    let _ = writeln!(
        s,
        "\nint main(void) {{\n    static const struct nnc_mcu_bench b = {{\n        {name}_run, nnc_inputs, nnc_outputs, nnc_arena,\n        {}u, nnc_outs, {}u, {}u, {:e}, {:e}, {}, {}\n    }};\n    return nnc_mcu_bench_main(&b);\n}}",
        p.outputs.len(),
        p.steps.len(),
        o.runs.max(1),
        o.rtol,
        o.atol,
        o.lsb.min(i64::MAX as u64),
        i32::from(o.equal_nan)
    );
    Ok(s)
}

/// Refuses, before anything is built, a model whose weights or buffers
/// cannot fit the board.
fn check_fit(core: Core, p: &Program, inputs: &[Tensor], o: &BenchOptions) -> Result<()> {
    let consts: usize = inputs.iter().map(|t| t.ty().bytes()).sum::<usize>()
        + o.expect.iter().map(|(_, t)| t.ty().bytes()).sum::<usize>();
    let flash = p.weight_bytes() + consts;
    if flash > core.flash_bytes() {
        return Err(McuError::DoesNotFit {
            board: core.machine(),
            memory: "flash",
            detail: format!(
                "weights {} B + inputs and references {consts} B = {flash} B, more than its {} B",
                p.weight_bytes(),
                core.flash_bytes()
            ),
        });
    }
    let outs: usize = p.outputs.iter().map(|(_, t)| t.bytes()).sum();
    let ram = p.arena_bytes + outs + MIN_STACK_BYTES;
    if ram > core.ram_bytes() {
        return Err(McuError::DoesNotFit {
            board: core.machine(),
            memory: "RAM",
            detail: format!(
                "arena {} B + outputs {outs} B + stack {MIN_STACK_BYTES} B = {ram} B, more than its {} B",
                p.arena_bytes,
                core.ram_bytes()
            ),
        });
    }
    Ok(())
}

fn measure(
    core: Core,
    tools: &Toolchain,
    tag: &str,
    sources: &[Source],
    defines: &[&str],
    timeout: Duration,
) -> Result<Measured> {
    let fw = firmware::build(core, tools, tag, sources, defines)?;
    let out = firmware::run(tools, &fw, timeout)?;
    let report = clock::parse(&out.stdout).map_err(|e| McuError::Firmware {
        machine: core.machine(),
        status: out
            .code
            .map_or("killed".to_string(), |c| format!("exit code {c}")),
        detail: format!("{e}{}", stderr_note(&out.stderr)),
    })?;
    // Exit code 1 is an output mismatch, which the checks report.
    if !matches!(out.code, Some(0) | Some(1)) {
        return Err(McuError::Firmware {
            machine: core.machine(),
            status: format!("{:?}", out.code),
            detail: format!("unexpected exit{}", stderr_note(&out.stderr)),
        });
    }
    Ok(Measured {
        firmware: fw,
        report,
    })
}

fn stderr_note(err: &str) -> String {
    let err = err.trim();
    if err.is_empty() {
        String::new()
    } else {
        format!("\nQEMU: {err}")
    }
}

/// Builds the program (its C in `src`, lowered for a Cortex-M target) as
/// benchmark firmware and measures it under QEMU.
pub fn bench_program(
    p: &Program,
    src: &CSource,
    inputs: &[Tensor],
    o: &BenchOptions,
) -> Result<ModelBench> {
    let core = Core::for_arch(p.target.arch)?;
    check_fit(core, p, inputs, o)?;
    let tools = Toolchain::find()?;
    let name = &src.name;
    let sources = vec![
        Source::new(format!("{name}.h"), src.header.clone(), false),
        Source::new(format!("{name}.c"), src.source.clone(), true),
        Source::new("main.c", firmware_main(p, name, inputs, o)?, false),
    ];
    let plain = measure(core, &tools, name, &sources, &[], o.timeout)?;
    let profiled = if o.profile {
        Some(measure(
            core,
            &tools,
            &format!("{name}-profile"),
            &sources,
            &["NNC_PROFILE"],
            o.timeout,
        )?)
    } else {
        None
    };
    Ok(ModelBench {
        core,
        plain,
        profiled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_median_min_max() {
        assert_eq!(stats(&[5, 1, 9]), (5, 1, 9));
        assert_eq!(stats(&[4, 2, 8, 6]), (4, 2, 8));
        assert_eq!(stats(&[7]), (7, 7, 7));
        assert_eq!(stats(&[]), (0, 0, 0));
    }
}
