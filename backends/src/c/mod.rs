//! The C backend: one C99 source and header per model, from a [`Program`].
//!
//! Every step becomes a `static` function with constant shapes; weights are
//! `static const` arrays (flash on an MCU); the entry point
//! `int NAME_run(const void *const *inputs, void *const *outputs, void *arena)`
//! calls the steps with pointers into the caller's buffers. No allocation,
//! no stdio, no mutable globals; only `<math.h>`, `<stdint.h>` and
//! `<stddef.h>` (and, for host targets, the compiler's `<immintrin.h>` and
//! GNU C vector types, see [`vector`]). The code compiles warning-free
//! with `-std=c99 -Wall -Wextra -Werror -pedantic`.

mod conv;
mod depthwise;
mod dw_phases;
mod elementwise;
mod epilogue;
mod integer;
mod layout;
mod matmul;
mod nn;
mod pool;
mod qdot;
mod qtiles;
mod subpixel;
mod vector;
mod winograd;
mod writer;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use nnc_ir::program::{
    Arch, Buffer, Codegen, IntDot, Kernel, Loc, Program, Step, Target, TargetSpec, Window,
};
use nnc_ir::{DType, Op, Tensor, TensorType};

use crate::error::{BackendError, Result};
use conv::{Dir, Geo};
use epilogue::Epi;
use writer::{W, ctype, flit, ilit};
pub use writer::{comment_safe, cstr, ident};

/// The target description for C on this machine: the vector registers
/// `-march=native` gives the C compiler (AVX-512: 512 bits, 32 registers;
/// AVX2: 256 bits, 16; otherwise SSE's 128 bits), fused multiply-add
/// when the CPU has it, and VNNI's 8-bit dot products at that width
/// (16-bit pairs otherwise).
pub fn host_target() -> Target {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let (bits, regs) = if has!("avx512f") {
            (512, 32)
        } else if has!("avx2") {
            (256, 16)
        } else {
            (128, 16)
        };
        let mut t = Target::cpu(Arch::X86_64, Codegen::C, bits, regs);
        t.fma = has!("fma");
        let vnni = match bits {
            512 => has!("avx512vnni") && has!("avx512bw"),
            256 => has!("avxvnni") || (has!("avx512vnni") && has!("avx512vl")),
            _ => false,
        };
        if vnni {
            t.int_dot = IntDot::Quads;
        }
        t.host = true;
        t
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mut t = Target::cpu(Arch::Aarch64, Codegen::C, 128, 32);
        t.fma = true;
        t.host = true;
        t
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let mut t = Target::cpu(Arch::X86_64, Codegen::C, 0, 0);
        t.host = true;
        t
    }
}

/// Parses a C target (the grammar of [`TargetSpec`]) and describes it;
/// see [`target_for`].
pub fn target(spec: &str) -> Result<Target> {
    let t: TargetSpec = spec
        .parse()
        .map_err(|e: nnc_ir::program::TargetSpecError| BackendError::Other(e.to_string()))?;
    target_for(&t)
}

/// The x86-64 CPUs the C backend knows (each names the vector unit its
/// kernels and compiler flags assume).
pub const C_X86_CPUS: &str =
    "avx2, avx512, avx512vnni, avxvnni, x86-64-v2, x86-64-v3 (= avx2), x86-64-v4 (= avx512)";

/// Describes a target for C: `host` (this machine, as `-march=native`
/// sees it), `x86_64` (SSE2 only), `x86_64:x86-64-v2` (SSE4.2),
/// `x86_64:avx2` or `x86_64:x86-64-v3` (256-bit vectors and FMA, as
/// `-mavx2 -mfma`), `x86_64:avx512` or `x86_64:x86-64-v4` (Skylake-X's
/// AVX-512: F, BW, VL, DQ), `x86_64:avx512vnni` (as `avx512` with VNNI's
/// 8-bit dot products), `x86_64:avxvnni` (AVX2 with AVX-VNNI), `aarch64`
/// (NEON), or a microcontroller (`cortex-m0`, `cortex-m4`, `cortex-m7`).
/// The vector width decides the kernels' tile shapes, so C for another
/// machine should name it.
pub fn target_for(spec: &TargetSpec) -> Result<Target> {
    let cpu = |arch, bits, regs, fma: bool, name: &str| {
        let mut t = Target::cpu(arch, Codegen::C, bits, regs);
        t.fma = fma;
        t.cpu = (!name.is_empty()).then(|| name.to_string());
        t
    };
    let vnni = |mut t: Target| {
        t.int_dot = IntDot::Quads;
        t
    };
    Ok(match spec {
        TargetSpec::Host => host_target(),
        TargetSpec::X86_64 { cpu: None } => cpu(Arch::X86_64, 128, 16, false, ""),
        TargetSpec::X86_64 { cpu: Some(c) } => match c.as_str() {
            "x86-64-v2" => cpu(Arch::X86_64, 128, 16, false, "x86-64-v2"),
            "avx2" | "x86-64-v3" => cpu(Arch::X86_64, 256, 16, true, "avx2"),
            "avx512" | "x86-64-v4" => cpu(Arch::X86_64, 512, 32, true, "avx512"),
            "avx512vnni" => vnni(cpu(Arch::X86_64, 512, 32, true, "avx512vnni")),
            "avxvnni" => vnni(cpu(Arch::X86_64, 256, 16, true, "avxvnni")),
            _ => {
                return Err(BackendError::Other(format!(
                    "the C backend does not know the x86_64 CPU `{c}` (it knows {C_X86_CPUS}; \
                     Cranelift's CPU presets such as skylake are for the native backend)"
                )));
            }
        },
        TargetSpec::Aarch64 => cpu(Arch::Aarch64, 128, 32, true, ""),
        TargetSpec::CortexM0 => Target::cortex_m(Arch::CortexM0),
        TargetSpec::CortexM4 => Target::cortex_m(Arch::CortexM4),
        TargetSpec::CortexM7 => Target::cortex_m(Arch::CortexM7),
    })
}

/// Skylake-X's AVX-512 subsets (every AVX-512 CPU since has them).
const AVX512: &[&str] = &[
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512dq",
    "-mavx2",
    "-mfma",
];

/// The C compiler flags that give the vector unit a C target assumes
/// (empty for `host`: the caller picks `-march=native` or not).
pub fn isa_flags(t: &Target) -> Vec<&'static str> {
    match (t.arch, t.cpu.as_deref()) {
        (Arch::X86_64, Some("x86-64-v2")) => vec!["-msse4.2", "-mpopcnt"],
        (Arch::X86_64, Some("avx2")) => vec!["-mavx2", "-mfma"],
        (Arch::X86_64, Some("avx512")) => AVX512.to_vec(),
        (Arch::X86_64, Some("avx512vnni")) => [AVX512, &["-mavx512vnni"]].concat(),
        (Arch::X86_64, Some("avxvnni")) => vec!["-mavx2", "-mfma", "-mavxvnni"],
        _ => vec![],
    }
}

/// Generated files.
#[derive(Clone, Debug)]
pub struct CSource {
    /// The identifier used for the entry point and macros.
    pub name: String,
    pub header: String,
    pub source: String,
}

/// How the weights are written into the C source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightForm {
    /// `static const float w[] = {0.5f, ...}`: readable, and slow to
    /// compile for large models (a C compiler spends about 4 s per million
    /// float literals).
    Literal,
    /// The bytes of each array as one string literal in a union with the
    /// typed array (`static const union { unsigned char b[N]; float v[M]; }
    /// w_u = {"\\000..."}; #define w (w_u.v)`): still standard C99,
    /// still `static const` (flash on an MCU), aligned for its type, and
    /// ten times faster to compile.
    Blob,
    /// Blob when the weights exceed [`BLOB_ABOVE`] bytes, literals below.
    #[default]
    Auto,
}

/// Weight bytes above which [`WeightForm::Auto`] writes blobs.
pub const BLOB_ABOVE: usize = 1 << 20;

impl WeightForm {
    /// Blobs or literals for a program with `weight_bytes` of weights.
    pub fn blob_for(self, weight_bytes: usize) -> bool {
        match self {
            WeightForm::Literal => false,
            WeightForm::Blob => true,
            WeightForm::Auto => weight_bytes > BLOB_ABOVE,
        }
    }

    /// The spelling of `--weights`.
    pub fn name(self) -> &'static str {
        match self {
            WeightForm::Literal => "literal",
            WeightForm::Blob => "blob",
            WeightForm::Auto => "auto",
        }
    }
}

/// How to write the C.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct COptions {
    pub weights: WeightForm,
}

/// Helper functions a source needs; emitted once, only when used.
#[derive(Debug, Default)]
pub struct Helpers {
    used: BTreeSet<&'static str>,
    /// File-scope arrays kernels derive from weights (packed layouts).
    globals: String,
    counter: usize,
    /// Write float arrays as blobs ([`WeightForm::Blob`]).
    blob: bool,
    /// Floats per vector register of a host target (0: none, or a
    /// microcontroller): the lanes of [`vector`]'s kernels.
    lanes: usize,
}

impl Helpers {
    pub fn need(&mut self, h: &'static str) {
        self.used.insert(h);
    }

    /// Adds a file-scope `static const float` array of these values (f32
    /// precision) and returns its name: literals or a blob, as the weights.
    pub fn global_f32(&mut self, what: &str, values: &[f64]) -> String {
        if !self.blob {
            let lits: Vec<String> = values.iter().map(|&v| flit(v, DType::F32)).collect();
            return self.global_array(what, "float", &lits);
        }
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        self.global_blob(what, "float", values.len(), &bytes)
    }

    /// Adds a file-scope `static const int32_t` array (literals or a blob).
    pub fn global_i32(&mut self, what: &str, values: &[i32]) -> String {
        if !self.blob {
            let lits: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            return self.global_array(what, "int32_t", &lits);
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.global_blob(what, "int32_t", values.len(), &bytes)
    }

    /// Adds a file-scope `static const uint32_t` array of words (hex
    /// literals or a blob).
    pub fn global_u32(&mut self, what: &str, values: &[u32]) -> String {
        if !self.blob {
            let lits: Vec<String> = values.iter().map(|w| format!("0x{w:08x}u")).collect();
            return self.global_array(what, "uint32_t", &lits);
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.global_blob(what, "uint32_t", values.len(), &bytes)
    }

    fn global_blob(&mut self, what: &str, ctype: &str, count: usize, bytes: &[u8]) -> String {
        let name = format!("nnc_{what}{}", self.counter);
        self.counter += 1;
        blob_array(&mut self.globals, &name, ctype, count, bytes);
        name
    }

    /// Adds a file-scope `static const` array and returns its name.
    pub fn global_array(&mut self, what: &str, ctype: &str, values: &[String]) -> String {
        let name = format!("nnc_{what}{}", self.counter);
        self.counter += 1;
        let _ = write!(
            self.globals,
            "static const {ctype} {name}[{}] = {{",
            values.len().max(1)
        );
        if values.is_empty() {
            self.globals.push('0');
        }
        for (i, v) in values.iter().enumerate() {
            self.globals
                .push_str(if i % 8 == 0 { "\n    " } else { " " });
            self.globals.push_str(v);
            self.globals.push(',');
        }
        self.globals.push_str("\n};\n\n");
        name
    }
}

/// Weight tensors of a step's inputs (`None` for computed inputs).
pub type StepWeights<'a> = Vec<Option<&'a Tensor>>;

fn unsupported(step: &Step, what: &str) -> BackendError {
    BackendError::Unsupported {
        backend: "C",
        node: step.name.clone(),
        op: step.op.name().to_string(),
        what: what.to_string(),
    }
}

/// Fused multiply-add where the hardware has it, plain arithmetic elsewhere
/// (a software `fmaf` would be much slower than the two operations).
const FMA_MACRO: &str = "#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(FP_FAST_FMAF)\n#define NNC_FMA(a, b, c) fmaf((a), (b), (c))\n#else\n#define NNC_FMA(a, b, c) ((a) * (b) + (c))\n#endif\n\n";

/// Steps stay functions of their own: inlined into the entry point (each
/// is called once), GCC allocates registers for the whole model at once
/// and the kernels' inner loops spill (measured on the Cortex-M4: 17% more
/// instructions for the KWS model), and on the host it loses the
/// parameters' `restrict` and stops vectorizing (SqueezeNet's global
/// average pool: 0.116 ms inlined, 0.012 ms out of line).
const STEP_MACRO: &str = "#if defined(__GNUC__)\n#define NNC_STEP __attribute__((noinline))\n#else\n#define NNC_STEP\n#endif\n\n";

/// Per-step timing hooks, compiled in only with `-DNNC_PROFILE`.
const PROFILE_HOOKS: &str = "#ifdef NNC_PROFILE\nvoid nnc_profile_begin(void);\nvoid nnc_profile_step(int step);\n#define NNC_PROFILE_BEGIN() nnc_profile_begin()\n#define NNC_PROFILE_STEP(i) nnc_profile_step(i)\n#else\n#define NNC_PROFILE_BEGIN() ((void)0)\n#define NNC_PROFILE_STEP(i) ((void)0)\n#endif\n\n";

/// Emits the header and source for a program (its kernels selected for a
/// C target), the weights in the form [`WeightForm::Auto`] picks.
pub fn emit(p: &Program, name: &str) -> Result<CSource> {
    emit_with(p, name, &COptions::default())
}

/// As [`emit`], with options.
pub fn emit_with(p: &Program, name: &str, opts: &COptions) -> Result<CSource> {
    if p.target.codegen != Codegen::C {
        return Err(BackendError::Other(format!(
            "the program was lowered for {}, not for C",
            p.target
        )));
    }
    if p.steps.iter().any(|s| {
        s.inputs
            .iter()
            .chain(&s.outputs)
            .any(|b| matches!(b.loc, Loc::Temp(_)))
    }) {
        return Err(BackendError::Other(
            "the program's storage is not placed yet".into(),
        ));
    }
    let name = ident(name);
    let blob = opts.weights.blob_for(p.weight_bytes());
    let mut h = Helpers {
        blob,
        lanes: host_lanes(&p.target),
        ..Helpers::default()
    };
    let mut body = String::new();
    let mut calls = Vec::new();
    let mut used = BTreeSet::new();
    let mut shared: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (i, st) in p.steps.iter().enumerate() {
        let views: Vec<Option<std::borrow::Cow<'_, Tensor>>> =
            st.inputs.iter().map(|b| p.weight_view(b)).collect();
        let ws: StepWeights<'_> = views.iter().map(|v| v.as_deref()).collect();
        let f = step_function(&name, i, st, &ws, &mut h, p.target.is_mcu())?;
        // Steps that differ only in their buffers (channel groups, rows of
        // a streamed chain) call one function.
        let fname = match shared.get(&f.key) {
            Some(n) => String::clone(n),
            None => {
                body.push_str(&f.func);
                body.push('\n');
                shared.insert(f.key, f.name.clone());
                f.name
            }
        };
        calls.push(format!("{fname}({})", f.args));
        used.extend(f.refs);
    }
    let mut src = String::new();
    let _ = writeln!(
        src,
        "/* Generated by nnc {} for {} ({}). Do not edit. */",
        env!("CARGO_PKG_VERSION"),
        comment_safe(&p.name),
        p.target.spec()
    );
    let _ = writeln!(src, "#include \"{name}.h\"\n");
    src.push_str("#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n\n");
    // Epilogues cannot register helpers; the one they may call is found
    // in the bodies.
    if body.contains("nnc_expf(") {
        h.need("nnc_expf");
    }
    if h.used.contains("nnc_fma") {
        src.push_str(FMA_MACRO);
    }
    if h.used.contains("nnc_vec") {
        src.push_str(&vector::prelude(h.lanes));
    }
    if h.used.contains("nnc_tr") {
        src.push_str(&vector::transpose(h.lanes));
    }
    src.push_str(STEP_MACRO);
    for hname in &h.used {
        src.push_str(elementwise::helper_source(hname));
        src.push('\n');
    }
    if blob {
        src.push_str(BLOB_PRELUDE);
    }
    // Only weights some step reads; packed copies replace the originals.
    weights(&mut src, p, &used, blob);
    src.push_str(&h.globals);
    src.push_str(&body);
    // Entry point. With -DNNC_PROFILE it reports the end of every step to
    // hooks the host harness provides (per-step timing); otherwise the
    // hooks compile to nothing.
    src.push_str(PROFILE_HOOKS);
    let mut w = W::new();
    w.open(format!(
        "int {name}_run(const void *const *inputs, void *const *outputs, void *arena)"
    ));
    w.line("unsigned char *a = (unsigned char *)arena;");
    w.line("int rc;");
    w.line("(void)inputs;");
    w.line("(void)outputs;");
    w.line("(void)a;");
    w.line("NNC_PROFILE_BEGIN();");
    for (i, c) in calls.into_iter().enumerate() {
        if let Some(l) = p.loops.iter().find(|l| l.first == i) {
            w.open(format!("for (long it = 0; it < {}; ++it)", l.count));
        }
        let it = if p.loop_of(i).is_some() { "it" } else { "0" };
        w.line(format!(
            "if ((rc = {}) != 0) return rc;",
            c.replace("@IT@", it)
        ));
        w.line(format!("NNC_PROFILE_STEP({i});"));
        if p.loops.iter().any(|l| l.end() == i + 1) {
            w.close();
        }
    }
    w.line("return 0;");
    w.close();
    src.push_str(&w.s);
    Ok(CSource {
        header: crate::header::header(p, &name, &p.target.spec()),
        name,
        source: src,
    })
}

/// What a source with blobs needs: their string literals are longer than
/// the 4095 characters C99 promises to every compiler (GCC and Clang take
/// any length; `-pedantic` would warn), and their bytes are little-endian.
const BLOB_PRELUDE: &str = "#if defined(__GNUC__)\n#pragma GCC diagnostic ignored \"-Woverlength-strings\"\n#endif\n#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__\n#error \"the weights are stored little-endian\"\n#endif\n\n";

/// Writes `static const CTYPE NAME[count]` as a blob: a union of the
/// bytes (one string literal, octal escapes for what is not printable)
/// with the typed array, and a macro naming the typed array.
fn blob_array(src: &mut String, name: &str, ctype: &str, count: usize, bytes: &[u8]) {
    let _ = write!(
        src,
        "static const union {{ unsigned char b[{}]; {ctype} v[{}]; }} {name}_u = {{",
        bytes.len().max(1),
        count.max(1)
    );
    if bytes.is_empty() {
        src.push_str("{0}");
    }
    for chunk in bytes.chunks(64) {
        src.push_str("\n    \"");
        for &b in chunk {
            // Octal escapes are always three digits, so a digit after one
            // is never read as part of it; `?` could start a trigraph.
            if (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'?') {
                src.push(b as char);
            } else {
                let _ = write!(src, "\\{b:03o}");
            }
        }
        src.push('"');
    }
    let _ = write!(src, "\n}};\n#define {name} ({name}_u.v)\n\n");
}

fn weights(src: &mut String, p: &Program, used: &BTreeSet<usize>, blob: bool) {
    for (k, wt) in p.weights.iter().enumerate() {
        if !used.contains(&k) {
            continue;
        }
        let t: &Tensor = &wt.tensor;
        let _ = writeln!(src, "/* {} {} */", comment_safe(&wt.name), t.ty());
        let n = t.len();
        if blob && t.dtype() != DType::Bool {
            let bytes = t.data().to_le_bytes();
            blob_array(src, &format!("nnc_w{k}"), ctype(t.dtype()), n, &bytes);
            continue;
        }
        let _ = write!(
            src,
            "static const {} nnc_w{k}[{}] = {{",
            ctype(t.dtype()),
            n.max(1)
        );
        if n == 0 {
            src.push_str("0};\n\n");
            continue;
        }
        let items: Vec<String> = match t.dtype() {
            DType::F32 | DType::F64 => t.to_f64().iter().map(|&v| flit(v, t.dtype())).collect(),
            _ => t.to_i64().iter().map(|&v| ilit(v)).collect(),
        };
        for (i, it) in items.iter().enumerate() {
            if i % 8 == 0 {
                src.push_str("\n    ");
            } else {
                src.push(' ');
            }
            src.push_str(it);
            src.push(',');
        }
        src.push_str("\n};\n\n");
    }
}

/// The C expression that passes a buffer to a step.
fn arg(b: &Buffer, is_input: bool) -> String {
    let t = ctype(b.ty.dtype);
    let c = if is_input { "const " } else { "" };
    if b.ty.is_empty() {
        // Never dereferenced; a null pointer also cannot alias (restrict).
        return format!("({c}{t} *)0");
    }
    let off = b.offset;
    let es = b.ty.dtype.size().max(1);
    let p = match (b.loc, off) {
        (Loc::Arena(o), _) => format!("({c}{t} *)(a + {})", o + off),
        // Never reached: emit() refuses unplaced programs.
        (Loc::Temp(_), _) => format!("({c}{t} *)0"),
        (Loc::Input(k), 0) => format!("(const {t} *)inputs[{k}]"),
        (Loc::Input(k), _) => {
            format!("(const {t} *)((const unsigned char *)inputs[{k}] + {off})")
        }
        (Loc::Output(k), 0) => format!("({c}{t} *)outputs[{k}]"),
        (Loc::Output(k), _) => format!("({c}{t} *)((unsigned char *)outputs[{k}] + {off})"),
        (Loc::Const(k), 0) => format!("nnc_w{k}"),
        (Loc::Const(k), _) => format!("(nnc_w{k} + {})", off / es),
    };
    if b.step == 0 {
        return p;
    }
    // A buffer that moves with the loop (whole elements per iteration).
    format!("({p} + (size_t)@IT@ * {})", b.step / es)
}

/// One step as a static function plus the call from the entry point.
fn step_function(
    name: &str,
    i: usize,
    st: &Step,
    ws: &StepWeights<'_>,
    h: &mut Helpers,
    mcu: bool,
) -> Result<StepFn> {
    let fname = format!("{name}_step_{i}");
    let restrict = if st.aliases() { "" } else { "restrict " };
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (k, b) in st.inputs.iter().enumerate() {
        params.push((
            format!("in{k}"),
            format!("const {} *{restrict}in{k}", ctype(b.ty.dtype)),
        ));
        args.push(arg(b, true));
    }
    for (k, b) in st.outputs.iter().enumerate() {
        params.push((
            format!("out{k}"),
            format!("{} *{restrict}out{k}", ctype(b.ty.dtype)),
        ));
        args.push(arg(b, false));
    }
    if matches!(st.kernel, Kernel::RowCopy(_)) {
        // The loop iteration (the entry point passes it, or 0).
        params.push(("it".into(), "long it".into()));
        args.push("@IT@".into());
    }
    let mut w = W::new();
    kernel(&mut w, st, ws, h, mcu)?;
    let body = w.s;
    // Weights the body does not read (packed elsewhere) are not passed.
    let mut refs = Vec::new();
    for (k, b) in st.inputs.iter().enumerate() {
        if let Loc::Const(c) = b.loc {
            if mentions(&body, &format!("in{k}")) && !b.ty.is_empty() {
                refs.push(c);
            } else {
                args[k] = format!("(const {} *)0", ctype(b.ty.dtype));
            }
        }
    }
    let mut f = String::new();
    let shapes: Vec<String> = st.outputs.iter().map(|b| b.ty.to_string()).collect();
    let _ = writeln!(
        f,
        "/* step {i}: {} -> {}{}  kernel={}  [{}] */",
        st.op.name(),
        shapes.join(", "),
        if st.in_place { " (in place)" } else { "" },
        comment_safe(&st.kernel.to_string()),
        comment_safe(&st.name)
    );
    let plist: Vec<&str> = params.iter().map(|(_, p)| p.as_str()).collect();
    let _ = writeln!(f, "NNC_STEP static int {fname}({}) {{", plist.join(", "));
    let mut text = String::new();
    for (pn, _) in &params {
        if !mentions(&body, pn) {
            let _ = writeln!(text, "    (void){pn};");
        }
    }
    for l in body.lines() {
        let _ = writeln!(text, "    {l}");
    }
    text.push_str("    return 0;\n}\n");
    f.push_str(&text);
    Ok(StepFn {
        key: format!("{}\n{text}", plist.join(", ")),
        func: f,
        name: fname,
        args: args.join(", "),
        refs,
    })
}

/// One step's C function, and what calling it takes.
struct StepFn {
    /// The parameters and body: steps with the same key share a function.
    key: String,
    func: String,
    name: String,
    args: String,
    refs: Vec<usize>,
}

/// True when `ident` occurs in `body` as a whole identifier.
fn mentions(body: &str, ident: &str) -> bool {
    body.match_indices(ident).any(|(i, _)| {
        let after = body[i + ident.len()..].chars().next();
        let before = body[..i].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn conv_window(st: &Step) -> Result<Window> {
    match (&st.op, st.inputs.len() >= 2) {
        (Op::Conv(a), true) if st.inputs[0].ty.rank() >= 3 => Ok(Window::conv(
            a,
            &st.inputs[0].ty,
            &st.inputs[1].ty,
            &st.outputs[0].ty,
        )),
        _ => Err(unsupported(
            st,
            "a convolution kernel on a step that is not a convolution",
        )),
    }
}

/// The window of an integer convolution step.
fn qconv_window(st: &Step, a: &nnc_ir::op::QConvAttrs) -> Result<Window> {
    if st.inputs.len() < 2 || st.inputs[0].ty.rank() < 3 {
        return Err(unsupported(
            st,
            "an integer convolution without its operands",
        ));
    }
    Ok(Window::conv(
        &a.conv,
        &st.inputs[0].ty,
        &st.inputs[1].ty,
        &st.outputs[0].ty,
    ))
}

/// The 1-D or 2-D view of a convolution window the tile kernels need.
fn geo(st: &Step, win: &Window) -> Result<Geo> {
    Geo::of(win).ok_or_else(|| unsupported(st, &format!("kernel {} on a 3-D window", st.kernel)))
}

/// Floats per vector register of the C host kernels on `t` (0 on a
/// microcontroller or without vector registers).
fn host_lanes(t: &Target) -> usize {
    if t.is_mcu() || t.vector_bits < 128 {
        0
    } else {
        (t.vector_bits / 32).min(16)
    }
}

/// A weight input the kernel packs at generation time.
fn weight<'a>(st: &Step, ws: &StepWeights<'a>, k: usize) -> Result<&'a Tensor> {
    ws.get(k)
        .copied()
        .flatten()
        .ok_or_else(|| unsupported(st, &format!("kernel {} with computed weights", st.kernel)))
}

fn kernel(w: &mut W, st: &Step, ws: &StepWeights<'_>, h: &mut Helpers, mcu: bool) -> Result<()> {
    let y = &st.outputs[0].ty;
    let ins: Vec<&TensorType> = st.inputs.iter().map(|b| &b.ty).collect();
    let epi = Epi::of(st).fast_exp(h.lanes > 0);
    let bias = |st: &Step| -> Result<Option<&Tensor>> {
        match epi.bias() {
            Some(k) => weight(st, ws, k).map(Some),
            None => Ok(None),
        }
    };
    match (&st.kernel, &st.op) {
        (Kernel::Map(m), _) => elementwise::map(w, m, &ins, y, h),
        (Kernel::Copy, Op::Identity | Op::Reshape(_)) => layout::copy(w, y),
        (Kernel::Copy, Op::Transpose(a)) => layout::transpose(w, a, ins[0], y),
        (Kernel::Copy, Op::Concat(a)) => {
            let v: Vec<TensorType> = ins.iter().map(|t| (*t).clone()).collect();
            layout::concat(w, a, &v, y);
        }
        (Kernel::Copy, Op::Split(a)) => {
            let outs: Vec<TensorType> = st.outputs.iter().map(|b| b.ty.clone()).collect();
            layout::split(w, a, ins[0], &outs);
        }
        (Kernel::Copy, Op::Slice(a)) => layout::slice(w, a, ins[0], y),
        (Kernel::Copy, Op::Expand(_)) => layout::expand(w, ins[0], y),
        (Kernel::Copy, Op::Tile(a)) => layout::tile(w, a, ins[0], y),
        (Kernel::Deinterleave { channels }, _) => layout::deinterleave(w, *channels, y),
        (Kernel::RowCopy(r), Op::Identity) => layout::row_copy(w, r, ins[0], y),
        (Kernel::PadTable, Op::Pad(a)) => layout::pad(w, a, ins[0], y),
        (Kernel::Gather, Op::Gather(a)) => layout::gather(w, a, ins[0], ins[1], y),
        (Kernel::ResizeTable, Op::Resize(a)) => layout::resize(w, a, ins[0], y),
        (Kernel::Reduce { acc }, Op::Reduce(a)) => {
            layout::reduce(w, a, ins[0], y, *acc == DType::F32)
        }
        (Kernel::ArgReduce, Op::ArgReduce(a)) => layout::arg_reduce(w, a, ins[0]),
        (Kernel::Softmax, Op::Softmax(a)) => nn::softmax(w, a, ins[0]),
        (Kernel::Softmax, Op::QSoftmax(a)) => integer::qsoftmax(w, a, ins[0], h),
        (Kernel::ConvDirect, Op::QConv(a)) => {
            integer::qconv_direct(w, st, a, ins[0], ins[1], y, &epi, h)
        }
        (Kernel::MatMulDirect, Op::QGemm(a)) => integer::qgemm_direct(w, st, a, ins[0], y, &epi, h),
        (Kernel::ConvIm2col(k), Op::QConv(a)) => {
            let win = qconv_window(st, a)?;
            qtiles::conv_im2col(w, st, k, a, &win, ws, h)?
        }
        (Kernel::DepthwisePairs(k), Op::QConv(a)) => {
            let win = qconv_window(st, a)?;
            qtiles::dw_pairs(w, st, k, a, &win, ws, h)?
        }
        (Kernel::MatMulPanels(k), Op::QGemm(a)) => {
            qtiles::matmul_panels(w, st, k, a, ins[0], ws, h)?
        }
        (Kernel::QConvDot(k), Op::QConv(a)) => {
            let win = Window::conv(&a.conv, ins[0], ins[1], y);
            qdot::conv(w, st, k, a, &win, ws, h)
                .ok_or_else(|| unsupported(st, "qconv_dot on this step"))?;
        }
        (Kernel::QDwDot(k), Op::QConv(a)) => {
            let win = Window::conv(&a.conv, ins[0], ins[1], y);
            qdot::depthwise(w, st, k, a, &win, ws, h)
                .ok_or_else(|| unsupported(st, "qdw_dot on this step"))?;
        }
        (Kernel::QGemmDot(k), Op::QGemm(a)) => {
            qdot::gemm(w, st, k, a, ins[0], ws, h)
                .ok_or_else(|| unsupported(st, "qgemm_dot on this step"))?;
        }
        (Kernel::Lrn, Op::Lrn(a)) => nn::lrn(w, a, ins[0]),
        (Kernel::ConvDirect, Op::Conv(a)) => conv::direct(
            w,
            Dir::Gather,
            (&a.strides, &a.dilations, &a.pads),
            a.group,
            ins[0],
            ins[1],
            y,
            &epi,
        ),
        (Kernel::ConvTransposeScatter, Op::ConvTranspose(a)) => {
            let mut e = Epi::of(st).fast_exp(h.lanes > 0);
            if ins.len() > 2 {
                e = e.with_bias(2);
            }
            let konst = ws.get(1).copied().flatten();
            if let Some(wt) = konst
                && h.lanes > 0
                && y.dtype == DType::F32
                && subpixel::applies(a, ins[0], ins[1], &e)
            {
                subpixel::render(w, ins[0], wt, y, &e, h);
                return Ok(());
            }
            conv::direct(
                w,
                Dir::Scatter,
                (&a.strides, &a.dilations, &a.pads),
                a.group,
                ins[0],
                ins[1],
                y,
                &e,
            )
        }
        (Kernel::ConvBlocked(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let g = geo(st, &win)?;
            conv::blocked(w, k, &g, weight(st, ws, 1)?, bias(st)?, &epi, h);
        }
        (Kernel::Winograd(k), Op::Winograd(a)) => {
            let lanes = if mcu {
                1
            } else {
                nnc_ir::program::winograd::C_HOST_LANES
            };
            let u = weight(st, ws, 1)?;
            winograd::winograd(w, a, k, ins[0], u, bias(st)?, &epi, lanes, h)
                .ok_or_else(|| unsupported(st, "winograd on these shapes"))?;
        }
        (Kernel::ConvRowTiles(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let g = geo(st, &win)?;
            conv::row_tiles(w, k, &g, y, &epi, h);
        }
        (Kernel::DepthwiseRows(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let g = geo(st, &win)?;
            depthwise::rows(w, k, &g, y, &epi);
        }
        (Kernel::DepthwiseChannelsLast(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let g = geo(st, &win)?;
            depthwise::channels_last(w, k, &g, weight(st, ws, 1)?, bias(st)?, &epi, h);
        }
        (Kernel::DepthwiseGrid, Op::Conv(_)) => {
            let win = conv_window(st)?;
            let g = geo(st, &win)?;
            if win.grid().is_none() {
                return Err(unsupported(st, "dw_grid on unequal strides"));
            }
            depthwise::grid(w, &win, &g, &epi, h);
        }
        (Kernel::DepthwisePhases, Op::Conv(_) | Op::Pool(_)) => {
            let (win, op) = match &st.op {
                Op::Pool(a) => (Window::pool(a, ins[0], y), dw_phases::Sweep::Max),
                _ => (conv_window(st)?, dw_phases::Sweep::Conv),
            };
            let p = nnc_ir::program::Phases::of(&win)
                .ok_or_else(|| unsupported(st, "dw_phases on a window that is not 1-D or 2-D"))?;
            dw_phases::render(w, &win, &p, op, &epi, h);
        }
        (Kernel::MatMulDirect, Op::Gemm(a)) => {
            matmul::gemm(w, a, ins[0], ins.get(2).copied(), y, &epi)
        }
        (Kernel::MatMulDirect, Op::MatMul) => matmul::matmul(w, ins[0], ins[1], y, &epi),
        (Kernel::MatMulPacked(k), Op::Gemm(_) | Op::MatMul) => {
            let bv = weight(st, ws, 1)?.to_f64();
            let c = match ins.get(2) {
                Some(ct) => Some((*ct, weight(st, ws, 2)?)),
                None => None,
            };
            let p = matmul::Packed::of(&st.op, ins[0], y, &bv, c);
            matmul::packed(w, k, &p, &epi, h);
        }
        (Kernel::PoolDirect, Op::Pool(a)) => pool::direct(w, a, ins[0], y),
        (Kernel::PoolRows(k), Op::Pool(a)) => {
            let win = Window::pool(a, ins[0], y);
            if win.axes.len() != 2 {
                return Err(unsupported(st, "pool_rows on a window that is not 2-D"));
            }
            pool::rows(w, k, a, &win);
        }
        (Kernel::GlobalPool(k), Op::Pool(a)) => pool::global(w, k, a.kind, ins[0]),
        (Kernel::GlobalPool(k), Op::GlobalPool(a)) => pool::global(w, k, a.kind, ins[0]),
        (k, op) => {
            return Err(unsupported(
                st,
                &format!("kernel {} on a {} step", k.name(), op.name()),
            ));
        }
    }
    Ok(())
}
