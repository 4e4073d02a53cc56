//! Firmware for an MPS2 board: C (and assembly) sources built with
//! arm-none-eabi-gcc against the startup code and linker script of
//! `runtime/mcu`, cached by a hash of everything that goes into the build,
//! and run under QEMU with a time limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nnc_runtime::mcu::{CLOCK_S, LINKER_SCRIPT, MCU_C, MCU_H, MIN_STACK_BYTES, STARTUP_C};

use super::{Core, McuError, Result, Toolchain, io_err};

/// One source file of a firmware image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// File name (`model.c`, `main.c`, `loop.S`); headers (`.h`) are only
    /// written next to the others.
    pub name: String,
    pub text: String,
    /// Compiled as generated model code must compile: `-std=c99 -Wall
    /// -Wextra -Werror -pedantic`. Its size is reported separately.
    pub strict: bool,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>, strict: bool) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
            strict,
        }
    }
}

/// Section sizes as `arm-none-eabi-size` reports them (Berkeley format:
/// read-only data counts as text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageSize {
    pub text: u64,
    pub data: u64,
    pub bss: u64,
}

impl ImageSize {
    /// What the image occupies in flash: code, constants and the initial
    /// values of `.data`.
    pub fn flash(&self) -> u64 {
        self.text + self.data
    }

    /// What it occupies in RAM before the stack and heap.
    pub fn ram(&self) -> u64 {
        self.data + self.bss
    }

    /// Sums the rows of `arm-none-eabi-size` output (`text data bss dec hex name`).
    pub fn parse(out: &str) -> Option<ImageSize> {
        let mut s = ImageSize::default();
        let mut rows = 0;
        for l in out.lines().skip(1) {
            let f: Vec<u64> = l
                .split_whitespace()
                .take(3)
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 3 {
                return None;
            }
            s.text += f[0];
            s.data += f[1];
            s.bss += f[2];
            rows += 1;
        }
        (rows > 0).then_some(s)
    }
}

/// A built firmware image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    pub core: Core,
    pub elf: PathBuf,
    /// The whole image.
    pub image: ImageSize,
    /// The strict sources' objects (the model's code and weights), before
    /// the linker drops unused sections.
    pub model: ImageSize,
}

fn tool(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| McuError::Build {
        what: what.to_string(),
        status: "not started".into(),
        log: format!("`{}`: {e}", cmd.get_program().to_string_lossy()),
    })?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(McuError::Build {
            what: what.to_string(),
            status: out.status.to_string(),
            log: tail.join("\n"),
        });
    }
    Ok(log)
}

/// A link that failed because the image is too big for the board, as a
/// [`McuError::DoesNotFit`] naming the sizes.
fn overflow(core: Core, log: &str) -> Option<McuError> {
    for (region, memory, have) in [
        ("`FLASH'", "flash", core.flash_bytes()),
        ("`RAM'", "RAM", core.ram_bytes()),
    ] {
        if let Some(l) = log
            .lines()
            .find(|l| l.contains(region) && l.contains("overflowed by"))
        {
            let by = l.rsplit("overflowed by ").next().unwrap_or("").trim();
            return Some(McuError::DoesNotFit {
                board: core.machine(),
                memory,
                detail: format!("the image is {by} larger than the {have} bytes there"),
            });
        }
    }
    log.contains("not enough RAM left for the stack")
        .then(|| McuError::DoesNotFit {
            board: core.machine(),
            memory: "RAM",
            detail: format!(
                "data and bss leave less than the {MIN_STACK_BYTES} bytes of stack the linker script \
                 reserves out of {} bytes",
                core.ram_bytes()
            ),
        })
}

/// Builds firmware from `sources` plus the runtime (startup code, linker
/// script, benchmark runtime and clock), with the C files at `-O2` and
/// `defines` (`-D`) on every compile. Cached in
/// [`crate::cache::cache_dir`] under `mcu-NAME-HASH`.
pub fn build(
    core: Core,
    tools: &Toolchain,
    name: &str,
    sources: &[Source],
    defines: &[&str],
) -> Result<Firmware> {
    let version = tool(
        Command::new(&tools.gcc).arg("-dumpfullversion"),
        "arm-none-eabi-gcc -dumpfullversion",
    )?;
    let mut parts: Vec<&[u8]> = vec![
        STARTUP_C.as_bytes(),
        LINKER_SCRIPT.as_bytes(),
        MCU_H.as_bytes(),
        MCU_C.as_bytes(),
        CLOCK_S.as_bytes(),
        core.name().as_bytes(),
        version.as_bytes(),
    ];
    let gcc = tools.gcc.to_string_lossy();
    parts.push(gcc.as_bytes());
    for s in sources {
        let strict: &[u8] = if s.strict { b"strict" } else { b"plain" };
        parts.extend([s.name.as_bytes(), s.text.as_bytes(), strict]);
    }
    for d in defines {
        parts.push(d.as_bytes());
    }
    let key = crate::cache::key(&parts);
    let base = crate::cache::cache_dir().map_err(|e| McuError::Usage(e.to_string()))?;
    let dir = base.join(format!("mcu-{name}-{key}"));
    if let Some(fw) = load_cached(core, &dir) {
        return Ok(fw);
    }
    crate::cache::clean_scratch(&base);
    let tmp =
        crate::cache::scratch_dir(&base, "mcu").map_err(|e| McuError::Usage(e.to_string()))?;
    let built = build_in(core, tools, &tmp, sources, defines);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Publish atomically (the ELF's hash recorded); a concurrent build of
    // the same image may win.
    crate::cache::publish(&tmp, &dir, "firmware.elf").map_err(|e| McuError::Build {
        what: "firmware".into(),
        status: "missing output".into(),
        log: e.to_string(),
    })?;
    load_cached(core, &dir).ok_or_else(|| McuError::Build {
        what: "firmware".into(),
        status: "missing output".into(),
        log: format!("`{}` was not written", dir.join("firmware.elf").display()),
    })
}

/// The cached image in `dir`, when it is there and its ELF is the one that
/// was built (see [`crate::cache::lookup`]).
fn load_cached(core: Core, dir: &Path) -> Option<Firmware> {
    let elf = crate::cache::lookup(dir, "firmware.elf")?;
    let image = ImageSize::parse(&std::fs::read_to_string(dir.join("image.size")).ok()?)?;
    let model = ImageSize::parse(&std::fs::read_to_string(dir.join("model.size")).ok()?)
        .unwrap_or_default();
    Some(Firmware {
        core,
        elf,
        image,
        model,
    })
}

fn build_in(
    core: Core,
    tools: &Toolchain,
    dir: &Path,
    sources: &[Source],
    defines: &[&str],
) -> Result<()> {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io_err(&p))
    };
    write("startup.c", STARTUP_C)?;
    write("mps2.ld", LINKER_SCRIPT)?;
    write("nnc_mcu.h", MCU_H)?;
    write("nnc_mcu.c", MCU_C)?;
    write("nnc_mcu_clock.S", CLOCK_S)?;
    for s in sources {
        write(&s.name, &s.text)?;
    }
    let defs: Vec<String> = defines.iter().map(|d| format!("-D{d}")).collect();
    let common = ["-O2", "-ffunction-sections", "-fdata-sections"];
    let mut objects = Vec::new();
    for s in sources.iter().filter(|s| s.strict) {
        let obj = format!("{}.o", s.name.trim_end_matches(".c"));
        tool(
            Command::new(&tools.gcc)
                .current_dir(dir)
                .args(core.cpu_flags())
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
                .args(common)
                .args(&defs)
                .args(["-c", &s.name, "-o", &obj]),
            &format!("arm-none-eabi-gcc {} (-Werror -pedantic)", s.name),
        )?;
        objects.push(obj);
    }
    let model = if objects.is_empty() {
        String::new()
    } else {
        tool(
            Command::new(&tools.size).current_dir(dir).args(&objects),
            "arm-none-eabi-size",
        )?
    };
    write("model.size", &model)?;
    let rest: Vec<&str> = sources
        .iter()
        .filter(|s| !s.strict && !s.name.ends_with(".h"))
        .map(|s| s.name.as_str())
        .collect();
    let link = tool(
        Command::new(&tools.gcc)
            .current_dir(dir)
            .args(core.cpu_flags())
            .args(["-std=gnu99", "-Wall", "-Wextra", "-I."])
            .args(common)
            .args(&defs)
            .args(["-T", "mps2.ld", "-nostartfiles", "--specs=rdimon.specs"])
            .arg("-Wl,--gc-sections")
            .args(&rest)
            .args(["nnc_mcu.c", "nnc_mcu_clock.S", "startup.c"])
            .args(&objects)
            .args(["-lm", "-o", "firmware.elf"]),
        "linking the firmware (arm-none-eabi-gcc)",
    );
    if let Err(McuError::Build { log, .. }) = &link
        && let Some(e) = overflow(core, log)
    {
        return Err(e);
    }
    link?;
    let size = tool(
        Command::new(&tools.size)
            .current_dir(dir)
            .arg("firmware.elf"),
        "arm-none-eabi-size",
    )?;
    write("image.size", &size)
}

/// What QEMU printed and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The firmware's semihosting output.
    pub stdout: String,
    pub stderr: String,
    /// QEMU's exit status: the firmware's exit code (semihosting exit).
    pub code: Option<i32>,
}

/// The QEMU command line for firmware on its board: no display, serial or
/// monitor, semihosting to this process's standard output, and
/// `-icount shift=0`: virtual time advances one nanosecond per guest
/// instruction and never by itself (`sleep=off`), which is what makes the
/// firmware's clock count instructions.
pub fn qemu_args(core: Core, elf: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "-M",
        core.machine(),
        "-cpu",
        core.qemu_cpu(),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-nic",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0,sleep=off",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(elf.display().to_string());
    a
}

/// Runs firmware under QEMU, killing it after `limit`.
pub fn run(tools: &Toolchain, fw: &Firmware, limit: Duration) -> Result<RunOutput> {
    let mut child = Command::new(&tools.qemu)
        .args(qemu_args(fw.core, &fw.elf))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| McuError::ToolMissing {
            tool: "qemu-system-arm",
            looked: format!("`{}` does not start: {e}", tools.qemu.display()),
        })?;
    // Drained while QEMU runs: a long report must not fill the pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(McuError::Timeout {
                    machine: fw.core.machine(),
                    limit,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                return Err(io_err(&tools.qemu)(e));
            }
        }
    };
    Ok(RunOutput {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        code: status.code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_output_is_summed_over_objects() {
        let out = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n  100\t 8\t 16\t 124\t 7c\ta.o\n   50\t 0\t 4\t 54\t 36\tb.o\n";
        assert_eq!(
            ImageSize::parse(out),
            Some(ImageSize {
                text: 150,
                data: 8,
                bss: 20
            })
        );
        assert_eq!(ImageSize::parse("header only\n"), None);
        assert_eq!(ImageSize::parse("h\nx y z\n"), None);
    }

    #[test]
    fn overflowing_links_name_the_memory() {
        let log = "ld: firmware.elf section `.text' will not fit in region `FLASH'\nld: region `FLASH' overflowed by 1234 bytes\n";
        let e = overflow(Core::M4, log).unwrap().to_string();
        assert!(
            e.contains("flash") && e.contains("1234 bytes") && e.contains("mps2-an386"),
            "{e}"
        );
        let e = overflow(Core::M7, "ld: not enough RAM left for the stack")
            .unwrap()
            .to_string();
        assert!(e.contains("RAM") && e.contains("65536"), "{e}");
        assert!(overflow(Core::M4, "undefined reference to `f'").is_none());
    }
}
