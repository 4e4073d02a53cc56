//! The target description: the one account of what the code runs on and
//! what generates it, read by the cost model of the passes, by kernel
//! selection and by both backends. Which kernel and tile shape a step gets
//! is decided from this alone.

use std::fmt;

use crate::op::{BinaryOp, UnaryOp};

/// The processor family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// Arm Cortex-M0/M0+: no FPU, no DSP extension.
    CortexM0,
    /// Arm Cortex-M4F: single-precision FPU and the DSP extension.
    CortexM4,
    /// Arm Cortex-M7F: as the M4, with caches.
    CortexM7,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::CortexM0 => "cortex-m0",
            Arch::CortexM4 => "cortex-m4",
            Arch::CortexM7 => "cortex-m7",
        }
    }

    /// A microcontroller (C only, no operating system, double emulated).
    pub fn is_mcu(self) -> bool {
        matches!(self, Arch::CortexM0 | Arch::CortexM4 | Arch::CortexM7)
    }
}

/// What turns the lowered program into machine code. The vector width the
/// kernels can count on depends on it: a C compiler auto-vectorizes for the
/// host's widest registers, Cranelift's x86-64 backend has 128-bit vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codegen {
    /// C99 source compiled by a C compiler.
    C,
    /// Cranelift IR compiled in process.
    Cranelift,
}

impl Codegen {
    pub fn name(self) -> &'static str {
        match self {
            Codegen::C => "c",
            Codegen::Cranelift => "native",
        }
    }
}

/// The integer dot product the vector unit has: how many 8-bit products
/// one instruction sums into each 32-bit lane, which decides the data
/// layout of the integer dot-product kernels (`qconv_dot`, `qdw_dot`,
/// `qgemm_dot`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IntDot {
    /// None: integer kernels are scalar (microcontrollers, no vectors).
    #[default]
    None,
    /// Pairs of 16-bit products per lane (x86 `pmaddwd`, SSE2 and later;
    /// aarch64 `smull` + `addp`).
    Pairs,
    /// Quads of unsigned-by-signed 8-bit products per lane (x86 VNNI
    /// `vpdpbusd`: AVX512-VNNI or AVX-VNNI).
    Quads,
}

impl IntDot {
    /// Products per 32-bit lane (1 without a dot product).
    pub fn width(self) -> usize {
        match self {
            IntDot::None => 1,
            IntDot::Pairs => 2,
            IntDot::Quads => 4,
        }
    }
}

/// Everything kernel selection and code generation need to know about the
/// machine the code is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub arch: Arch,
    pub codegen: Codegen,
    /// Cranelift CPU preset (`x86-64-v3`, `skylake`, ...) or `None` for
    /// this machine's own features (when `host`) or the baseline ISA.
    pub cpu: Option<String>,
    /// The code is for the machine nnc runs on.
    pub host: bool,
    /// Width in bits of the vector registers the generated code can use
    /// (0: none).
    pub vector_bits: usize,
    /// Number of those vector registers.
    pub vector_regs: usize,
    /// Fused multiply-add in hardware.
    pub fma: bool,
    /// Hardware single-precision floating point.
    pub fpu: bool,
    /// Double precision is as cheap as single (false where it is emulated).
    pub fast_f64: bool,
    /// Arm's DSP extension (`__smlad` and friends).
    pub dsp: bool,
    /// The vector unit's integer dot product.
    pub int_dot: IntDot,
    /// Level-1 data cache per core in bytes (0: none or unknown).
    pub l1d_bytes: usize,
    /// Level-2 cache in bytes (0: none or unknown).
    pub l2_bytes: usize,
}

impl Default for Target {
    /// This machine's architecture seen generically (128-bit vectors, C):
    /// what the pass pipeline assumes when nobody says what the code is
    /// for. Backends build the precise description of a target.
    fn default() -> Self {
        let arch = if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        let mut t = Target::cpu(arch, Codegen::C, 128, 16);
        t.host = true;
        t
    }
}

impl Target {
    /// A Cortex-M core (always C).
    pub fn cortex_m(arch: Arch) -> Target {
        let (fpu, dsp, l1d) = match arch {
            Arch::CortexM0 => (false, false, 0),
            Arch::CortexM4 => (true, true, 0),
            _ => (true, true, 16 * 1024),
        };
        Target {
            arch,
            codegen: Codegen::C,
            cpu: None,
            host: false,
            vector_bits: 0,
            vector_regs: 0,
            fma: fpu,
            fpu,
            fast_f64: false,
            dsp,
            int_dot: IntDot::None,
            l1d_bytes: l1d,
            l2_bytes: 0,
        }
    }

    /// A generic 64-bit CPU target with the given vector registers; the
    /// constructors of the backends fill in what they detect.
    pub fn cpu(arch: Arch, codegen: Codegen, vector_bits: usize, vector_regs: usize) -> Target {
        Target {
            arch,
            codegen,
            cpu: None,
            host: false,
            vector_bits,
            vector_regs,
            fma: false,
            fpu: true,
            fast_f64: true,
            dsp: false,
            int_dot: if vector_bits >= 128 {
                IntDot::Pairs
            } else {
                IntDot::None
            },
            l1d_bytes: 32 * 1024,
            l2_bytes: 1024 * 1024,
        }
    }

    pub fn is_mcu(&self) -> bool {
        self.arch.is_mcu()
    }

    /// f32 lanes per vector register (1 without vectors).
    pub fn f32_lanes(&self) -> usize {
        (self.vector_bits / 32).max(1)
    }

    /// 32-bit lanes of the vectors the integer dot-product kernels use:
    /// the C compiler's widest registers, Cranelift's 128 bits.
    pub fn i32_lanes(&self) -> usize {
        self.f32_lanes()
    }

    /// Does the code generator evaluate this activation on whole vectors?
    /// (C leaves that to its compiler; Cranelift's kernels have lane-wise
    /// forms of these and apply the others element by element.)
    pub fn vector_unary(&self, u: &UnaryOp) -> bool {
        match self.codegen {
            Codegen::C => true,
            Codegen::Cranelift => cranelift_vector_unary(u),
        }
    }

    /// Does the code generator evaluate this binary op on whole vectors?
    pub fn vector_binary(&self, b: &BinaryOp) -> bool {
        match self.codegen {
            Codegen::C => true,
            Codegen::Cranelift => cranelift_vector_binary(b),
        }
    }

    /// How the target is spelled on the command line.
    pub fn spec(&self) -> String {
        if self.is_mcu() {
            return self.arch.name().to_string();
        }
        match (&self.cpu, self.host) {
            (None, true) => "host".to_string(),
            (Some(c), _) => format!("{}:{c}", self.arch.name()),
            (None, false) => self.arch.name().to_string(),
        }
    }
}

impl fmt::Display for Target {
    /// `host (c, 512-bit vectors x 32, fma)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.spec(), self.codegen.name())?;
        if self.vector_bits > 0 {
            write!(
                f,
                ", {}-bit vectors x {}",
                self.vector_bits, self.vector_regs
            )?;
        } else {
            f.write_str(", scalar")?;
        }
        if self.fma {
            f.write_str(", fma")?;
        }
        if self.dsp {
            f.write_str(", dsp")?;
        }
        if self.int_dot == IntDot::Quads {
            f.write_str(", vnni")?;
        }
        if !self.fpu {
            f.write_str(", no fpu")?;
        }
        f.write_str(")")
    }
}

/// The activations Cranelift's kernels evaluate lane-wise on f32x4.
pub fn cranelift_vector_unary(u: &UnaryOp) -> bool {
    matches!(
        u,
        UnaryOp::Relu
            | UnaryOp::LeakyRelu { .. }
            | UnaryOp::Clip { .. }
            | UnaryOp::HardSigmoid { .. }
            | UnaryOp::HardSwish
            | UnaryOp::Softsign
            | UnaryOp::Sqrt
            | UnaryOp::Abs
            | UnaryOp::Neg
            | UnaryOp::Reciprocal
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sigmoid
            | UnaryOp::Silu
            | UnaryOp::Exp
            | UnaryOp::Tanh
    )
}

/// The binary ops Cranelift's kernels evaluate lane-wise on f32x4.
pub fn cranelift_vector_binary(b: &BinaryOp) -> bool {
    matches!(
        b,
        BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Max
            | BinaryOp::Min
            | BinaryOp::PRelu
    )
}
