//! Convolution and transposed convolution over any number of spatial dims,
//! with groups, dilations, explicit pads and an optional fused activation.

use super::attr::{AttrReader, AttrWriter};
use super::elementwise::UnaryOp;
use super::read_act;
use crate::dtype::{TensorType, checked_numel};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// Conv attributes. Pads are ONNX-ordered: all begins, then all ends.
/// Inputs: x `[N, C, D...]`, w `[M, C/group, K...]`, optional bias `[M]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
    /// Activation applied to the result (after the bias).
    pub act: Option<UnaryOp>,
}

impl ConvAttrs {
    /// Default attributes (stride 1, no pad, no dilation, one group) for `n` spatial dims.
    pub fn new(n: usize) -> Self {
        ConvAttrs {
            strides: vec![1; n],
            pads: vec![0; 2 * n],
            dilations: vec![1; n],
            group: 1,
            act: None,
        }
    }

    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("stride", &self.strides);
        w.usizes("pad", &self.pads);
        w.usizes("dilation", &self.dilations);
        if self.group != 1 {
            w.usize("group", self.group);
        }
        if let Some(act) = &self.act {
            let mut inner = AttrWriter::new();
            act.write_attrs(&mut inner);
            w.nested("act", act.name(), inner);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(ConvAttrs {
            strides: r.usizes("stride")?,
            pads: r.usizes("pad")?,
            dilations: r.usizes("dilation")?,
            group: r.usize_or("group", 1)?,
            act: read_act(r)?,
        })
    }

    /// True for a depthwise convolution (one input channel per group).
    pub fn is_depthwise(&self, w: &TensorType) -> bool {
        self.group > 1 && w.dims.get(1) == Some(&1) && w.dims[0] == self.group
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (x, w, b) = conv_inputs(ins)?;
        let n = check_geometry(x, w, &self.strides, &self.pads, &self.dilations, self.group)?;
        let m = w.dims[0];
        if self.group == 0 || m % self.group != 0 {
            return Err(format!(
                "{m} output channels not divisible by group {}",
                self.group
            ));
        }
        if x.dims[1] != w.dims[1] * self.group {
            return Err(format!(
                "input has {} channels, weight {} expects {} x group {}",
                x.dims[1], w, w.dims[1], self.group
            ));
        }
        check_bias(b, m)?;
        if let Some(act) = &self.act {
            act.infer(&[x])?;
        }
        let mut dims = vec![x.dims[0], m];
        for i in 0..n {
            let span = self.dilations[i]
                .checked_mul(w.dims[2 + i].saturating_sub(1))
                .and_then(|s| s.checked_add(1))
                .ok_or("dilation out of range")?;
            let padded = x.dims[2 + i]
                .checked_add(self.pads[i])
                .and_then(|p| p.checked_add(self.pads[n + i]))
                .ok_or("pads out of range")?;
            if padded < span {
                return Err(format!(
                    "kernel extent {span} exceeds padded input {padded} on spatial axis {i}"
                ));
            }
            dims.push((padded - span) / self.strides[i] + 1);
        }
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let out = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let (x, w) = (ins[0], ins[1]);
        let n = x.rank() - 2;
        let (batch, cin, m) = (x.dims()[0], x.dims()[1], w.dims()[0]);
        let cin_g = cin / self.group;
        let m_g = m / self.group;
        let in_sp = &x.dims()[2..];
        let out_sp = &out.dims[2..];
        let k_sp = &w.dims()[2..];
        let in_size: usize = in_sp.iter().product();
        let out_size: usize = out_sp.iter().product();
        let k_size: usize = k_sp.iter().product();
        // For every kernel offset, the (output, input) spatial position pairs
        // that fall inside the unpadded input.
        let pairs = window_pairs(
            in_sp,
            out_sp,
            k_sp,
            &self.strides,
            &self.pads[..n],
            &self.dilations,
        );
        let xv = x.to_f64();
        let wv = w.to_f64();
        let bias = ins.get(2).map(|b| b.to_f64());
        let mut y = vec![0.0f64; out.len()];
        for b in 0..batch {
            for g in 0..self.group {
                for oc in 0..m_g {
                    let o = g * m_g + oc;
                    let acc = &mut y[(b * m + o) * out_size..][..out_size];
                    for ic in 0..cin_g {
                        let c = g * cin_g + ic;
                        let xs = &xv[(b * cin + c) * in_size..][..in_size];
                        let ws = &wv[(o * cin_g + ic) * k_size..][..k_size];
                        for (k, pk) in pairs.iter().enumerate() {
                            let wk = ws[k];
                            for &(op, ip) in pk {
                                acc[op] += wk * xs[ip];
                            }
                        }
                    }
                    if let Some(bias) = &bias {
                        acc.iter_mut().for_each(|v| *v += bias[o]);
                    }
                    if let Some(act) = &self.act {
                        acc.iter_mut().for_each(|v| *v = act.apply_f64(*v));
                    }
                }
            }
        }
        Tensor::from_f64(out.dtype, out.dims, y).map_err(|e| e.to_string())
    }
}

fn conv_inputs<'a>(
    ins: &[&'a TensorType],
) -> R<(&'a TensorType, &'a TensorType, Option<&'a TensorType>)> {
    match ins {
        [x, w] => Ok((x, w, None)),
        [x, w, b] => Ok((x, w, Some(b))),
        _ => Err(format!("expects 2 or 3 inputs, got {}", ins.len())),
    }
}

fn check_bias(b: Option<&TensorType>, m: usize) -> R<()> {
    if let Some(b) = b
        && b.dims != [m]
    {
        return Err(format!("bias {b} must have shape [{m}]"));
    }
    Ok(())
}

/// Common checks for conv-like ops; returns the number of spatial dims.
fn check_geometry(
    x: &TensorType,
    w: &TensorType,
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    group: usize,
) -> R<usize> {
    if !x.dtype.is_float() {
        return Err(format!("expects float input, got {}", x.dtype));
    }
    if w.dtype != x.dtype {
        return Err(format!(
            "weight type {} differs from input {}",
            w.dtype, x.dtype
        ));
    }
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!(
            "input {x} and weight {w} must have the same rank, at least 3"
        ));
    }
    let n = x.rank() - 2;
    if strides.len() != n || dilations.len() != n || pads.len() != 2 * n {
        return Err(format!(
            "strides, dilations and pads must have {n}, {n} and {} entries",
            2 * n
        ));
    }
    if strides.contains(&0) || dilations.contains(&0) || group == 0 {
        return Err("strides, dilations and group must be positive".into());
    }
    if w.dims[2..].contains(&0) {
        return Err(format!("empty kernel {w}"));
    }
    Ok(n)
}

/// Enumerates, for each kernel offset (row-major), the pairs (output
/// position, input position) of flat spatial indices where the dilated kernel
/// tap lands inside the input; padded taps are simply absent.
pub fn window_pairs(
    in_sp: &[usize],
    out_sp: &[usize],
    k_sp: &[usize],
    strides: &[usize],
    pads_begin: &[usize],
    dilations: &[usize],
) -> Vec<Vec<(usize, usize)>> {
    let n = in_sp.len();
    let k_size: usize = k_sp.iter().product();
    let out_size: usize = out_sp.iter().product();
    let mut res = Vec::with_capacity(k_size);
    let mut kidx = vec![0usize; n];
    for _ in 0..k_size {
        let mut v = Vec::with_capacity(out_size);
        let mut oidx = vec![0usize; n];
        for op in 0..out_size {
            let mut ip = 0usize;
            let mut inside = true;
            for d in 0..n {
                let pos = (oidx[d] * strides[d] + kidx[d] * dilations[d]) as isize
                    - pads_begin[d] as isize;
                if pos < 0 || pos >= in_sp[d] as isize {
                    inside = false;
                    break;
                }
                ip = ip * in_sp[d] + pos as usize;
            }
            if inside {
                v.push((op, ip));
            }
            increment(&mut oidx, out_sp);
        }
        res.push(v);
        increment(&mut kidx, k_sp);
    }
    res
}

/// Row-major multi-index increment.
pub(crate) fn increment(idx: &mut [usize], dims: &[usize]) {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// ConvTranspose attributes. Inputs: x `[N, C, D...]`, w `[C, M/group, K...]`,
/// optional bias `[M]`. Output size per axis:
/// `stride * (D - 1) + output_padding + dilation * (K - 1) + 1 - pad_begin - pad_end`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub output_padding: Vec<usize>,
    pub group: usize,
}

impl ConvTransposeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("stride", &self.strides);
        w.usizes("pad", &self.pads);
        w.usizes("dilation", &self.dilations);
        w.usizes("output_padding", &self.output_padding);
        if self.group != 1 {
            w.usize("group", self.group);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(ConvTransposeAttrs {
            strides: r.usizes("stride")?,
            pads: r.usizes("pad")?,
            dilations: r.usizes("dilation")?,
            output_padding: r.usizes("output_padding")?,
            group: r.usize_or("group", 1)?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (x, w, b) = conv_inputs(ins)?;
        let n = check_geometry(x, w, &self.strides, &self.pads, &self.dilations, self.group)?;
        if self.output_padding.len() != n {
            return Err(format!("output_padding must have {n} entries"));
        }
        if x.dims[1] != w.dims[0] || w.dims[0] % self.group != 0 {
            return Err(format!(
                "input has {} channels, weight {w} expects {} (group {})",
                x.dims[1], w.dims[0], self.group
            ));
        }
        let m = w.dims[1] * self.group;
        check_bias(b, m)?;
        let mut dims = vec![x.dims[0], m];
        for i in 0..n {
            let full = self.strides[i]
                .checked_mul(x.dims[2 + i].max(1) - 1)
                .and_then(|f| f.checked_add(self.output_padding[i]))
                .and_then(|f| {
                    self.dilations[i]
                        .checked_mul(w.dims[2 + i].saturating_sub(1))
                        .and_then(|d| f.checked_add(d))
                })
                .and_then(|f| f.checked_add(1))
                .ok_or("strides, dilations or output_padding out of range")?;
            let cut = self.pads[i]
                .checked_add(self.pads[n + i])
                .ok_or("pads out of range")?;
            if full <= cut {
                return Err(format!("pads remove the whole output on spatial axis {i}"));
            }
            dims.push(full - cut);
        }
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let out = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let (x, w) = (ins[0], ins[1]);
        let n = x.rank() - 2;
        let (batch, cin, m) = (x.dims()[0], x.dims()[1], out.dims[1]);
        let cin_g = cin / self.group;
        let m_g = m / self.group;
        let in_sp = &x.dims()[2..];
        let out_sp = &out.dims[2..];
        let k_sp = &w.dims()[2..];
        let in_size: usize = in_sp.iter().product();
        let out_size: usize = out_sp.iter().product();
        let k_size: usize = k_sp.iter().product();
        // Scatter form: input position i and kernel tap k write output
        // position i * stride + k * dilation - pad_begin.
        let mut pairs: Vec<Vec<(usize, usize)>> = Vec::with_capacity(k_size);
        let mut kidx = vec![0usize; n];
        // No input element at all (a zero batch or channel count): the taps
        // meet nothing, and the output is the bias.
        let taps = if x.is_empty() || w.is_empty() {
            0
        } else {
            k_size
        };
        for _ in 0..taps {
            let mut v = Vec::new();
            let mut iidx = vec![0usize; n];
            for ip in 0..in_size {
                let mut op = 0usize;
                let mut inside = true;
                for d in 0..n {
                    let pos = (iidx[d] * self.strides[d] + kidx[d] * self.dilations[d]) as isize
                        - self.pads[d] as isize;
                    if pos < 0 || pos >= out_sp[d] as isize {
                        inside = false;
                        break;
                    }
                    op = op * out_sp[d] + pos as usize;
                }
                if inside {
                    v.push((op, ip));
                }
                increment(&mut iidx, in_sp);
            }
            pairs.push(v);
            increment(&mut kidx, k_sp);
        }
        let xv = x.to_f64();
        let wv = w.to_f64();
        let bias = ins.get(2).map(|b| b.to_f64());
        let mut y = vec![0.0f64; out.len()];
        for b in 0..batch {
            for g in 0..self.group {
                for oc in 0..m_g {
                    let o = g * m_g + oc;
                    let acc = &mut y[(b * m + o) * out_size..][..out_size];
                    for ic in 0..cin_g {
                        let c = g * cin_g + ic;
                        let xs = &xv[(b * cin + c) * in_size..][..in_size];
                        let ws = &wv[(c * m_g + oc) * k_size..][..k_size];
                        for (k, pk) in pairs.iter().enumerate() {
                            let wk = ws[k];
                            for &(op, ip) in pk {
                                acc[op] += wk * xs[ip];
                            }
                        }
                    }
                    if let Some(bias) = &bias {
                        acc.iter_mut().for_each(|v| *v += bias[o]);
                    }
                }
            }
        }
        Tensor::from_f64(out.dtype, out.dims, y).map_err(|e| e.to_string())
    }
}
