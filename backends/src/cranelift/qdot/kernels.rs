//! The three integer dot-product kernels in Cranelift (their copies,
//! tiles and requantization are in the parent).

use super::*;

/// Renders `qconv_dot`.
pub fn conv(
    kb: &mut Kb,
    st: &Step,
    k: &QConvDot,
    q: &QConvAttrs,
    win: &Window,
    a: &Args,
) -> Result<()> {
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let d = k.dot;
    let g = Grid::new(win, L, 0)
        .ok_or_else(|| crate::cranelift::unsupported(st, "qconv_dot on a 3-D window".into()))?;
    let (cg, mg, groups) = (win.cg(), win.mg(), win.groups);
    let taps = g.taps.len();
    let ng = qdot::conv_groups(cg, taps, d, k.im2col);
    let wt = weight(kb, st, a, 1)?;
    let words = qdot::conv_words(&wt, q.q.w_zp, cg, taps, d, k.im2col);
    let c = k.channels.min(mg).max(1);
    let mut packed = Vec::new();
    for gr in 0..groups {
        let mut b = 0;
        while b < mg {
            let e = (b + c).min(mg);
            packed.extend(qdot::conv_tile_words(&words, gr * mg + b, gr * mg + e));
            b = e;
        }
    }
    let wtab = words_table(kb, &packed)?;
    let bt = match st.bias() {
        Some(b) => Some(weight(kb, st, a, b)?),
        None => None,
    };
    let bias = qdot::folded_bias(bt.as_deref(), &wt, q.q.w_zp, x.dtype, q.q.x_zp, cg * taps);
    let btab = words_table(kb, &bias)?;
    let m_total = win.out_channels;
    let ranges = acc_ranges(&wt, m_total, q.q.w_zp, bt.as_deref(), x.dtype, q.q.x_zp);
    let rqt = Rq::new(kb, st, a, m_total, Some(&ranges))?;
    let pad = qdot::pad_value(x.dtype, q.q.x_zp);
    let (plane, np) = (g.plane(), g.phases());
    let in_plane = (g.h.input * g.w.input) as i64;
    let (run_list, elems, walk) = if k.im2col {
        let per = g.computed;
        let rs = runs(ng * per, d, |s, t| {
            let (gi, i) = (s / per, s % per);
            let (ci, tap) = qdot::conv_element(gi, t, cg, taps, d, true)?;
            let tp = g.taps[tap];
            plane_src(&g, tp.phase, i + tp.off).map(|v| v + ci as i64 * in_plane)
        });
        let unroll = 4usize.min(ng.max(1));
        let w = Walk {
            outer: ng / unroll,
            stride: unroll * per * d,
            inner: (0..unroll).map(|u| u * per * d).collect(),
            tail: (0..ng % unroll).map(|u| u * per * d).collect(),
        };
        (rs, ng * per * d, w)
    } else {
        let nq = cg.div_ceil(d);
        let rs = runs(nq * np * plane, d, |s, t| {
            let (cq, rest) = (s / (np * plane), s % (np * plane));
            let ci = cq * d + t;
            if ci >= cg {
                return None;
            }
            plane_src(&g, rest / plane, rest % plane).map(|v| v + ci as i64 * in_plane)
        });
        // Channel groups of the copy, `per` elements apart; with fewer
        // than four taps (pointwise), several per loop iteration so that
        // the loop's own instructions are shared by four groups.
        let per = np * plane * d;
        let offs: Vec<usize> = g
            .taps
            .iter()
            .map(|tp| (tp.phase * plane + tp.off) * d)
            .collect();
        let u = (4 / offs.len().max(1)).clamp(1, nq.max(1));
        let at = |k: usize| offs.iter().map(move |o| k * per + o);
        let w = Walk {
            outer: nq / u,
            stride: u * per,
            inner: (0..u).flat_map(at).collect(),
            tail: (0..nq % u).flat_map(at).collect(),
        };
        (rs, nq * np * plane * d, w)
    };
    // Quads and pairs copy in two stages: padded phase planes of bytes by
    // straight-line code, then interleaving (four bytes per position
    // either way); the input itself needs no planes.
    let direct = !k.im2col && g.is_input();
    let one = runs(np * plane, 1, |s, _| plane_src(&g, s / plane, s % plane));
    let staged = !direct && one.len() <= 512;
    let quads = direct || staged;
    let mut copy = Copy::new(
        kb,
        elems,
        (qdot::elem_bytes(d), d),
        pad,
        if quads { &[] } else { &run_list },
        x.dtype,
    )?;
    if direct {
        copy.quads = Some((cg.div_ceil(d), cg, in_plane as usize, plane));
    }
    let planes = staged.then(|| {
        let chan = np * plane;
        Planes {
            buf: kb.stack((cg * chan).div_ceil(16) * 16),
            vecs: (cg * chan).div_ceil(16),
            runs: one,
            channels: cg,
            chan,
            in_plane: in_plane as usize,
            xs: x.dtype.size(),
            xor: qdot::unsigned_shift(x.dtype) != 0,
            pad: pad as i64,
        }
    });
    let oplane = g.h.output * g.w.output;
    let ysz = y.dtype.size() as i64;
    let yg = (!g.dense()).then(|| kb.stack(c * g.computed));
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let vecs = g.computed / L;
    let partial = g.len % L != 0;
    let (nfull, vrem) = tiling(vecs, k.vectors, partial);
    let t_pos = k.vectors * L;
    for n in 0..win.batch {
        kb.for_range(0, groups as i64, 1, |kb, gv| {
            let xoff = (n * win.channels) as i64 * in_plane * x.dtype.size() as i64;
            let xn = kb.off(xb, xoff);
            let xg = kb.at(xn, gv, cg as i64 * in_plane * x.dtype.size() as i64);
            match &planes {
                Some(pl) => {
                    pl.fill(kb, xg)?;
                    let pv = {
                        let b = kb.cint(types::I8, pad as i64);
                        kb.b.ins().splat(I8X16, b)
                    };
                    let pads = (pv, pad as i64);
                    if k.im2col {
                        for gi in 0..ng {
                            let srcs: Vec<Option<Value>> = (0..d)
                                .map(|t| {
                                    qdot::conv_element(gi, t, cg, taps, d, true).map(|(ci, tap)| {
                                        let tp = g.taps[tap];
                                        kb.off(
                                            pl.buf,
                                            ((ci * np + tp.phase) * plane + tp.off) as i64,
                                        )
                                    })
                                })
                                .collect();
                            let dst = kb.off(copy.buf, (gi * g.computed * 4) as i64);
                            interleave(kb, d, dst, &srcs, g.computed, pads, false)?;
                        }
                    } else {
                        let quad = |kb: &mut Kb, cq: Value, have: usize| -> Result<()> {
                            let src = kb.at(pl.buf, cq, (d * np * plane) as i64);
                            let dst = kb.at(copy.buf, cq, (np * plane * 4) as i64);
                            for p in 0..np {
                                let srcs: Vec<Option<Value>> = (0..d)
                                    .map(|t| {
                                        (t < have)
                                            .then(|| kb.off(src, ((t * np + p) * plane) as i64))
                                    })
                                    .collect();
                                let dp = kb.off(dst, (p * plane * 4) as i64);
                                interleave(kb, d, dp, &srcs, plane, pads, false)?;
                            }
                            Ok(())
                        };
                        let full = cg / d;
                        if full > 0 {
                            kb.for_range(0, full as i64, 1, |kb, cq| quad(kb, cq, d))?;
                        }
                        if full < cg.div_ceil(d) {
                            let cq = kb.ci(full as i64);
                            quad(kb, cq, cg - d * full)?;
                        }
                    }
                }
                None => copy.fill(kb, xg)?,
            }
            let block = |kb: &mut Kb, cb: usize, b0: Value| -> Result<()> {
                let gm = kb.b.ins().imul_imm_s(gv, mg as i64);
                let m0 = kb.b.ins().iadd(gm, b0);
                let wb = kb.at(wtab, m0, (ng * 4) as i64);
                let yrow = |kb: &mut Kb, r: usize| -> Value {
                    match yg {
                        Some(s) => kb.off(s, (r * g.computed) as i64),
                        None => {
                            let base = kb.off(yb, ((n * m_total) * oplane) as i64 * ysz);
                            let mr = kb.b.ins().iadd_imm_s(m0, r as i64);
                            kb.at(base, mr, oplane as i64 * ysz)
                        }
                    }
                };
                let body = |kb: &mut Kb, tv: usize, q0: Value, last: bool| -> Result<()> {
                    let accs = tile(kb, d, cb, tv, copy.buf, q0, &walk, wb, btab, m0)?;
                    for (r, row) in accs.iter().enumerate() {
                        // After the reduction loop: values live across it
                        // would push accumulators out of registers.
                        let ch = kb.b.ins().iadd_imm_s(m0, r as i64);
                        let pc = rqt.channel(kb, ch);
                        let dst = yrow(kb, r);
                        let dst = kb.at(dst, q0, ysz);
                        let qs: Vec<Value> =
                            row.iter().map(|&acc| rqt.vector(kb, acc, &pc)).collect();
                        let valid = if last && yg.is_none() && partial {
                            g.len % L
                        } else {
                            L
                        };
                        rqt.store_row(kb, &qs, dst, valid);
                    }
                    Ok(())
                };
                if nfull > 0 {
                    kb.for_range(0, nfull as i64, 1, |kb, tq| {
                        let q0 = kb.b.ins().imul_imm_s(tq, t_pos as i64);
                        body(kb, k.vectors, q0, false)
                    })?;
                }
                if vrem > 0 {
                    let q0 = kb.ci((nfull * t_pos) as i64);
                    body(kb, vrem, q0, true)?;
                }
                if let Some(s) = yg {
                    // Drop the grid's extra columns.
                    let base = kb.off(yb, ((n * m_total) * oplane) as i64 * ysz);
                    kb.for_range(0, cb as i64, 1, |kb, r| {
                        let mr = kb.b.ins().iadd(m0, r);
                        let drow = kb.at(base, mr, oplane as i64 * ysz);
                        let srow = kb.at(s, r, g.computed as i64);
                        kb.for_range(0, g.h.output as i64, 1, |kb, oh| {
                            let dd = kb.at(drow, oh, g.w.output as i64);
                            let ss = kb.at(srow, oh, g.width as i64);
                            copy_bytes(kb, dd, ss, g.w.output);
                            Ok(())
                        })
                    })?;
                }
                Ok(())
            };
            let (bfull, crem) = (mg / c, mg % c);
            if bfull > 0 {
                kb.for_range(0, bfull as i64, 1, |kb, b| {
                    let b0 = kb.b.ins().imul_imm_s(b, c as i64);
                    block(kb, c, b0)
                })?;
            }
            if crem > 0 {
                let b0 = kb.ci((bfull * c) as i64);
                block(kb, crem, b0)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Copies `n` bytes (a constant) from `src` to `dst`: 8 at a time, then
/// the rest.
fn copy_bytes(kb: &mut Kb, dst: Value, src: Value, n: usize) {
    let mut o = 0;
    while o + 8 <= n {
        let v = kb.load(types::I64, src, o as i64);
        kb.store(v, dst, o as i64);
        o += 8;
    }
    while o + 4 <= n {
        let v = kb.load(types::I32, src, o as i64);
        kb.store(v, dst, o as i64);
        o += 4;
    }
    while o < n {
        let v = kb.load(types::I8, src, o as i64);
        kb.store(v, dst, o as i64);
        o += 1;
    }
}

/// Renders `qdw_dot`: per channel, the padded phase planes, then tiles of
/// positions summing sliding groups of taps (a byte or 16-bit shuffle of
/// one load per group and vector).
pub fn depthwise(
    kb: &mut Kb,
    st: &Step,
    k: &QDwDot,
    q: &QConvAttrs,
    win: &Window,
    a: &Args,
) -> Result<()> {
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let d = k.dot;
    let g = Grid::new(win, L, DW_SLACK)
        .ok_or_else(|| crate::cranelift::unsupported(st, "qdw_dot on a 3-D window".into()))?;
    let sl: Vec<Slide> = qdot::slides(&g, d);
    let wt = weight(kb, st, a, 1)?;
    let words = qdot::dw_words(&wt, q.q.w_zp, &sl, d);
    let flat: Vec<i32> = words.iter().flatten().copied().collect();
    let wtab = words_table(kb, &flat)?;
    let taps = g.taps.len();
    let bt = match st.bias() {
        Some(b) => Some(weight(kb, st, a, b)?),
        None => None,
    };
    let bias = qdot::folded_bias(bt.as_deref(), &wt, q.q.w_zp, x.dtype, q.q.x_zp, taps);
    let btab = words_table(kb, &bias)?;
    let ch = win.channels;
    let ranges = acc_ranges(&wt, ch, q.q.w_zp, bt.as_deref(), x.dtype, q.q.x_zp);
    let rqt = Rq::new(kb, st, a, ch, Some(&ranges))?;
    let pad = qdot::pad_value(x.dtype, q.q.x_zp);
    let (plane, np) = (g.plane(), g.phases());
    // One element per slot: the planes as bytes, which x64's `pshufb`
    // zero-extends into pairs as it slides them; elsewhere pairs read
    // planes of 16-bit values.
    let zext = d == 2 && kb.sh.module.isa().name() == "x64";
    let eb = if zext { 1 } else { qdot::elem_bytes(d) };
    let run_list = runs(np * plane, 1, |s, _| plane_src(&g, s / plane, s % plane));
    let mut copy = Copy::new(kb, np * plane, (eb, 1), pad, &run_list, x.dtype)?;
    copy.img_bytes = g.h.input * g.w.input * x.dtype.size();
    let eb = eb as i64;
    let oplane = g.h.output * g.w.output;
    let in_plane = (g.h.input * g.w.input) as i64;
    let ysz = y.dtype.size() as i64;
    let yg = (!g.dense()).then(|| kb.stack(g.computed));
    let (xb, yb) = (a.x(kb, 0)?, a.outs[0]);
    let vecs = g.computed / L;
    let partial = g.len % L != 0;
    let (nfull, vrem) = tiling(vecs, k.vectors, partial);
    let t_pos = k.vectors * L;
    // Lane j, element t reads element j + t.
    let mask: Vec<u8> = if d == 4 {
        (0..16u8).map(|b| b / 4 + b % 4).collect()
    } else if zext {
        // The byte, then a zero (`pshufb` zeroes where the top bit is set).
        (0..8u8).flat_map(|e| [e / 2 + e % 2, 0x80]).collect()
    } else {
        (0..8u8)
            .flat_map(|e| {
                let s = e / 2 + e % 2;
                [2 * s, 2 * s + 1]
            })
            .collect()
    };
    let zmask = zext.then(|| vconst(kb, I8X16, &mask));
    let imm = kb.b.func.dfg.immediates.push(ConstantData::from(mask));
    let nsl = sl.len();
    for n in 0..win.batch {
        kb.for_range(0, ch as i64, 1, |kb, c| {
            let xn = kb.off(xb, (n * ch) as i64 * in_plane * x.dtype.size() as i64);
            let xg = kb.at(xn, c, in_plane * x.dtype.size() as i64);
            copy.fill(kb, xg)?;
            let wb = kb.at(wtab, c, (nsl * 4) as i64);
            let yrow = match yg {
                Some(s) => s,
                None => {
                    let base = kb.off(yb, (n * ch * oplane) as i64 * ysz);
                    kb.at(base, c, oplane as i64 * ysz)
                }
            };
            // The channel's bias, weights and requantization, once per
            // channel rather than per tile.
            let ba = kb.at(btab, c, 4);
            let b = kb.load(types::I32, ba, 0);
            let b = kb.b.ins().splat(I32X4, b);
            let ws: Vec<Value> = (0..nsl)
                .map(|si| bcast_word(kb, d, wb, (si * 4) as i64))
                .collect();
            let pc = rqt.channel(kb, c);
            let body = |kb: &mut Kb, tv: usize, q0: Value, last: bool| -> Result<()> {
                let mut accs = vec![b; tv];
                let xq = kb.at(copy.buf, q0, eb);
                for (si, s) in sl.iter().enumerate() {
                    let xa = kb.off(xq, (s.phase * plane + s.off) as i64 * eb);
                    let w = ws[si];
                    for (v, acc) in accs.iter_mut().enumerate() {
                        let raw = kb.load(vty(d), xa, (v * L) as i64 * eb);
                        let r8 = cast(kb, I8X16, raw);
                        let xs = match zmask {
                            Some(zm) => kb.b.ins().x86_pshufb(r8, zm),
                            None => kb.b.ins().shuffle(r8, r8, imm),
                        };
                        let xs = cast(kb, vty(d), xs);
                        *acc = dot(kb, d, *acc, xs, w);
                    }
                }
                let dst = kb.at(yrow, q0, ysz);
                let qs: Vec<Value> = accs.iter().map(|&acc| rqt.vector(kb, acc, &pc)).collect();
                let valid = if last && yg.is_none() && partial {
                    g.len % L
                } else {
                    L
                };
                rqt.store_row(kb, &qs, dst, valid);
                Ok(())
            };
            if nfull > 0 {
                kb.for_range(0, nfull as i64, 1, |kb, tq| {
                    let q0 = kb.b.ins().imul_imm_s(tq, t_pos as i64);
                    body(kb, k.vectors, q0, false)
                })?;
            }
            if vrem > 0 {
                let q0 = kb.ci((nfull * t_pos) as i64);
                body(kb, vrem, q0, true)?;
            }
            if let Some(s) = yg {
                let base = kb.off(yb, (n * ch * oplane) as i64 * ysz);
                let drow = kb.at(base, c, oplane as i64 * ysz);
                kb.for_range(0, g.h.output as i64, 1, |kb, oh| {
                    let dd = kb.at(drow, oh, g.w.output as i64);
                    let ss = kb.at(s, oh, g.width as i64);
                    copy_bytes(kb, dd, ss, g.w.output);
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Renders `qgemm_dot`: per row of `a` the row as words of unsigned
/// elements, then column blocks of `v` vectors, each column requantized
/// with its own multiplier.
pub fn gemm(
    kb: &mut Kb,
    st: &Step,
    k: &QGemmDot,
    q: &QGemmAttrs,
    at: &TensorType,
    a: &Args,
) -> Result<()> {
    let y = &st.outputs[0].ty;
    let d = k.dot;
    let (m, n) = (y.dims[0], y.dims[1]);
    let kk = at.dims[1];
    let ng = kk.div_ceil(d);
    let bt = weight(kb, st, a, 1)?;
    let words = qdot::gemm_words(&bt, q.q.w_zp, q.trans_b, d);
    let cols = k.vectors * L;
    let nb = n.div_ceil(cols);
    let mut packed = Vec::new();
    let mut widths = Vec::new();
    for b in 0..nb {
        let width = if b + 1 == nb {
            (n - b * cols).div_ceil(L) * L
        } else {
            cols
        };
        widths.push(width);
        for gi in 0..ng {
            for j in b * cols..b * cols + width {
                packed.push(words.get(j).map_or(0, |r| r[gi]));
            }
        }
    }
    let wtab = words_table(kb, &packed)?;
    let biast = match st.bias() {
        Some(b) => Some(weight(kb, st, a, b)?),
        None => None,
    };
    let mut bias = qdot::gemm_bias(
        biast.as_deref(),
        &bt,
        q.q.w_zp,
        q.trans_b,
        at.dtype,
        q.q.x_zp,
    );
    bias.resize(nb * cols, 0);
    let btab = words_table(kb, &bias)?;
    let (mi, si, zp) = st.requantize().ok_or_else(|| {
        crate::cranelift::unsupported(st, "an integer kernel without requantization".into())
    })?;
    let (mv, sv) = (a.x(kb, mi)?, a.x(kb, si)?);
    let per_col = st.inputs[mi].ty.len() > 1;
    let rq_store = Rq::new(kb, st, a, n, None)?;
    let (lo, hi) = (rq_store.lo, rq_store.hi);
    let shift = qdot::unsigned_shift(at.dtype) as i64;
    let pad = qdot::pad_value(at.dtype, q.q.x_zp) as i64;
    let xrow = kb.stack(ng * 4);
    let accb = kb.stack(cols * 4);
    let (ab, yb) = (a.x(kb, 0)?, a.outs[0]);
    let (ad, yd) = (at.dtype, y.dtype);
    kb.for_range(0, m as i64, 1, |kb, i| {
        // The row as words of `d` unsigned elements.
        let arow = kb.at(ab, i, (kk * ad.size()) as i64);
        for p in 0..ng * d {
            let v = if p < kk {
                let mem = kb.mem;
                let v = if ad.is_signed() {
                    kb.b.ins().sload8(types::I32, mem, arow, p as i32)
                } else {
                    kb.b.ins().uload8(types::I32, mem, arow, p as i32)
                };
                kb.b.ins().iadd_imm_s(v, shift)
            } else {
                kb.cint(types::I32, pad)
            };
            let mem = kb.mem;
            let off = (p * qdot::elem_bytes(d)) as i32;
            if d == 4 {
                kb.b.ins().istore8(mem, v, xrow, off);
            } else {
                kb.b.ins().istore16(mem, v, xrow, off);
            }
        }
        let mut col0 = 0;
        for (b, &width) in widths.iter().enumerate() {
            let tv = width / L;
            let wb = kb.off(wtab, (b * cols * ng * 4) as i64);
            let vars: Vec<_> = (0..tv)
                .map(|v| {
                    let bv = kb.load(I32X4, btab, ((col0 + v * L) * 4) as i64);
                    kb.var(I32X4, bv)
                })
                .collect();
            kb.for_range(0, ng as i64, 1, |kb, p| {
                let xa = kb.at(xrow, p, 4);
                let x = bcast_word(kb, d, xa, 0);
                let wp = kb.at(wb, p, (width * 4) as i64);
                for (v, &var) in vars.iter().enumerate() {
                    let w = kb.load(vty(d), wp, (v * L * 4) as i64);
                    let acc = kb.get(var);
                    let r = dot(kb, d, acc, x, w);
                    kb.set(var, r);
                }
                Ok(())
            })?;
            for (v, &var) in vars.iter().enumerate() {
                let acc = kb.get(var);
                kb.store(acc, accb, (v * L * 4) as i64);
            }
            let valid = (n - col0).min(width);
            kb.for_range(0, valid as i64, 1, |kb, j| {
                let c = kb.b.ins().iadd_imm_s(j, col0 as i64);
                let aa = kb.at(accb, j, 4);
                let acc = kb.load(types::I32, aa, 0);
                let acc = kb.b.ins().sextend(types::I64, acc);
                let idx = if per_col { c } else { kb.ci(0) };
                let ma = kb.at(mv, idx, 4);
                let mm = kb.load(types::I32, ma, 0);
                let mm = kb.b.ins().sextend(types::I64, mm);
                let sa = kb.at(sv, idx, 4);
                let ss = kb.load(types::I32, sa, 0);
                let ss = kb.b.ins().sextend(types::I64, ss);
                let r = rq(kb, acc, mm, ss);
                let r = kb.b.ins().iadd_imm_s(r, zp as i64);
                let r = sat(kb, r, lo, hi);
                let r = kb.b.ins().ireduce(types::I8, r);
                let yr = kb.at(yb, i, (n * yd.size()) as i64);
                let ya = kb.at(yr, c, 1);
                kb.store(r, ya, 0);
                Ok(())
            })?;
            col0 += width;
        }
        Ok(())
    })
}
