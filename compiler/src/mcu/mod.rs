//! Cortex-M firmware under QEMU: generated C built with arm-none-eabi-gcc
//! into firmware for one of QEMU's Arm MPS2 boards, run under
//! `qemu-system-arm -icount shift=0`, and measured in guest instructions.
//!
//! `-icount shift=0` makes QEMU's virtual clock advance exactly one
//! nanosecond per guest instruction. The boards' timers (SysTick and the
//! CMSDK APB timers alike) are clocked at 25 MHz, so they tick every 40
//! instructions; the firmware's clock (`runtime/mcu/nnc_mcu_clock.S`,
//! decoded by [`clock`]) recovers the exact instruction from CMSDK timer 0
//! (32 bits, so it does not wrap for 171 billion instructions, where
//! SysTick's 24 bits wrap after 671 million). These are instructions as
//! QEMU executes them, not cycles: QEMU has no pipeline, cache or
//! wait-state model.
//!
//! - [`Core`]: the cores nnc targets and the board each runs on.
//! - [`Toolchain`]: finding arm-none-eabi-gcc and qemu-system-arm.
//! - [`firmware`]: building (cached) and running firmware.
//! - [`clock`]: the firmware's report and the mark records in it.
//! - [`bench`]: a lowered program as benchmark firmware (`nnc bench
//!   --target cortex-m4`).

pub mod bench;
pub mod clock;
pub mod firmware;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nnc_ir::program::Arch;
use thiserror::Error;

pub use bench::{BenchOptions, ModelBench, bench_program};
pub use firmware::{Firmware, ImageSize, Source};

/// Errors of building and running firmware.
#[derive(Debug, Error)]
pub enum McuError {
    #[error(
        "`{tool}` not found ({looked}); run scripts/setup.sh to install the Arm toolchain and QEMU"
    )]
    ToolMissing { tool: &'static str, looked: String },
    #[error("{0}")]
    Usage(String),
    #[error("the model does not fit the {board} board's {memory}: {detail}")]
    DoesNotFit {
        board: &'static str,
        memory: &'static str,
        detail: String,
    },
    #[error("{what} failed ({status}):\n{log}")]
    Build {
        what: String,
        status: String,
        log: String,
    },
    #[error("QEMU ({machine}) did not finish in {} s: the firmware hangs or needs longer (--timeout)", .limit.as_secs())]
    Timeout {
        machine: &'static str,
        limit: Duration,
    },
    #[error("the firmware failed on {machine} ({status}): {detail}")]
    Firmware {
        machine: &'static str,
        status: String,
        detail: String,
    },
    #[error("unexpected firmware report: {0}")]
    Report(String),
    #[error("`{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = McuError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> McuError + '_ {
    move |source| McuError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A Cortex-M core nnc generates C for, and the QEMU board it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Core {
    /// Cortex-M0 code on the MPS2 AN385's Cortex-M3 (QEMU has no M0 board).
    M0,
    /// Cortex-M4F on the MPS2 AN386.
    M4,
    /// Cortex-M7F on the MPS2 AN500.
    M7,
}

impl Core {
    /// The core for a target architecture; an error for anything but a
    /// Cortex-M.
    pub fn for_arch(arch: Arch) -> Result<Core> {
        match arch {
            Arch::CortexM0 => Ok(Core::M0),
            Arch::CortexM4 => Ok(Core::M4),
            Arch::CortexM7 => Ok(Core::M7),
            a => Err(McuError::Usage(format!(
                "`{}` is not a microcontroller; firmware is built for cortex-m0, cortex-m4 or cortex-m7",
                a.name()
            ))),
        }
    }

    /// The target name (`cortex-m4`).
    pub fn name(self) -> &'static str {
        match self {
            Core::M0 => "cortex-m0",
            Core::M4 => "cortex-m4",
            Core::M7 => "cortex-m7",
        }
    }

    /// QEMU's machine (`-M`).
    pub fn machine(self) -> &'static str {
        match self {
            Core::M0 => "mps2-an385",
            Core::M4 => "mps2-an386",
            Core::M7 => "mps2-an500",
        }
    }

    /// QEMU's CPU (`-cpu`): the board's own core.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Core::M0 => "cortex-m3",
            Core::M4 => "cortex-m4",
            Core::M7 => "cortex-m7",
        }
    }

    /// arm-none-eabi-gcc's flags for the core and its FPU.
    pub fn cpu_flags(self) -> &'static [&'static str] {
        match self {
            Core::M0 => &["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
            Core::M4 => &[
                "-mcpu=cortex-m4",
                "-mthumb",
                "-mfloat-abi=hard",
                "-mfpu=fpv4-sp-d16",
            ],
            Core::M7 => &[
                "-mcpu=cortex-m7",
                "-mthumb",
                "-mfloat-abi=hard",
                "-mfpu=fpv5-d16",
            ],
        }
    }

    /// What the measurement stands for when the board's core is not the
    /// target's (Cortex-M0).
    pub fn caveat(self) -> Option<&'static str> {
        match self {
            Core::M0 => Some(
                "QEMU has no Cortex-M0 board: the Cortex-M0 code (ARMv6-M instructions only, \
                 soft float) runs on the mps2-an385's Cortex-M3. The instruction count is that \
                 of the M0 code, but faults only an M0 raises (unaligned accesses) go unnoticed",
            ),
            _ => None,
        }
    }

    /// Flash (code memory at 0) and RAM (at 0x20000000) of the board, as the
    /// linker script declares them.
    pub fn flash_bytes(self) -> usize {
        4 << 20
    }

    /// See [`Core::flash_bytes`].
    pub fn ram_bytes(self) -> usize {
        4 << 20
    }
}

/// The cross tools: found on `PATH` or in the folder `scripts/setup.sh`
/// fills (`$NNC_TOOLS_DIR`, default `~/.cache/nnc-tools`); `$NNC_QEMU`
/// names qemu-system-arm directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    pub gcc: PathBuf,
    pub size: PathBuf,
    pub qemu: PathBuf,
}

/// `$NNC_TOOLS_DIR`, else `~/.cache/nnc-tools`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("NNC_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/nnc-tools")
        })
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

impl Toolchain {
    /// Finds the tools, or names the one missing and where it was looked for.
    pub fn find() -> Result<Toolchain> {
        let tools = tools_dir();
        let arm = |tool: &'static str| {
            let own = tools.join("arm-none-eabi/bin").join(tool);
            if own.is_file() {
                return Ok(own);
            }
            on_path(tool).ok_or_else(|| McuError::ToolMissing {
                tool,
                looked: format!(
                    "on PATH and in {}",
                    tools.join("arm-none-eabi/bin").display()
                ),
            })
        };
        let gcc = arm("arm-none-eabi-gcc")?;
        let size = arm("arm-none-eabi-size")?;
        let qemu = if let Some(q) = std::env::var_os("NNC_QEMU") {
            let q = PathBuf::from(q);
            if !q.is_file() {
                return Err(McuError::ToolMissing {
                    tool: "qemu-system-arm",
                    looked: format!("NNC_QEMU={}", q.display()),
                });
            }
            q
        } else {
            let own = tools.join("qemu/usr/bin/qemu-system-arm");
            if own.is_file() {
                own
            } else {
                on_path("qemu-system-arm").ok_or_else(|| McuError::ToolMissing {
                    tool: "qemu-system-arm",
                    looked: format!("in {} and on PATH", own.display()),
                })?
            }
        };
        Ok(Toolchain { gcc, size, qemu })
    }
}
