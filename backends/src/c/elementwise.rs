//! Elementwise kernels in C: one loop nest per step over the output, with
//! every operand indexed through its broadcast strides. Adjacent dims that
//! are contiguous for every operand are merged, so most steps become a
//! single flat loop the C compiler vectorizes.

use nnc_ir::op::{BinaryOp, UnaryOp};
use nnc_ir::{DType, dtype::strides};

use super::Helpers;
use super::writer::{W, ctype, flit, fsuf, ilit, lit};

/// An operand: a C pointer expression and its dims right-aligned to the
/// output rank (1 where it broadcasts).
#[derive(Debug, Clone)]
pub struct Operand {
    pub ptr: String,
    pub dims: Vec<usize>,
}

impl Operand {
    /// Right-aligns `dims` to `rank` with leading ones.
    pub fn new(ptr: impl Into<String>, dims: &[usize], rank: usize) -> Self {
        let mut d = vec![1; rank.saturating_sub(dims.len())];
        d.extend_from_slice(dims);
        Operand {
            ptr: ptr.into(),
            dims: d,
        }
    }

    /// Per-channel parameters (`[C]`) laid along `axis` of a rank-`rank` output.
    pub fn along(ptr: impl Into<String>, len: usize, axis: usize, rank: usize) -> Self {
        let mut d = vec![1; rank];
        if len != 1 && axis < rank {
            d[axis] = len;
        }
        Operand {
            ptr: ptr.into(),
            dims: d,
        }
    }
}

/// A strided view of a buffer: element `(i0, i1, ...)` is
/// `ptr[base + i0 * strides[0] + i1 * strides[1] + ...]` (strides may be
/// negative, e.g. for slices with negative steps).
#[derive(Debug, Clone)]
pub struct Access {
    pub ptr: String,
    pub base: i64,
    pub strides: Vec<i64>,
}

impl Access {
    /// Row-major contiguous access to a tensor of `dims`.
    pub fn dense(ptr: impl Into<String>, dims: &[usize]) -> Self {
        Access {
            ptr: ptr.into(),
            base: 0,
            strides: strides(dims).iter().map(|&s| s as i64).collect(),
        }
    }

    fn index(&self) -> String {
        let neg = self.base < 0 || self.strides.iter().any(|&s| s < 0);
        let terms: Vec<String> = self
            .strides
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != 0)
            .map(|(d, &s)| {
                let v = if neg {
                    format!("(long)i{d}")
                } else {
                    format!("i{d}")
                };
                if s == 1 { v } else { format!("{v} * {s}") }
            })
            .collect();
        let mut e = terms.join(" + ");
        if self.base != 0 || e.is_empty() {
            e = if e.is_empty() {
                self.base.to_string()
            } else {
                format!("{} + {e}", self.base)
            };
        }
        if neg { format!("(size_t)({e})") } else { e }
    }
}

/// Emits `out[...] = expr(ins[...])` for every index of `dims`, after
/// dropping unit dims and merging dims that are contiguous in every access.
pub fn emit_loops(
    w: &mut W,
    dims: &[usize],
    out: &Access,
    ins: &[Access],
    mut expr: impl FnMut(&[String]) -> String,
) {
    if dims.contains(&0) {
        return;
    }
    let mut all: Vec<Access> = std::iter::once(out.clone())
        .chain(ins.iter().cloned())
        .collect();
    let st: Vec<Vec<i64>> = all.iter().map(|a| a.strides.clone()).collect();
    let (dims, st) = crate::tables::merge_dims(dims, &st);
    for (a, s) in all.iter_mut().zip(st) {
        a.strides = s;
    }
    for (d, n) in dims.iter().enumerate() {
        w.for_(&format!("i{d}"), 0, n);
    }
    let vals: Vec<String> = all[1..]
        .iter()
        .map(|a| format!("{}[{}]", a.ptr, a.index()))
        .collect();
    w.line(format!(
        "{}[{}] = {};",
        all[0].ptr,
        all[0].index(),
        expr(&vals)
    ));
    for _ in &dims {
        w.close();
    }
}

/// Emits `out[o] = expr(operands at o)` over `out_dims` with broadcasting.
pub fn emit_map(
    w: &mut W,
    out: &str,
    out_dims: &[usize],
    ops: &[Operand],
    expr: impl FnMut(&[String]) -> String,
) {
    let ins: Vec<Access> = ops
        .iter()
        .map(|o| {
            let st = strides(&o.dims);
            Access {
                ptr: o.ptr.clone(),
                base: 0,
                strides: o
                    .dims
                    .iter()
                    .zip(out_dims)
                    .zip(st)
                    .map(|((&d, &od), s)| if d == 1 && od != 1 { 0 } else { s as i64 })
                    .collect(),
            }
        })
        .collect();
    emit_loops(w, out_dims, &Access::dense(out, out_dims), &ins, expr);
}

/// Wrapping integer arithmetic through unsigned 64-bit math.
fn wrap(t: DType, a: &str, op: &str, b: &str) -> String {
    format!("({})((uint64_t)({a}) {op} (uint64_t)({b}))", ctype(t))
}

/// C expression of a unary op on `x` of type `d`. With `fast_exp` (host
/// targets), f32 `Exp` and `Sigmoid` call `nnc_expf`, a branch-free
/// polynomial the C compiler vectorizes (libm's `expf` is a call per
/// element: 3.8x slower on a sigmoid over 300k floats).
pub fn unary_expr(u: &UnaryOp, x: &str, d: DType, fast_exp: bool) -> String {
    let f = fsuf(d);
    let l = |v: f64| lit(v, d);
    if !d.is_float() && d != DType::Bool {
        let t = ctype(d);
        // Comparisons that cannot be true for the type are left out: they
        // trip -Wtype-limits, and -Werror is part of the contract.
        let signed = d.is_signed();
        return match *u {
            UnaryOp::Relu if signed => format!("({x} < 0 ? 0 : {x})"),
            UnaryOp::Abs if signed => format!("({x} < 0 ? ({t})(0ULL - (uint64_t)({x})) : {x})"),
            UnaryOp::Relu | UnaryOp::Abs => x.to_string(),
            UnaryOp::Neg => format!("({t})(0ULL - (uint64_t)({x}))"),
            UnaryOp::Sign if signed => format!("({t})(({x} > 0) - ({x} < 0))"),
            UnaryOp::Sign => format!("({t})({x} > 0)"),
            UnaryOp::Clip { min, max } => {
                let (lo, hi) = d.int_range().expect("integer type");
                let bound = |r: f64| -> i64 { r.max(lo as f64).min(hi as f64) as i64 };
                let (min, max) = (bound(min.ceil()), bound(max.floor()));
                let mut e = x.to_string();
                if max < hi {
                    e = format!("({x} > {m} ? {m} : {e})", m = ilit(max));
                }
                if min > lo {
                    e = format!("({x} < {m} ? {m} : {e})", m = ilit(min));
                }
                e
            }
            _ => x.to_string(),
        };
    }
    if fast_exp && d == DType::F32 {
        match *u {
            UnaryOp::Sigmoid => return format!("(1.0f / (1.0f + nnc_expf(-{x})))"),
            UnaryOp::Silu => return format!("({x} / (1.0f + nnc_expf(-{x})))"),
            UnaryOp::Exp => return format!("nnc_expf({x})"),
            _ => {}
        }
    }
    match *u {
        UnaryOp::Relu => format!("({x} < 0 ? {} : {x})", l(0.0)),
        UnaryOp::LeakyRelu { alpha } => {
            format!("({x} < 0 ? {} * {x} : {x})", flit(alpha as f64, d))
        }
        UnaryOp::Elu { alpha } => {
            format!(
                "({x} < 0 ? {} * (exp{f}({x}) - {}) : {x})",
                flit(alpha as f64, d),
                l(1.0)
            )
        }
        UnaryOp::Selu { alpha, gamma } => {
            let (a, g) = (flit(alpha as f64, d), flit(gamma as f64, d));
            format!("({x} <= 0 ? {g} * ({a} * exp{f}({x}) - {a}) : {g} * {x})")
        }
        UnaryOp::Clip { min, max } => {
            let mut e = x.to_string();
            if max.is_finite() || max < 0.0 {
                e = format!("({e} > {m} ? {m} : {e})", m = flit(max, d));
            }
            if min.is_finite() || min > 0.0 {
                e = format!("({x} < {m} ? {m} : {e})", m = flit(min, d));
            }
            e
        }
        UnaryOp::Sigmoid => format!("({} / ({} + exp{f}(-{x})))", l(1.0), l(1.0)),
        UnaryOp::Silu => format!("({x} / ({} + exp{f}(-{x})))", l(1.0)),
        UnaryOp::HardSigmoid { alpha, beta } => {
            let v = format!(
                "({} * {x} + {})",
                flit(alpha as f64, d),
                flit(beta as f64, d)
            );
            format!("({v} < 0 ? {} : ({v} > 1 ? {} : {v}))", l(0.0), l(1.0))
        }
        UnaryOp::HardSwish => {
            let v = format!("({x} / {} + {})", l(6.0), l(0.5));
            format!(
                "({x} * ({v} < 0 ? {} : ({v} > 1 ? {} : {v})))",
                l(0.0),
                l(1.0)
            )
        }
        UnaryOp::Tanh => format!("tanh{f}({x})"),
        UnaryOp::Softplus => format!("({x} > {} ? {x} : log1p{f}(exp{f}({x})))", l(30.0)),
        UnaryOp::Softsign => format!("({x} / ({} + fabs{f}({x})))", l(1.0)),
        UnaryOp::Erf => format!("erf{f}({x})"),
        UnaryOp::Exp => format!("exp{f}({x})"),
        UnaryOp::Log => format!("log{f}({x})"),
        UnaryOp::Sqrt => format!("sqrt{f}({x})"),
        UnaryOp::Abs => format!("fabs{f}({x})"),
        UnaryOp::Neg => format!("(-{x})"),
        UnaryOp::Reciprocal => format!("({} / {x})", l(1.0)),
        UnaryOp::Floor => format!("floor{f}({x})"),
        UnaryOp::Ceil => format!("ceil{f}({x})"),
        UnaryOp::Round => format!("rint{f}({x})"),
        UnaryOp::Sign => format!("({x} > 0 ? {} : ({x} < 0 ? {} : {x}))", l(1.0), l(-1.0)),
        UnaryOp::Sin => format!("sin{f}({x})"),
        UnaryOp::Cos => format!("cos{f}({x})"),
        UnaryOp::Not => format!("(uint8_t)!{x}"),
    }
}

/// C expression of a binary op; `d` is the (common) input type.
pub fn binary_expr(b: &BinaryOp, x: &str, y: &str, d: DType, yd: DType, h: &mut Helpers) -> String {
    let t = ctype(d);
    let f = fsuf(d);
    let int = !d.is_float() && d != DType::Bool;
    match b {
        BinaryOp::Add if int => wrap(d, x, "+", y),
        BinaryOp::Sub if int => wrap(d, x, "-", y),
        BinaryOp::Mul if int => wrap(d, x, "*", y),
        BinaryOp::Add => format!("({x} + {y})"),
        BinaryOp::Sub => format!("({x} - {y})"),
        BinaryOp::Mul => format!("({x} * {y})"),
        BinaryOp::Div if int => {
            h.need("nnc_idiv");
            format!("({t})nnc_idiv((int64_t){x}, (int64_t){y})")
        }
        BinaryOp::Div => format!("({x} / {y})"),
        BinaryOp::Pow if int && !yd.is_float() => {
            h.need("nnc_ipow");
            format!("({t})nnc_ipow((int64_t){x}, (int64_t){y})")
        }
        BinaryOp::Pow if int => {
            let (lo, hi) = d.int_range().expect("integer type");
            h.need("nnc_f2i");
            format!(
                "({t})nnc_f2i_range(pow((double){x}, (double){y}), {}, {})",
                ilit(lo),
                ilit(hi)
            )
        }
        BinaryOp::Pow => format!("pow{f}({x}, ({t}){y})"),
        BinaryOp::Max if int => format!("({x} > {y} ? {x} : {y})"),
        BinaryOp::Min if int => format!("({x} < {y} ? {x} : {y})"),
        BinaryOp::Max => {
            format!("(({x} != {x} || {y} != {y}) ? ({x} + {y}) : ({x} > {y} ? {x} : {y}))")
        }
        BinaryOp::Min => {
            format!("(({x} != {x} || {y} != {y}) ? ({x} + {y}) : ({x} < {y} ? {x} : {y}))")
        }
        BinaryOp::PRelu if int && !d.is_signed() => x.to_string(),
        BinaryOp::PRelu if int => format!("({x} < 0 ? {} : {x})", wrap(d, x, "*", y)),
        BinaryOp::PRelu => format!("({x} < 0 ? {x} * {y} : {x})"),
        BinaryOp::Mod { fmod: true } if !int => format!("fmod{f}({x}, {y})"),
        BinaryOp::Mod { fmod: false } if !int => {
            h.need(if d == DType::F64 {
                "nnc_pymod_d"
            } else {
                "nnc_pymod_f"
            });
            format!(
                "nnc_pymod_{}({x}, {y})",
                if d == DType::F64 { "d" } else { "f" }
            )
        }
        BinaryOp::Mod { fmod } => {
            h.need("nnc_imod");
            format!("({t})nnc_imod((int64_t){x}, (int64_t){y}, {})", *fmod as u8)
        }
        BinaryOp::Equal => format!("(uint8_t)({x} == {y})"),
        BinaryOp::Less => format!("(uint8_t)({x} < {y})"),
        BinaryOp::Greater => format!("(uint8_t)({x} > {y})"),
        BinaryOp::LessOrEqual => format!("(uint8_t)({x} <= {y})"),
        BinaryOp::GreaterOrEqual => format!("(uint8_t)({x} >= {y})"),
        BinaryOp::And => format!("(uint8_t)({x} && {y})"),
        BinaryOp::Or => format!("(uint8_t)({x} || {y})"),
        BinaryOp::Xor => format!("(uint8_t)(!{x} != !{y})"),
    }
}

/// C expression converting `x` from `from` to `to` with the interpreter's
/// semantics (floats to integers saturate, NaN becomes 0).
pub fn cast_expr(x: &str, from: DType, to: DType, h: &mut Helpers) -> String {
    let t = ctype(to);
    if to == DType::Bool {
        return format!("(uint8_t)({x} != 0)");
    }
    if from.is_float() && to.is_int() {
        let (lo, hi) = to.int_range().expect("integer");
        h.need("nnc_f2i");
        // Saturate in double; i64 and u32 bounds are exact enough there.
        return format!(
            "({t})nnc_f2i_range((double){x}, {}, {})",
            ilit(lo),
            ilit(hi)
        );
    }
    format!("({t}){x}")
}

/// `x - zp` as an int32 C expression.
fn zp_sub(x: &str, zp: i32) -> String {
    if zp == 0 {
        format!("(int32_t){x}")
    } else {
        format!("((int32_t){x} - ({zp}))")
    }
}

/// Helper functions the generated code may need, by name.
/// `expf` as Cephes computes it, without branches or calls so loops over
/// it vectorize: `x = n ln 2 + r` (round to nearest by the 1.5 * 2^23
/// trick, `ln 2` in two parts), a degree-5 polynomial in `r`, the
/// exponent put in by integer shift. Relative error below 1e-7 on
/// [-87, 88]; 0 below (where `expf` is subnormal, under 2^-125), infinity
/// above, NaN propagated.
/// Always inlined: a call per element defeats the point (GCC declines to
/// inline it in a large source).
const EXPF_SOURCE: &str = "#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline float nnc_expf(float x) {
    union { uint32_t u; float f; } s;
    const float c = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = (c * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = c - n * 0.693359375f;
    float p;
    r = r - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    s.u = (uint32_t)((int32_t)n + 127) << 23;
    p = p * s.f;
    return x != x ? x : (x < -87.0f ? 0.0f : (x > 88.0f ? HUGE_VALF : p));
}
";

pub fn helper_source(name: &str) -> &'static str {
    match name {
        "nnc_idiv" => {
            "static int64_t nnc_idiv(int64_t a, int64_t b) {\n    if (b == 0) return 0;\n    if (b == -1) return (int64_t)(0ULL - (uint64_t)a);\n    return a / b;\n}\n"
        }
        "nnc_imod" => {
            "static int64_t nnc_imod(int64_t a, int64_t b, int fmod_sign) {\n    int64_t r;\n    if (b == 0 || b == -1) return 0;\n    r = a % b;\n    if (!fmod_sign && r != 0 && ((r < 0) != (b < 0))) r += b;\n    return r;\n}\n"
        }
        "nnc_ipow" => {
            "static int64_t nnc_ipow(int64_t a, int64_t b) {\n    uint64_t r = 1, base = (uint64_t)a;\n    if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b % 2) ? -1 : 1) : 0);\n    while (b > 0) {\n        if (b & 1) r *= base;\n        base *= base;\n        b >>= 1;\n    }\n    return (int64_t)r;\n}\n"
        }
        "nnc_f2i" => {
            "static int64_t nnc_f2i_range(double x, int64_t lo, int64_t hi) {\n    if (x != x) return 0;\n    if (x <= (double)lo) return lo;\n    if (x >= (double)hi) return hi;\n    return (int64_t)x;\n}\n"
        }
        "nnc_pymod_f" => {
            "static float nnc_pymod_f(float a, float b) {\n    float r = fmodf(a, b);\n    if (r != 0 && ((r < 0) != (b < 0))) r += b;\n    return r;\n}\n"
        }
        "nnc_pymod_d" => {
            "static double nnc_pymod_d(double a, double b) {\n    double r = fmod(a, b);\n    if (r != 0 && ((r < 0) != (b < 0))) r += b;\n    return r;\n}\n"
        }
        "nnc_quant" => {
            "static double nnc_quant(double q, double zp, double lo, double hi) {\n    if (q != q) q = 0;\n    q += zp;\n    return q < lo ? lo : (q > hi ? hi : q);\n}\n"
        }
        "nnc_expf" => EXPF_SOURCE,
        "nnc_qmath" => super::integer::QMATH_SOURCE,
        "nnc_dsp" => super::qtiles::DSP_SOURCE,
        "nnc_idot" => super::qdot::IDOT_SOURCE,
        _ => "",
    }
}

/// Emits a map kernel: `out0 = expr(inputs)` over the output, every input
/// read through its operand layout.
pub fn map(
    w: &mut W,
    m: &nnc_ir::program::MapKernel,
    ins: &[&nnc_ir::TensorType],
    y: &nnc_ir::TensorType,
    h: &mut Helpers,
) {
    use nnc_ir::program::Operand as Layout;
    let r = y.rank();
    // Tables are indexed by value, not by position: they stay pointers.
    let mut ops = Vec::new();
    let mut slot = Vec::new();
    for (k, o) in m.operands.iter().enumerate() {
        slot.push(match o {
            Layout::Broadcast => {
                ops.push(Operand::new(format!("in{k}"), &ins[k].dims, r));
                Some(ops.len() - 1)
            }
            Layout::Along { axis } => {
                ops.push(Operand::along(format!("in{k}"), ins[k].len(), *axis, r));
                Some(ops.len() - 1)
            }
            Layout::Table => None,
        });
    }
    let dts: Vec<DType> = ins.iter().map(|t| t.dtype).collect();
    emit_map(w, "out0", &y.dims, &ops, |v| {
        let all: Vec<String> = slot
            .iter()
            .enumerate()
            .map(|(k, s)| match s {
                Some(i) => v[*i].clone(),
                None => format!("in{k}"),
            })
            .collect();
        expr(&m.expr, &all, &dts, h).0
    });
}

/// The C expression of a map expression over operand values `v` (of
/// types `dts`), with its type.
fn expr(
    e: &nnc_ir::program::MapExpr,
    v: &[String],
    dts: &[DType],
    h: &mut Helpers,
) -> (String, DType) {
    use nnc_ir::program::{MapExpr, MapOp};
    let (op, args, dtype) = match e {
        MapExpr::Input(k) => return (v[*k].clone(), dts[*k]),
        MapExpr::Apply { op, args, dtype } => (op, args, *dtype),
    };
    let a: Vec<(String, DType)> = args.iter().map(|x| expr(x, v, dts, h)).collect();
    let s = match op {
        MapOp::Unary(u) => unary_expr(u, &a[0].0, a[0].1, h.lanes > 0),
        MapOp::Binary(b) => binary_expr(b, &a[0].0, &a[1].0, a[0].1, a[1].1, h),
        MapOp::Where => format!("({} ? {} : {})", a[0].0, a[1].0, a[2].0),
        MapOp::Cast => cast_expr(&a[0].0, a[0].1, dtype, h),
        MapOp::BatchNorm { epsilon } => {
            let f = fsuf(dtype);
            let eps = flit(*epsilon as f64, dtype);
            format!(
                "(({} - {}) / sqrt{f}({} + {eps}) * {} + {})",
                a[0].0, a[3].0, a[4].0, a[1].0, a[2].0
            )
        }
        MapOp::Quantize(q) => {
            let (lo, hi) = q.to.int_range().unwrap_or((0, 0));
            let t = ctype(q.to);
            h.need("nnc_quant");
            let q = if a[0].1 == DType::F32 {
                format!("(double)rintf({} / {})", a[0].0, a[1].0)
            } else {
                format!("rint({} / {})", a[0].0, a[1].0)
            };
            let zp = a
                .get(2)
                .map(|z| format!("(double){}", z.0))
                .unwrap_or_else(|| "0.0".into());
            format!("({t})nnc_quant({q}, {zp}, {lo}.0, {hi}.0)")
        }
        MapOp::Dequantize(_) => {
            let t = ctype(dtype);
            let zp = a
                .get(2)
                .map(|z| format!("(int64_t){}", z.0))
                .unwrap_or_else(|| "0".into());
            format!("({t})((int64_t){} - {zp}) * {}", a[0].0, a[1].0)
        }
        MapOp::Lut => {
            // Offset by the input type's minimum: i8 -128 is entry 0.
            let base = a[0].1.int_range().map(|(lo, _)| lo).unwrap_or(0);
            format!("{}[(int32_t){} - ({base})]", a[1].0, a[0].0)
        }
        MapOp::Requant(q) => {
            h.need("nnc_qmath");
            format!(
                "({})nnc_sat((int64_t){} + nnc_rq({}, {}, {}), {}, {})",
                ctype(dtype),
                q.q.y_zp,
                zp_sub(&a[0].0, q.q.x_zp),
                q.mult,
                q.shift,
                q.q.lo,
                q.q.hi
            )
        }
        MapOp::QBinary(q) => {
            use nnc_ir::op::QBinaryKind;
            h.need("nnc_qmath");
            let (x, y) = (zp_sub(&a[0].0, q.q.x_zp), zp_sub(&a[1].0, q.q.w_zp));
            let raw = match q.kind {
                QBinaryKind::Add => {
                    let scaled = |v: &str, m: i32, s: i32| {
                        format!(
                            "nnc_rq(nnc_wrap32((int64_t)((uint32_t){v} << {})), {m}, {s})",
                            q.left_shift
                        )
                    };
                    format!(
                        "nnc_rq(nnc_wrap32((int64_t){} + {}), {}, {})",
                        scaled(&x, q.a_mult, q.a_shift),
                        scaled(&y, q.b_mult, q.b_shift),
                        q.y_mult,
                        q.y_shift
                    )
                }
                QBinaryKind::Mul => format!(
                    "nnc_rq(nnc_wrap32((int64_t)((uint32_t){x} * (uint32_t){y})), {}, {})",
                    q.y_mult, q.y_shift
                ),
            };
            format!(
                "({})nnc_sat((int64_t){} + {raw}, {}, {})",
                ctype(dtype),
                q.q.y_zp,
                q.q.lo,
                q.q.hi
            )
        }
    };
    (s, dtype)
}
