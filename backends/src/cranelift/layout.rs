//! Data movement steps: copies, Transpose, Concat, Split, Slice, Expand,
//! Tile (strided copies through [`super::map::copy`]), Pad and Gather
//! (index tables and checked indices), and Resize (tap tables computed at
//! generation time from the interpreter's own kernel).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{ConstantData, Immediate, InstBuilder, Value, types};
use nnc_ir::op::{
    ConcatAttrs, CoordMode, GatherAttrs, PadAttrs, PadMode, ResizeAttrs, SliceAttrs, SplitAttrs,
    TileAttrs, TransposeAttrs,
};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::kb::{F32X4, Kb};
use super::map::{View, copy};
use super::scalar::{cl, load_at, store_at, to_float, to_i64};
use crate::error::Result;
use crate::tables::{pad_source_maps, resize_taps};

fn st(dims: &[usize]) -> Vec<i64> {
    strides(dims).iter().map(|&s| s as i64).collect()
}

pub fn identity(kb: &mut Kb, y: &TensorType, a: &Args) -> Result<()> {
    let x = a.x(kb, 0)?;
    let n = [y.len()];
    copy(
        kb,
        &n,
        &View::dense(a.outs[0], y.dtype, &n),
        &View::dense(x, y.dtype, &n),
    )
}

pub fn transpose(
    kb: &mut Kb,
    t: &TransposeAttrs,
    x: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    if let Some(ch) = byte_deinterleave(t, x, y) {
        let n = y.len() / ch;
        let src = a.x(kb, 0)?;
        return deinterleave_bytes(kb, ch, n, src, a.outs[0]);
    }
    let xs = st(&x.dims);
    let inp = View {
        base: a.x(kb, 0)?,
        dtype: x.dtype,
        off: 0,
        strides: t.perm.iter().map(|&p| xs[p]).collect(),
    };
    let out = View::dense(a.outs[0], y.dtype, &y.dims);
    copy(kb, &y.dims, &out, &inp)
}

/// The channel count when a transpose of 1-byte elements is, after
/// merging dims, `out[c][p] = in[p][c]` with 2 to 4 channels (an image
/// input going channels-first).
fn byte_deinterleave(t: &TransposeAttrs, x: &TensorType, y: &TensorType) -> Option<usize> {
    if x.dtype.size() != 1 {
        return None;
    }
    let xs = st(&x.dims);
    let ins: Vec<i64> = t.perm.iter().map(|&p| xs[p]).collect();
    let (dims, s) = nnc_ir::program::geometry::merge_dims(&y.dims, &[st(&y.dims), ins]);
    match dims[..] {
        [ch, n]
            if (2..=4).contains(&ch)
                && n >= 16
                && s[0] == [n as i64, 1]
                && s[1] == [1, ch as i64] =>
        {
            Some(ch)
        }
        _ => None,
    }
}

/// `out[c][p] = in[p][c]` for `ch` (2 to 4) channels of bytes: sixteen
/// positions at a time, each channel gathered from the `ch` loaded
/// vectors by byte shuffles; the last positions one by one.
fn deinterleave_bytes(kb: &mut Kb, ch: usize, n: usize, src: Value, dst: Value) -> Result<()> {
    let blocks = n / 16;
    // Per channel, the shuffle masks that gather it: from vectors 0 and 1,
    // then vector k merged into the lanes it holds.
    let masks: Vec<Vec<Immediate>> = (0..ch)
        .map(|c| {
            let src_of = |j: usize| j * ch + c;
            let first: Vec<u8> = (0..16)
                .map(|j| {
                    let e = src_of(j);
                    if e < 32 { e as u8 } else { 0 }
                })
                .collect();
            let mut ms = vec![kb.b.func.dfg.immediates.push(ConstantData::from(first))];
            for k in 2..ch {
                let m: Vec<u8> = (0..16)
                    .map(|j| {
                        let e = src_of(j);
                        if e / 16 == k {
                            (16 + e % 16) as u8
                        } else {
                            j as u8
                        }
                    })
                    .collect();
                ms.push(kb.b.func.dfg.immediates.push(ConstantData::from(m)));
            }
            ms
        })
        .collect();
    let plane = n as i64;
    kb.for_range(0, blocks as i64, 1, |kb, i| {
        let s = kb.at(src, i, (16 * ch) as i64);
        let d = kb.at(dst, i, 16);
        let v: Vec<Value> = (0..ch)
            .map(|k| kb.load(types::I8X16, s, (16 * k) as i64))
            .collect();
        for (c, ms) in masks.iter().enumerate() {
            let mut o = kb.b.ins().shuffle(v[0], v[1], ms[0]);
            for (k, &m) in ms.iter().enumerate().skip(1) {
                o = kb.b.ins().shuffle(o, v[k + 1], m);
            }
            kb.store(o, d, c as i64 * plane);
        }
        Ok(())
    })?;
    for p in blocks * 16..n {
        for c in 0..ch {
            let e = kb.load(types::I8, src, (p * ch + c) as i64);
            kb.store(e, dst, c as i64 * plane + p as i64);
        }
    }
    Ok(())
}

/// Channels-last to channels-first: `out[c][p] = in[p][c]` over the
/// merged positions, for `ch` (2 to 4) channels of 4-byte elements.
pub fn deinterleave_step(kb: &mut Kb, ch: usize, y: &TensorType, a: &Args) -> Result<()> {
    let n = y.len() / ch.max(1);
    let src = a.x(kb, 0)?;
    deinterleave(kb, ch, n, src, a.outs[0])
}

/// `out[c][p] = in[p][c]` for `ch` (2 to 4) channels of 4-byte elements:
/// four positions at a time, `ch` vector loads become `ch` channel vectors
/// through lane shuffles.
fn deinterleave(kb: &mut Kb, ch: usize, n: usize, src: Value, dst: Value) -> Result<()> {
    use super::depthwise::{shuffle4, transpose4};
    let plane = (n * 4) as i64;
    let blocks = n / 4;
    kb.for_range(0, blocks as i64, 1, |kb, i| {
        let s = kb.at(src, i, (16 * ch) as i64);
        let d = kb.at(dst, i, 16);
        let v: Vec<Value> = (0..ch)
            .map(|k| kb.load(F32X4, s, (16 * k) as i64))
            .collect();
        let outs: Vec<Value> = match ch {
            2 => vec![
                shuffle4(kb, v[0], v[1], [0, 2, 4, 6]),
                shuffle4(kb, v[0], v[1], [1, 3, 5, 7]),
            ],
            3 => {
                // [r0 g0 b0 r1] [g1 b1 r2 g2] [b2 r3 g3 b3]
                let r = shuffle4(kb, v[0], v[1], [0, 3, 6, 7]);
                let g = shuffle4(kb, v[0], v[1], [1, 4, 7, 7]);
                let b = shuffle4(kb, v[0], v[1], [2, 5, 5, 5]);
                vec![
                    shuffle4(kb, r, v[2], [0, 1, 2, 5]),
                    shuffle4(kb, g, v[2], [0, 1, 2, 6]),
                    shuffle4(kb, b, v[2], [0, 1, 4, 7]),
                ]
            }
            _ => transpose4(kb, [v[0], v[1], v[2], v[3]]).to_vec(),
        };
        for (c, o) in outs.into_iter().enumerate() {
            kb.store(o, d, c as i64 * plane);
        }
        Ok(())
    })?;
    for p in blocks * 4..n {
        for c in 0..ch {
            let e = kb.load(types::F32, src, ((p * ch + c) * 4) as i64);
            kb.store(e, dst, c as i64 * plane + (p * 4) as i64);
        }
    }
    Ok(())
}

pub fn concat(
    kb: &mut Kb,
    c: &ConcatAttrs,
    ins: &[&TensorType],
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let ys = st(&y.dims);
    let mut off = 0i64;
    for (k, t) in ins.iter().enumerate() {
        let out = View {
            base: a.outs[0],
            dtype: y.dtype,
            off: off * ys[c.axis],
            strides: ys.clone(),
        };
        let x = a.x(kb, k)?;
        copy(kb, &t.dims, &out, &View::dense(x, t.dtype, &t.dims))?;
        off += t.dims[c.axis] as i64;
    }
    Ok(())
}

pub fn split(
    kb: &mut Kb,
    s: &SplitAttrs,
    x: &TensorType,
    outs: &[TensorType],
    a: &Args,
) -> Result<()> {
    let xs = st(&x.dims);
    let xb = a.x(kb, 0)?;
    let mut off = 0i64;
    for (k, t) in outs.iter().enumerate() {
        let inp = View {
            base: xb,
            dtype: x.dtype,
            off: off * xs[s.axis],
            strides: xs.clone(),
        };
        copy(kb, &t.dims, &View::dense(a.outs[k], t.dtype, &t.dims), &inp)?;
        off += t.dims[s.axis] as i64;
    }
    Ok(())
}

pub fn slice(kb: &mut Kb, s: &SliceAttrs, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    let xs = st(&x.dims);
    let inp = View {
        base: a.x(kb, 0)?,
        dtype: x.dtype,
        off: s.starts.iter().zip(&xs).map(|(s, t)| s * t).sum(),
        strides: s.steps.iter().zip(&xs).map(|(s, t)| s * t).collect(),
    };
    copy(kb, &y.dims, &View::dense(a.outs[0], y.dtype, &y.dims), &inp)
}

pub fn expand(kb: &mut Kb, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    let inp = View::broadcast(a.x(kb, 0)?, x.dtype, &x.dims, &y.dims);
    copy(kb, &y.dims, &View::dense(a.outs[0], y.dtype, &y.dims), &inp)
}

/// Tile: each output dim splits into (repeat, source index).
pub fn tile(kb: &mut Kb, t: &TileAttrs, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    let xs = st(&x.dims);
    let ys = st(&y.dims);
    let (mut dims, mut os, mut is) = (vec![], vec![], vec![]);
    for d in 0..x.rank() {
        dims.push(t.repeats[d]);
        os.push(ys[d] * x.dims[d] as i64);
        is.push(0);
        dims.push(x.dims[d]);
        os.push(ys[d]);
        is.push(xs[d]);
    }
    let out = View {
        base: a.outs[0],
        dtype: y.dtype,
        off: 0,
        strides: os,
    };
    let inp = View {
        base: a.x(kb, 0)?,
        dtype: x.dtype,
        off: 0,
        strides: is,
    };
    copy(kb, &dims, &out, &inp)
}

/// Pad: constant fill everywhere, then the interior as a strided copy; the
/// edge, reflect and wrap modes gather through per-axis source tables.
pub fn pad(kb: &mut Kb, p: &PadAttrs, x: &TensorType, y: &TensorType, a: &Args) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    let d = y.dtype;
    let xb = a.x(kb, 0)?;
    let yb = a.outs[0];
    let n = x.rank();
    if n == 0 {
        return identity(kb, y, a);
    }
    if p.mode == PadMode::Constant {
        let fill = match d {
            DType::F32 | DType::F64 => kb.cf(cl(d), p.value),
            _ => kb.cint(cl(d), p.value as i64),
        };
        kb.for_range(0, y.len() as i64, 1, |kb, i| {
            store_at(kb, d, yb, i, fill);
            Ok(())
        })?;
        // Interior: output index o = s + pad where the source s is in range
        // (negative pads crop the source).
        let ys = st(&y.dims);
        let xs = st(&x.dims);
        let mut dims = vec![];
        let mut ooff = 0i64;
        let mut ioff = 0i64;
        for ax in 0..n {
            let pb = p.pads[ax];
            let s0 = (-pb).max(0);
            let s1 = (x.dims[ax] as i64).min(y.dims[ax] as i64 - pb);
            if s1 <= s0 {
                return Ok(());
            }
            dims.push((s1 - s0) as usize);
            ioff += s0 * xs[ax];
            ooff += (s0 + pb) * ys[ax];
        }
        let out = View {
            base: yb,
            dtype: d,
            off: ooff,
            strides: ys,
        };
        let inp = View {
            base: xb,
            dtype: d,
            off: ioff,
            strides: xs,
        };
        return copy(kb, &dims, &out, &inp);
    }
    let maps = pad_source_maps(p, x, y);
    let xs = st(&x.dims);
    let ys = st(&y.dims);
    let mut tabs = Vec::with_capacity(n);
    for (ax, m) in maps.iter().enumerate() {
        // Byte offsets of the source row for each output index.
        let v: Vec<i64> = m.iter().map(|&s| s * xs[ax] * d.size() as i64).collect();
        tabs.push(kb.table_i64(&v)?);
    }
    pad_gather(kb, &y.dims, &ys, &tabs, 0, xb, yb, d)
}

fn pad_gather(
    kb: &mut Kb,
    dims: &[usize],
    ys: &[i64],
    tabs: &[Value],
    ax: usize,
    src: Value,
    dst: Value,
    d: DType,
) -> Result<()> {
    kb.for_range(0, dims[ax] as i64, 1, |kb, i| {
        let ta = kb.at(tabs[ax], i, 8);
        let off = kb.load(types::I64, ta, 0);
        let s = kb.b.ins().iadd(src, off);
        let o = kb.at(dst, i, ys[ax] * d.size() as i64);
        if ax + 1 == dims.len() {
            let v = kb.load(cl(d), s, 0);
            kb.store(v, o, 0);
            Ok(())
        } else {
            pad_gather(kb, dims, ys, tabs, ax + 1, s, o, d)
        }
    })
}

/// Gather along an axis; an out-of-range index makes the step return 1.
pub fn gather(
    kb: &mut Kb,
    g: &GatherAttrs,
    x: &TensorType,
    idx: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    let d = x.dims[g.axis] as i64;
    let outer: usize = x.dims[..g.axis].iter().product();
    let inner: usize = x.dims[g.axis + 1..].iter().product();
    let ni = idx.len() as i64;
    let (xb, ib, yb) = (a.x(kb, 0)?, a.x(kb, 1)?, a.outs[0]);
    let es = x.dtype.size() as i64;
    let row = inner as i64 * es;
    kb.for_range(0, outer as i64, 1, |kb, o| {
        let xo = kb.at(xb, o, d * row);
        let yo = kb.at(yb, o, ni * row);
        kb.for_range(0, ni, 1, |kb, q| {
            let j = load_at(kb, idx.dtype, ib, q);
            let j = to_i64(kb, j, idx.dtype);
            let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, j, 0);
            let jw = kb.b.ins().iadd_imm_s(j, d);
            let j = kb.b.ins().select(neg, jw, j);
            let bad =
                kb.b.ins()
                    .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, j, d);
            kb.fail_if(bad, 1);
            let src = kb.at(xo, j, row);
            let dst = kb.at(yo, q, row);
            let n = [inner];
            copy(
                kb,
                &n,
                &View::dense(dst, x.dtype, &n),
                &View::dense(src, x.dtype, &n),
            )
        })
    })
}

/// Resize: per axis and output coordinate, a constant list of source taps.
/// The nest walks output coordinates; each axis's taps come from tables
/// `(byte offset, weight)` padded to the axis's largest tap count.
pub fn resize(
    kb: &mut Kb,
    r: &ResizeAttrs,
    x: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    let n = x.rank();
    let d = y.dtype;
    let xs = st(&x.dims);
    let ys = st(&y.dims);
    let taps = resize_taps(r, x, y);
    let fill = r.coord == CoordMode::TfCropAndResize;
    let mut tabs = Vec::with_capacity(n);
    for (ax, t) in taps.iter().enumerate() {
        let tn = t.iter().map(|v| v.len()).max().unwrap_or(1).max(1);
        let mut offs = Vec::new();
        let mut wts = Vec::new();
        let mut cnt = Vec::new();
        for row in t {
            cnt.push(row.len() as i64);
            for j in 0..tn {
                let (k, w) = row.get(j).copied().unwrap_or((0, 0.0));
                offs.push(k as i64 * xs[ax] * d.size() as i64);
                wts.push(w);
            }
        }
        let o = kb.table_i64(&offs)?;
        let w = kb.table_f64(&wts)?;
        let c = kb.table_i64(&cnt)?;
        tabs.push((o, w, c, tn as i64));
    }
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let ext = kb.cf(types::F64, r.extrapolation as f64);
    // Outer loops over output coordinates, carrying the per-axis tap row.
    resize_out(kb, y, &ys, &tabs, 0, yb, &mut Vec::new(), xb, d, fill, ext)
}

#[allow(clippy::too_many_arguments)]
fn resize_out(
    kb: &mut Kb,
    y: &TensorType,
    ys: &[i64],
    tabs: &[(Value, Value, Value, i64)],
    ax: usize,
    dst: Value,
    rows: &mut Vec<Value>,
    xb: Value,
    d: DType,
    fill: bool,
    ext: Value,
) -> Result<()> {
    let n = y.rank();
    if ax == n {
        let zero = kb.cf(types::F64, 0.0);
        let acc = kb.var(types::F64, zero);
        // Sum over the tap product, axis by axis.
        let rows = rows.clone();
        let one = kb.cf(types::F64, 1.0);
        resize_taps_nest(kb, tabs, &rows, 0, xb, one, acc, d)?;
        let mut v = kb.get(acc);
        if fill {
            // Any axis without taps extrapolates.
            let mut none = kb.cint(types::I8, 0);
            for (k, &(_, _, c, _)) in tabs.iter().enumerate() {
                let ca = kb.at(c, rows[k], 8);
                let cv = kb.load(types::I64, ca, 0);
                let z = kb.b.ins().icmp_imm_s(IntCC::Equal, cv, 0);
                none = kb.b.ins().bor(none, z);
            }
            v = kb.b.ins().select(none, ext, v);
        }
        let out = if d.is_float() {
            to_float(kb, v, DType::F64, cl(d))
        } else {
            let (lo, hi) = d.int_range().expect("integer");
            let i = super::scalar::f2i_range(kb, v, lo, hi);
            super::scalar::from_i64(kb, i, d)
        };
        kb.store(out, dst, 0);
        return Ok(());
    }
    kb.for_range(0, y.dims[ax] as i64, 1, |kb, o| {
        let p = kb.at(dst, o, ys[ax] * d.size() as i64);
        rows.push(o);
        let r = resize_out(kb, y, ys, tabs, ax + 1, p, rows, xb, d, fill, ext);
        rows.pop();
        r
    })
}

#[allow(clippy::too_many_arguments)]
fn resize_taps_nest(
    kb: &mut Kb,
    tabs: &[(Value, Value, Value, i64)],
    rows: &[Value],
    ax: usize,
    src: Value,
    wprod: Value,
    acc: cranelift_frontend::Variable,
    d: DType,
) -> Result<()> {
    if ax == tabs.len() {
        let v = kb.load(cl(d), src, 0);
        let v = to_float(kb, v, d, types::F64);
        let t = kb.b.ins().fmul(wprod, v);
        let a = kb.get(acc);
        let s = kb.b.ins().fadd(a, t);
        kb.set(acc, s);
        return Ok(());
    }
    let (offs, wts, cnt, tn) = tabs[ax];
    let ca = kb.at(cnt, rows[ax], 8);
    let c = kb.load(types::I64, ca, 0);
    let zero = kb.ci(0);
    let row0 = kb.b.ins().imul_imm_s(rows[ax], tn);
    kb.for_dyn(zero, c, |kb, t| {
        let j = kb.b.ins().iadd(row0, t);
        let oa = kb.at(offs, j, 8);
        let off = kb.load(types::I64, oa, 0);
        let wa = kb.at(wts, j, 8);
        let w = kb.load(types::F64, wa, 0);
        let s = kb.b.ins().iadd(src, off);
        let wp = kb.b.ins().fmul(wprod, w);
        resize_taps_nest(kb, tabs, rows, ax + 1, s, wp, acc, d)
    })
}

/// Rows of every channel plane (see [`nnc_ir::program::RowCopy`]) for the
/// loop iteration in `a.it`; source rows outside the source read as the
/// fill value.
pub fn row_copy(
    kb: &mut Kb,
    r: &nnc_ir::program::RowCopy,
    x: &TensorType,
    y: &TensorType,
    a: &Args,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let c = x.dims[1] as i64;
    let (hs, hd) = (x.dims[2] as i64, y.dims[2] as i64);
    // Source and destination row sizes, and the run of each row copied.
    let rs = x.dims[3..].iter().product::<usize>() as i64;
    let rd = y.dims[3..].iter().product::<usize>() as i64;
    let (cs, cd, n) = r
        .cols
        .map_or((0, 0, rs), |k| (k.src as i64, k.dst as i64, k.n as i64));
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let it = a.it;
    let fill = match d {
        DType::F32 => kb.cf32(r.fill as f32),
        DType::F64 => kb.cf(types::F64, r.fill),
        _ => kb.cint(cl(d), r.fill as i64),
    };
    kb.for_range(0, r.rows as i64, 1, |kb, j| {
        let s0 = kb.b.ins().imul_imm_s(it, r.src_step);
        let s0 = kb.b.ins().iadd(s0, j);
        let sr = kb.b.ins().iadd_imm_s(s0, r.src_row);
        let d0 = kb.b.ins().imul_imm_s(it, r.dst_step as i64);
        let d0 = kb.b.ins().iadd(d0, j);
        let dr = kb.b.ins().iadd_imm_s(d0, r.dst_row as i64);
        let below = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, sr, 0);
        let above =
            kb.b.ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, sr, hs);
        let out = kb.b.ins().bor(below, above);
        // In range: copy rows; outside: fill (sr clamped so the address
        // stays inside the source either way).
        let zero = kb.ci(0);
        let srs = kb.b.ins().select(out, zero, sr);
        kb.for_range(0, c, 1, |kb, ch| {
            let dp = kb.b.ins().imul_imm_s(ch, hd);
            let dp = kb.b.ins().iadd(dp, dr);
            let dbase = kb.at(yb, dp, rd * es);
            let sp = kb.b.ins().imul_imm_s(ch, hs);
            let sp = kb.b.ins().iadd(sp, srs);
            let sbase = kb.at(xb, sp, rs * es);
            kb.for_range(0, n, 1, |kb, k| {
                let sa = kb.at(sbase, k, es);
                let v = kb.load(cl(d), sa, cs * es);
                let v = kb.b.ins().select(out, fill, v);
                let da = kb.at(dbase, k, es);
                kb.store(v, da, cd * es);
                Ok(())
            })
        })
    })
}
