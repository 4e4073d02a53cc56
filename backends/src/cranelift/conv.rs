//! The direct convolution kernel of any spatial rank (groups, dilation,
//! padding through per-tap valid ranges, the epilogue applied per output
//! plane) and the transposed convolution in scatter form. Innermost loops
//! over contiguous f32 run four lanes at a time.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::op::{ConvAttrs, ConvTransposeAttrs};
use nnc_ir::{DType, TensorType, dtype::strides};

use super::Args;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use super::scalar::cl;
use crate::error::Result;
use crate::tables::{scatter_range, tap_range};

/// `dst[i * dstep] += w * src[i * sstep]` for `i` in `[lo, hi)` (dynamic
/// bounds), four lanes at a time when both are contiguous f32.
#[allow(clippy::too_many_arguments)]
fn axpy_dyn(
    kb: &mut Kb,
    d: DType,
    w: Value,
    dst: Value,
    dstep: i64,
    src: Value,
    sstep: i64,
    lo: Value,
    hi: Value,
) -> Result<()> {
    let es = d.size() as i64;
    let mut start = lo;
    if d == DType::F32 && dstep == 1 && sstep == 1 {
        let wv = kb.splat(w);
        let n = kb.b.ins().isub(hi, lo);
        let n4 = kb.b.ins().band_imm_s(n, -4);
        start = kb.b.ins().iadd(lo, n4);
        let zero = kb.ci(0);
        let quads = kb.b.ins().ushr_imm_s(n4, 2);
        kb.for_dyn(zero, quads, |kb, q| {
            let i = kb.b.ins().ishl_imm_s(q, 2);
            let i = kb.b.ins().iadd(i, lo);
            let ya = kb.at(dst, i, es);
            let xa = kb.at(src, i, es);
            let yv = kb.load(F32X4, ya, 0);
            let xv = kb.load(F32X4, xa, 0);
            let r = kb.mul_add(wv, xv, yv);
            kb.store(r, ya, 0);
            Ok(())
        })?;
    }
    kb.for_dyn(start, hi, |kb, i| {
        let ya = kb.at(dst, i, es * dstep);
        let xa = kb.at(src, i, es * sstep);
        let yv = kb.load(cl(d), ya, 0);
        let xv = kb.load(cl(d), xa, 0);
        let r = kb.mul_add(w, xv, yv);
        kb.store(r, ya, 0);
        Ok(())
    })
}

/// Fills `n` elements with the bias value or zero.
pub(super) fn fill(kb: &mut Kb, ptr: Value, n: usize, v: Value, d: DType) -> Result<()> {
    let n = n as i64;
    let mut done = 0;
    if d == DType::F32 {
        let s = kb.splat(v);
        done = n / 4 * 4;
        kb.for_range(0, done, 4, |kb, i| {
            let a = kb.at(ptr, i, 4);
            kb.store(s, a, 0);
            Ok(())
        })?;
    }
    kb.for_range(done, n, 1, |kb, i| {
        let a = kb.at(ptr, i, d.size() as i64);
        kb.store(v, a, 0);
        Ok(())
    })
}

/// Per-axis tap tables: for each kernel tap, the valid range of the
/// iterated positions, as an i64 table `[lo0, hi0, lo1, hi1, ...]`.
fn range_table(kb: &mut Kb, ranges: &[(usize, usize)]) -> Result<Value> {
    let v: Vec<i64> = ranges
        .iter()
        .flat_map(|&(l, h)| [l as i64, h as i64])
        .collect();
    kb.table_i64(&v)
}

/// Convolution (`Gather`: each output reads a window of the input) or
/// transposed convolution (`Scatter`: each input adds a window to the
/// output).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Gather,
    Scatter,
}

/// The geometry shared by both directions.
struct Geo<'a> {
    dir: Dir,
    strides: &'a [usize],
    dilations: &'a [usize],
    pads: &'a [usize],
    k_sp: &'a [usize],
    ist: Vec<usize>,
    ost: Vec<usize>,
    kst: Vec<usize>,
    /// Per spatial axis: `[lo, hi)` of the iterated positions of every tap.
    tabs: Vec<Value>,
    d: DType,
}

/// Direct convolution of any spatial rank. Per output channel: fill with
/// the bias (unless the step adds to a partial sum), accumulate every
/// (input channel, tap) over that tap's valid output range, apply the
/// epilogue.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    kb: &mut Kb,
    a: &ConvAttrs,
    x: &TensorType,
    w: &TensorType,
    y: &TensorType,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    let cg = x.dims[1] / a.group;
    let init = if epi.accumulate {
        Init::Keep
    } else {
        match epi.bias() {
            Some(k) => Init::Bias(k),
            None => Init::Zero,
        }
    };
    conv_general(
        kb,
        Dir::Gather,
        (&a.strides, &a.dilations, &a.pads),
        a.group,
        x,
        w,
        init,
        y,
        args,
        // Weights [M, C/group, K...]: row of (o, ic).
        &|kb: &mut Kb, o, _oc, _ci, ic| {
            let r = kb.b.ins().imul_imm_s(o, cg as i64);
            kb.b.ins().iadd(r, ic)
        },
    )?;
    if !epi.is_identity() {
        let osz: usize = y.dims[2..].iter().product();
        let yb = args.outs[0];
        let rows = (y.dims[0] * y.dims[1]) as i64;
        kb.for_range(0, rows, 1, |kb, r| {
            let yo = kb.at(yb, r, (osz * y.dtype.size()) as i64);
            epi.in_place(kb, yo, osz)
        })?;
    }
    Ok(())
}

/// How the direct kernel starts each output plane.
#[derive(Clone, Copy, PartialEq)]
enum Init {
    Zero,
    /// The bias in this input slot.
    Bias(usize),
    /// Keep what the output holds (a later slice of a partial sum).
    Keep,
}

/// Transposed convolution in scatter form.
pub fn conv_transpose(
    kb: &mut Kb,
    a: &ConvTransposeAttrs,
    x: &TensorType,
    w: &TensorType,
    bias: bool,
    y: &TensorType,
    args: &Args,
) -> Result<()> {
    let mg = y.dims[1] / a.group;
    conv_general(
        kb,
        Dir::Scatter,
        (&a.strides, &a.dilations, &a.pads),
        a.group,
        x,
        w,
        if bias { Init::Bias(2) } else { Init::Zero },
        y,
        args,
        // Weights [C, M/group, K...]: row of (ci, oc).
        &|kb: &mut Kb, _o, oc, ci, _ic| {
            let r = kb.b.ins().imul_imm_s(ci, mg as i64);
            kb.b.ins().iadd(r, oc)
        },
    )
}

/// The loops both directions share: image, output channel (filled with its
/// bias), input channel of its group, then every tap.
#[allow(clippy::too_many_arguments)]
fn conv_general(
    kb: &mut Kb,
    dir: Dir,
    (strides_, dilations, pads): (&[usize], &[usize], &[usize]),
    group: usize,
    x: &TensorType,
    w: &TensorType,
    init: Init,
    y: &TensorType,
    args: &Args,
    wrow: &dyn Fn(&mut Kb, Value, Value, Value, Value) -> Value,
) -> Result<()> {
    let d = y.dtype;
    let es = d.size() as i64;
    let n = x.rank() - 2;
    let (batch, c, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let (cg, mg) = (c / group, m / group);
    let (in_sp, out_sp, k_sp) = (&x.dims[2..], &y.dims[2..], &w.dims[2..]);
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let xb = args.x(kb, 0)?;
    let wb = args.x(kb, 1)?;
    let bb = match init {
        Init::Bias(k) => Some(args.x(kb, k)?),
        _ => None,
    };
    let yb = args.outs[0];
    let mut tabs = Vec::with_capacity(n);
    for dd in 0..n {
        let r: Vec<(usize, usize)> = (0..k_sp[dd])
            .map(|k| {
                let f = match dir {
                    Dir::Gather => tap_range,
                    Dir::Scatter => scatter_range,
                };
                f(
                    k,
                    strides_[dd],
                    dilations[dd],
                    pads[dd],
                    in_sp[dd],
                    out_sp[dd],
                )
            })
            .collect();
        tabs.push(range_table(kb, &r)?);
    }
    let geo = Geo {
        dir,
        strides: strides_,
        dilations,
        pads,
        k_sp,
        ist: strides(in_sp),
        ost: strides(out_sp),
        kst: strides(k_sp),
        tabs,
        d,
    };
    kb.for_range(0, batch as i64, 1, |kb, nb| {
        kb.for_range(0, m as i64, 1, |kb, o| {
            let g = kb.b.ins().udiv_imm_s(o, mg as i64);
            let oc = kb.b.ins().urem_imm_s(o, mg as i64);
            let nm = kb.b.ins().imul_imm_s(nb, m as i64);
            let row = kb.b.ins().iadd(nm, o);
            let yo = kb.at(yb, row, osz as i64 * es);
            if init != Init::Keep {
                let v = match bb {
                    Some(b) => {
                        let ba = kb.at(b, o, es);
                        kb.load(cl(d), ba, 0)
                    }
                    None => kb.cf(cl(d), 0.0),
                };
                fill(kb, yo, osz, v, d)?;
            }
            kb.for_range(0, cg as i64, 1, |kb, ic| {
                let gc = kb.b.ins().imul_imm_s(g, cg as i64);
                let ci = kb.b.ins().iadd(gc, ic);
                let nc = kb.b.ins().imul_imm_s(nb, c as i64);
                let xr = kb.b.ins().iadd(nc, ci);
                let xi = kb.at(xb, xr, isz as i64 * es);
                let wr = wrow(kb, o, oc, ci, ic);
                let wk = kb.at(wb, wr, ksz as i64 * es);
                taps(kb, &geo, 0, wk, xi, yo, &mut vec![])
            })
        })
    })
}

/// Loops over the kernel taps of axis `dd` and beyond, moving the window
/// origin of the side that is offset by the tap (input for gather, output
/// for scatter), then over the positions each tap reaches.
fn taps(
    kb: &mut Kb,
    g: &Geo,
    dd: usize,
    wk: Value,
    xi: Value,
    yo: Value,
    ks: &mut Vec<Value>,
) -> Result<()> {
    let es = g.d.size() as i64;
    let n = g.k_sp.len();
    if dd == n {
        let wv = kb.load(cl(g.d), wk, 0);
        let ks = ks.clone();
        return positions(kb, g, 0, &ks, xi, yo, wv);
    }
    kb.for_range(0, g.k_sp[dd] as i64, 1, |kb, k| {
        let w2 = kb.at(wk, k, g.kst[dd] as i64 * es);
        // Offset of this tap: (k * dil - pad) along the offset side.
        let kd = kb.b.ins().imul_imm_s(k, g.dilations[dd] as i64);
        let kd = kb.b.ins().iadd_imm_s(kd, -(g.pads[dd] as i64));
        let (x2, y2) = match g.dir {
            Dir::Gather => (kb.at(xi, kd, g.ist[dd] as i64 * es), yo),
            Dir::Scatter => (xi, kb.at(yo, kd, g.ost[dd] as i64 * es)),
        };
        ks.push(k);
        let r = taps(kb, g, dd + 1, w2, x2, y2, ks);
        ks.pop();
        r
    })
}

/// Positions `[lo, hi)` of a tap along axis `dd` (from the tables); the
/// innermost axis is one strided multiply-add sweep.
fn positions(
    kb: &mut Kb,
    g: &Geo,
    dd: usize,
    ks: &[Value],
    xi: Value,
    yo: Value,
    wv: Value,
) -> Result<()> {
    let es = g.d.size() as i64;
    let ta = kb.at(g.tabs[dd], ks[dd], 16);
    let lo = kb.load(types::I64, ta, 0);
    let hi = kb.load(types::I64, ta, 8);
    let s = g.strides[dd] as i64;
    // Per step of the iterated position: the gathered side moves by the
    // stride, the other by one.
    let (xstep, ystep) = match g.dir {
        Dir::Gather => (s * g.ist[dd] as i64, g.ost[dd] as i64),
        Dir::Scatter => (g.ist[dd] as i64, s * g.ost[dd] as i64),
    };
    if dd + 1 == g.k_sp.len() {
        return axpy_dyn(kb, g.d, wv, yo, ystep, xi, xstep, lo, hi);
    }
    kb.for_dyn(lo, hi, |kb, i| {
        let y2 = kb.at(yo, i, ystep * es);
        let x2 = kb.at(xi, i, xstep * es);
        positions(kb, g, dd + 1, ks, x2, y2, wv)
    })
}
