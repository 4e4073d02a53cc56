//! Data movement: reshape, transpose, concat, split, slice, pad, expand,
//! tile and gather. Every evaluation computes, for each output element, the
//! flat index of its source and gathers, so one routine serves all dtypes.

use super::attr::{AttrReader, AttrWriter};
use super::conv::increment;
use super::elementwise::{broadcast_dims, broadcast_offsets, concat_data};
use crate::dtype::{DType, TensorType, checked_numel, strides};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

fn one<'a>(ins: &[&'a TensorType]) -> R<&'a TensorType> {
    match ins {
        [x] => Ok(x),
        _ => Err(format!("expects 1 input, got {}", ins.len())),
    }
}

fn tensor(dims: Vec<usize>, data: crate::tensor::Data) -> R<Tensor> {
    Tensor::new(dims, data).map_err(|e| e.to_string())
}

/// Reshape (also Flatten, Squeeze and Unsqueeze): same elements, new dims.
#[derive(Clone, Debug, PartialEq)]
pub struct ReshapeAttrs {
    pub shape: Vec<usize>,
}

impl ReshapeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("shape", &self.shape);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(ReshapeAttrs {
            shape: r.usizes("shape")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        if checked_numel(&self.shape) != Some(x.len()) {
            return Err(format!("cannot reshape {x} to {:?}", self.shape));
        }
        Ok(vec![TensorType::new(x.dtype, self.shape.clone())])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        x.reshaped(self.shape.clone()).map_err(|e| e.to_string())
    }
}

/// Transpose: output axis `i` is input axis `perm[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TransposeAttrs {
    pub perm: Vec<usize>,
}

impl TransposeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("perm", &self.perm);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(TransposeAttrs {
            perm: r.usizes("perm")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        let mut seen = vec![false; x.rank()];
        if self.perm.len() != x.rank() {
            return Err(format!("perm {:?} does not match rank of {x}", self.perm));
        }
        for &p in &self.perm {
            if p >= x.rank() || seen[p] {
                return Err(format!("perm {:?} is not a permutation", self.perm));
            }
            seen[p] = true;
        }
        let dims: Vec<usize> = self.perm.iter().map(|&p| x.dims[p]).collect();
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let st = strides(x.dims());
        let pst: Vec<usize> = self.perm.iter().map(|&p| st[p]).collect();
        let idx = strided_indices(&out.dims, &pst, 0);
        tensor(out.dims, x.data().gather(&idx))
    }
}

/// Flat source indices for walking `dims` row-major with the given source strides.
fn strided_indices(dims: &[usize], src_strides: &[usize], base: usize) -> Vec<usize> {
    let total: usize = dims.iter().product();
    let mut res = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        res.push(
            base + idx
                .iter()
                .zip(src_strides)
                .map(|(i, s)| i * s)
                .sum::<usize>(),
        );
        increment(&mut idx, dims);
    }
    res
}

/// Concat along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcatAttrs {
    pub axis: usize,
}

impl ConcatAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(ConcatAttrs {
            axis: r.usize("axis")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let Some(first) = ins.first() else {
            return Err("expects at least 1 input".into());
        };
        if self.axis >= first.rank() {
            return Err(format!("axis {} out of range for {first}", self.axis));
        }
        let mut dims = first.dims.clone();
        dims[self.axis] = 0;
        for t in ins {
            let same_rest = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == self.axis || t.dims[i] == first.dims[i]);
            if t.dtype != first.dtype || !same_rest {
                return Err(format!(
                    "cannot concatenate {t} with {first} on axis {}",
                    self.axis
                ));
            }
            dims[self.axis] += t.dims[self.axis];
        }
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(first.dtype, dims)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let out = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let outer: usize = out.dims[..self.axis].iter().product();
        let inner: usize = out.dims[self.axis + 1..].iter().product();
        let mut base = Vec::with_capacity(ins.len());
        let mut acc = 0;
        for t in ins {
            base.push(acc);
            acc += t.len();
        }
        let mut idx = Vec::with_capacity(out.len());
        for o in 0..outer {
            for (t, b) in ins.iter().zip(&base) {
                let chunk = t.dims()[self.axis] * inner;
                idx.extend((0..chunk).map(|i| b + o * chunk + i));
            }
        }
        let all = concat_data(&ins.iter().map(|t| t.data()).collect::<Vec<_>>());
        tensor(out.dims, all.gather(&idx))
    }
}

/// Split along one axis into pieces of the given sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitAttrs {
    pub axis: usize,
    pub sizes: Vec<usize>,
}

impl SplitAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
        w.usizes("sizes", &self.sizes);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(SplitAttrs {
            axis: r.usize("axis")?,
            sizes: r.usizes("sizes")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        if self.axis >= x.rank() {
            return Err(format!("axis {} out of range for {x}", self.axis));
        }
        if self.sizes.iter().sum::<usize>() != x.dims[self.axis] || self.sizes.is_empty() {
            return Err(format!(
                "sizes {:?} do not add up to dim {} of {x}",
                self.sizes, self.axis
            ));
        }
        Ok(self
            .sizes
            .iter()
            .map(|&s| {
                let mut d = x.dims.clone();
                d[self.axis] = s;
                TensorType::new(x.dtype, d)
            })
            .collect())
    }

    pub fn eval(&self, x: &Tensor) -> R<Vec<Tensor>> {
        let outs = self.infer(&[&x.ty()])?;
        let st = strides(x.dims());
        let mut start = 0;
        let mut res = Vec::with_capacity(outs.len());
        for o in outs {
            let idx = strided_indices(&o.dims, &st, start * st[self.axis]);
            start += o.dims[self.axis];
            res.push(tensor(o.dims, x.data().gather(&idx))?);
        }
        Ok(res)
    }
}

/// Slice with per-axis start, end and step, normalized at import to every
/// axis: for positive steps `0 <= start, end <= dim`; for negative steps
/// `-1 <= start, end <= dim - 1` (an end of -1 means "through index 0").
#[derive(Clone, Debug, PartialEq)]
pub struct SliceAttrs {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub steps: Vec<i64>,
}

impl SliceAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.ints("starts", &self.starts);
        w.ints("ends", &self.ends);
        w.ints("steps", &self.steps);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(SliceAttrs {
            starts: r.ints("starts")?,
            ends: r.ints("ends")?,
            steps: r.ints("steps")?,
        })
    }

    /// Normalizes ONNX-style (possibly negative, out-of-range) bounds for a
    /// dim of size `d`, following the ONNX Slice clamping rules.
    pub fn normalize(start: i64, end: i64, step: i64, d: usize) -> (i64, i64) {
        let d = d as i64;
        let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (fix(start), fix(end));
        if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        }
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        let n = x.rank();
        if self.starts.len() != n || self.ends.len() != n || self.steps.len() != n {
            return Err(format!("starts, ends and steps must have {n} entries"));
        }
        let mut dims = Vec::with_capacity(n);
        for i in 0..n {
            let (s, e, st) = (self.starts[i], self.ends[i], self.steps[i]);
            let d = x.dims[i] as i64;
            let ok = match st {
                0 => false,
                st if st > 0 => (0..=d).contains(&s) && (0..=d).contains(&e),
                _ => (-1..d).contains(&s) && (-1..d).contains(&e),
            };
            if !ok {
                return Err(format!(
                    "axis {i}: slice {s}..{e} step {st} is not normalized for dim {d}"
                ));
            }
            // s and e are within [-1, d], so only the step can be extreme.
            let (span, step) = if st > 0 {
                (e - s, st.unsigned_abs())
            } else {
                (s - e, st.unsigned_abs())
            };
            let len = if span <= 0 {
                0
            } else {
                (span as u64 - 1) / step + 1
            };
            dims.push(len as usize);
        }
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let st = strides(x.dims());
        let mut idx = Vec::with_capacity(out.len());
        let mut o = vec![0usize; out.rank()];
        for _ in 0..out.len() {
            let mut f = 0i64;
            for d in 0..o.len() {
                f += (self.starts[d] + o[d] as i64 * self.steps[d]) * st[d] as i64;
            }
            idx.push(f as usize);
            increment(&mut o, &out.dims);
        }
        tensor(out.dims, x.data().gather(&idx))
    }
}

/// Pad mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }

    pub fn from_name(s: &str) -> Option<PadMode> {
        [
            PadMode::Constant,
            PadMode::Reflect,
            PadMode::Edge,
            PadMode::Wrap,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

/// Pad: all begins then all ends, one per axis; negative pads crop.
#[derive(Clone, Debug, PartialEq)]
pub struct PadAttrs {
    pub mode: PadMode,
    pub pads: Vec<i64>,
    pub value: f64,
}

impl PadAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.ident("mode", self.mode.name());
        w.ints("pads", &self.pads);
        if self.mode == PadMode::Constant && self.value != 0.0 {
            w.f64("value", self.value);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let m = r.ident("mode")?;
        Ok(PadAttrs {
            mode: PadMode::from_name(&m).ok_or_else(|| format!("unknown pad mode `{m}`"))?,
            pads: r.ints("pads")?,
            value: r.f64_or("value", 0.0)?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        let n = x.rank();
        if self.pads.len() != 2 * n {
            return Err(format!("pads must have {} entries", 2 * n));
        }
        let mut dims = Vec::with_capacity(n);
        for i in 0..n {
            let d = (x.dims[i] as i64)
                .checked_add(self.pads[i])
                .and_then(|d| d.checked_add(self.pads[n + i]))
                .ok_or("pads out of range")?;
            if d < 0 {
                return Err(format!("pads crop more than axis {i} of {x}"));
            }
            let padded = self.pads[i] > 0 || self.pads[n + i] > 0;
            if padded && x.dims[i] == 0 && self.mode != PadMode::Constant {
                return Err(format!(
                    "cannot {} pad the empty axis {i}",
                    self.mode.name()
                ));
            }
            dims.push(d as usize);
        }
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let n = x.rank();
        let st = strides(x.dims());
        // Per-axis source index for each output coordinate.
        let maps: Vec<Vec<Option<usize>>> = (0..n)
            .map(|a| {
                let d = x.dims()[a] as i64;
                (0..out.dims[a] as i64)
                    .map(|o| {
                        let s = o - self.pads[a];
                        if (0..d).contains(&s) {
                            return Some(s as usize);
                        }
                        match self.mode {
                            PadMode::Constant => None,
                            PadMode::Edge => Some(s.clamp(0, d - 1) as usize),
                            PadMode::Wrap => Some(s.rem_euclid(d) as usize),
                            PadMode::Reflect => {
                                if d == 1 {
                                    return Some(0);
                                }
                                let period = 2 * (d - 1);
                                let i = s.rem_euclid(period);
                                Some(if i >= d { period - i } else { i } as usize)
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        let mut idx = Vec::with_capacity(out.len());
        let mut o = vec![0usize; n];
        for _ in 0..out.len() {
            let mut f = Some(0usize);
            for a in 0..n {
                f = match (f, maps[a][o[a]]) {
                    (Some(f), Some(s)) => Some(f + s * st[a]),
                    _ => None,
                };
            }
            idx.push(f);
            increment(&mut o, &out.dims);
        }
        tensor(out.dims, x.data().gather_or(&idx, self.value))
    }
}

/// Expand: numpy-broadcast the input to `shape` (already combined with the input dims).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpandAttrs {
    pub shape: Vec<usize>,
}

impl ExpandAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("shape", &self.shape);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(ExpandAttrs {
            shape: r.usizes("shape")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        if broadcast_dims(&x.dims, &self.shape).as_deref() != Some(&self.shape[..]) {
            return Err(format!("{x} does not broadcast to {:?}", self.shape));
        }
        checked_numel(&self.shape).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, self.shape.clone())])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let idx = broadcast_offsets(x.dims(), &out.dims);
        tensor(out.dims, x.data().gather(&idx))
    }
}

/// Tile: repeat the input `repeats[i]` times along each axis.
#[derive(Clone, Debug, PartialEq)]
pub struct TileAttrs {
    pub repeats: Vec<usize>,
}

impl TileAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("repeats", &self.repeats);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(TileAttrs {
            repeats: r.usizes("repeats")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let x = one(ins)?;
        if self.repeats.len() != x.rank() {
            return Err(format!("repeats must have {} entries", x.rank()));
        }
        let dims: Vec<usize> = x
            .dims
            .iter()
            .zip(&self.repeats)
            .map(|(d, r)| d.saturating_mul(*r))
            .collect();
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let st = strides(x.dims());
        let mut idx = Vec::with_capacity(out.len());
        let mut o = vec![0usize; out.rank()];
        for _ in 0..out.len() {
            idx.push((0..o.len()).map(|a| (o[a] % x.dims()[a]) * st[a]).sum());
            increment(&mut o, &out.dims);
        }
        tensor(out.dims, x.data().gather(&idx))
    }
}

/// Gather along an axis with integer indices (negative indices count from the end).
#[derive(Clone, Debug, PartialEq)]
pub struct GatherAttrs {
    pub axis: usize,
}

impl GatherAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(GatherAttrs {
            axis: r.usize("axis")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x, i] = ins else {
            return Err(format!("expects 2 inputs, got {}", ins.len()));
        };
        if self.axis >= x.rank() {
            return Err(format!("axis {} out of range for {x}", self.axis));
        }
        if !matches!(i.dtype, DType::I32 | DType::I64) {
            return Err(format!("indices must be i32 or i64, got {}", i.dtype));
        }
        let mut dims = x.dims[..self.axis].to_vec();
        dims.extend_from_slice(&i.dims);
        dims.extend_from_slice(&x.dims[self.axis + 1..]);
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor, indices: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty(), &indices.ty()])?.remove(0);
        let d = x.dims()[self.axis];
        let outer: usize = x.dims()[..self.axis].iter().product();
        let inner: usize = x.dims()[self.axis + 1..].iter().product();
        let ind: Vec<usize> = indices
            .to_i64()
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + d as i64 } else { i };
                if (0..d as i64).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!("index {i} out of range for axis of size {d}"))
                }
            })
            .collect::<R<_>>()?;
        let mut idx = Vec::with_capacity(out.len());
        for o in 0..outer {
            for &j in &ind {
                idx.extend((0..inner).map(|k| (o * d + j) * inner + k));
            }
        }
        tensor(out.dims, x.data().gather(&idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: &[usize]) -> Tensor {
        let n = dims.iter().product::<usize>();
        Tensor::from_f32(dims.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn transpose_values() {
        let y = TransposeAttrs { perm: vec![1, 0] }
            .eval(&t(&[2, 3]))
            .unwrap();
        assert_eq!(y.dims(), &[3, 2]);
        assert_eq!(y.as_f32().unwrap(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn slice_negative_step() {
        let (s, e) = SliceAttrs::normalize(-1, i64::MIN, -1, 4);
        assert_eq!((s, e), (3, -1));
        let a = SliceAttrs {
            starts: vec![s],
            ends: vec![e],
            steps: vec![-2],
        };
        assert_eq!(a.eval(&t(&[4])).unwrap().as_f32().unwrap(), &[3.0, 1.0]);
    }

    #[test]
    fn pad_modes() {
        let x = t(&[3]);
        let p = |mode| PadAttrs {
            mode,
            pads: vec![2, 2],
            value: -1.0,
        };
        let get = |m| p(m).eval(&x).unwrap().as_f32().unwrap().to_vec();
        assert_eq!(get(PadMode::Constant), [-1., -1., 0., 1., 2., -1., -1.]);
        assert_eq!(get(PadMode::Reflect), [2., 1., 0., 1., 2., 1., 0.]);
        assert_eq!(get(PadMode::Edge), [0., 0., 0., 1., 2., 2., 2.]);
        assert_eq!(get(PadMode::Wrap), [1., 2., 0., 1., 2., 0., 1.]);
    }

    #[test]
    fn concat_split_inverse() {
        let a = t(&[2, 2]);
        let b = t(&[2, 1]);
        let c = ConcatAttrs { axis: 1 }.eval(&[&a, &b]).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[0., 1., 0., 2., 3., 1.]);
        let parts = SplitAttrs {
            axis: 1,
            sizes: vec![2, 1],
        }
        .eval(&c)
        .unwrap();
        assert_eq!(parts[0], a);
        assert_eq!(parts[1], b);
    }
}
