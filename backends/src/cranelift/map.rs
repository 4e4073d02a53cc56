//! Strided loop nests: the engine behind every elementwise op (with numpy
//! broadcasting) and every data movement op (transpose, slice, concat,
//! split, expand, tile, copies). Unit dims are dropped and dims that are
//! contiguous in every operand merged, so most steps become one flat loop;
//! the innermost loop runs four lanes at a time when every operand is
//! contiguous (or broadcast) there, with a scalar tail.

use cranelift_codegen::ir::{Value, types};
use nnc_ir::DType;
use nnc_ir::dtype::strides;

use super::kb::{F32X4, Kb};
use super::scalar::cl;
use crate::error::Result;

/// A strided view: element `(i0, i1, ...)` of the loop nest is at
/// `base + (off + i0 * strides[0] + ...) * size` (strides in elements,
/// possibly zero or negative).
#[derive(Clone, Debug)]
pub struct View {
    pub base: Value,
    pub dtype: DType,
    pub off: i64,
    pub strides: Vec<i64>,
}

impl View {
    /// Row-major contiguous view of a tensor of `dims`.
    pub fn dense(base: Value, dtype: DType, dims: &[usize]) -> Self {
        View {
            base,
            dtype,
            off: 0,
            strides: strides(dims).iter().map(|&s| s as i64).collect(),
        }
    }

    /// A view of an operand whose dims are right-aligned to `out_dims`,
    /// with stride 0 along broadcast dims.
    pub fn broadcast(base: Value, dtype: DType, dims: &[usize], out_dims: &[usize]) -> Self {
        let r = out_dims.len();
        let mut d = vec![1; r.saturating_sub(dims.len())];
        d.extend_from_slice(dims);
        let st = strides(&d);
        View {
            base,
            dtype,
            off: 0,
            strides: d
                .iter()
                .zip(out_dims)
                .zip(st)
                .map(|((&a, &o), s)| if a == 1 && o != 1 { 0 } else { s as i64 })
                .collect(),
        }
    }

    /// Per-channel parameters of length `len` laid along `axis` of `out_dims`.
    pub fn along(base: Value, dtype: DType, len: usize, axis: usize, out_dims: &[usize]) -> Self {
        let mut d = vec![1; out_dims.len()];
        if len != 1 && axis < d.len() {
            d[axis] = len;
        }
        View::broadcast(base, dtype, &d, out_dims)
    }

    fn size(&self) -> i64 {
        self.dtype.size() as i64
    }
}

/// How the body computes one output element.
pub type ScalarFn<'a> = dyn FnMut(&mut Kb, &[Value]) -> Result<Value> + 'a;

/// Runs `out[i] = scalar(ins[i])` over `dims`. When `vector` is given and
/// every operand is f32, contiguous or broadcast along the innermost merged
/// dim, it computes four elements at a time there.
pub fn map(
    kb: &mut Kb,
    dims: &[usize],
    out: &View,
    ins: &[View],
    scalar: &mut ScalarFn,
    mut vector: Option<&mut ScalarFn>,
) -> Result<()> {
    if dims.contains(&0) {
        return Ok(());
    }
    let mut all: Vec<View> = std::iter::once(out.clone())
        .chain(ins.iter().cloned())
        .collect();
    let st: Vec<Vec<i64>> = all.iter().map(|a| a.strides.clone()).collect();
    let (dims, st) = crate::tables::merge_dims(dims, &st);
    for (a, s) in all.iter_mut().zip(st) {
        a.strides = s;
    }
    // Fold the constant offsets into the base pointers.
    let mut bases = Vec::with_capacity(all.len());
    for a in &all {
        bases.push(kb.off(a.base, a.off * a.size()));
    }
    if dims.is_empty() {
        let vals: Vec<Value> = all[1..]
            .iter()
            .zip(&bases[1..])
            .map(|(a, &p)| kb.load(cl(a.dtype), p, 0))
            .collect();
        let r = scalar(kb, &vals)?;
        kb.store(r, bases[0], 0);
        return Ok(());
    }
    let inner = dims.len() - 1;
    let vec_ok = vector.is_some()
        && dims[inner] >= 4
        && all.iter().all(|a| a.dtype == DType::F32)
        && all[0].strides[inner] == 1
        && all[1..].iter().all(|a| matches!(a.strides[inner], 0 | 1));
    if !vec_ok {
        vector = None;
    }
    nest(kb, &dims, &all, &bases, 0, &mut |kb, ptrs| {
        inner_loop(
            kb,
            dims[inner],
            &all,
            ptrs,
            inner,
            scalar,
            vector.as_deref_mut(),
        )
    })
}

/// Loops over dims `d..inner`, advancing each operand's pointer, and calls
/// `f` with the pointers at the start of the innermost dim.
fn nest(
    kb: &mut Kb,
    dims: &[usize],
    all: &[View],
    ptrs: &[Value],
    d: usize,
    f: &mut dyn FnMut(&mut Kb, &[Value]) -> Result<()>,
) -> Result<()> {
    if d + 1 == dims.len() {
        return f(kb, ptrs);
    }
    kb.for_range(0, dims[d] as i64, 1, |kb, iv| {
        let p: Vec<Value> = all
            .iter()
            .zip(ptrs)
            .map(|(a, &p)| {
                let s = a.strides[d] * a.size();
                if s == 0 { p } else { kb.at(p, iv, s) }
            })
            .collect();
        nest(kb, dims, all, &p, d + 1, f)
    })
}

fn inner_loop(
    kb: &mut Kb,
    n: usize,
    all: &[View],
    ptrs: &[Value],
    d: usize,
    scalar: &mut ScalarFn,
    vector: Option<&mut ScalarFn>,
) -> Result<()> {
    let n = n as i64;
    // Broadcast operands are loaded once, outside the loop.
    let hoisted: Vec<Option<Value>> = all[1..]
        .iter()
        .zip(&ptrs[1..])
        .map(|(a, &p)| (a.strides[d] == 0).then(|| kb.load(cl(a.dtype), p, 0)))
        .collect();
    let mut done = 0;
    if let Some(vf) = vector {
        let vn = n / 4 * 4;
        let splats: Vec<Option<Value>> = hoisted.iter().map(|h| h.map(|v| kb.splat(v))).collect();
        kb.for_range(0, vn, 4, |kb, iv| {
            let vals: Vec<Value> = all[1..]
                .iter()
                .zip(&ptrs[1..])
                .zip(&splats)
                .map(|((_, &p), s)| match s {
                    Some(v) => *v,
                    None => {
                        let a = kb.at(p, iv, 4);
                        kb.load(F32X4, a, 0)
                    }
                })
                .collect();
            let r = vf(kb, &vals)?;
            let a = kb.at(ptrs[0], iv, 4);
            kb.store(r, a, 0);
            Ok(())
        })?;
        done = vn;
    }
    kb.for_range(done, n, 1, |kb, iv| {
        let mut vals = Vec::with_capacity(all.len() - 1);
        for ((a, &p), h) in all[1..].iter().zip(&ptrs[1..]).zip(&hoisted) {
            vals.push(match h {
                Some(v) => *v,
                None => {
                    let addr = kb.at(p, iv, a.strides[d] * a.size());
                    kb.load(cl(a.dtype), addr, 0)
                }
            });
        }
        let r = scalar(kb, &vals)?;
        let addr = kb.at(ptrs[0], iv, all[0].strides[d] * all[0].size());
        kb.store(r, addr, 0);
        Ok(())
    })
}

/// Copies `in` to `out` through strided views over `dims` (any dtype).
/// Runs that are contiguous in both become `memcpy` calls when long.
pub fn copy(kb: &mut Kb, dims: &[usize], out: &View, inp: &View) -> Result<()> {
    // Same-size element types copy as raw bits; f32-sized ones in vectors.
    let bits = match out.dtype.size() {
        4 => DType::F32,
        _ => out.dtype,
    };
    let o = View {
        dtype: bits,
        ..out.clone()
    };
    let i = View {
        dtype: bits,
        ..inp.clone()
    };
    let total: usize = dims.iter().product();
    let contiguous = total > 0 && is_dense(dims, &o) && is_dense(dims, &i);
    if contiguous {
        let bytes = (total * out.dtype.size()) as i64;
        let dst = kb.off(o.base, o.off * o.size());
        let src = kb.off(i.base, i.off * i.size());
        if bytes >= 256 {
            let n = kb.ci(bytes);
            kb.call(
                "memmove",
                &[types::I64; 3],
                Some(types::I64),
                &[dst, src, n],
            )?;
            return Ok(());
        }
    }
    let vec: &mut ScalarFn = &mut |_, v: &[Value]| Ok(v[0]);
    map(kb, dims, &o, &[i], &mut |_, v| Ok(v[0]), Some(vec))
}

fn is_dense(dims: &[usize], v: &View) -> bool {
    let st = strides(dims);
    dims.iter()
        .zip(st)
        .zip(&v.strides)
        .all(|((&d, s), &vs)| d == 1 || vs == s as i64)
}
