//! Elementwise ops: unary math and activations, binary arithmetic and
//! comparisons with numpy broadcasting, Where and Cast.

use super::attr::{AttrReader, AttrWriter};
use crate::dtype::{DType, TensorType, checked_numel};
use crate::tensor::{Data, Tensor};

type R<T> = Result<T, String>;

/// Unary elementwise operations, including parameterized activations. Also
/// used as the fused activation of Conv and Gemm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    /// Clamp to `[min, max]` (infinite bounds for one-sided clips).
    Clip {
        min: f64,
        max: f64,
    },
    Sigmoid,
    /// `x * sigmoid(x)` (SiLU, swish with beta 1): a `Mul` of a value by
    /// its own `Sigmoid`, which the e-graph folds into one op so that a
    /// kernel can apply it as its activation.
    Silu,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    Softplus,
    Softsign,
    Erf,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sign,
    Sin,
    Cos,
    Not,
}

impl UnaryOp {
    /// Text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Elu { .. } => "elu",
            UnaryOp::Selu { .. } => "selu",
            UnaryOp::Clip { .. } => "clip",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::HardSigmoid { .. } => "hard_sigmoid",
            UnaryOp::HardSwish => "hard_swish",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Softsign => "softsign",
            UnaryOp::Erf => "erf",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Neg => "neg",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sign => "sign",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Not => "not",
        }
    }

    pub fn write_attrs(&self, w: &mut AttrWriter) {
        match *self {
            UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } => w.f32("alpha", alpha),
            UnaryOp::Selu { alpha, gamma } => {
                w.f32("alpha", alpha);
                w.f32("gamma", gamma);
            }
            UnaryOp::Clip { min, max } => {
                w.f64("min", min);
                w.f64("max", max);
            }
            UnaryOp::HardSigmoid { alpha, beta } => {
                w.f32("alpha", alpha);
                w.f32("beta", beta);
            }
            _ => {}
        }
    }

    /// Parses a unary op by name; `None` when the name is not a unary op.
    pub fn parse(name: &str, r: &mut AttrReader) -> Option<R<UnaryOp>> {
        let simple = match name {
            "relu" => Some(UnaryOp::Relu),
            "sigmoid" => Some(UnaryOp::Sigmoid),
            "silu" => Some(UnaryOp::Silu),
            "hard_swish" => Some(UnaryOp::HardSwish),
            "tanh" => Some(UnaryOp::Tanh),
            "softplus" => Some(UnaryOp::Softplus),
            "softsign" => Some(UnaryOp::Softsign),
            "erf" => Some(UnaryOp::Erf),
            "exp" => Some(UnaryOp::Exp),
            "log" => Some(UnaryOp::Log),
            "sqrt" => Some(UnaryOp::Sqrt),
            "abs" => Some(UnaryOp::Abs),
            "neg" => Some(UnaryOp::Neg),
            "reciprocal" => Some(UnaryOp::Reciprocal),
            "floor" => Some(UnaryOp::Floor),
            "ceil" => Some(UnaryOp::Ceil),
            "round" => Some(UnaryOp::Round),
            "sign" => Some(UnaryOp::Sign),
            "sin" => Some(UnaryOp::Sin),
            "cos" => Some(UnaryOp::Cos),
            "not" => Some(UnaryOp::Not),
            _ => None,
        };
        if let Some(op) = simple {
            return Some(Ok(op));
        }
        let parsed = match name {
            "leaky_relu" => r.f32("alpha").map(|alpha| UnaryOp::LeakyRelu { alpha }),
            "elu" => r.f32("alpha").map(|alpha| UnaryOp::Elu { alpha }),
            "selu" => (|| {
                Ok(UnaryOp::Selu {
                    alpha: r.f32("alpha")?,
                    gamma: r.f32("gamma")?,
                })
            })(),
            "clip" => (|| {
                Ok(UnaryOp::Clip {
                    min: r.f64("min")?,
                    max: r.f64("max")?,
                })
            })(),
            "hard_sigmoid" => (|| {
                Ok(UnaryOp::HardSigmoid {
                    alpha: r.f32("alpha")?,
                    beta: r.f32("beta")?,
                })
            })(),
            _ => return None,
        };
        Some(parsed)
    }

    /// True when the op is defined on integer inputs too.
    pub fn accepts_int(&self) -> bool {
        matches!(
            self,
            UnaryOp::Relu | UnaryOp::Clip { .. } | UnaryOp::Abs | UnaryOp::Neg | UnaryOp::Sign
        )
    }

    /// Applies the op to one float value (computed in f64; callers round).
    pub fn apply_f64(&self, x: f64) -> f64 {
        match *self {
            UnaryOp::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            UnaryOp::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * x
                } else {
                    x
                }
            }
            UnaryOp::Elu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            UnaryOp::Selu { alpha, gamma } => {
                let (a, g) = (alpha as f64, gamma as f64);
                if x <= 0.0 {
                    g * (a * x.exp() - a)
                } else {
                    g * x
                }
            }
            UnaryOp::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min).min(max)
                }
            }
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Silu => x / (1.0 + (-x).exp()),
            UnaryOp::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::Erf => erf(x),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Neg => -x,
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Floor => x.floor(),
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Round => x.round_ties_even(),
            UnaryOp::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Not => (x == 0.0) as u8 as f64,
        }
    }

    fn apply_i64(&self, x: i64) -> i64 {
        match *self {
            UnaryOp::Relu => x.max(0),
            UnaryOp::Clip { min, max } => {
                let v = x as f64;
                if v < min {
                    min.ceil() as i64
                } else if v > max {
                    max.floor() as i64
                } else {
                    x
                }
            }
            UnaryOp::Abs => x.wrapping_abs(),
            UnaryOp::Neg => x.wrapping_neg(),
            UnaryOp::Sign => x.signum(),
            _ => x,
        }
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        match self {
            UnaryOp::Not if x.dtype != DType::Bool => {
                return Err(format!("expects a bool input, got {}", x.dtype));
            }
            UnaryOp::Not => {}
            _ if x.dtype == DType::Bool => return Err("does not accept bool inputs".into()),
            _ if x.dtype.is_int() && !self.accepts_int() => {
                return Err(format!("expects a float input, got {}", x.dtype));
            }
            _ => {}
        }
        Ok(vec![(*x).clone()])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let dt = x.dtype();
        let data = if dt.is_float() || dt == DType::Bool {
            Data::from_f64(dt, x.to_f64().into_iter().map(|v| self.apply_f64(v)))
        } else {
            Data::from_i64(dt, x.to_i64().into_iter().map(|v| self.apply_i64(v)))
        };
        Tensor::new(x.dims().to_vec(), data).map_err(|e| e.to_string())
    }
}

/// The error function, accurate to about 1e-12 in f64: a Taylor series near
/// zero, where it converges quickly, and saturation beyond |x| = 6 where
/// erfc(x) < 3e-17.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a >= 6.0 {
        return x.signum();
    }
    if a > 2.5 {
        // Continued fraction for erfc, evaluated backwards (Abramowitz & Stegun 7.1.14).
        let mut f = 0.0;
        for k in (1..=60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
        return x.signum() * (1.0 - erfc);
    }
    let mut sum = 0.0;
    let mut term = a;
    let x2 = a * a;
    let mut n = 0.0;
    loop {
        let add = term / (2.0 * n + 1.0);
        sum += add;
        if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
            break;
        }
        n += 1.0;
        term *= -x2 / n;
    }
    x.signum() * sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Binary elementwise operations with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// `x < 0 ? slope * x : x`; the slope broadcasts to x.
    PRelu,
    /// Remainder with the divisor's sign (`fmod=false`) or the dividend's (`fmod=true`).
    Mod {
        fmod: bool,
    },
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::PRelu => "prelu",
            BinaryOp::Mod { fmod: false } => "mod",
            BinaryOp::Mod { fmod: true } => "fmod",
            BinaryOp::Equal => "equal",
            BinaryOp::Less => "less",
            BinaryOp::Greater => "greater",
            BinaryOp::LessOrEqual => "less_equal",
            BinaryOp::GreaterOrEqual => "greater_equal",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
        }
    }

    pub const ALL: [BinaryOp; 18] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::PRelu,
        BinaryOp::Mod { fmod: false },
        BinaryOp::Mod { fmod: true },
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::Greater,
        BinaryOp::LessOrEqual,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    pub fn from_name(s: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Comparisons produce bool.
    pub fn is_compare(&self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::Greater
                | BinaryOp::LessOrEqual
                | BinaryOp::GreaterOrEqual
        )
    }

    pub fn is_logical(&self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }

    /// True when `a op b == b op a`.
    pub fn is_commutative(&self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Mul
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Equal
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [a, b] = ins else {
            return Err(format!("expects 2 inputs, got {}", ins.len()));
        };
        if self.is_logical() {
            if a.dtype != DType::Bool || b.dtype != DType::Bool {
                return Err(format!(
                    "expects bool inputs, got {} and {}",
                    a.dtype, b.dtype
                ));
            }
        } else if a.dtype == DType::Bool && *self != BinaryOp::Equal {
            return Err("does not accept bool inputs".into());
        } else if *self == BinaryOp::Pow {
            if b.dtype == DType::Bool {
                return Err("exponent must be numeric".into());
            }
        } else if a.dtype != b.dtype {
            return Err(format!(
                "input element types differ: {} and {}",
                a.dtype, b.dtype
            ));
        }
        let dims = if *self == BinaryOp::PRelu {
            // The slope broadcasts to x, never the other way.
            let d = broadcast_dims(&a.dims, &b.dims)
                .ok_or_else(|| format!("cannot broadcast slope {} to {}", b, a))?;
            if d != a.dims {
                return Err(format!("slope {} does not broadcast to {}", b, a));
            }
            d
        } else {
            broadcast_dims(&a.dims, &b.dims)
                .ok_or_else(|| format!("cannot broadcast {} with {}", a, b))?
        };
        checked_numel(&dims).ok_or("output too large")?;
        let dtype = if self.is_compare() {
            DType::Bool
        } else {
            a.dtype
        };
        Ok(vec![TensorType::new(dtype, dims)])
    }

    /// The float formula (also used for booleans as 0/1).
    pub fn apply_f64(&self, a: f64, b: f64) -> f64 {
        let t = |c: bool| c as u8 as f64;
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            BinaryOp::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
            BinaryOp::Mod { fmod: true } => a % b,
            BinaryOp::Mod { fmod: false } => {
                let r = a % b;
                if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                    r + b
                } else {
                    r
                }
            }
            BinaryOp::Equal => t(a == b),
            BinaryOp::Less => t(a < b),
            BinaryOp::Greater => t(a > b),
            BinaryOp::LessOrEqual => t(a <= b),
            BinaryOp::GreaterOrEqual => t(a >= b),
            BinaryOp::And => t(a != 0.0 && b != 0.0),
            BinaryOp::Or => t(a != 0.0 || b != 0.0),
            BinaryOp::Xor => t((a != 0.0) != (b != 0.0)),
        }
    }

    /// The integer formula: wrapping arithmetic, division truncating toward
    /// zero, and 0 for division by zero (which ONNX leaves undefined).
    pub fn apply_i64(&self, a: i64, b: i64) -> i64 {
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Div => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
            BinaryOp::Pow => {
                if b < 0 {
                    match a {
                        1 => 1,
                        -1 => {
                            if b % 2 == 0 {
                                1
                            } else {
                                -1
                            }
                        }
                        _ => 0,
                    }
                } else {
                    a.wrapping_pow(b.min(u32::MAX as i64) as u32)
                }
            }
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => {
                if a < 0 {
                    a.wrapping_mul(b)
                } else {
                    a
                }
            }
            BinaryOp::Mod { fmod } => {
                if b == 0 {
                    0
                } else {
                    let r = a.wrapping_rem(b);
                    if !fmod && r != 0 && ((r < 0) != (b < 0)) {
                        r + b
                    } else {
                        r
                    }
                }
            }
            _ => self.apply_f64(a as f64, b as f64) as i64,
        }
    }

    pub fn eval(&self, a: &Tensor, b: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&a.ty(), &b.ty()])?.remove(0);
        let ia = broadcast_offsets(a.dims(), &out.dims);
        let ib = broadcast_offsets(b.dims(), &out.dims);
        let dt = a.dtype();
        let int_domain = dt.is_int() && (b.dtype().is_int() || *self != BinaryOp::Pow);
        let data = if int_domain {
            let (av, bv) = (a.to_i64(), b.to_i64());
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| self.apply_i64(av[i], bv[j]));
            Data::from_i64(out.dtype, v)
        } else {
            let (av, bv) = (a.to_f64(), b.to_f64());
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| self.apply_f64(av[i], bv[j]));
            Data::from_f64(out.dtype, v)
        };
        Tensor::new(out.dims, data).map_err(|e| e.to_string())
    }
}

/// Numpy broadcasting of two shapes; `None` when incompatible.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// For every element of `out` (row-major), the flat index of the element of
/// a tensor of shape `dims` that broadcasts to it.
pub fn broadcast_offsets(dims: &[usize], out: &[usize]) -> Vec<usize> {
    if out.contains(&0) {
        return Vec::new();
    }
    let n = out.len();
    let k = dims.len();
    // Strides of the input aligned to the output rank, 0 where broadcast.
    let mut st = vec![0usize; n];
    let mut s = 1;
    for i in (0..k).rev() {
        let oi = i + n - k;
        st[oi] = if dims[i] == 1 && out[oi] != 1 { 0 } else { s };
        s = s.saturating_mul(dims[i]);
    }
    let total: usize = out.iter().product();
    let mut res = Vec::with_capacity(total);
    if total == 0 {
        return res;
    }
    let mut idx = vec![0usize; n];
    let mut off = 0usize;
    for _ in 0..total {
        res.push(off);
        for d in (0..n).rev() {
            idx[d] += 1;
            off += st[d];
            if idx[d] < out[d] {
                break;
            }
            off -= st[d] * out[d];
            idx[d] = 0;
        }
    }
    res
}

/// Where(cond, x, y): three-way broadcasting select.
pub fn infer_where(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [c, x, y] = ins else {
        return Err(format!("expects 3 inputs, got {}", ins.len()));
    };
    if c.dtype != DType::Bool {
        return Err(format!("condition must be bool, got {}", c.dtype));
    }
    if x.dtype != y.dtype {
        return Err(format!(
            "branches differ in type: {} and {}",
            x.dtype, y.dtype
        ));
    }
    let d = broadcast_dims(&c.dims, &x.dims)
        .and_then(|d| broadcast_dims(&d, &y.dims))
        .ok_or_else(|| format!("cannot broadcast {c}, {x} and {y}"))?;
    checked_numel(&d).ok_or("output too large")?;
    Ok(vec![TensorType::new(x.dtype, d)])
}

pub fn eval_where(c: &Tensor, x: &Tensor, y: &Tensor) -> R<Tensor> {
    let out = infer_where(&[&c.ty(), &x.ty(), &y.ty()])?.remove(0);
    let ic = broadcast_offsets(c.dims(), &out.dims);
    let ix = broadcast_offsets(x.dims(), &out.dims);
    let iy = broadcast_offsets(y.dims(), &out.dims);
    let Data::Bool(cv) = c.data() else {
        return Err("condition must be bool".into());
    };
    // Concatenate x and y and gather, so every element type is handled at once.
    let both = concat_data(&[x.data(), y.data()]);
    let xn = x.len();
    let idx: Vec<usize> = (0..ic.len())
        .map(|i| if cv[ic[i]] { ix[i] } else { xn + iy[i] })
        .collect();
    Tensor::new(out.dims, both.gather(&idx)).map_err(|e| e.to_string())
}

/// Concatenates flat storage of the same element type.
pub fn concat_data(parts: &[&Data]) -> Data {
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::new();
            for p in parts {
                if let Data::$var(v) = p {
                    out.extend_from_slice(v);
                }
            }
            Data::$var(out)
        }};
    }
    match parts.first().map(|d| d.dtype()).unwrap_or(DType::F32) {
        DType::F32 => cat!(F32),
        DType::F64 => cat!(F64),
        DType::I8 => cat!(I8),
        DType::U8 => cat!(U8),
        DType::I16 => cat!(I16),
        DType::U16 => cat!(U16),
        DType::I32 => cat!(I32),
        DType::U32 => cat!(U32),
        DType::I64 => cat!(I64),
        DType::Bool => cat!(Bool),
    }
}

/// Cast attributes: the target element type.
#[derive(Clone, Debug, PartialEq)]
pub struct CastAttrs {
    pub to: DType,
}

impl CastAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.ident("to", self.to.name());
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let to = r.ident("to")?;
        let to = DType::from_name(&to).ok_or_else(|| format!("unknown element type `{to}`"))?;
        Ok(CastAttrs { to })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        Ok(vec![x.with_dtype(self.to)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_dims(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_dims(&[2, 3], &[3, 2]), None);
        assert_eq!(broadcast_dims(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_offsets(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_offsets(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn erf_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (-2.0, -0.9953222650189527),
            (3.0, 0.9999779095030014),
            (5.0, 0.9999999999984626),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn int_semantics() {
        assert_eq!(BinaryOp::Div.apply_i64(-7, 2), -3);
        assert_eq!(BinaryOp::Mod { fmod: false }.apply_i64(-7, 2), 1);
        assert_eq!(BinaryOp::Mod { fmod: true }.apply_i64(-7, 2), -1);
        assert_eq!(BinaryOp::Mod { fmod: false }.apply_f64(-7.0, 2.0), 1.0);
    }

    #[test]
    fn where_selects() {
        let c = Tensor::new(vec![2], Data::Bool(vec![true, false])).unwrap();
        let x = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = Tensor::scalar_f32(9.0);
        let r = eval_where(&c, &x, &y).unwrap();
        assert_eq!(r.as_f32().unwrap(), &[1.0, 9.0, 3.0, 9.0]);
    }
}
