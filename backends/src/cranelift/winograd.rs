//! The Winograd kernel in Cranelift, on the schedule of
//! [`nnc_ir::program::winograd`] with f32x4 vectors over channels: the
//! band holds each position's channels contiguously (zero-padded to whole
//! vectors), so the input transform of four channels is vector arithmetic
//! with the transform's constant coefficients; the batched products are
//! register tiles of four tiles by two vectors of output channels (a
//! broadcast of `V` times a loaded vector of `U`, as `conv_blocked`); the
//! output transform works on vectors of four output channels, adds the
//! bias, applies the epilogue and scatters the lanes to their planes (an
//! F(4,3) tile row of a tile inside the output's columns, without a
//! residual, is transposed in registers and stored as one vector per
//! channel).

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use nnc_ir::Tensor;
use nnc_ir::op::WinogradAttrs;
use nnc_ir::program::Winograd;
use nnc_ir::program::winograd::{Schedule, row_terms};

use super::Args;
use super::epilogue::Epi;
use super::kb::{F32X4, Kb};
use crate::error::{BackendError, Result};

/// Tiles by vectors of output channels of the product's register tile.
const TP: usize = 4;
const TV: usize = 2;

fn err(msg: &str) -> BackendError {
    BackendError::Other(format!("winograd: {msg}"))
}

/// Runs `f` when `cond` (an i8 flag) holds.
fn when(kb: &mut Kb, cond: Value, f: impl FnOnce(&mut Kb) -> Result<()>) -> Result<()> {
    let then = kb.b.create_block();
    let join = kb.b.create_block();
    kb.b.ins().brif(cond, then, &[], join, &[]);
    kb.b.switch_to_block(then);
    kb.b.seal_block(then);
    f(kb)?;
    kb.b.ins().jump(join, &[]);
    kb.b.switch_to_block(join);
    kb.b.seal_block(join);
    Ok(())
}

/// Constant vectors, created once per loop body.
struct Coefs(HashMap<u64, Value>);

impl Coefs {
    fn get(&mut self, kb: &mut Kb, c: f64) -> Value {
        *self.0.entry(c.to_bits()).or_insert_with(|| kb.cf(F32X4, c))
    }
}

/// `sum coef * x` over `terms` (with ±1 as additions).
fn lin(kb: &mut Kb, cs: &mut Coefs, terms: &[(Value, f64)]) -> Value {
    let mut acc: Option<Value> = None;
    for &(x, c) in terms {
        acc = Some(match (acc, c) {
            (None, 1.0) => x,
            (None, -1.0) => kb.b.ins().fneg(x),
            (None, c) => {
                let k = cs.get(kb, c);
                kb.b.ins().fmul(x, k)
            }
            (Some(a), 1.0) => kb.b.ins().fadd(a, x),
            (Some(a), -1.0) => kb.b.ins().fsub(a, x),
            (Some(a), c) => {
                let k = cs.get(kb, c);
                kb.mul_add(x, k, a)
            }
        });
    }
    acc.unwrap_or_else(|| kb.cf(F32X4, 0.0))
}

/// `out[i][j] = sum_r mat[i][r] * d[r][j]` (`mat` is `rows x d.len()`).
fn left(
    kb: &mut Kb,
    cs: &mut Coefs,
    mat: &[f64],
    rows: usize,
    d: &[Vec<Value>],
) -> Vec<Vec<Value>> {
    let k = d.len();
    (0..rows)
        .map(|i| {
            let terms = row_terms(mat, k, i);
            (0..d[0].len())
                .map(|j| {
                    let t: Vec<(Value, f64)> = terms.iter().map(|&(r, c)| (d[r][j], c)).collect();
                    lin(kb, cs, &t)
                })
                .collect()
        })
        .collect()
}

/// `out[i][j] = sum_s mat[j][s] * d[i][s]` (`mat` is `cols x d[0].len()`).
fn right(
    kb: &mut Kb,
    cs: &mut Coefs,
    d: &[Vec<Value>],
    mat: &[f64],
    cols: usize,
) -> Vec<Vec<Value>> {
    let k = d[0].len();
    let terms: Vec<Vec<(usize, f64)>> = (0..cols).map(|j| row_terms(mat, k, j)).collect();
    d.iter()
        .map(|row| {
            terms
                .iter()
                .map(|tj| {
                    let t: Vec<(Value, f64)> = tj.iter().map(|&(s, c)| (row[s], c)).collect();
                    lin(kb, cs, &t)
                })
                .collect()
        })
        .collect()
}

/// The kernel. `u` is the transformed weight `[elems, C, M]`.
#[allow(clippy::too_many_arguments)]
pub fn winograd(
    kb: &mut Kb,
    a: &WinogradAttrs,
    k: &Winograd,
    x: &nnc_ir::TensorType,
    u: &Tensor,
    bias: Option<&Tensor>,
    epi: &Epi,
    args: &Args,
) -> Result<()> {
    if epi.accumulate {
        return Err(err("partial sums are not supported"));
    }
    let s = Schedule::of(a, k, x, &u.ty(), 4).ok_or_else(|| err("shapes do not fit"))?;
    let t = &s.t;
    let (c, m, mp) = (s.c, s.m, s.mp());
    let packed: Vec<f32> = s.pack_u(&u.to_f64()).iter().map(|v| *v as f32).collect();
    let up = kb.table_f32(&packed)?;
    let mut bv = vec![0.0f32; mp];
    if let Some(b) = bias {
        for (o, v) in b.to_f64().iter().enumerate() {
            bv[o] = *v as f32;
        }
    }
    let bp = kb.table_f32(&bv)?;
    let band = super::depthwise::zeroed_stack(kb, s.band_len() * 4)?;
    let vbuf = kb.stack(s.v_len() * 4);
    let mbuf = kb.stack(s.m_len() * 4);
    let xb = args.x(kb, 0)?;
    let yb = args.outs[0];
    let (ih, iw) = (s.ih, s.iw);
    let plane_out = (t.oh * t.ow) as i64;
    kb.for_range(0, s.batch as i64, 1, |kb, n| {
        let xn = kb.at(xb, n, (c * ih * iw * 4) as i64);
        let yn = kb.at(yb, n, m as i64 * plane_out * 4);
        // One band of `nr` tile rows from tile row `i0`.
        let band_of = |kb: &mut Kb, i0: Value, nr: usize| -> Result<()> {
            fill_band(kb, &s, band, xn, i0)?;
            let oy = kb.b.ins().imul_imm_s(i0, t.h.m as i64);
            let groups = s.groups();
            let full = groups.iter().filter(|g| g.1 == s.cols).count();
            let group = |kb: &mut Kb, j0: Value, nc: usize| -> Result<()> {
                input_transform(kb, &s, band, vbuf, j0, nr, nc)?;
                let ox = kb.b.ins().imul_imm_s(j0, t.w.m as i64);
                let nfull = m / s.block;
                let out = |o0, width, lanes_ok| Out {
                    yn,
                    oy,
                    ox,
                    o0,
                    nr,
                    nc,
                    width,
                    lanes_ok,
                };
                kb.for_range(0, nfull as i64, 1, |kb, b| {
                    let o0 = kb.b.ins().imul_imm_s(b, s.block as i64);
                    block(kb, &s, up, bp, vbuf, mbuf, &out(o0, s.block, s.block), epi)
                })?;
                let done = nfull * s.block;
                if done < mp {
                    let o0 = kb.ci(done as i64);
                    block(
                        kb,
                        &s,
                        up,
                        bp,
                        vbuf,
                        mbuf,
                        &out(o0, mp - done, m - done),
                        epi,
                    )?;
                }
                Ok(())
            };
            kb.for_range(0, full as i64, 1, |kb, g| {
                let j0 = kb.b.ins().imul_imm_s(g, s.cols as i64);
                group(kb, j0, s.cols)
            })?;
            for &(j0, nc) in &groups[full..] {
                let j0 = kb.ci(j0 as i64);
                group(kb, j0, nc)?;
            }
            Ok(())
        };
        let (nb, last) = s.bands();
        let whole = if last == s.rows { nb } else { nb - 1 };
        kb.for_range(0, whole as i64, 1, |kb, b| {
            let i0 = kb.b.ins().imul_imm_s(b, s.rows as i64);
            band_of(kb, i0, s.rows)
        })?;
        if whole < nb {
            let i0 = kb.ci((whole * s.rows) as i64);
            band_of(kb, i0, last)?;
        }
        Ok(())
    })
}

/// Copies the input rows of the band from tile row `i` (channels last);
/// rows outside the input become zeros. Padding columns and channels were
/// zeroed once and are never written.
fn fill_band(kb: &mut Kb, s: &Schedule, band: Value, xn: Value, i: Value) -> Result<()> {
    let (ih, iw, c, cp) = (s.ih as i64, s.iw as i64, s.c, s.cp() as i64);
    let bw = s.band_cols() as i64;
    let pl = s.pl as i64;
    for r in 0..s.band_rows() {
        let iy = kb.b.ins().imul_imm_s(i, s.t.h.m as i64);
        let iy = kb.b.ins().iadd_imm_s(iy, r as i64 - s.pt as i64);
        let lo =
            kb.b.ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, iy, 0);
        let hi = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, iy, ih);
        let ok = kb.b.ins().band(lo, hi);
        let row = kb.off(band, (r as i64 * bw + pl) * cp * 4);
        let bad = kb.b.ins().bxor_imm_s(ok, 1);
        // The band's columns of the input, as contiguous vectors.
        when(kb, bad, |kb| {
            let zero = kb.cf(F32X4, 0.0);
            kb.for_range(0, iw * cp / 4, 1, |kb, v| {
                let a = kb.at(row, v, 16);
                kb.store(zero, a, 0);
                Ok(())
            })
        })?;
        when(kb, ok, |kb| {
            let src = kb.at(xn, iy, iw * 4);
            kb.for_range(0, c as i64, 1, |kb, ch| {
                let sp = kb.at(src, ch, ih * iw * 4);
                let dp = kb.at(row, ch, 4);
                let quads = iw / 4;
                kb.for_range(0, quads, 1, |kb, q| {
                    let sa = kb.at(sp, q, 16);
                    let da = kb.at(dp, q, 16 * cp);
                    let v = kb.load(F32X4, sa, 0);
                    for l in 0..4 {
                        let e = kb.b.ins().extractlane(v, l as u8);
                        kb.store(e, da, l as i64 * cp * 4);
                    }
                    Ok(())
                })?;
                for xx in quads * 4..iw {
                    let e = kb.load(types::F32, sp, xx * 4);
                    kb.store(e, dp, xx * cp * 4);
                }
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// `V[elem][tile][channel]` of the `nr x nc` tiles from tile column `j0`
/// of the band (tile `rr * nc + j`).
fn input_transform(
    kb: &mut Kb,
    s: &Schedule,
    band: Value,
    vbuf: Value,
    j0: Value,
    nr: usize,
    nc: usize,
) -> Result<()> {
    let t = &s.t;
    let (ah, aw, cp) = (t.h.alpha, t.w.alpha, s.cp() as i64);
    let bw = s.band_cols() as i64;
    let col0 = kb.b.ins().imul_imm_s(j0, t.w.m as i64);
    let base = kb.at(band, col0, cp * 4);
    kb.for_range(0, nr as i64, 1, |kb, rr| {
        let brow = kb.at(base, rr, t.h.m as i64 * bw * cp * 4);
        let vrow = kb.at(vbuf, rr, nc as i64 * cp * 4);
        kb.for_range(0, nc as i64, 1, |kb, jt| {
            let bt = kb.at(brow, jt, t.w.m as i64 * cp * 4);
            let vt = kb.at(vrow, jt, cp * 4);
            kb.for_range(0, cp / 4, 1, |kb, cv| {
                let b0 = kb.at(bt, cv, 16);
                let v0 = kb.at(vt, cv, 16);
                let mut cs = Coefs(HashMap::new());
                let d: Vec<Vec<Value>> = (0..ah)
                    .map(|r| {
                        (0..aw)
                            .map(|q| kb.load(F32X4, b0, (r as i64 * bw + q as i64) * cp * 4))
                            .collect()
                    })
                    .collect();
                let tmp = left(kb, &mut cs, &t.h.bt, ah, &d);
                let v = right(kb, &mut cs, &tmp, &t.w.bt, aw);
                for (ii, row) in v.iter().enumerate() {
                    for (jj, val) in row.iter().enumerate() {
                        let el = (ii * aw + jj) as i64;
                        kb.store(*val, v0, el * s.tiles as i64 * cp * 4);
                    }
                }
                Ok(())
            })
        })
    })
}

/// Where a block of output channels goes.
struct Out {
    yn: Value,
    /// First output row and column of the group's first tile.
    oy: Value,
    ox: Value,
    /// First output channel of the block.
    o0: Value,
    /// Tile rows and tiles per row of the group.
    nr: usize,
    nc: usize,
    /// Channels computed (a multiple of 4) and how many are real.
    width: usize,
    lanes_ok: usize,
}

/// One block of output channels for a group: the products, then the
/// output transform with the epilogue.
#[allow(clippy::too_many_arguments)]
fn block(
    kb: &mut Kb,
    s: &Schedule,
    up: Value,
    bp: Value,
    vbuf: Value,
    mbuf: Value,
    o: &Out,
    epi: &Epi,
) -> Result<()> {
    let (c, cp, mp) = (s.c as i64, s.cp() as i64, s.mp() as i64);
    let e = s.t.elems() as i64;
    let (tiles, blk) = (s.tiles as i64, s.block as i64);
    let nv = o.width / 4;
    let ub = kb.at(up, o.o0, 4);
    // M[k] = V[k] x U[k] for every tile element k.
    kb.for_range(0, e, 1, |kb, kk| {
        let vk = kb.at(vbuf, kk, tiles * cp * 4);
        let uk = kb.at(ub, kk, c * mp * 4);
        let mk = kb.at(mbuf, kk, s.m_stride() as i64 * 4);
        let nt = o.nr * o.nc;
        for t0 in (0..nt).step_by(TP) {
            let tp = TP.min(nt - t0);
            for v0 in (0..nv).step_by(TV) {
                let tv = TV.min(nv - v0);
                let accs: Vec<_> = (0..tp * tv)
                    .map(|_| {
                        let z = kb.cf(F32X4, 0.0);
                        kb.var(F32X4, z)
                    })
                    .collect();
                let vp = kb.var(types::I64, vk);
                let upv = kb.var(types::I64, uk);
                kb.for_range(0, c, 1, |kb, _| {
                    let vpp = kb.get(vp);
                    let upp = kb.get(upv);
                    let mut acc: Vec<Value> = accs.iter().map(|&a| kb.get(a)).collect();
                    let uv: Vec<Value> = (0..tv)
                        .map(|v| kb.load(F32X4, upp, ((v0 + v) * 16) as i64))
                        .collect();
                    for p in 0..tp {
                        let xs = kb.load(types::F32, vpp, ((t0 + p) as i64 * cp) * 4);
                        let xs = kb.splat(xs);
                        for v in 0..tv {
                            acc[p * tv + v] = kb.mul_add(xs, uv[v], acc[p * tv + v]);
                        }
                    }
                    for (a, v) in accs.iter().zip(acc) {
                        kb.set(*a, v);
                    }
                    let vn = kb.b.ins().iadd_imm_s(vpp, 4);
                    kb.set(vp, vn);
                    let un = kb.b.ins().iadd_imm_s(upp, mp * 4);
                    kb.set(upv, un);
                    Ok(())
                })?;
                for p in 0..tp {
                    for v in 0..tv {
                        let r = kb.get(accs[p * tv + v]);
                        let off = ((t0 + p) as i64 * blk + ((v0 + v) * 4) as i64) * 4;
                        kb.store(r, mk, off);
                    }
                }
            }
        }
        Ok(())
    })?;
    output_transform(kb, s, bp, mbuf, o, epi)
}

/// `A^T M A` per tile and vector of four output channels, plus the bias,
/// through the epilogue into the output planes.
fn output_transform(
    kb: &mut Kb,
    s: &Schedule,
    bp: Value,
    mbuf: Value,
    o: &Out,
    epi: &Epi,
) -> Result<()> {
    let t = &s.t;
    let (ah, aw, mh, mw) = (t.h.alpha, t.w.alpha, t.h.m, t.w.m);
    let blk = s.block as i64;
    let (oh, ow) = (t.oh as i64, t.ow as i64);
    let plane = oh * ow * 4;
    let rows_overhang = !t.oh.is_multiple_of(mh);
    let cols_overhang = !t.ow.is_multiple_of(mw);
    let full_v = o.lanes_ok / 4;
    let nv = o.width / 4;
    let yrow = kb.at(o.yn, o.oy, ow * 4);
    let ytile0 = kb.at(yrow, o.ox, 4);
    let yblk = kb.at(ytile0, o.o0, plane);
    let bb = kb.at(bp, o.o0, 4);
    let tile = |kb: &mut Kb, rr: Value, jt: Value, mv: Value, lanes: usize| -> Result<()> {
        let mut cs = Coefs(HashMap::new());
        let ti = kb.b.ins().imul_imm_s(rr, o.nc as i64);
        let ti = kb.b.ins().iadd(ti, jt);
        let m0 = kb.at(mbuf, ti, blk * 4);
        let m0 = kb.at(m0, mv, 16);
        let d: Vec<Vec<Value>> = (0..ah)
            .map(|r| {
                (0..aw)
                    .map(|q| {
                        let el = (r * aw + q) as i64;
                        kb.load(F32X4, m0, el * s.m_stride() as i64 * 4)
                    })
                    .collect()
            })
            .collect();
        let tmp = left(kb, &mut cs, &t.h.at, mh, &d);
        let res = right(kb, &mut cs, &tmp, &t.w.at, mw);
        let bias = kb.at(bb, mv, 16);
        let bias = kb.load(F32X4, bias, 0);
        let yt = kb.at(yblk, rr, mh as i64 * ow * 4);
        let yt = kb.at(yt, jt, mw as i64 * 4);
        let yt = kb.at(yt, mv, 4 * plane);
        let oyt = kb.b.ins().imul_imm_s(rr, mh as i64);
        let oyt = kb.b.ins().iadd(oyt, o.oy);
        // Output column and row of the tile, for the overhang checks.
        let oxt = kb.b.ins().imul_imm_s(jt, mw as i64);
        let oxt = kb.b.ins().iadd(oxt, o.ox);
        // A row of four columns of a tile by four channels, transposed in
        // registers, is four vector stores, one per channel plane, where
        // scattering lanes stored sixteen floats into sixteen planes (on
        // 32x32 planes, 4 KiB apart, they share L1 sets).
        let rows4 = mw == 4 && lanes == 4 && !epi.has_residual();
        for (p, row) in res.iter().enumerate() {
            let vectors = |kb: &mut Kb| -> Result<()> {
                let mut v = [bias; 4];
                for (q, val) in row.iter().enumerate() {
                    let x = kb.b.ins().fadd(*val, bias);
                    v[q] = epi.apply(kb, x, yt, (p as i64 * ow + q as i64) * 4)?;
                }
                let cols = super::depthwise::transpose4(kb, v);
                for (l, c) in cols.into_iter().enumerate() {
                    kb.store(c, yt, p as i64 * ow * 4 + l as i64 * plane);
                }
                Ok(())
            };
            let lanes_out = |kb: &mut Kb| -> Result<()> {
                for (q, val) in row.iter().enumerate() {
                    let emit = |kb: &mut Kb| -> Result<()> {
                        let v = kb.b.ins().fadd(*val, bias);
                        let off = (p as i64 * ow + q as i64) * 4;
                        if !epi.has_residual() && lanes == 4 {
                            let v = epi.apply(kb, v, yt, off)?;
                            for l in 0..4 {
                                let x = kb.b.ins().extractlane(v, l as u8);
                                kb.store(x, yt, off + l as i64 * plane);
                            }
                            return Ok(());
                        }
                        for l in 0..lanes {
                            let x = kb.b.ins().extractlane(v, l as u8);
                            let lo = off + l as i64 * plane;
                            let x = epi.apply(kb, x, yt, lo)?;
                            kb.store(x, yt, lo);
                        }
                        Ok(())
                    };
                    if cols_overhang {
                        let col = kb.b.ins().iadd_imm_s(oxt, q as i64);
                        let ok = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, col, ow);
                        when(kb, ok, emit)?;
                    } else {
                        emit(kb)?;
                    }
                }
                Ok(())
            };
            // Tiles that overhang the output's last columns store lane by
            // lane; the others, whole rows of vectors.
            let emit_row = |kb: &mut Kb| -> Result<()> {
                if !rows4 {
                    return lanes_out(kb);
                }
                if !cols_overhang {
                    return vectors(kb);
                }
                let end = kb.b.ins().iadd_imm_s(oxt, mw as i64);
                let inside = kb.b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, end, ow);
                when(kb, inside, vectors)?;
                let over = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, end, ow);
                when(kb, over, lanes_out)
            };
            if rows_overhang {
                let r = kb.b.ins().iadd_imm_s(oyt, p as i64);
                let ok = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, oh);
                when(kb, ok, emit_row)?;
            } else {
                emit_row(kb)?;
            }
        }
        Ok(())
    };
    kb.for_range(0, o.nr as i64, 1, |kb, rr| {
        kb.for_range(0, o.nc as i64, 1, |kb, jt| {
            kb.for_range(0, full_v as i64, 1, |kb, mv| tile(kb, rr, jt, mv, 4))?;
            if full_v < nv {
                let mv = kb.ci(full_v as i64);
                tile(kb, rr, jt, mv, o.lanes_ok - 4 * full_v)?;
            }
            Ok(())
        })
    })
}
