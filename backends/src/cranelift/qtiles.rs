//! The integer kernels for microcontrollers (`conv_im2col`,
//! `matmul_panels`, `dw_pairs`) in Cranelift: the C kernels' data layout
//! (weights in panels from `nnc_ir::program::tiles`, the input zero point
//! folded into the bias, padding read as the zero point) as scalar loop
//! nests honouring every parameter: tiles of `r` channels by `c` columns
//! (`unroll` groups of four reduction steps per loop iteration), strips of
//! `p` depthwise outputs over bands of `rows` output rows. The
//! requantization is the reference formula. Cranelift does not target
//! microcontrollers; these keep both backends able to run every plan.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::Variable;
use nnc_ir::op::{QConvAttrs, QGemmAttrs};
use nnc_ir::program::tiles::{DwBand, DwConsts, MatConsts, panels_in_place};
use nnc_ir::program::{DepthwisePairs, IntTiles, Step, Window};
use nnc_ir::{DType, TensorType};

use super::integer::{Store, wrap32};
use super::kb::Kb;
use super::scalar::{load_at, store_at, to_i64};
use super::{Args, unsupported, weight};
use crate::error::Result;

const I64: types::Type = types::I64;

fn le_words(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn le_i32(v: impl Iterator<Item = i32>) -> Vec<u8> {
    v.flat_map(|w| w.to_le_bytes()).collect()
}

/// `v` when it is below `hi`, else `hi - 1` (a column past the end
/// recomputes the last one, so its store rewrites the same value).
fn clamp_below(kb: &mut Kb, v: Value, hi: i64) -> Value {
    let last = kb.ci(hi - 1);
    kb.b.ins().smin(v, last)
}

/// The register tiles of one block of `cols` columns: for every tile of up
/// to `r` rows of the panels (group `g`, a pointer-sized value), the
/// accumulators start at the folded biases, reduce over the `kp` steps of
/// the column buffer `col` (i32, `kp` per column) and are stored through
/// `out(kb, row, column) -> (element index, channel)`.
struct Tiles<'a> {
    m: &'a MatConsts,
    k: &'a IntTiles,
    panel: Value,
    bias: Value,
    col: Value,
    store: &'a Store,
    yd: DType,
    yb: Value,
}

type OutFn<'f> = dyn Fn(&mut Kb, Value, usize) -> (Value, Value) + 'f;

impl Tiles<'_> {
    fn run(&self, kb: &mut Kb, g: Value, out: &OutFn<'_>) -> Result<()> {
        let rows = self.m.rows;
        let r = self.k.rows.clamp(1, rows.max(1));
        let full = rows / r;
        if full > 0 {
            kb.for_range(0, full as i64, 1, |kb, t| {
                let m0 = kb.b.ins().imul_imm_s(t, r as i64);
                self.tile(kb, g, m0, r, out)
            })?;
        }
        if !rows.is_multiple_of(r) {
            let m0 = kb.ci((full * r) as i64);
            self.tile(kb, g, m0, rows % r, out)?;
        }
        Ok(())
    }

    fn tile(&self, kb: &mut Kb, g: Value, m0: Value, rr: usize, out: &OutFn<'_>) -> Result<()> {
        let (rows, kp, c) = (self.m.rows, self.m.kp(), self.k.cols);
        let kw = (kp / 4) as i64;
        // First output channel of the tile, over all groups.
        let gm = kb.b.ins().imul_imm_s(g, rows as i64);
        let ch0 = kb.b.ins().iadd(gm, m0);
        let mut acc: Vec<Variable> = Vec::with_capacity(rr * c);
        for i in 0..rr {
            let ch = kb.b.ins().iadd_imm_s(ch0, i as i64);
            let b = load_at(kb, DType::I32, self.bias, ch);
            let b = kb.b.ins().sextend(I64, b);
            for _ in 0..c {
                acc.push(kb.var(I64, b));
            }
        }
        // The tile's panel starts at word ch0 * kp / 4 (panels before it
        // are whole); its words run `rr` per group.
        let pbase = kb.b.ins().imul_imm_s(ch0, kw * 4);
        let pbase = kb.b.ins().iadd(self.panel, pbase);
        let groups = kp / 4;
        let u = self.k.unroll.clamp(1, groups.max(1));
        let group = |kb: &mut Kb, q: Value, acc: &[Variable]| -> Result<()> {
            for s in 0..4 {
                let byte = self.m.byte(s);
                let e = kb.b.ins().imul_imm_s(q, 4);
                let e = kb.b.ins().iadd_imm_s(e, s as i64);
                let ws: Vec<Value> = (0..rr)
                    .map(|i| {
                        let off = kb.b.ins().imul_imm_s(q, (4 * rr) as i64);
                        let off = kb.b.ins().iadd_imm_s(off, (4 * i + byte) as i64);
                        let v = load_at(kb, DType::I8, pbase, off);
                        kb.b.ins().sextend(I64, v)
                    })
                    .collect();
                for j in 0..c {
                    let xi = kb.b.ins().iadd_imm_s(e, (j * kp) as i64);
                    let x = load_at(kb, DType::I32, self.col, xi);
                    let x = kb.b.ins().sextend(I64, x);
                    for (i, &w) in ws.iter().enumerate() {
                        let p = kb.b.ins().imul(w, x);
                        let a = kb.get(acc[i * c + j]);
                        let a = kb.b.ins().iadd(a, p);
                        kb.set(acc[i * c + j], a);
                    }
                }
            }
            Ok(())
        };
        let iters = groups / u;
        kb.for_range(0, iters as i64, 1, |kb, it| {
            for d in 0..u {
                let q = kb.b.ins().imul_imm_s(it, u as i64);
                let q = kb.b.ins().iadd_imm_s(q, d as i64);
                group(kb, q, &acc)?;
            }
            Ok(())
        })?;
        for d in 0..groups % u {
            let q = kb.ci((iters * u + d) as i64);
            group(kb, q, &acc)?;
        }
        for i in 0..rr {
            let mi = kb.b.ins().iadd_imm_s(m0, i as i64);
            for j in 0..c {
                let (yi, ch) = out(kb, mi, j);
                let a = kb.get(acc[i * c + j]);
                let a = wrap32(kb, a);
                let v = self.store.apply(kb, a, ch);
                store_at(kb, self.yd, self.yb, yi, v);
            }
        }
        Ok(())
    }
}

/// `conv_im2col`: per batch, group and block of `c` output positions, the
/// column buffer is gathered tap by tap (padding as the input zero point),
/// then the tiles reduce over it.
pub fn conv_im2col(
    kb: &mut Kb,
    st: &Step,
    k: &IntTiles,
    q: &QConvAttrs,
    win: &Window,
    a: &Args,
) -> Result<()> {
    let (wt, bt, mt, sht) = (
        weight(kb, st, a, 1)?,
        weight(kb, st, a, 2)?,
        weight(kb, st, a, 3)?,
        weight(kb, st, a, 4)?,
    );
    let m = MatConsts::for_qconv(q, &wt, &bt, &mt, &sht, k.rows).map_err(|e| unsupported(st, e))?;
    let (hx, cx) = win
        .hw()
        .ok_or_else(|| unsupported(st, "conv_im2col on a 3-D window".into()))?;
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let (cg, mg, groups) = (win.cg(), win.mg(), win.groups);
    let (ih, iw, oh, ow) = (hx.input, cx.input, hx.output, cx.output);
    let (kh, kwid) = (hx.k, cx.k);
    let (kp, c) = (m.kp(), k.cols);
    let (hw, p) = (ih * iw, oh * ow);
    let panel = kb.table(le_words(&m.panels), 16)?;
    let bias = kb.table(le_i32(m.ch.iter().map(|r| r.bias)), 16)?;
    let store = Store::new(kb, st, a)?;
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let col = zeroed(kb, c * kp)?;
    let tiles = Tiles {
        m: &m,
        k,
        panel,
        bias,
        col,
        store: &store,
        yd: y.dtype,
        yb,
    };
    let xzp = kb.cint(I64, q.q.x_zp as i64);
    kb.for_range(0, win.batch as i64, 1, |kb, n| {
        kb.for_range(0, groups as i64, 1, |kb, g| {
            let xp = kb.b.ins().imul_imm_s(n, win.channels as i64);
            let gc = kb.b.ins().imul_imm_s(g, cg as i64);
            let xp = kb.b.ins().iadd(xp, gc);
            let xg = kb.at(xb, xp, (hw * x.dtype.size()) as i64);
            kb.for_range(0, p as i64, c as i64, |kb, p0| {
                let mut qs = Vec::with_capacity(c);
                for j in 0..c {
                    let qj = kb.b.ins().iadd_imm_s(p0, j as i64);
                    let qj = clamp_below(kb, qj, p as i64);
                    qs.push(qj);
                    let oy = kb.b.ins().udiv_imm_u(qj, ow as i64);
                    let ox = kb.b.ins().urem_imm_u(qj, ow as i64);
                    let iy0 = kb.b.ins().imul_imm_s(oy, hx.stride as i64);
                    let iy0 = kb.b.ins().iadd_imm_s(iy0, -(hx.pad as i64));
                    let ix0 = kb.b.ins().imul_imm_s(ox, cx.stride as i64);
                    let ix0 = kb.b.ins().iadd_imm_s(ix0, -(cx.pad as i64));
                    kb.for_range(0, cg as i64, 1, |kb, ci| {
                        kb.for_range(0, kh as i64, 1, |kb, ky| {
                            let dy = kb.b.ins().imul_imm_s(ky, hx.dil as i64);
                            let iy = kb.b.ins().iadd(iy0, dy);
                            kb.for_range(0, kwid as i64, 1, |kb, kx| {
                                let dx = kb.b.ins().imul_imm_s(kx, cx.dil as i64);
                                let ix = kb.b.ins().iadd(ix0, dx);
                                let inside = inside2(kb, iy, ih, ix, iw);
                                // Padding taps read element 0 (in bounds)
                                // and take the zero point instead.
                                let row = kb.b.ins().imul_imm_s(iy, iw as i64);
                                let at = kb.b.ins().iadd(row, ix);
                                let cio = kb.b.ins().imul_imm_s(ci, hw as i64);
                                let at = kb.b.ins().iadd(at, cio);
                                let z = kb.ci(0);
                                let at = kb.b.ins().select(inside, at, z);
                                let v = load_at(kb, x.dtype, xg, at);
                                let v = to_i64(kb, v, x.dtype);
                                let v = kb.b.ins().select(inside, v, xzp);
                                let v = kb.b.ins().ireduce(types::I32, v);
                                let e = kb.b.ins().imul_imm_s(ci, (kh * kwid) as i64);
                                let eky = kb.b.ins().imul_imm_s(ky, kwid as i64);
                                let e = kb.b.ins().iadd(e, eky);
                                let e = kb.b.ins().iadd(e, kx);
                                let e = kb.b.ins().iadd_imm_s(e, (j * kp) as i64);
                                store_at(kb, DType::I32, col, e, v);
                                Ok(())
                            })
                        })
                    })?;
                }
                let ybase = kb.b.ins().imul_imm_s(n, win.out_channels as i64);
                let gm = kb.b.ins().imul_imm_s(g, mg as i64);
                let ybase = kb.b.ins().iadd(ybase, gm);
                tiles.run(kb, g, &|kb, mi, j| {
                    let ch = kb.b.ins().iadd(gm, mi);
                    let plane = kb.b.ins().iadd(ybase, mi);
                    let yi = kb.b.ins().imul_imm_s(plane, p as i64);
                    let yi = kb.b.ins().iadd(yi, qs[j]);
                    (yi, ch)
                })
            })
        })
    })
}

/// A stack buffer of `n` i32 zeros (the padding steps past `k` stay zero).
fn zeroed(kb: &mut Kb, n: usize) -> Result<Value> {
    let col = kb.stack(n * 4);
    let zero = kb.cint(types::I32, 0);
    kb.for_range(0, n as i64, 1, |kb, i| {
        store_at(kb, DType::I32, col, i, zero);
        Ok(())
    })?;
    Ok(col)
}

/// `0 <= iy < h && 0 <= ix < w` for signed pointer-sized values.
fn inside2(kb: &mut Kb, iy: Value, h: usize, ix: Value, w: usize) -> Value {
    let a =
        kb.b.ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, iy, 0);
    let b = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, iy, h as i64);
    let c =
        kb.b.ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, ix, 0);
    let d = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, ix, w as i64);
    let ab = kb.b.ins().band(a, b);
    let cd = kb.b.ins().band(c, d);
    kb.b.ins().band(ab, cd)
}

/// `matmul_panels`: per block of `c` rows of the left-hand side (widened
/// into the column buffer), the tiles over the output columns.
pub fn matmul_panels(
    kb: &mut Kb,
    st: &Step,
    k: &IntTiles,
    q: &QGemmAttrs,
    at: &TensorType,
    a: &Args,
) -> Result<()> {
    let (bt, biast, mt, sht) = (
        weight(kb, st, a, 1)?,
        weight(kb, st, a, 2)?,
        weight(kb, st, a, 3)?,
        weight(kb, st, a, 4)?,
    );
    let m =
        MatConsts::for_qgemm(q, &bt, &biast, &mt, &sht, k.rows).map_err(|e| unsupported(st, e))?;
    // The C reads a single row in place against panels in natural byte
    // order; here rows are always widened, so only the order follows.
    let m = if panels_in_place(k.cols) {
        m.natural()
    } else {
        m
    };
    let y = &st.outputs[0].ty;
    let (rows_a, kk) = (at.dims[0], at.dims[1]);
    let (n, kp, c) = (m.rows, m.kp(), k.cols);
    let panel = kb.table(le_words(&m.panels), 16)?;
    let bias = kb.table(le_i32(m.ch.iter().map(|r| r.bias)), 16)?;
    let store = Store::new(kb, st, a)?;
    let (ab, yb) = (a.x(kb, 0)?, a.outs[0]);
    let col = zeroed(kb, c * kp)?;
    let tiles = Tiles {
        m: &m,
        k,
        panel,
        bias,
        col,
        store: &store,
        yd: y.dtype,
        yb,
    };
    kb.for_range(0, rows_a as i64, c as i64, |kb, i0| {
        let mut rs = Vec::with_capacity(c);
        for j in 0..c {
            let r = kb.b.ins().iadd_imm_s(i0, j as i64);
            let r = clamp_below(kb, r, rows_a as i64);
            rs.push(r);
            let arow = kb.at(ab, r, (kk * at.dtype.size()) as i64);
            kb.for_range(0, kk as i64, 1, |kb, e| {
                let v = load_at(kb, at.dtype, arow, e);
                let v = to_i64(kb, v, at.dtype);
                let v = kb.b.ins().ireduce(types::I32, v);
                let ci = kb.b.ins().iadd_imm_s(e, (j * kp) as i64);
                store_at(kb, DType::I32, col, ci, v);
                Ok(())
            })?;
        }
        let g = kb.ci(0);
        tiles.run(kb, g, &|kb, mi, j| {
            let yi = kb.b.ins().imul_imm_s(rs[j], n as i64);
            let yi = kb.b.ins().iadd(yi, mi);
            (yi, mi)
        })
    })
}

/// `dw_pairs`: per batch, channel and band of `rows` output rows, the
/// padded band is copied to the stack, then strips of `p` outputs along
/// each row accumulate their taps from it.
pub fn dw_pairs(
    kb: &mut Kb,
    st: &Step,
    k: &DepthwisePairs,
    q: &QConvAttrs,
    win: &Window,
    a: &Args,
) -> Result<()> {
    let band = DwBand::of(win).ok_or_else(|| unsupported(st, "dw_pairs on a 3-D window".into()))?;
    let (wt, bt, mt, sht) = (
        weight(kb, st, a, 1)?,
        weight(kb, st, a, 2)?,
        weight(kb, st, a, 3)?,
        weight(kb, st, a, 4)?,
    );
    let d = DwConsts::for_qconv(q, &band, &wt, &bt, &mt, &sht).map_err(|e| unsupported(st, e))?;
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let (rax, cax) = (band.rows, band.cols);
    let (kh, kwid) = (rax.k, cax.k);
    let (ih, iw, oh, ow) = (rax.input, cax.input, rax.output, cax.output);
    let wp = band.width();
    let rows = k.rows.clamp(1, oh.max(1));
    let pos = k.positions.clamp(1, ow.max(1));
    let chans = win.channels;
    let wtab = kb.table(le_words(&d.words), 16)?;
    let bias = kb.table(le_i32(d.ch.iter().map(|r| r.bias)), 16)?;
    let store = Store::new(kb, st, a)?;
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let buf = kb.stack(band.bytes(rows) * x.dtype.size());
    let xzp = kb.cint(I64, q.q.x_zp as i64);
    let row_bytes = (d.row_words * 4) as i64;
    kb.for_range(0, win.batch as i64, 1, |kb, n| {
        kb.for_range(0, chans as i64, 1, |kb, ch| {
            let plane = kb.b.ins().imul_imm_s(n, chans as i64);
            let plane = kb.b.ins().iadd(plane, ch);
            let xc = kb.at(xb, plane, (ih * iw * x.dtype.size()) as i64);
            let yp = kb.b.ins().imul_imm_s(plane, (oh * ow) as i64);
            let b0 = load_at(kb, DType::I32, bias, ch);
            let b0 = kb.b.ins().sextend(I64, b0);
            let wrow = kb.b.ins().imul_imm_s(ch, kh as i64 * row_bytes);
            let wc = kb.b.ins().iadd(wtab, wrow);
            kb.for_range(0, oh as i64, rows as i64, |kb, r0| {
                // Output rows of this band and the padded rows they read.
                let ohv = kb.ci(oh as i64);
                let left = kb.b.ins().isub(ohv, r0);
                let cap = kb.ci(rows as i64);
                let nr = kb.b.ins().smin(left, cap);
                let nb = kb.b.ins().iadd_imm_s(nr, -1);
                let nb = kb.b.ins().imul_imm_s(nb, rax.stride as i64);
                let nb = kb.b.ins().iadd_imm_s(nb, rax.span() as i64 + 1);
                let z = kb.ci(0);
                kb.for_dyn(z, nb, |kb, u| {
                    let iy = kb.b.ins().imul_imm_s(r0, rax.stride as i64);
                    let iy = kb.b.ins().iadd(iy, u);
                    let iy = kb.b.ins().iadd_imm_s(iy, -(rax.pad as i64));
                    kb.for_range(0, wp as i64, 1, |kb, v| {
                        let ix = kb.b.ins().iadd_imm_s(v, -(cax.pad as i64));
                        let inside = inside2(kb, iy, ih, ix, iw);
                        let at = kb.b.ins().imul_imm_s(iy, iw as i64);
                        let at = kb.b.ins().iadd(at, ix);
                        let z = kb.ci(0);
                        let at = kb.b.ins().select(inside, at, z);
                        let val = load_at(kb, x.dtype, xc, at);
                        let val = to_i64(kb, val, x.dtype);
                        let val = kb.b.ins().select(inside, val, xzp);
                        let val = super::scalar::from_i64(kb, val, x.dtype);
                        let bi = kb.b.ins().imul_imm_s(u, wp as i64);
                        let bi = kb.b.ins().iadd(bi, v);
                        store_at(kb, x.dtype, buf, bi, val);
                        Ok(())
                    })
                })?;
                let z = kb.ci(0);
                kb.for_dyn(z, nr, |kb, oy| {
                    let strip = |kb: &mut Kb, ox0: Value, cnt: usize| -> Result<()> {
                        let acc: Vec<Variable> = (0..cnt).map(|_| kb.var(I64, b0)).collect();
                        kb.for_range(0, kh as i64, 1, |kb, ky| {
                            let r = kb.b.ins().imul_imm_s(oy, rax.stride as i64);
                            let dy = kb.b.ins().imul_imm_s(ky, rax.dil as i64);
                            let r = kb.b.ins().iadd(r, dy);
                            let rbase = kb.b.ins().imul_imm_s(r, wp as i64);
                            let wk = kb.b.ins().imul_imm_s(ky, row_bytes);
                            let wk = kb.b.ins().iadd(wc, wk);
                            kb.for_range(0, kwid as i64, 1, |kb, kx| {
                                let wv = load_at(kb, DType::I8, wk, kx);
                                let wv = kb.b.ins().sextend(I64, wv);
                                for (j, &av) in acc.iter().enumerate() {
                                    let col = kb.b.ins().iadd_imm_s(ox0, j as i64);
                                    let col = kb.b.ins().imul_imm_s(col, cax.stride as i64);
                                    let bi = kb.b.ins().iadd(rbase, col);
                                    let bi = kb.b.ins().iadd(bi, kx);
                                    let xv = load_at(kb, x.dtype, buf, bi);
                                    let xv = to_i64(kb, xv, x.dtype);
                                    let p = kb.b.ins().imul(xv, wv);
                                    let s = kb.get(av);
                                    let s = kb.b.ins().iadd(s, p);
                                    kb.set(av, s);
                                }
                                Ok(())
                            })
                        })?;
                        let orow = kb.b.ins().iadd(r0, oy);
                        let orow = kb.b.ins().imul_imm_s(orow, ow as i64);
                        let orow = kb.b.ins().iadd(yp, orow);
                        for (j, &av) in acc.iter().enumerate() {
                            let s = kb.get(av);
                            let s = wrap32(kb, s);
                            let v = store.apply(kb, s, ch);
                            let yi = kb.b.ins().iadd(orow, ox0);
                            let yi = kb.b.ins().iadd_imm_s(yi, j as i64);
                            store_at(kb, y.dtype, yb, yi, v);
                        }
                        Ok(())
                    };
                    let full = ow / pos;
                    kb.for_range(0, (full * pos) as i64, pos as i64, |kb, ox0| {
                        strip(kb, ox0, pos)
                    })?;
                    if !ow.is_multiple_of(pos) {
                        let ox0 = kb.ci((full * pos) as i64);
                        strip(kb, ox0, ow % pos)?;
                    }
                    Ok(())
                })
            })
        })
    })
}
