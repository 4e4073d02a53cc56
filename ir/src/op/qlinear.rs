//! Integer (quantized) operations with exact integer semantics: what a
//! QDQ graph (`dequantize -> op -> quantize`) means when it is deployed, as
//! TensorFlow Lite Micro and CMSIS-NN compute it. Activations are int8 or
//! uint8 with a zero point; weights are int8; accumulators are int32 and
//! requantized with per-channel fixed-point multipliers and shifts (see
//! [`super::qmath`]); fused activations are a clamp in the output domain.
//!
//! The requantization parameters are constant inputs (so they live in the
//! weight table, in flash) and the zero points and clamp bounds are
//! attributes.

use super::attr::{AttrReader, AttrWriter};
use super::conv::ConvAttrs;
use super::elementwise::{broadcast_dims, broadcast_offsets};
use super::qmath::{SoftmaxOut, requantize, softmax_row};
use crate::dtype::{DType, TensorType};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// Zero points and the output range shared by the integer ops.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QParams {
    /// Zero point of the (first) input.
    pub x_zp: i32,
    /// Zero point of the weights (or the second input).
    pub w_zp: i32,
    /// Zero point of the output.
    pub y_zp: i32,
    /// The output is clamped to `[lo, hi]` (the type's range narrowed by a
    /// fused activation).
    pub lo: i32,
    pub hi: i32,
    /// Output type (i8 or u8).
    pub out: DType,
}

impl QParams {
    fn write(&self, w: &mut AttrWriter) {
        w.int("x_zp", self.x_zp as i64);
        w.int("w_zp", self.w_zp as i64);
        w.int("y_zp", self.y_zp as i64);
        w.int("lo", self.lo as i64);
        w.int("hi", self.hi as i64);
        w.ident("out", self.out.name());
    }

    fn read(r: &mut AttrReader) -> R<Self> {
        let out = r.ident("out")?;
        let int = |r: &mut AttrReader, k: &str| -> R<i32> {
            let v = r.int(k)?;
            i32::try_from(v).map_err(|_| format!("`{k}`={v} does not fit 32 bits"))
        };
        let p = QParams {
            x_zp: int(r, "x_zp")?,
            w_zp: int(r, "w_zp")?,
            y_zp: int(r, "y_zp")?,
            lo: int(r, "lo")?,
            hi: int(r, "hi")?,
            out: DType::from_name(&out).ok_or_else(|| format!("unknown type `{out}`"))?,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> R<()> {
        let (lo, hi) = match self.out {
            DType::I8 | DType::U8 => self.out.int_range().expect("integer"),
            d => return Err(format!("quantized outputs are i8 or u8, not {d}")),
        };
        if !(lo as i32..=hi as i32).contains(&self.y_zp) {
            return Err(format!(
                "output zero point {} is outside {}",
                self.y_zp, self.out
            ));
        }
        if self.lo > self.hi || self.lo < lo as i32 || self.hi > hi as i32 {
            return Err(format!(
                "clamp [{}, {}] is not inside the {} range",
                self.lo, self.hi, self.out
            ));
        }
        Ok(())
    }

    fn store(&self, acc: i32, m: i32, s: i32) -> i64 {
        (self.y_zp as i64 + requantize(acc, m, s) as i64).clamp(self.lo as i64, self.hi as i64)
    }
}

fn is_q8(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

/// The requantization inputs: int32 multipliers and shifts, one per output
/// channel or one for all.
fn check_requant(m: &TensorType, s: &TensorType, channels: usize) -> R<()> {
    for (what, t) in [("multiplier", m), ("shift", s)] {
        if t.dtype != DType::I32 || t.rank() > 1 || (t.len() != 1 && t.len() != channels) {
            return Err(format!(
                "{what} {t} must be i32 with 1 or {channels} elements"
            ));
        }
    }
    if m.len() != s.len() {
        return Err(format!("multiplier {m} and shift {s} differ in length"));
    }
    Ok(())
}

fn per_channel(v: &[i64], c: usize) -> i32 {
    if v.len() == 1 {
        v[0] as i32
    } else {
        v[c] as i32
    }
}

/// Quantized convolution. Inputs: x (i8/u8) `[N, C, D...]`, w (i8/u8)
/// `[M, C/group, K...]`, bias (i32 `[M]`), multiplier and shift (i32, per
/// output channel or one). Output: `clamp(y_zp + requantize(bias[m] +
/// sum (x - x_zp) (w - w_zp)), lo, hi)`; padding reads as `x_zp`.
#[derive(Clone, Debug, PartialEq)]
pub struct QConvAttrs {
    /// The geometry (its `act` is always `None`: activations are the clamp).
    pub conv: ConvAttrs,
    pub q: QParams,
}

impl QConvAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        self.conv.write(w);
        self.q.write(w);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let conv = ConvAttrs::read(r)?;
        if conv.act.is_some() {
            return Err("a quantized convolution's activation is its clamp".into());
        }
        Ok(QConvAttrs {
            conv,
            q: QParams::read(r)?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x, w, b, m, s] = ins else {
            return Err(format!(
                "expects 5 inputs (x, w, bias, multiplier, shift), got {}",
                ins.len()
            ));
        };
        if !is_q8(x.dtype) || !is_q8(w.dtype) {
            return Err(format!("x {x} and w {w} must be i8 or u8"));
        }
        self.q.check()?;
        let float_x = x.with_dtype(DType::F32);
        let float_w = w.with_dtype(DType::F32);
        let y = self.conv.infer(&[&float_x, &float_w])?.remove(0);
        let mo = y.dims[1];
        if b.dtype != DType::I32 || b.dims != [mo] {
            return Err(format!("bias {b} must be i32[{mo}]"));
        }
        check_requant(m, s, mo)?;
        Ok(vec![y.with_dtype(self.q.out)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let yt = self.infer(&refs)?.remove(0);
        let (x, w) = (ins[0], ins[1]);
        let (xv, wv) = (x.to_i64(), w.to_i64());
        let (bv, mv, sv) = (ins[2].to_i64(), ins[3].to_i64(), ins[4].to_i64());
        let a = &self.conv;
        let n_sp = x.rank() - 2;
        let (batch, c, mo) = (x.dims()[0], x.dims()[1], yt.dims[1]);
        let (cg, mg) = (c / a.group, mo / a.group);
        let in_sp = &x.dims()[2..];
        let out_sp = &yt.dims[2..];
        let k_sp = &w.dims()[2..];
        let pairs = super::conv::window_pairs(
            in_sp,
            out_sp,
            k_sp,
            &a.strides,
            &a.pads[..n_sp],
            &a.dilations,
        );
        let isz: usize = in_sp.iter().product();
        let osz: usize = out_sp.iter().product();
        let ksz: usize = k_sp.iter().product();
        let mut y = Vec::with_capacity(yt.len());
        let (xz, wz) = (self.q.x_zp as i64, self.q.w_zp as i64);
        for n in 0..batch {
            for o in 0..mo {
                let g = o / mg;
                let mut acc = vec![bv[o]; osz];
                for ic in 0..cg {
                    let ci = g * cg + ic;
                    let xs = &xv[(n * c + ci) * isz..][..isz];
                    let ws = &wv[(o * cg + ic) * ksz..][..ksz];
                    for (k, pk) in pairs.iter().enumerate() {
                        let wk = ws[k] - wz;
                        for &(op, ip) in pk {
                            acc[op] += (xs[ip] - xz) * wk;
                        }
                    }
                }
                let (mm, ss) = (per_channel(&mv, o), per_channel(&sv, o));
                y.extend(acc.iter().map(|&v| self.q.store(v as i32, mm, ss)));
            }
        }
        Tensor::from_i64(self.q.out, yt.dims, y).map_err(|e| e.to_string())
    }
}

/// Quantized matrix product (fully connected): a `[M, K]` (i8/u8) times b
/// `[K, N]` (or `[N, K]` with `trans_b`), plus bias (i32 `[N]`), requantized
/// per output column or for all.
#[derive(Clone, Debug, PartialEq)]
pub struct QGemmAttrs {
    pub trans_b: bool,
    pub q: QParams,
}

impl QGemmAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        if self.trans_b {
            w.bool("trans_b", true);
        }
        self.q.write(w);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(QGemmAttrs {
            trans_b: r.bool_or("trans_b", false)?,
            q: QParams::read(r)?,
        })
    }

    fn dims(&self, a: &TensorType, b: &TensorType) -> R<(usize, usize, usize)> {
        if a.rank() != 2 || b.rank() != 2 {
            return Err(format!("a {a} and b {b} must be matrices"));
        }
        let (m, k) = (a.dims[0], a.dims[1]);
        let (kb, n) = if self.trans_b {
            (b.dims[1], b.dims[0])
        } else {
            (b.dims[0], b.dims[1])
        };
        if k != kb {
            return Err(format!("a {a} and b {b} disagree on K"));
        }
        Ok((m, k, n))
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [a, b, bias, m, s] = ins else {
            return Err(format!(
                "expects 5 inputs (a, b, bias, multiplier, shift), got {}",
                ins.len()
            ));
        };
        if !is_q8(a.dtype) || !is_q8(b.dtype) {
            return Err(format!("a {a} and b {b} must be i8 or u8"));
        }
        self.q.check()?;
        let (mm, _, n) = self.dims(a, b)?;
        if bias.dtype != DType::I32 || bias.dims != [n] {
            return Err(format!("bias {bias} must be i32[{n}]"));
        }
        check_requant(m, s, n)?;
        Ok(vec![TensorType::new(self.q.out, vec![mm, n])])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let (a, b) = (ins[0], ins[1]);
        let (m, k, n) = self.dims(&a.ty(), &b.ty())?;
        let (av, bv) = (a.to_i64(), b.to_i64());
        let (biasv, mv, sv) = (ins[2].to_i64(), ins[3].to_i64(), ins[4].to_i64());
        let (xz, wz) = (self.q.x_zp as i64, self.q.w_zp as i64);
        let mut y = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = biasv[j];
                for p in 0..k {
                    let bw = if self.trans_b {
                        bv[j * k + p]
                    } else {
                        bv[p * n + j]
                    };
                    acc += (av[i * k + p] - xz) * (bw - wz);
                }
                y.push(
                    self.q
                        .store(acc as i32, per_channel(&mv, j), per_channel(&sv, j)),
                );
            }
        }
        Tensor::from_i64(self.q.out, vec![m, n], y).map_err(|e| e.to_string())
    }
}

/// Elementwise add or multiply of two quantized tensors with numpy
/// broadcasting, rescaled as TFLite does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QBinaryKind {
    /// Both inputs rescaled to a common scale (`left_shift` bits of
    /// headroom, multipliers `a_*` and `b_*`), summed, then rescaled to the
    /// output (`y_*`).
    Add,
    /// The product of the two zero-point-corrected inputs rescaled to the
    /// output (`y_*`).
    Mul,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QBinaryAttrs {
    pub kind: QBinaryKind,
    /// `x_zp` is input a's zero point, `w_zp` input b's.
    pub q: QParams,
    pub left_shift: i32,
    pub a_mult: i32,
    pub a_shift: i32,
    pub b_mult: i32,
    pub b_shift: i32,
    pub y_mult: i32,
    pub y_shift: i32,
}

impl QBinaryAttrs {
    pub fn name(&self) -> &'static str {
        match self.kind {
            QBinaryKind::Add => "qadd",
            QBinaryKind::Mul => "qmul",
        }
    }

    pub fn write(&self, w: &mut AttrWriter) {
        self.q.write(w);
        if self.kind == QBinaryKind::Add {
            w.int("left_shift", self.left_shift as i64);
            w.int("a_mult", self.a_mult as i64);
            w.int("a_shift", self.a_shift as i64);
            w.int("b_mult", self.b_mult as i64);
            w.int("b_shift", self.b_shift as i64);
        }
        w.int("y_mult", self.y_mult as i64);
        w.int("y_shift", self.y_shift as i64);
    }

    pub fn read(r: &mut AttrReader, kind: QBinaryKind) -> R<Self> {
        let q = QParams::read(r)?;
        let int = |r: &mut AttrReader, k: &str, d: i64| -> R<i32> {
            let v = r.int_or(k, d)?;
            i32::try_from(v).map_err(|_| format!("`{k}`={v} does not fit 32 bits"))
        };
        let a = QBinaryAttrs {
            kind,
            q,
            left_shift: int(r, "left_shift", 0)?,
            a_mult: int(r, "a_mult", 0)?,
            a_shift: int(r, "a_shift", 0)?,
            b_mult: int(r, "b_mult", 0)?,
            b_shift: int(r, "b_shift", 0)?,
            y_mult: int(r, "y_mult", 0)?,
            y_shift: int(r, "y_shift", 0)?,
        };
        if !(0..=24).contains(&a.left_shift) {
            return Err(format!("left_shift {} is outside 0..=24", a.left_shift));
        }
        Ok(a)
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [a, b] = ins else {
            return Err(format!("expects 2 inputs, got {}", ins.len()));
        };
        if !is_q8(a.dtype) || !is_q8(b.dtype) {
            return Err(format!("inputs {a} and {b} must be i8 or u8"));
        }
        self.q.check()?;
        let dims = broadcast_dims(&a.dims, &b.dims)
            .ok_or_else(|| format!("{a} and {b} do not broadcast"))?;
        Ok(vec![TensorType::new(self.q.out, dims)])
    }

    /// One element: `a` and `b` are the raw integers.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        let (a, b) = (a - self.q.x_zp, b - self.q.w_zp);
        let raw = match self.kind {
            QBinaryKind::Add => {
                let sa = requantize(
                    a.wrapping_shl(self.left_shift as u32),
                    self.a_mult,
                    self.a_shift,
                );
                let sb = requantize(
                    b.wrapping_shl(self.left_shift as u32),
                    self.b_mult,
                    self.b_shift,
                );
                requantize(sa.wrapping_add(sb), self.y_mult, self.y_shift)
            }
            QBinaryKind::Mul => requantize(a.wrapping_mul(b), self.y_mult, self.y_shift),
        };
        (self.q.y_zp as i64 + raw as i64).clamp(self.q.lo as i64, self.q.hi as i64) as i32
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let (a, b) = (ins[0], ins[1]);
        let yt = self.infer(&[&a.ty(), &b.ty()])?.remove(0);
        let (av, bv) = (a.to_i64(), b.to_i64());
        let (oa, ob) = (
            broadcast_offsets(a.dims(), &yt.dims),
            broadcast_offsets(b.dims(), &yt.dims),
        );
        let y: Vec<i64> = (0..yt.len())
            .map(|i| self.apply(av[oa[i]] as i32, bv[ob[i]] as i32) as i64)
            .collect();
        Tensor::from_i64(self.q.out, yt.dims, y).map_err(|e| e.to_string())
    }
}

/// Requantization of one tensor to other quantization parameters:
/// `clamp(y_zp + requantize(x - x_zp), lo, hi)` with one multiplier.
#[derive(Clone, Debug, PartialEq)]
pub struct RequantAttrs {
    pub q: QParams,
    pub mult: i32,
    pub shift: i32,
}

impl RequantAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        self.q.write(w);
        w.int("mult", self.mult as i64);
        w.int("shift", self.shift as i64);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let q = QParams::read(r)?;
        let mult = i32::try_from(r.int("mult")?).map_err(|_| "`mult` does not fit 32 bits")?;
        let shift = i32::try_from(r.int("shift")?).map_err(|_| "`shift` does not fit 32 bits")?;
        Ok(RequantAttrs { q, mult, shift })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if !is_q8(x.dtype) {
            return Err(format!("input {x} must be i8 or u8"));
        }
        self.q.check()?;
        Ok(vec![x.with_dtype(self.q.out)])
    }

    pub fn apply(&self, x: i32) -> i32 {
        self.q.store(x - self.q.x_zp, self.mult, self.shift) as i32
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let y: Vec<i64> = x
            .to_i64()
            .iter()
            .map(|&v| self.apply(v as i32) as i64)
            .collect();
        Tensor::from_i64(self.q.out, x.dims().to_vec(), y).map_err(|e| e.to_string())
    }
}

/// Table lookup: `y = table[x - min(x's type)]`, a 256-entry table of the
/// output type (any unary function between a dequantize and a quantize is
/// exactly one).
pub fn infer_lut(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let [x, t] = ins else {
        return Err(format!("expects 2 inputs (x, table), got {}", ins.len()));
    };
    if !is_q8(x.dtype) {
        return Err(format!("input {x} must be i8 or u8"));
    }
    if t.dims != [256] || !is_q8(t.dtype) {
        return Err(format!("table {t} must be i8[256] or u8[256]"));
    }
    Ok(vec![x.with_dtype(t.dtype)])
}

pub fn eval_lut(x: &Tensor, table: &Tensor) -> R<Tensor> {
    let base = x.dtype().int_range().map(|(lo, _)| lo).unwrap_or(0);
    let tv = table.to_i64();
    let y: Vec<i64> = x
        .to_i64()
        .iter()
        .map(|&v| tv[(v - base).clamp(0, 255) as usize])
        .collect();
    Tensor::from_i64(table.dtype(), x.dims().to_vec(), y).map_err(|e| e.to_string())
}

/// Softmax with quantized input and output (TFLite's integer algorithm):
/// the output has scale 1/256 and the zero point at the type's minimum.
#[derive(Clone, Debug, PartialEq)]
pub struct QSoftmaxAttrs {
    pub axis: usize,
    /// Rescales input differences to Q5.26 (see
    /// [`super::qmath::softmax_params`]).
    pub mult: i32,
    pub shift: i32,
    /// Differences below this contribute nothing.
    pub diff_min: i32,
    pub out: DType,
    /// Output parameters other than TFLite's (scale 1/256, zero point at
    /// the type's minimum): the probabilities are divided by the output
    /// scale and rounded once ([`super::qmath::softmax_scaled`]).
    pub y: Option<SoftmaxOut>,
}

impl QSoftmaxAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
        w.int("mult", self.mult as i64);
        w.int("shift", self.shift as i64);
        w.int("diff_min", self.diff_min as i64);
        w.ident("out", self.out.name());
        if let Some(y) = self.y {
            w.ints("y", &[y.mult as i64, y.shift as i64, y.zp as i64]);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let out = r.ident("out")?;
        let int = |r: &mut AttrReader, k: &str| -> R<i32> {
            let v = r.int(k)?;
            i32::try_from(v).map_err(|_| format!("`{k}`={v} does not fit 32 bits"))
        };
        let y = match r.ints_or("y", vec![])?.as_slice() {
            [] => None,
            &[m, s, z] => {
                let f = |v: i64| {
                    i32::try_from(v).map_err(|_| format!("`y` value {v} does not fit 32 bits"))
                };
                Some(SoftmaxOut {
                    mult: f(m)?,
                    shift: f(s)?,
                    zp: f(z)?,
                })
            }
            v => return Err(format!("`y` needs [mult, shift, zp], got {v:?}")),
        };
        Ok(QSoftmaxAttrs {
            axis: r.usize("axis")?,
            mult: int(r, "mult")?,
            shift: int(r, "shift")?,
            diff_min: int(r, "diff_min")?,
            out: DType::from_name(&out).ok_or_else(|| format!("unknown type `{out}`"))?,
            y,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if !is_q8(x.dtype) || !is_q8(self.out) {
            return Err(format!(
                "input {x} and output {} must be i8 or u8",
                self.out
            ));
        }
        if self.axis >= x.rank() {
            return Err(format!("axis {} is outside {x}", self.axis));
        }
        if !(0..=31).contains(&self.shift) {
            return Err(format!("shift {} is outside 0..=31", self.shift));
        }
        if let Some(y) = self.y {
            let (lo, hi) = self.out.int_range().expect("i8 or u8");
            if y.mult < 0
                || y.shift > super::qmath::MAX_SHIFT
                || !(lo..=hi).contains(&(y.zp as i64))
            {
                return Err(format!(
                    "output multiplier {} shift {} zero point {} are not a {} softmax output",
                    y.mult, y.shift, y.zp, self.out
                ));
            }
        }
        Ok(vec![x.with_dtype(self.out)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let dims = x.dims();
        let n = dims[self.axis];
        let inner: usize = dims[self.axis + 1..].iter().product();
        let outer: usize = dims[..self.axis].iter().product();
        let xv = x.to_i64();
        let (lo, hi) = self.out.int_range().expect("i8 or u8");
        let mut y = vec![0i64; xv.len()];
        for o in 0..outer {
            for i in 0..inner {
                let idx = |k: usize| (o * n + k) * inner + i;
                let row: Vec<i32> = (0..n).map(|k| xv[idx(k)] as i32).collect();
                let r = softmax_row(
                    &row,
                    self.mult,
                    self.shift,
                    self.diff_min,
                    (lo as i32, hi as i32),
                    self.y,
                );
                for (k, v) in r.into_iter().enumerate() {
                    y[idx(k)] = v as i64;
                }
            }
        }
        Tensor::from_i64(self.out, dims.to_vec(), y).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::qmath::quantize_multiplier;

    fn t(d: DType, dims: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::from_i64(d, dims, v).unwrap()
    }

    #[test]
    fn qconv_is_integer_arithmetic_with_zero_points() {
        // 1x1x3 input, 2 output channels, 1x2 kernel, pad 1 on the left.
        let mut conv = ConvAttrs::new(1);
        conv.pads = vec![1, 0];
        let (m, s) = quantize_multiplier(0.5);
        let a = QConvAttrs {
            conv,
            q: QParams {
                x_zp: 10,
                w_zp: 0,
                y_zp: -5,
                lo: -128,
                hi: 127,
                out: DType::I8,
            },
        };
        let x = t(DType::I8, vec![1, 1, 3], vec![12, 10, 7]);
        let w = t(DType::I8, vec![2, 1, 2], vec![1, 2, -3, 4]);
        let b = t(DType::I32, vec![2], vec![1, -2]);
        let mm = t(DType::I32, vec![1], vec![m as i64]);
        let ss = t(DType::I32, vec![1], vec![s as i64]);
        let y = a.eval(&[&x, &w, &b, &mm, &ss]).unwrap();
        // x - zp = [2, 0, -3], padded left with 0 (x_zp).
        // o0: [0*1 + 2*2, 2*1 + 0*2, 0*1 + -3*2] + 1 = [5, 3, -5] -> /2 ->
        //     [3, 2, -2] (gemmlowp rounds 2.5 up and -2.5 toward zero)
        // o1: [0*-3 + 2*4, 2*-3 + 0, 0 + -12] - 2 = [6, -8, -14] -> [3, -4, -7]
        assert_eq!(y.to_i64(), vec![-2, -3, -7, -2, -9, -12]);
    }

    #[test]
    fn qadd_matches_tflite_rescaling() {
        // a: scale 0.1 zp 0, b: scale 0.2 zp 0, y: scale 0.3 zp 0.
        let twice = 2.0 * 0.2;
        let (am, ash) = quantize_multiplier(0.1 / twice);
        let (bm, bsh) = quantize_multiplier(0.2 / twice);
        let (ym, ysh) = quantize_multiplier(twice / ((1 << 20) as f64 * 0.3));
        let a = QBinaryAttrs {
            kind: QBinaryKind::Add,
            q: QParams {
                x_zp: 0,
                w_zp: 0,
                y_zp: 0,
                lo: -128,
                hi: 127,
                out: DType::I8,
            },
            left_shift: 20,
            a_mult: am,
            a_shift: ash,
            b_mult: bm,
            b_shift: bsh,
            y_mult: ym,
            y_shift: ysh,
        };
        // 30*0.1 + 15*0.2 = 6.0 = 20 * 0.3; 3*0.1 + 0 = 0.3 -> 1.
        assert_eq!(a.apply(30, 15), 20);
        assert_eq!(a.apply(3, 0), 1);
        assert_eq!(a.apply(-128, -128), -128);
    }

    #[test]
    fn lut_indexes_from_the_type_minimum() {
        let table = t(DType::I8, vec![256], (0..256).map(|i| i / 2 - 64).collect());
        let x = t(DType::I8, vec![3], vec![-128, 0, 127]);
        let y = eval_lut(&x, &table).unwrap();
        assert_eq!(y.to_i64(), vec![-64, 0, 63]);
    }
}
