//! How a target is spelled: the one grammar every command of the CLI and
//! the build API accept for `--target`, whatever the backend. A spec names
//! a machine; each backend turns it into its [`Target`](super::Target)
//! description or says why it cannot generate code for it.
//!
//! ```text
//! host            the machine nnc runs on, with all its ISA extensions
//! x86_64[:CPU]    64-bit x86, the baseline or a CPU (a feature set such as
//!                 avx2 or avx512, a level x86-64-v2..v4, a CPU preset)
//! aarch64         64-bit Arm
//! cortex-m0|m4|m7 an Arm Cortex-M microcontroller
//! ```

use std::fmt;
use std::str::FromStr;

use super::target::Arch;

/// A parsed `--target`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// The machine nnc runs on.
    Host,
    /// 64-bit x86: the baseline ISA (SSE2), or a named CPU.
    X86_64 { cpu: Option<String> },
    /// 64-bit Arm (NEON).
    Aarch64,
    /// Arm Cortex-M0/M0+.
    CortexM0,
    /// Arm Cortex-M4F.
    CortexM4,
    /// Arm Cortex-M7F.
    CortexM7,
}

/// The grammar, for error messages and help texts.
pub const TARGET_GRAMMAR: &str =
    "host, x86_64, x86_64:CPU, aarch64, cortex-m0, cortex-m4 or cortex-m7";

/// A `--target` that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{0}` (use {TARGET_GRAMMAR})")]
pub struct TargetSpecError(pub String);

impl TargetSpec {
    /// The processor family, `None` for the host (whatever it is).
    pub fn arch(&self) -> Option<Arch> {
        match self {
            TargetSpec::Host => None,
            TargetSpec::X86_64 { .. } => Some(Arch::X86_64),
            TargetSpec::Aarch64 => Some(Arch::Aarch64),
            TargetSpec::CortexM0 => Some(Arch::CortexM0),
            TargetSpec::CortexM4 => Some(Arch::CortexM4),
            TargetSpec::CortexM7 => Some(Arch::CortexM7),
        }
    }

    /// A microcontroller.
    pub fn is_mcu(&self) -> bool {
        self.arch().is_some_and(Arch::is_mcu)
    }
}

impl FromStr for TargetSpec {
    type Err = TargetSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Ok(match t {
            "host" | "native" => TargetSpec::Host,
            "x86_64" | "x86-64" => TargetSpec::X86_64 { cpu: None },
            "aarch64" | "arm64" => TargetSpec::Aarch64,
            "cortex-m0" | "cortex-m0plus" | "cortex-m0+" => TargetSpec::CortexM0,
            "cortex-m4" => TargetSpec::CortexM4,
            "cortex-m7" => TargetSpec::CortexM7,
            _ => match t
                .strip_prefix("x86_64:")
                .or_else(|| t.strip_prefix("x86-64:"))
            {
                Some(cpu)
                    if !cpu.is_empty()
                        && cpu
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    TargetSpec::X86_64 {
                        cpu: Some(cpu.to_string()),
                    }
                }
                _ => return Err(TargetSpecError(s.to_string())),
            },
        })
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Host => f.write_str("host"),
            TargetSpec::X86_64 { cpu: None } => f.write_str("x86_64"),
            TargetSpec::X86_64 { cpu: Some(c) } => write!(f, "x86_64:{c}"),
            TargetSpec::Aarch64 => f.write_str("aarch64"),
            TargetSpec::CortexM0 => f.write_str("cortex-m0"),
            TargetSpec::CortexM4 => f.write_str("cortex-m4"),
            TargetSpec::CortexM7 => f.write_str("cortex-m7"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (s, want) in [
            ("host", "host"),
            ("native", "host"),
            ("x86_64", "x86_64"),
            ("x86-64:avx2", "x86_64:avx2"),
            ("x86_64:x86-64-v3", "x86_64:x86-64-v3"),
            ("arm64", "aarch64"),
            ("cortex-m0+", "cortex-m0"),
            ("cortex-m4", "cortex-m4"),
            ("cortex-m7", "cortex-m7"),
        ] {
            let t: TargetSpec = s.parse().unwrap();
            assert_eq!(t.to_string(), want);
            assert_eq!(t.to_string().parse::<TargetSpec>().unwrap(), t);
        }
        assert!(TargetSpec::CortexM4.is_mcu());
        assert!(!TargetSpec::Host.is_mcu());
    }

    #[test]
    fn rejects_what_is_not_a_target() {
        for s in ["sparc", "x86_64:", "x86_64:a b", "cortex-m3", ""] {
            let e = s.parse::<TargetSpec>().unwrap_err().to_string();
            assert!(e.contains("use host, x86_64"), "{e}");
        }
    }
}
