//! The kernel builder: Cranelift's `FunctionBuilder` plus what every kernel
//! needs over and over: counted loops with constant or computed bounds,
//! typed loads and stores at byte offsets, f32x4 helpers, calls into libm,
//! read-only tables and weights, and early error returns. Kernels are
//! written against this, so each op module reads like the loop nest it
//! generates.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, AbiParam, BlockArg, Endianness, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
    Type, Value, types,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};

use crate::error::{BackendError, Result};
use nnc_ir::program::Program;

/// Module-wide state shared by the step functions of one program.
pub(crate) struct Shared<'m> {
    pub module: &'m mut dyn Module,
    pub prog: &'m Program,
    /// The ISA has fused multiply-add.
    pub fma: bool,
    /// Symbol prefix (the model name).
    pub name: String,
    weights: Vec<Option<DataId>>,
    imports: HashMap<String, FuncId>,
    /// Deduplicated read-only tables (packed weights, index maps).
    tables: HashMap<(Vec<u8>, u64), DataId>,
}

impl<'m> Shared<'m> {
    pub fn new(module: &'m mut dyn Module, prog: &'m Program, name: &str, fma: bool) -> Self {
        Shared {
            module,
            prog,
            fma,
            name: name.to_string(),
            weights: vec![None; prog.weights.len()],
            imports: HashMap::new(),
            tables: HashMap::new(),
        }
    }

    /// The data object holding weight `k`, defined on first use so unused
    /// weights (replaced by packed copies) do not take space.
    fn weight(&mut self, k: usize) -> Result<DataId> {
        if let Some(id) = self.weights[k] {
            return Ok(id);
        }
        let t = &self.prog.weights[k].tensor;
        let bytes = t.data().to_le_bytes();
        let id = self
            .module
            .declare_data(&format!("{}_w{k}", self.name), Linkage::Local, false, false)
            .map_err(module_err)?;
        let mut d = DataDescription::new();
        d.define(nonempty(bytes));
        d.set_align(64);
        self.module.define_data(id, &d).map_err(module_err)?;
        self.weights[k] = Some(id);
        Ok(id)
    }

    fn table(&mut self, bytes: Vec<u8>, align: u64) -> Result<DataId> {
        let key = (bytes, align);
        if let Some(&id) = self.tables.get(&key) {
            return Ok(id);
        }
        let n = self.tables.len();
        let id = self
            .module
            .declare_data(&format!("{}_t{n}", self.name), Linkage::Local, false, false)
            .map_err(module_err)?;
        let mut d = DataDescription::new();
        d.define(nonempty(key.0.clone()));
        d.set_align(align.max(16));
        self.module.define_data(id, &d).map_err(module_err)?;
        self.tables.insert(key, id);
        Ok(id)
    }

    pub fn import(&mut self, name: &str, params: &[Type], ret: &[Type]) -> Result<FuncId> {
        if let Some(&id) = self.imports.get(name) {
            return Ok(id);
        }
        let mut sig = self.module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns.extend(ret.iter().map(|&t| AbiParam::new(t)));
        let id = self
            .module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(module_err)?;
        self.imports.insert(name.to_string(), id);
        Ok(id)
    }
}

fn nonempty(mut b: Vec<u8>) -> Box<[u8]> {
    if b.is_empty() {
        b.push(0);
    }
    b.into_boxed_slice()
}

pub(crate) fn module_err(e: cranelift_module::ModuleError) -> BackendError {
    BackendError::Other(format!("Cranelift: {e}"))
}

/// Pointer-sized integer type (both supported targets are 64-bit).
pub const PTR: Type = types::I64;
/// Four f32 lanes: the x64 backend's widest float vector.
pub const F32X4: Type = types::F32X4;

/// Builds one step function.
pub(crate) struct Kb<'f, 's, 'm> {
    pub b: FunctionBuilder<'f>,
    pub sh: &'s mut Shared<'m>,
    frefs: HashMap<FuncId, ir::FuncRef>,
    gvs: HashMap<DataId, ir::GlobalValue>,
    fail_blocks: HashMap<i32, ir::Block>,
    /// Flags of every kernel load and store: in bounds by construction.
    pub mem: MemFlagsData,
}

impl<'f, 's, 'm> Kb<'f, 's, 'm> {
    pub fn new(b: FunctionBuilder<'f>, sh: &'s mut Shared<'m>) -> Self {
        Kb {
            b,
            sh,
            frefs: HashMap::new(),
            gvs: HashMap::new(),
            fail_blocks: HashMap::new(),
            mem: MemFlagsData::new().with_notrap(),
        }
    }

    // ----- constants -----

    /// A pointer-sized integer constant.
    pub fn ci(&mut self, v: i64) -> Value {
        self.b.ins().iconst(PTR, v)
    }

    /// An integer constant of any integer type.
    pub fn cint(&mut self, ty: Type, v: i64) -> Value {
        let v = match ty.bits() {
            8 => v as i8 as i64 & 0xff,
            16 => v as i16 as i64 & 0xffff,
            32 => v as i32 as i64 & 0xffff_ffff,
            _ => v,
        };
        self.b.ins().iconst(ty, v)
    }

    pub fn cf32(&mut self, v: f32) -> Value {
        self.b.ins().f32const(v)
    }

    /// A float constant of `ty` (F32 or F64; vectors are splatted).
    pub fn cf(&mut self, ty: Type, v: f64) -> Value {
        if ty == F32X4 {
            let s = self.cf32(v as f32);
            return self.b.ins().splat(F32X4, s);
        }
        if ty == types::F64 {
            self.b.ins().f64const(v)
        } else {
            self.b.ins().f32const(v as f32)
        }
    }

    pub fn splat(&mut self, s: Value) -> Value {
        self.b.ins().splat(F32X4, s)
    }

    // ----- addresses and memory -----

    /// `base + bytes`.
    pub fn off(&mut self, base: Value, bytes: i64) -> Value {
        if bytes == 0 {
            base
        } else {
            self.b.ins().iadd_imm_s(base, bytes)
        }
    }

    /// `base + idx * scale` (idx is a pointer-sized integer).
    pub fn at(&mut self, base: Value, idx: Value, scale: i64) -> Value {
        let s = if scale == 1 {
            idx
        } else {
            self.b.ins().imul_imm_s(idx, scale)
        };
        self.b.ins().iadd(base, s)
    }

    pub fn load(&mut self, ty: Type, addr: Value, off: i64) -> Value {
        match i32::try_from(off) {
            Ok(o) => self.b.ins().load(ty, self.mem, addr, o),
            Err(_) => {
                let a = self.off(addr, off);
                self.b.ins().load(ty, self.mem, a, 0)
            }
        }
    }

    pub fn store(&mut self, v: Value, addr: Value, off: i64) {
        match i32::try_from(off) {
            Ok(o) => {
                self.b.ins().store(self.mem, v, addr, o);
            }
            Err(_) => {
                let a = self.off(addr, off);
                self.b.ins().store(self.mem, v, a, 0);
            }
        }
    }

    /// A stack buffer of `bytes` bytes aligned to 64; returns its address.
    pub fn stack(&mut self, bytes: usize) -> Value {
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            bytes.max(1) as u32,
            6,
        ));
        self.b.ins().stack_addr(PTR, ss, 0)
    }

    /// Address of weight `k`.
    pub fn weight(&mut self, k: usize) -> Result<Value> {
        let id = self.sh.weight(k)?;
        Ok(self.data_addr(id))
    }

    /// Address of a read-only table holding `bytes` (deduplicated per module).
    pub fn table(&mut self, bytes: Vec<u8>, align: u64) -> Result<Value> {
        let id = self.sh.table(bytes, align)?;
        Ok(self.data_addr(id))
    }

    pub fn table_f32(&mut self, v: &[f32]) -> Result<Value> {
        self.table(v.iter().flat_map(|x| x.to_le_bytes()).collect(), 64)
    }

    pub fn table_i64(&mut self, v: &[i64]) -> Result<Value> {
        self.table(v.iter().flat_map(|x| x.to_le_bytes()).collect(), 16)
    }

    pub fn table_f64(&mut self, v: &[f64]) -> Result<Value> {
        self.table(v.iter().flat_map(|x| x.to_le_bytes()).collect(), 16)
    }

    fn data_addr(&mut self, id: DataId) -> Value {
        let gv = match self.gvs.get(&id) {
            Some(&g) => g,
            None => {
                let g = self.sh.module.declare_data_in_func(id, self.b.func);
                self.gvs.insert(id, g);
                g
            }
        };
        self.b.ins().symbol_value(PTR, gv)
    }

    // ----- calls -----

    /// Calls an external function (libm, memcpy, profiling hooks).
    pub fn call(
        &mut self,
        name: &str,
        params: &[Type],
        ret: Option<Type>,
        args: &[Value],
    ) -> Result<Option<Value>> {
        let rets: Vec<Type> = ret.into_iter().collect();
        let id = self.sh.import(name, params, &rets)?;
        let fr = match self.frefs.get(&id) {
            Some(&f) => f,
            None => {
                let f = self.sh.module.declare_func_in_func(id, self.b.func);
                self.frefs.insert(id, f);
                f
            }
        };
        let call = self.b.ins().call(fr, args);
        Ok(self.b.inst_results(call).first().copied())
    }

    /// A one-argument libm function on F32 or F64 (`expf` / `exp`).
    pub fn libm1(&mut self, base: &str, x: Value) -> Result<Value> {
        let ty = self.b.func.dfg.value_type(x);
        if ty == F32X4 {
            return self.per_lane(x, |kb, s| kb.libm1(base, s));
        }
        let name = if ty == types::F32 {
            format!("{base}f")
        } else {
            base.to_string()
        };
        Ok(self
            .call(&name, &[ty], Some(ty), &[x])?
            .expect("libm returns a value"))
    }

    /// A two-argument libm function (`powf`, `fmodf`).
    pub fn libm2(&mut self, base: &str, x: Value, y: Value) -> Result<Value> {
        let ty = self.b.func.dfg.value_type(x);
        let name = if ty == types::F32 {
            format!("{base}f")
        } else {
            base.to_string()
        };
        Ok(self
            .call(&name, &[ty, ty], Some(ty), &[x, y])?
            .expect("libm returns a value"))
    }

    /// Applies a scalar function to each lane of an f32x4.
    pub fn per_lane(
        &mut self,
        v: Value,
        mut f: impl FnMut(&mut Self, Value) -> Result<Value>,
    ) -> Result<Value> {
        let mut out = v;
        for l in 0..4u8 {
            let s = self.b.ins().extractlane(v, l);
            let r = f(self, s)?;
            out = self.b.ins().insertlane(out, r, l);
        }
        Ok(out)
    }

    // ----- control flow -----

    /// `for iv in (lo..hi).step_by(step)` with constant bounds. One trip is
    /// emitted inline with a constant induction value.
    pub fn for_range(
        &mut self,
        lo: i64,
        hi: i64,
        step: i64,
        f: impl FnOnce(&mut Self, Value) -> Result<()>,
    ) -> Result<()> {
        if lo >= hi {
            return Ok(());
        }
        if lo + step >= hi {
            let iv = self.ci(lo);
            return f(self, iv);
        }
        let start = self.ci(lo);
        let hi = self.ci(hi);
        self.counted(start, hi, step, None, f)
    }

    /// `for iv in lo..hi` with computed bounds (may run zero times).
    pub fn for_dyn(
        &mut self,
        lo: Value,
        hi: Value,
        f: impl FnOnce(&mut Self, Value) -> Result<()>,
    ) -> Result<()> {
        let first = self.b.ins().icmp(IntCC::SignedLessThan, lo, hi);
        self.counted(lo, hi, 1, Some(first), f)
    }

    /// The loop skeleton: a body block whose parameter is the induction
    /// value, entered when `enter` holds (always when `None`), continued
    /// while `iv + step < hi`.
    fn counted(
        &mut self,
        start: Value,
        hi: Value,
        step: i64,
        enter: Option<Value>,
        f: impl FnOnce(&mut Self, Value) -> Result<()>,
    ) -> Result<()> {
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let iv = self.b.append_block_param(body, PTR);
        match enter {
            Some(c) => {
                self.b
                    .ins()
                    .brif(c, body, &[BlockArg::Value(start)], exit, &[]);
            }
            None => {
                self.b.ins().jump(body, &[BlockArg::Value(start)]);
            }
        }
        self.b.switch_to_block(body);
        f(self, iv)?;
        let next = self.b.ins().iadd_imm_s(iv, step);
        let c = self.b.ins().icmp(IntCC::SignedLessThan, next, hi);
        self.b
            .ins()
            .brif(c, body, &[BlockArg::Value(next)], exit, &[]);
        self.b.seal_block(body);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    /// Returns `code` from the step function when `cond` holds.
    pub fn fail_if(&mut self, cond: Value, code: i32) {
        let fail = match self.fail_blocks.get(&code) {
            Some(&b) => b,
            None => {
                let b = self.b.create_block();
                self.b.set_cold_block(b);
                self.fail_blocks.insert(code, b);
                b
            }
        };
        let cont = self.b.create_block();
        self.b.ins().brif(cond, fail, &[], cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Returns `rc` (an i32) from the function when it is nonzero.
    pub fn fail_nonzero(&mut self, rc: Value) {
        let fail = self.b.create_block();
        let cont = self.b.create_block();
        self.b.set_cold_block(fail);
        self.b.ins().brif(rc, fail, &[], cont, &[]);
        self.b.switch_to_block(fail);
        self.b.seal_block(fail);
        self.b.ins().return_(&[rc]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Emits the blocks behind [`Kb::fail_if`] (call once, at the end).
    pub fn finish_fail_blocks(&mut self) {
        let blocks: Vec<(i32, ir::Block)> = self.fail_blocks.drain().collect();
        for (code, b) in blocks {
            self.b.switch_to_block(b);
            self.b.seal_block(b);
            let v = self.b.ins().iconst(types::I32, code as i64);
            self.b.ins().return_(&[v]);
        }
    }

    // ----- variables -----

    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    pub fn get(&mut self, v: Variable) -> Value {
        self.b.use_var(v)
    }

    pub fn set(&mut self, v: Variable, x: Value) {
        self.b.def_var(v, x);
    }

    // ----- small arithmetic helpers -----

    pub fn ty(&self, v: Value) -> Type {
        self.b.func.dfg.value_type(v)
    }

    /// `x * y + z`, fused when the ISA has FMA.
    pub fn mul_add(&mut self, x: Value, y: Value, z: Value) -> Value {
        if self.sh.fma {
            self.b.ins().fma(x, y, z)
        } else {
            let p = self.b.ins().fmul(x, y);
            self.b.ins().fadd(p, z)
        }
    }

    /// Lane-wise `c ? x : y` for f32x4 from a float comparison.
    pub fn vselect(&mut self, cc: FloatCC, a: Value, b: Value, x: Value, y: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        let m = self.b.ins().bitcast(
            F32X4,
            MemFlagsData::new().with_endianness(Endianness::Little),
            m,
        );
        self.b.ins().bitselect(m, x, y)
    }

    /// Scalar or vector `c ? x : y` from a float comparison of `a` and `b`.
    pub fn fselect(&mut self, cc: FloatCC, a: Value, b: Value, x: Value, y: Value) -> Value {
        if self.ty(a) == F32X4 {
            self.vselect(cc, a, b, x, y)
        } else {
            let c = self.b.ins().fcmp(cc, a, b);
            self.b.ins().select(c, x, y)
        }
    }
}
