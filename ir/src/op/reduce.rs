//! Reductions over a set of axes (sum, mean, max, ...) and ArgMax / ArgMin.

use super::attr::{AttrReader, AttrWriter};
use crate::dtype::{DType, TensorType};
use crate::tensor::{Data, Tensor};

type R<T> = Result<T, String>;

/// Reduction kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl ReduceKind {
    pub const ALL: [ReduceKind; 10] = [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L1,
        ReduceKind::L2,
        ReduceKind::LogSum,
        ReduceKind::LogSumExp,
        ReduceKind::SumSquare,
    ];

    /// Text-format op name.
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
            ReduceKind::Prod => "reduce_prod",
            ReduceKind::L1 => "reduce_l1",
            ReduceKind::L2 => "reduce_l2",
            ReduceKind::LogSum => "reduce_log_sum",
            ReduceKind::LogSumExp => "reduce_log_sum_exp",
            ReduceKind::SumSquare => "reduce_sum_square",
        }
    }

    pub fn from_name(s: &str) -> Option<ReduceKind> {
        ReduceKind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn accepts_int(self) -> bool {
        matches!(
            self,
            ReduceKind::Sum
                | ReduceKind::Max
                | ReduceKind::Min
                | ReduceKind::Prod
                | ReduceKind::L1
                | ReduceKind::SumSquare
                | ReduceKind::Mean
        )
    }
}

/// Reduce over `axes` (sorted, unique); `keepdims` keeps them as size 1.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceAttrs {
    pub kind: ReduceKind,
    pub axes: Vec<usize>,
    pub keepdims: bool,
}

impl ReduceAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usizes("axes", &self.axes);
        w.bool("keepdims", self.keepdims);
    }

    pub fn read(r: &mut AttrReader, kind: ReduceKind) -> R<Self> {
        Ok(ReduceAttrs {
            kind,
            axes: r.usizes("axes")?,
            keepdims: r.bool_or("keepdims", true)?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if x.dtype == DType::Bool || (x.dtype.is_int() && !self.kind.accepts_int()) {
            return Err(format!("unsupported input type {}", x.dtype));
        }
        if self.axes.windows(2).any(|w| w[0] >= w[1]) || self.axes.iter().any(|&a| a >= x.rank()) {
            return Err(format!("axes {:?} invalid for {x}", self.axes));
        }
        let mut dims = vec![];
        for (i, &d) in x.dims.iter().enumerate() {
            if self.axes.contains(&i) {
                if self.keepdims {
                    dims.push(1);
                }
            } else {
                dims.push(d);
            }
        }
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let groups = group_indices(x.dims(), &self.axes);
        let int = x.dtype().is_int();
        let xv = x.to_f64();
        let count = |g: &Vec<usize>| g.len() as f64;
        let vals: Vec<f64> = groups
            .iter()
            .map(|g| {
                let it = g.iter().map(|&i| xv[i]);
                match self.kind {
                    ReduceKind::Sum => it.sum(),
                    ReduceKind::Mean => {
                        let s: f64 = it.sum::<f64>() / count(g);
                        if int { s.trunc() } else { s }
                    }
                    ReduceKind::Max => it.fold(f64::NEG_INFINITY, |a, b| {
                        if a.is_nan() || b.is_nan() {
                            f64::NAN
                        } else {
                            a.max(b)
                        }
                    }),
                    ReduceKind::Min => it.fold(f64::INFINITY, |a, b| {
                        if a.is_nan() || b.is_nan() {
                            f64::NAN
                        } else {
                            a.min(b)
                        }
                    }),
                    ReduceKind::Prod => it.product(),
                    ReduceKind::L1 => it.map(f64::abs).sum(),
                    ReduceKind::L2 => it.map(|v| v * v).sum::<f64>().sqrt(),
                    ReduceKind::LogSum => it.sum::<f64>().ln(),
                    ReduceKind::LogSumExp => {
                        let v: Vec<f64> = it.collect();
                        let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        if m.is_infinite() {
                            v.iter().map(|x| x.exp()).sum::<f64>().ln()
                        } else {
                            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
                        }
                    }
                    ReduceKind::SumSquare => it.map(|v| v * v).sum(),
                }
            })
            .collect();
        let data = if int
            && matches!(self.kind, ReduceKind::Max | ReduceKind::Min)
            && groups.iter().any(|g| g.is_empty())
        {
            return Err("max/min over an empty integer axis".into());
        } else {
            Data::from_f64(out.dtype, vals)
        };
        Tensor::new(out.dims, data).map_err(|e| e.to_string())
    }
}

/// For every output element of a reduction over `axes`, the flat input
/// indices that reduce into it (in output row-major order).
pub fn group_indices(dims: &[usize], axes: &[usize]) -> Vec<Vec<usize>> {
    let kept: Vec<usize> = (0..dims.len()).filter(|a| !axes.contains(a)).collect();
    let n_out: usize = kept.iter().map(|&a| dims[a]).product();
    let mut groups = vec![Vec::new(); n_out];
    let total: usize = dims.iter().product();
    let mut idx = vec![0usize; dims.len()];
    for flat in 0..total {
        let mut o = 0;
        for &a in &kept {
            o = o * dims[a] + idx[a];
        }
        groups[o].push(flat);
        super::conv::increment(&mut idx, dims);
    }
    groups
}

/// ArgMax / ArgMin along one axis, producing i64 indices.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReduceAttrs {
    pub max: bool,
    pub axis: usize,
    pub keepdims: bool,
    pub select_last: bool,
}

impl ArgReduceAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
        w.bool("keepdims", self.keepdims);
        if self.select_last {
            w.bool("select_last", true);
        }
    }

    pub fn read(r: &mut AttrReader, max: bool) -> R<Self> {
        Ok(ArgReduceAttrs {
            max,
            axis: r.usize("axis")?,
            keepdims: r.bool_or("keepdims", true)?,
            select_last: r.bool_or("select_last", false)?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        if self.axis >= x.rank() || x.dims[self.axis] == 0 {
            return Err(format!("axis {} invalid for {x}", self.axis));
        }
        if x.dtype == DType::Bool {
            return Err("bool input".into());
        }
        let mut dims = x.dims.clone();
        if self.keepdims {
            dims[self.axis] = 1;
        } else {
            dims.remove(self.axis);
        }
        Ok(vec![TensorType::new(DType::I64, dims)])
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        let groups = group_indices(x.dims(), &[self.axis]);
        let xv = x.to_f64();
        let res: Vec<i64> = groups
            .iter()
            .map(|g| {
                let mut best = 0;
                for (k, &i) in g.iter().enumerate() {
                    let (v, b) = (xv[i], xv[g[best]]);
                    let better = if self.max { v > b } else { v < b };
                    if better || (self.select_last && v == b) {
                        best = k;
                    }
                }
                best as i64
            })
            .collect();
        Tensor::from_i64s(out.dims, res).map_err(|e| e.to_string())
    }
}
