//! The native backend: the same [`Program`] as the C backend, lowered to
//! Cranelift IR, one function per step plus the entry point
//! `int NAME_run(const void *const *inputs, void *const *outputs, void *arena)`
//! with the C backend's ABI and header. Weights and generation-time tables
//! are read-only data objects. The module is either written as a
//! relocatable object (cranelift-object) for linking with the runtime
//! harness or a user's program, or compiled in process (cranelift-jit).
//!
//! Kernels have constant shapes. f32 inner loops use f32x4 vectors (the
//! widest the x64 backend has) and `fma` when the ISA has it; the heavy 2-D
//! convolutions and matrix products use register-blocked kernels
//! (`conv_fast`, `gemm_fast`), everything else the general forms in `nn`.

mod conv;
mod conv_fast;
mod depthwise;
mod dw_grid;
mod dw_phases;
mod epilogue;
mod ew;
mod gemm_fast;
mod integer;
mod kb;
mod layout;
mod map;
mod matmul;
mod nn;
mod pool;
mod qdot;
mod qpool;
mod qtiles;
mod reduce;
mod row_tiles;
mod scalar;
mod winograd;

use std::time::Instant;

use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName, Value, types};
use cranelift_codegen::isa;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use nnc_ir::program::{
    Arch, Codegen, IntDot, Kernel, Loc, Program, Step, Target, TargetSpec, Window,
};
use nnc_ir::{Op, TensorType};

use crate::error::{BackendError, Result};
use epilogue::Epi;
use kb::{Kb, PTR, Shared, module_err};

/// The target description for Cranelift code on this machine: 128-bit
/// vectors (the widest the x86-64 backend has; aarch64's NEON is 128-bit
/// too), fused multiply-add when the CPU has it.
pub fn host_target() -> Result<Target> {
    let isa = isa_for(
        &Target::cpu(host_arch(), Codegen::Cranelift, 128, 16),
        false,
        true,
    )?;
    let mut t = describe(isa.as_ref(), host_arch());
    t.host = true;
    Ok(t)
}

fn host_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

/// The target description of an ISA Cranelift built.
fn describe(isa: &dyn isa::TargetIsa, arch: Arch) -> Target {
    let regs = if arch == Arch::Aarch64 { 32 } else { 16 };
    let mut t = Target::cpu(arch, Codegen::Cranelift, 128, regs);
    t.fma = has_fma(isa);
    if has_vnni(isa) {
        t.int_dot = IntDot::Quads;
    }
    t
}

/// True when Cranelift lowers the u8 x i8 dot-product tree to
/// `vpdpbusd` on this ISA: AVX-VNNI (with AVX) or AVX512-VNNI (with
/// AVX512VL, for the 128-bit EVEX form).
fn has_vnni(isa: &dyn isa::TargetIsa) -> bool {
    let flags = isa.isa_flags();
    let on = |n: &str| {
        flags
            .iter()
            .any(|f| f.name == n && f.as_bool() == Some(true))
    };
    (on("has_avx") && on("has_avx_vnni")) || (on("has_avx512vl") && on("has_avx512vnni"))
}

/// Parses a Cranelift target (the grammar of [`TargetSpec`]) and
/// describes it; see [`target_for`].
pub fn target(spec: &str) -> Result<Target> {
    let t: TargetSpec = spec
        .parse()
        .map_err(|e: nnc_ir::program::TargetSpecError| BackendError::Other(e.to_string()))?;
    target_for(&t)
}

/// Describes a target for Cranelift: `host` (this machine's own
/// features), `x86_64` (the x86-64-v2 baseline: Cranelift's vectors need
/// SSE4.1), `x86_64:CPU` with a Cranelift CPU preset (`x86-64-v3`,
/// `skylake`, `znver3`, ...) or one of the C backend's feature names
/// (`avx2` = x86-64-v3, `avx512` = x86-64-v4, `avx512vnni` = cascadelake,
/// `avxvnni` = alderlake), or `aarch64`. Microcontrollers are refused:
/// Cranelift has no 32-bit Arm backend.
pub fn target_for(spec: &TargetSpec) -> Result<Target> {
    let (arch, cpu) = match spec {
        TargetSpec::Host => return host_target(),
        TargetSpec::X86_64 { cpu } => {
            let preset = cpu.as_deref().map(|c| match c {
                "avx2" => "x86-64-v3",
                "avx512" => "x86-64-v4",
                "avx512vnni" => "cascadelake",
                "avxvnni" => "alderlake",
                c => c,
            });
            (
                Arch::X86_64,
                Some(preset.unwrap_or("x86-64-v2").to_string()),
            )
        }
        TargetSpec::Aarch64 if host_arch() == Arch::Aarch64 => return host_target(),
        TargetSpec::Aarch64 => (Arch::Aarch64, None),
        m => {
            return Err(BackendError::Other(format!(
                "the native backend has no code generator for {m} (Cranelift has no 32-bit Arm \
                 backend): microcontrollers get C, from `nnc emit-c --target {m}` or `--backend c`"
            )));
        }
    };
    let mut t = Target::cpu(arch, Codegen::Cranelift, 128, 16);
    t.cpu = cpu;
    let isa = isa_for(&t, false, false)?;
    let mut d = describe(isa.as_ref(), arch);
    d.cpu = t.cpu;
    Ok(d)
}

/// True when code for this target runs on this machine.
pub fn runs_here(t: &Target) -> bool {
    t.arch == host_arch()
}

/// How to generate the native code.
#[derive(Clone, Debug, Default)]
pub struct NativeOptions {
    /// Call `nnc_profile_begin()` / `nnc_profile_step(i)` around the steps
    /// (the harness's per-step timing hooks).
    pub profile: bool,
}

/// A compiled object with its header.
#[derive(Clone, Debug)]
pub struct NativeObject {
    /// Symbol prefix: the entry point is `<name>_run`.
    pub name: String,
    pub header: String,
    /// Relocatable ELF (or the host's object format) bytes.
    pub object: Vec<u8>,
    /// Target triple and ISA flags the code was generated for.
    pub isa: String,
    /// Bytes of machine code over all functions.
    pub code_bytes: usize,
    /// Time spent in Cranelift (lowering, optimization, emission).
    pub compile_ms: f64,
}

/// The Cranelift ISA of a target (`host`: this machine's own features).
fn isa_for(target: &Target, pic: bool, host: bool) -> Result<OwnedTargetIsa> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| BackendError::Other(format!("Cranelift setting {k}={v}: {e}")))
    };
    set(&mut flags, "opt_level", "none")?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "enable_probestack", "true")?;
    set(&mut flags, "probestack_strategy", "inline")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let flags = settings::Flags::new(flags);
    let builder = match target.arch {
        _ if host || (target.host && target.cpu.is_none()) => cranelift_native::builder()
            .map_err(|e| BackendError::Other(format!("this host is not supported: {e}")))?,
        Arch::X86_64 => {
            let mut b = isa::lookup_by_name("x86_64-unknown-linux-gnu")
                .map_err(|e| BackendError::Other(format!("x86_64: {e}")))?;
            let preset = target.cpu.as_deref().unwrap_or("x86-64-v2");
            b.enable(preset).map_err(|_| {
                BackendError::Other(format!(
                    "unknown x86_64 CPU `{preset}` (try x86-64-v2, x86-64-v3, x86-64-v4, haswell, skylake, znver3)"
                ))
            })?;
            imply_avx(&mut b, &flags);
            b
        }
        Arch::Aarch64 => isa::lookup_by_name("aarch64-unknown-linux-gnu")
            .map_err(|e| BackendError::Other(format!("aarch64: {e}")))?,
        a => {
            return Err(BackendError::Other(format!(
                "Cranelift has no {} backend (use the C backend)",
                a.name()
            )));
        }
    };
    let mut builder = builder;
    if target.arch == Arch::X86_64 {
        // The integer kernels' 32 x 32 -> 64-bit products: with AVX512DQ
        // Cranelift prefers `vpmullq` (three uops) to SSE4.1's `pmuldq`
        // (one), and nothing else here multiplies 64-bit lanes.
        let _ = builder.set("has_avx512dq", "false");
    }
    builder
        .finish(flags)
        .map_err(|e| BackendError::Other(format!("Cranelift ISA: {e}")))
}

/// Cranelift's CPU presets (`x86-64-v3`, `x86-64-v4`, `znver3`, ...) turn
/// on FMA, AVX2 or AVX-512 but leave `has_avx` off, and without it
/// Cranelift has no VEX encodings: every f32x4 multiply-add became a
/// libcall (executables about 50x slower and 11x larger than `host`).
/// Every CPU with those extensions has AVX, so it is turned on with them.
fn imply_avx(b: &mut isa::Builder, flags: &settings::Flags) {
    let Ok(trial) = b.finish(flags.clone()) else {
        return;
    };
    let on = |pred: &dyn Fn(&str) -> bool| {
        trial
            .isa_flags()
            .iter()
            .any(|f| pred(f.name) && f.as_bool() == Some(true))
    };
    let needs_avx = on(&|n| n == "has_fma" || n == "has_avx2" || n.starts_with("has_avx512"));
    if needs_avx && !on(&|n| n == "has_avx") {
        let _ = b.enable("has_avx");
    }
}

/// True when the ISA fuses multiply-add (always on aarch64).
fn has_fma(isa: &dyn isa::TargetIsa) -> bool {
    if isa.name() == "aarch64" {
        return true;
    }
    isa.isa_flags()
        .iter()
        .any(|f| f.name == "has_fma" && f.as_bool() == Some(true))
}

fn isa_description(isa: &dyn isa::TargetIsa) -> String {
    let on: Vec<&str> = isa
        .isa_flags()
        .iter()
        .filter(|f| f.as_bool() == Some(true))
        .map(|f| f.name.strip_prefix("has_").unwrap_or(f.name))
        .collect();
    format!("{} [{}]", isa.triple(), on.join(" "))
}

/// Compiles a program to a relocatable object plus its header.
pub fn compile_object(p: &Program, name: &str, opts: &NativeOptions) -> Result<NativeObject> {
    let t0 = Instant::now();
    if p.target.codegen != Codegen::Cranelift {
        return Err(BackendError::Other(format!(
            "the program was lowered for {}, not for Cranelift",
            p.target
        )));
    }
    let isa = isa_for(&p.target, true, false)?;
    let desc = isa_description(isa.as_ref());
    let fma = has_fma(isa.as_ref());
    let builder = cranelift_object::ObjectBuilder::new(
        isa,
        name.as_bytes().to_vec(),
        default_libcall_names(),
    )
    .map_err(module_err)?;
    let mut module = cranelift_object::ObjectModule::new(builder);
    let (_, code_bytes) = define_program(&mut module, p, name, opts.profile, fma)?;
    let product = module.finish();
    let object = product
        .emit()
        .map_err(|e| BackendError::Other(format!("writing the object: {e}")))?;
    Ok(NativeObject {
        name: name.to_string(),
        header: crate::header::header(p, name, &format!("native object, {desc}")),
        object,
        isa: desc,
        code_bytes,
        compile_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// Declares and defines every step function and the entry point.
fn define_program(
    m: &mut dyn Module,
    p: &Program,
    name: &str,
    profile: bool,
    fma: bool,
) -> Result<(FuncId, usize)> {
    let mut sh = Shared::new(m, p, name, fma);
    let mut ctx = sh.module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut sig = sh.module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(PTR));
    }
    sig.returns.push(AbiParam::new(types::I32));
    // Steps also take the loop iteration (0 outside loops).
    let mut step_sig = sig.clone();
    step_sig.params.push(AbiParam::new(types::I64));
    let mut code_bytes = 0;
    let mut steps = Vec::with_capacity(p.steps.len());
    for (i, st) in p.steps.iter().enumerate() {
        let id = sh
            .module
            .declare_function(&format!("{name}_step_{i}"), Linkage::Local, &step_sig)
            .map_err(module_err)?;
        code_bytes += define_fn(&mut sh, &mut ctx, &mut fctx, id, &step_sig, |kb, params| {
            step_body(kb, st, params)?;
            let zero = kb.b.ins().iconst(types::I32, 0);
            kb.b.ins().return_(&[zero]);
            kb.finish_fail_blocks();
            Ok(())
        })
        .map_err(|e| in_step(e, i, st))?;
        steps.push(id);
    }
    // The entry point: the steps in order (loops as loops), stopping at the
    // first failure.
    let run = sh
        .module
        .declare_function(&format!("{name}_run"), Linkage::Export, &sig)
        .map_err(module_err)?;
    code_bytes += define_fn(&mut sh, &mut ctx, &mut fctx, run, &sig, |kb, params| {
        if profile {
            kb.call("nnc_profile_begin", &[], None, &[])?;
        }
        let call_step = |kb: &mut Kb, i: usize, it: Value| -> Result<()> {
            let f = kb.sh.module.declare_func_in_func(steps[i], kb.b.func);
            let call = kb.b.ins().call(f, &[params[0], params[1], params[2], it]);
            let rc = kb.b.inst_results(call)[0];
            kb.fail_nonzero(rc);
            if profile {
                let iv = kb.b.ins().iconst(types::I32, i as i64);
                kb.call("nnc_profile_step", &[types::I32], None, &[iv])?;
            }
            Ok(())
        };
        let mut i = 0;
        while i < steps.len() {
            match p.loops.iter().find(|l| l.first == i) {
                Some(l) => {
                    let l = *l;
                    kb.for_range(0, l.count as i64, 1, |kb, it| {
                        for k in l.first..l.end() {
                            call_step(kb, k, it)?;
                        }
                        Ok(())
                    })?;
                    i = l.end();
                }
                None => {
                    let zero = kb.b.ins().iconst(types::I64, 0);
                    call_step(kb, i, zero)?;
                    i += 1;
                }
            }
        }
        let zero = kb.b.ins().iconst(types::I32, 0);
        kb.b.ins().return_(&[zero]);
        Ok(())
    })?;
    Ok((run, code_bytes))
}

/// Builds and defines one function: an entry block with the signature's
/// parameters, `body` writing the rest. Returns the machine-code bytes.
fn define_fn(
    sh: &mut Shared,
    ctx: &mut cranelift_codegen::Context,
    fctx: &mut FunctionBuilderContext,
    id: FuncId,
    sig: &cranelift_codegen::ir::Signature,
    body: impl FnOnce(&mut Kb, &[Value]) -> Result<()>,
) -> Result<usize> {
    ctx.func.signature = sig.clone();
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let params = b.block_params(entry).to_vec();
        let mut kb = Kb::new(b, sh);
        body(&mut kb, &params)?;
        let tc = kb.sh.module.target_config();
        kb.b.finalize(tc);
    }
    sh.module.define_function(id, ctx).map_err(module_err)?;
    let bytes = ctx
        .compiled_code()
        .map(|c| c.code_info().total_size as usize)
        .unwrap_or(0);
    sh.module.clear_context(ctx);
    Ok(bytes)
}

fn in_step(e: BackendError, i: usize, st: &Step) -> BackendError {
    match e {
        e @ BackendError::Unsupported { .. } => e,
        other => BackendError::Other(format!(
            "step {i} ({} `{}`): {other}",
            st.op.name(),
            st.name
        )),
    }
}

/// A step's buffers as the kernel sees them.
pub(crate) struct Args {
    ins: Vec<ArgIn>,
    bufs: Vec<nnc_ir::program::Buffer>,
    pub outs: Vec<Value>,
    /// The loop iteration (an i64; 0 outside loops).
    pub it: Value,
}

#[derive(Clone, Copy)]
enum ArgIn {
    Ptr(Value),
    /// Weight `k` at a byte offset.
    Weight(usize, usize),
}

impl Args {
    /// The address of input `k` (weights are materialized on request, so a
    /// kernel that reads a packed copy does not keep the original alive).
    pub fn x(&self, kb: &mut Kb, k: usize) -> Result<Value> {
        match self.ins[k] {
            ArgIn::Ptr(v) => Ok(v),
            ArgIn::Weight(w, off) => {
                let base = kb.weight(w)?;
                Ok(kb.off(base, off as i64))
            }
        }
    }

    /// The weight values behind input `k`, when it is (part of) a weight.
    pub fn weight<'m>(
        &self,
        kb: &Kb<'_, '_, 'm>,
        k: usize,
    ) -> Option<std::borrow::Cow<'m, nnc_ir::Tensor>> {
        let p: &'m Program = kb.sh.prog;
        match self.ins.get(k)? {
            ArgIn::Weight(..) => p.weight_view(&self.bufs[k]),
            ArgIn::Ptr(_) => None,
        }
    }
}

fn step_body(kb: &mut Kb, st: &Step, params: &[Value]) -> Result<()> {
    let (inputs, outputs, arena) = (params[0], params[1], params[2]);
    let it = params[3];
    let addr = |kb: &mut Kb, b: &nnc_ir::program::Buffer| -> ArgIn {
        let off = b.offset as i64;
        let a = match b.loc {
            Loc::Arena(o) => ArgIn::Ptr(kb.off(arena, o as i64 + off)),
            Loc::Input(k) => {
                let p = kb.load(PTR, inputs, 8 * k as i64);
                ArgIn::Ptr(kb.off(p, off))
            }
            Loc::Output(k) => {
                let p = kb.load(PTR, outputs, 8 * k as i64);
                ArgIn::Ptr(kb.off(p, off))
            }
            Loc::Const(k) => ArgIn::Weight(k, b.offset),
            // Refused before code generation (programs are placed).
            Loc::Temp(_) => ArgIn::Ptr(arena),
        };
        match a {
            // A buffer that moves with the loop.
            ArgIn::Ptr(v) if b.step > 0 => {
                let d = kb.b.ins().imul_imm_s(it, b.step as i64);
                ArgIn::Ptr(kb.b.ins().iadd(v, d))
            }
            a => a,
        }
    };
    let ins: Vec<ArgIn> = st.inputs.iter().map(|b| addr(kb, b)).collect();
    let mut outs = Vec::with_capacity(st.outputs.len());
    for b in &st.outputs {
        match addr(kb, b) {
            ArgIn::Ptr(v) => outs.push(v),
            ArgIn::Weight(..) => {
                return Err(unsupported(st, "a step that writes a weight".into()));
            }
        }
    }
    let args = Args {
        ins,
        bufs: st.inputs.clone(),
        outs,
        it: params[3],
    };
    kernel(kb, st, &args)
}

pub(crate) fn unsupported(st: &Step, what: String) -> BackendError {
    BackendError::Unsupported {
        backend: "native",
        node: st.name.clone(),
        op: st.op.name().to_string(),
        what,
    }
}

/// The window of a convolution step.
fn conv_window(st: &Step) -> Result<Window> {
    match (&st.op, st.inputs.len() >= 2) {
        (Op::Conv(c), true) if st.inputs[0].ty.rank() >= 3 => Ok(Window::conv(
            c,
            &st.inputs[0].ty,
            &st.inputs[1].ty,
            &st.outputs[0].ty,
        )),
        _ => Err(unsupported(st, format!("kernel {} here", st.kernel))),
    }
}

/// The weight in input `k`, which the kernel packs at generation time.
fn weight<'m>(
    kb: &Kb<'_, '_, 'm>,
    st: &Step,
    a: &Args,
    k: usize,
) -> Result<std::borrow::Cow<'m, nnc_ir::Tensor>> {
    a.weight(kb, k)
        .ok_or_else(|| unsupported(st, format!("kernel {} with computed weights", st.kernel)))
}

fn kernel(kb: &mut Kb, st: &Step, a: &Args) -> Result<()> {
    let y = &st.outputs[0].ty;
    let ins: Vec<&TensorType> = st.inputs.iter().map(|b| &b.ty).collect();
    if st.outputs.iter().all(|o| o.ty.is_empty()) {
        return Ok(());
    }
    let epi = Epi::new(kb, st, a)?;
    fn bias<'m>(
        kb: &Kb<'_, '_, 'm>,
        st: &Step,
        a: &Args,
        epi: &Epi,
    ) -> Result<Option<std::borrow::Cow<'m, nnc_ir::Tensor>>> {
        match epi.bias() {
            Some(k) => weight(kb, st, a, k).map(Some),
            None => Ok(None),
        }
    }
    let axes = |win: &Window| {
        win.rows_cols()
            .ok_or_else(|| unsupported(st, format!("kernel {} on a 3-D window", st.kernel)))
    };
    match (&st.kernel, &st.op) {
        (Kernel::Map(m), _) => ew::map_kernel(kb, m, &ins, y, a),
        (Kernel::Copy, Op::Identity | Op::Reshape(_)) => {
            if st.inputs[0].same_place(&st.outputs[0]) {
                return Ok(());
            }
            layout::identity(kb, y, a)
        }
        (Kernel::Copy, Op::Transpose(t)) => layout::transpose(kb, t, ins[0], y, a),
        (Kernel::Copy, Op::Concat(c)) => layout::concat(kb, c, &ins, y, a),
        (Kernel::Copy, Op::Split(s)) => {
            let outs: Vec<TensorType> = st.outputs.iter().map(|b| b.ty.clone()).collect();
            layout::split(kb, s, ins[0], &outs, a)
        }
        (Kernel::Copy, Op::Slice(s)) => layout::slice(kb, s, ins[0], y, a),
        (Kernel::Copy, Op::Expand(_)) => layout::expand(kb, ins[0], y, a),
        (Kernel::Copy, Op::Tile(t)) => layout::tile(kb, t, ins[0], y, a),
        (Kernel::RowCopy(r), Op::Identity) => layout::row_copy(kb, r, ins[0], y, a),
        (Kernel::Deinterleave { channels }, Op::Transpose(_)) => {
            layout::deinterleave_step(kb, *channels, y, a)
        }
        (Kernel::PadTable, Op::Pad(p)) => layout::pad(kb, p, ins[0], y, a),
        (Kernel::Gather, Op::Gather(g)) => layout::gather(kb, g, ins[0], ins[1], y, a),
        (Kernel::ResizeTable, Op::Resize(r)) => layout::resize(kb, r, ins[0], y, a),
        (Kernel::Reduce { acc }, Op::Reduce(r)) => reduce::reduce(kb, r, *acc, ins[0], y, a),
        (Kernel::ArgReduce, Op::ArgReduce(r)) => reduce::arg_reduce(kb, r, ins[0], a),
        (Kernel::Softmax, Op::Softmax(s)) => nn::softmax(kb, s, ins[0], a),
        (Kernel::Softmax, Op::QSoftmax(s)) => integer::qsoftmax(kb, s, ins[0], a),
        (Kernel::ConvDirect, Op::QConv(q)) => {
            integer::qconv_direct(kb, st, q, ins[0], ins[1], y, a)
        }
        (Kernel::MatMulDirect, Op::QGemm(q)) => {
            integer::qgemm_direct(kb, st, q, ins[0], ins[1], y, a)
        }
        (Kernel::ConvIm2col(k), Op::QConv(q)) => {
            let win = Window::conv(&q.conv, ins[0], ins[1], y);
            qtiles::conv_im2col(kb, st, k, q, &win, a)
        }
        (Kernel::DepthwisePairs(k), Op::QConv(q)) => {
            let win = Window::conv(&q.conv, ins[0], ins[1], y);
            qtiles::dw_pairs(kb, st, k, q, &win, a)
        }
        (Kernel::MatMulPanels(k), Op::QGemm(q)) => qtiles::matmul_panels(kb, st, k, q, ins[0], a),
        (Kernel::QConvDot(k), Op::QConv(q)) => {
            qdot::conv(kb, st, k, q, &Window::conv(&q.conv, ins[0], ins[1], y), a)
        }
        (Kernel::QDwDot(k), Op::QConv(q)) => {
            qdot::depthwise(kb, st, k, q, &Window::conv(&q.conv, ins[0], ins[1], y), a)
        }
        (Kernel::QGemmDot(k), Op::QGemm(q)) => qdot::gemm(kb, st, k, q, ins[0], a),
        (Kernel::GlobalPool(_), Op::Pool(p)) if !ins[0].dtype.is_float() => {
            integer::global_pool_int(kb, p.kind, ins[0], a)
        }
        (Kernel::GlobalPool(_), Op::GlobalPool(g)) if !ins[0].dtype.is_float() => {
            integer::global_pool_int(kb, g.kind, ins[0], a)
        }
        (Kernel::Lrn, Op::Lrn(l)) => nn::lrn(kb, l, ins[0], a),
        (Kernel::ConvDirect, Op::Conv(c)) => conv::conv(kb, c, ins[0], ins[1], y, &epi, a),
        (Kernel::ConvTransposeScatter, Op::ConvTranspose(c)) => {
            conv::conv_transpose(kb, c, ins[0], ins[1], ins.len() > 2, y, a)
        }
        (Kernel::ConvBlocked(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let (wt, bt) = (weight(kb, st, a, 1)?, bias(kb, st, a, &epi)?);
            conv_fast::blocked(kb, k, &win, &wt, bt.as_deref(), &epi, a)
        }
        (Kernel::ConvRowTiles(k), Op::Conv(_)) => {
            row_tiles::row_tiles(kb, k, &conv_window(st)?, &ins, y, &epi, a)
        }
        (Kernel::Winograd(k), Op::Winograd(w)) => {
            let (u, bt) = (weight(kb, st, a, 1)?, bias(kb, st, a, &epi)?);
            winograd::winograd(kb, w, k, ins[0], &u, bt.as_deref(), &epi, a)
        }
        (Kernel::DepthwisePhases, Op::Conv(_)) => {
            dw_phases::render(kb, &conv_window(st)?, depthwise::Win::Dw, &epi, a)
        }
        (Kernel::DepthwisePhases, Op::Pool(p)) if p.kind == nnc_ir::op::PoolKind::Max => {
            let win = Window::pool(p, ins[0], y);
            dw_phases::render(kb, &win, depthwise::Win::Max, &epi, a)
        }
        (Kernel::DepthwiseGrid, Op::Conv(_)) => {
            dw_grid::grid(kb, &conv_window(st)?, &ins, y, &epi, a)
        }
        (Kernel::DepthwiseRows(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let (h, w) = axes(&win)?;
            let (wt, bt) = (weight(kb, st, a, 1)?, bias(kb, st, a, &epi)?);
            let spec = depthwise::RowsSpec {
                op: depthwise::Win::Dw,
                width: k.width,
                pad_copy: k.pad_copy,
                epi: Some(&epi),
            };
            depthwise::rows(
                kb,
                &spec,
                (win.batch, win.channels),
                h,
                w,
                Some(&wt),
                bt.as_deref(),
                a,
            )
        }
        (Kernel::DepthwiseChannelsLast(k), Op::Conv(_)) => {
            let win = conv_window(st)?;
            let (h, w) = axes(&win)?;
            let (wt, bt) = (weight(kb, st, a, 1)?, bias(kb, st, a, &epi)?);
            depthwise::channels_last(
                kb,
                k,
                (win.batch, win.channels),
                h,
                w,
                &wt,
                bt.as_deref(),
                &epi,
                a,
            )
        }
        (Kernel::MatMulDirect, Op::Gemm(g)) => {
            matmul::gemm(kb, g, ins[0], ins.get(2).copied(), y, &epi, a)
        }
        (Kernel::MatMulDirect, Op::MatMul) => matmul::matmul(kb, ins[0], ins[1], y, &epi, a),
        (Kernel::MatMulPacked(k), Op::Gemm(_) | Op::MatMul) => {
            gemm_fast::packed(kb, k, &st.op, ins[0], y, &epi, a)
        }
        (Kernel::PoolDirect, Op::Pool(p)) if qpool::applies(p, ins[0], y) => {
            qpool::mean_planes(kb, ins[0], a)
        }
        (Kernel::PoolDirect, Op::Pool(p)) => pool::pool(kb, p, ins[0], y, a),
        (Kernel::PoolRows(k), Op::Pool(p)) => pool::rows_kernel(kb, k, p, ins[0], y, a),
        (Kernel::GlobalPool(k), Op::Pool(p)) => pool::global_pool(kb, k, p.kind, ins[0], a),
        (Kernel::GlobalPool(k), Op::GlobalPool(g)) => pool::global_pool(kb, k, g.kind, ins[0], a),
        (k, op) => Err(unsupported(
            st,
            format!("kernel {} on a {} step", k.name(), op.name()),
        )),
    }
}

/// A program compiled in process, ready to run.
pub struct JitModel {
    module: Option<cranelift_jit::JITModule>,
    entry: unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32,
    arena_bytes: usize,
    input_bytes: Vec<usize>,
    output_bytes: Vec<usize>,
    /// Bytes of machine code.
    pub code_bytes: usize,
    pub compile_ms: f64,
}

impl std::fmt::Debug for JitModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitModel")
            .field("arena_bytes", &self.arena_bytes)
            .field("code_bytes", &self.code_bytes)
            .finish()
    }
}

/// The libm and libc functions generated code may call, resolved in this
/// process rather than looked up by name at run time.
fn host_symbols(b: &mut cranelift_jit::JITBuilder) {
    unsafe extern "C" {
        fn expf(x: f32) -> f32;
        fn exp(x: f64) -> f64;
        fn logf(x: f32) -> f32;
        fn log(x: f64) -> f64;
        fn log1pf(x: f32) -> f32;
        fn log1p(x: f64) -> f64;
        fn tanhf(x: f32) -> f32;
        fn tanh(x: f64) -> f64;
        fn erff(x: f32) -> f32;
        fn erf(x: f64) -> f64;
        fn sinf(x: f32) -> f32;
        fn sin(x: f64) -> f64;
        fn cosf(x: f32) -> f32;
        fn cos(x: f64) -> f64;
        fn powf(x: f32, y: f32) -> f32;
        fn pow(x: f64, y: f64) -> f64;
        fn fmodf(x: f32, y: f32) -> f32;
        fn fmod(x: f64, y: f64) -> f64;
        fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8;
    }
    let syms: [(&str, *const u8); 21] = [
        ("expf", expf as *const u8),
        ("exp", exp as *const u8),
        ("logf", logf as *const u8),
        ("log", log as *const u8),
        ("log1pf", log1pf as *const u8),
        ("log1p", log1p as *const u8),
        ("tanhf", tanhf as *const u8),
        ("tanh", tanh as *const u8),
        ("erff", erff as *const u8),
        ("erf", erf as *const u8),
        ("sinf", sinf as *const u8),
        ("sin", sin as *const u8),
        ("cosf", cosf as *const u8),
        ("cos", cos as *const u8),
        ("powf", powf as *const u8),
        ("pow", pow as *const u8),
        ("fmodf", fmodf as *const u8),
        ("fmod", fmod as *const u8),
        ("memmove", memmove as *const u8),
        ("memcpy", memcpy as *const u8),
        ("memset", memset as *const u8),
    ];
    for (n, p) in syms {
        b.symbol(n, p);
    }
}

/// Compiles a program in process (the host ISA).
pub fn jit(p: &Program) -> Result<JitModel> {
    let t0 = Instant::now();
    if p.target.codegen != Codegen::Cranelift || !runs_here(&p.target) {
        return Err(BackendError::Other(format!(
            "the program was lowered for {}, not for Cranelift on this machine",
            p.target
        )));
    }
    let isa = isa_for(&p.target, false, false)?;
    let fma = has_fma(isa.as_ref());
    let mut builder = cranelift_jit::JITBuilder::with_isa(isa, default_libcall_names());
    host_symbols(&mut builder);
    let mut module = cranelift_jit::JITModule::new(builder);
    let (run, code_bytes) = define_program(&mut module, p, "nnc_jit", false, fma)?;
    module.finalize_definitions().map_err(module_err)?;
    let ptr = module.get_finalized_function(run);
    // SAFETY: `run` was defined above with exactly this signature
    // (three pointers in, i32 out) and the module stays alive in the
    // returned value for as long as the pointer is used.
    let entry = unsafe {
        std::mem::transmute::<
            *const u8,
            unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32,
        >(ptr)
    };
    Ok(JitModel {
        module: Some(module),
        entry,
        arena_bytes: p.arena_bytes,
        input_bytes: p.inputs.iter().map(|(_, t)| t.bytes()).collect(),
        output_bytes: p.outputs.iter().map(|(_, t)| t.bytes()).collect(),
        code_bytes,
        compile_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

impl JitModel {
    /// Runs the model on raw little-endian input bytes and returns the
    /// output bytes. Sizes are checked against the program.
    pub fn run(&self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        if inputs.len() != self.input_bytes.len() {
            return Err(BackendError::Other(format!(
                "expected {} inputs, got {}",
                self.input_bytes.len(),
                inputs.len()
            )));
        }
        // Copies into 64-byte aligned buffers: the code may use aligned
        // vector accesses, and callers' slices carry no such promise.
        let mut in_bufs: Vec<Aligned> = Vec::with_capacity(inputs.len());
        for (k, (b, &n)) in inputs.iter().zip(&self.input_bytes).enumerate() {
            if b.len() != n {
                return Err(BackendError::Other(format!(
                    "input {k} has {} bytes, the model expects {n}",
                    b.len()
                )));
            }
            let mut a = Aligned::new(n);
            a.bytes_mut().copy_from_slice(b);
            in_bufs.push(a);
        }
        let mut out_bufs: Vec<Aligned> =
            self.output_bytes.iter().map(|&n| Aligned::new(n)).collect();
        let mut arena = Aligned::new(self.arena_bytes);
        let in_ptrs: Vec<*const u8> = in_bufs.iter_mut().map(|b| b.ptr() as *const u8).collect();
        let out_ptrs: Vec<*mut u8> = out_bufs.iter_mut().map(|b| b.ptr()).collect();
        // SAFETY: every pointer refers to a live buffer of the size the
        // program was planned with; the generated code only accesses those
        // ranges (shapes are static and checked at generation time).
        let rc = unsafe { (self.entry)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), arena.ptr()) };
        if rc != 0 {
            return Err(BackendError::Other(format!(
                "the compiled model failed with code {rc} (an index input out of range)"
            )));
        }
        Ok(out_bufs.iter().map(|b| b.bytes().to_vec()).collect())
    }
}

impl Drop for JitModel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the entry pointer is dropped with self; nothing else
            // refers to the module's code or data.
            unsafe { m.free_memory() };
        }
    }
}

/// A zeroed, 64-byte aligned byte buffer.
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + 64];
        let start = buf.as_ptr().align_offset(64);
        Aligned { buf, start, len }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.buf[self.start..].as_mut_ptr()
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// Measures this machine's f32x4 fused multiply-add peak in GFLOP/s with a
/// JIT-compiled loop of independent FMA chains (enough of them to hide the
/// FMA latency on every current core). Best of several timed runs.
pub fn fma_peak_gflops() -> Result<f64> {
    const CHAINS: usize = 12;
    let isa = isa_for(&host_target()?, false, true)?;
    let fma = has_fma(isa.as_ref());
    let mut builder = cranelift_jit::JITBuilder::with_isa(isa, default_libcall_names());
    host_symbols(&mut builder);
    let mut module = cranelift_jit::JITModule::new(builder);
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(PTR));
    sig.params.push(AbiParam::new(types::I64));
    let id = module
        .declare_function("nnc_fma_peak", Linkage::Local, &sig)
        .map_err(module_err)?;
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let prog = Program {
        name: String::new(),
        target: host_target()?,
        inputs: vec![],
        outputs: vec![],
        weights: vec![],
        steps: vec![],
        loops: vec![],
        arena_bytes: 0,
        stats: Default::default(),
    };
    {
        let mut sh = Shared::new(&mut module, &prog, "peak", fma);
        define_fn(&mut sh, &mut ctx, &mut fctx, id, &sig, |kb, params| {
            let (out, n) = (params[0], params[1]);
            let a = kb.cf(kb::F32X4, 0.999_999);
            let c = kb.cf(kb::F32X4, 1e-7);
            let accs: Vec<_> = (0..CHAINS)
                .map(|i| {
                    let v = kb.cf(kb::F32X4, 1.0 + i as f64);
                    kb.var(kb::F32X4, v)
                })
                .collect();
            let zero = kb.ci(0);
            kb.for_dyn(zero, n, |kb, _| {
                for &acc in &accs {
                    let v = kb.get(acc);
                    let r = kb.mul_add(v, a, c);
                    kb.set(acc, r);
                }
                Ok(())
            })?;
            let mut s = kb.get(accs[0]);
            for &acc in &accs[1..] {
                let v = kb.get(acc);
                s = kb.b.ins().fadd(s, v);
            }
            kb.store(s, out, 0);
            kb.b.ins().return_(&[]);
            Ok(())
        })?;
    }
    module.finalize_definitions().map_err(module_err)?;
    let f = module.get_finalized_function(id);
    // SAFETY: defined above as fn(*mut f32x4, i64) with no other effects.
    let f = unsafe { std::mem::transmute::<*const u8, unsafe extern "C" fn(*mut u8, i64)>(f) };
    let mut sink = [0u8; 32];
    let iters: i64 = 2_000_000;
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t0 = Instant::now();
        // SAFETY: `sink` has room for one f32x4.
        unsafe { f(sink.as_mut_ptr(), iters) };
        best = best.min(t0.elapsed().as_secs_f64());
    }
    // SAFETY: `f` is not used after this point.
    unsafe { module.free_memory() };
    let flops = iters as f64 * CHAINS as f64 * 8.0;
    Ok(flops / best / 1e9)
}
