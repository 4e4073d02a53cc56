//! Depthwise convolution kernels in C (one input channel per output
//! channel): vectors along each output row, a channels-last copy with
//! vectors across channels, and the wide-grid form for narrow planes.
//! Parameters come from the step's kernel.

use nnc_ir::program::{DepthwiseChannelsLast, DepthwiseRows, Window};
use nnc_ir::{Tensor, TensorType};

use super::Helpers;
use super::conv::{Geo, tile_start};
use super::epilogue::Epi;
use super::writer::{W, ctype, lit};

/// Depthwise convolution on a narrow plane: the channel is copied into a
/// zero-padded local plane and the output computed on a grid as wide as a
/// padded row, where every tap is a fixed offset of one flat index (so the
/// loop vectorizes); the valid columns are then copied out. A pointwise
/// epilogue (bias, activation, clamp) is applied on the grid at stride 1,
/// in whole vectors, instead of on the copy's row remainders: 2.4x on
/// EfficientNet's SiLU layers.
pub(super) fn grid(w: &mut W, win: &Window, g: &Geo, epi: &Epi, h: &mut Helpers) {
    let (plane, q_len, wp) = win
        .grid()
        .expect("the program verifier checks dw_grid geometry");
    let (pt, pl) = (g.h.pad, g.w.pad);
    let s = g.w.stride;
    let (d0, d1) = (g.h.dil, g.w.dil);
    h.need("nnc_fma");
    let ksz = g.h.k * g.w.k;
    // At stride 1 the grid is computed in chunks of GRID_CHUNK outputs,
    // every tap summed into a chunk before it is stored (one pass over
    // the grid instead of one per tap: 1.3-1.6x on MobileNetV2's 28x28
    // and 7x7 layers); the grid and the plane are padded to whole chunks.
    // Strided grids keep the pass per tap (their loads gather).
    let fused = s == 1;
    let on_grid = fused && epi.is_pointwise();
    let (plane, q_len) = if fused {
        let q = q_len.div_ceil(GRID_CHUNK) * GRID_CHUNK;
        let reach = (g.h.k - 1) * d0 * wp + (g.w.k - 1) * d1;
        (plane.max(q + reach), q)
    } else {
        (plane, q_len)
    };
    w.for_("n", 0, g.batch);
    w.for_("c", 0, g.m);
    w.line(format!("float xp[{plane}], yw[{q_len}];"));
    w.line(format!(
        "const float *xc = in0 + (n * {} + c) * {};",
        g.c,
        g.h.input * g.w.input
    ));
    w.line(format!("const float *wc = in1 + c * {ksz};"));
    w.for_("i", 0, plane);
    w.line("xp[i] = 0.0f;");
    w.close();
    w.for_("r", 0, g.h.input);
    w.for_("k", 0, g.w.input);
    w.line(format!(
        "xp[(r + {pt}) * {wp} + k + {pl}] = xc[r * {} + k];",
        g.w.input
    ));
    w.close();
    w.close();
    let b0 = match epi.bias() {
        Some(k) => format!("in{k}[c]"),
        None => "0.0f".to_string(),
    };
    if fused {
        w.line(format!("const float b0 = {b0};"));
        for t in 0..ksz {
            w.line(format!("const float w{t} = wc[{t}];"));
        }
        w.for_("t", 0, q_len / GRID_CHUNK);
        w.line(format!("const float *xt = xp + t * {GRID_CHUNK};"));
        w.line(format!("float *yt = yw + t * {GRID_CHUNK};"));
        w.for_("j", 0, GRID_CHUNK);
        w.line("float a = b0;");
        for kh in 0..g.h.k {
            for kw in 0..g.w.k {
                let off = kh * d0 * wp + kw * d1;
                w.line(format!(
                    "a = NNC_FMA(w{}, xt[j + {off}], a);",
                    kh * g.w.k + kw
                ));
            }
        }
        if on_grid {
            w.line(format!("yt[j] = {};", epi.apply("a", "yt")));
        } else {
            w.line("yt[j] = a;");
        }
        w.close();
        w.close();
    } else {
        w.for_("q", 0, q_len);
        w.line(format!("yw[q] = {b0};"));
        w.close();
        w.for_("kh", 0, g.h.k);
        w.for_("kw", 0, g.w.k);
        w.line(format!("const float wv = wc[kh * {} + kw];", g.w.k));
        w.line(format!(
            "const float *xk = xp + kh * {} + kw * {d1};",
            d0 * wp
        ));
        w.for_("q", 0, q_len);
        w.line(format!("yw[q] = NNC_FMA(wv, xk[q * {s}], yw[q]);"));
        w.close();
        w.close();
        w.close();
    }
    w.for_("oh", 0, g.h.output);
    w.for_("ow", 0, g.w.output);
    w.line(format!(
        "float *yp = out0 + ((n * {} + c) * {} + oh) * {} + ow;",
        g.m, g.h.output, g.w.output
    ));
    let v = format!("yw[oh * {wp} + ow]");
    let e = if on_grid { v } else { epi.apply(&v, "yp") };
    w.line(format!("*yp = {e};"));
    w.close();
    w.close();
    w.close();
    w.close();
}

/// Grid outputs per chunk of the stride-1 `dw_grid` rendering.
const GRID_CHUNK: usize = 16;

/// Depthwise convolution on tiny planes with many channels: a block of
/// channels is transposed to channels-last (zero-padded) on the stack, so
/// every tap is a contiguous vector over channels, with weights packed
/// `[block][tap][channel]`; `P` output positions per tile.
pub(super) fn channels_last(
    w: &mut W,
    k: &DepthwiseChannelsLast,
    g: &Geo,
    wt: &Tensor,
    bias: Option<&Tensor>,
    epi: &Epi,
    h: &mut Helpers,
) {
    let (ihp, iwp) = (
        g.h.input + g.h.pad + g.h.pad_end,
        g.w.input + g.w.pad + g.w.pad_end,
    );
    let c = g.m;
    let bsz = k.block.min(c).max(1);
    let nblk = c.div_ceil(bsz);
    let last = c - (nblk - 1) * bsz;
    let pp = k.positions.max(1);
    let kk = g.h.k * g.w.k;
    let wv = wt.to_f64();
    let bv = bias.map(|b| b.to_f64()).unwrap_or_else(|| vec![0.0; c]);
    let mut packed = Vec::with_capacity(nblk * kk * bsz);
    let mut bp = Vec::with_capacity(nblk * bsz);
    for cb in 0..nblk {
        for tap in 0..kk {
            for j in 0..bsz {
                let ch = cb * bsz + j;
                packed.push(if ch < c { wv[ch * kk + tap] } else { 0.0 });
            }
        }
        for j in 0..bsz {
            let ch = cb * bsz + j;
            bp.push(bv.get(ch).copied().unwrap_or(0.0));
        }
    }
    let wp = h.global_f32("dw_w", &packed);
    let bpn = h.global_f32("dw_b", &bp);
    h.need("nnc_fma");
    let (oh_n, ow_n) = (g.h.output, g.w.output);
    // Rows narrower than a tile only have the tail's accumulators (an
    // unused one is a -Werror error).
    let used = if ow_n >= pp { pp } else { ow_n.max(1) };
    let accs: Vec<String> = (0..used).map(|q| format!("a{q}[{bsz}]")).collect();
    w.for_("n", 0, g.batch);
    w.line(format!(
        "float xt[{}], {};",
        ihp * iwp * bsz,
        accs.join(", ")
    ));
    w.for_("i", 0, ihp * iwp * bsz);
    w.line("xt[i] = 0.0f;");
    w.close();
    if nblk > 1 {
        w.for_("cb", 0, nblk);
        w.line(format!(
            "const size_t cn = cb + 1 < {nblk} ? {bsz} : {last};"
        ));
    } else {
        w.line("const size_t cb = 0;");
        w.line(format!("const size_t cn = {c};"));
    }
    w.open("for (size_t j = 0; j < cn; ++j)");
    w.for_("r", 0, g.h.input);
    w.for_("k", 0, g.w.input);
    w.line(format!(
        "xt[((r + {}) * {iwp} + k + {}) * {bsz} + j] = in0[((n * {c} + cb * {bsz} + j) * {} + r) * {} + k];",
        g.h.pad, g.w.pad, g.h.input, g.w.input
    ));
    w.close();
    w.close();
    w.close();
    w.for_("oh", 0, oh_n);
    // Tiles of P positions; the tail tile is computed position by position.
    let tiles = ow_n / pp;
    let tile = |w: &mut W, np: usize, ow: &str| {
        for q in 0..np {
            w.for_("j", 0, bsz);
            w.line(format!("a{q}[j] = {bpn}[cb * {bsz} + j];"));
            w.close();
        }
        w.for_("kh", 0, g.h.k);
        w.for_("kw", 0, g.w.k);
        w.line(format!(
            "const float *wr = {wp} + (cb * {kk} + kh * {} + kw) * {bsz};",
            g.w.k
        ));
        for q in 0..np {
            w.line(format!(
                "const float *xr{q} = xt + ((oh * {} + kh * {}) * {iwp} + ({ow} + {q}) * {} + kw * {}) * {bsz};",
                g.h.stride, g.h.dil, g.w.stride, g.w.dil
            ));
        }
        w.for_("j", 0, bsz);
        for q in 0..np {
            w.line(format!("a{q}[j] = NNC_FMA(xr{q}[j], wr[j], a{q}[j]);"));
        }
        w.close();
        w.close();
        w.close();
        w.open("for (size_t j = 0; j < cn; ++j)");
        for q in 0..np {
            w.line(format!(
                "float *yp{q} = out0 + ((n * {c} + cb * {bsz} + j) * {oh_n} + oh) * {ow_n} + {ow} + {q};"
            ));
            let e = epi.apply(&format!("a{q}[j]"), &format!("yp{q}"));
            w.line(format!("*yp{q} = {e};"));
        }
        w.close();
    };
    if tiles > 0 {
        if pp == 1 {
            w.for_("ow", 0, ow_n);
            tile(w, 1, "ow");
        } else {
            w.for_("t", 0, tiles);
            w.line(format!("const size_t ow0 = t * {pp};"));
            tile(w, pp, "ow0");
        }
        w.close();
    }
    for ow in tiles * pp..ow_n {
        w.open("");
        tile(w, 1, &ow.to_string());
        w.close();
    }
    w.close(); // oh
    if nblk > 1 {
        w.close(); // cb
    }
    w.close(); // n
}

/// Depthwise convolution with vectors along each output row: per channel,
/// `W` interior columns at a time; border columns one by one with bounds
/// checks, unless each plane is first copied into a zero-padded stack
/// buffer (then every column is interior).
pub(super) fn rows(w: &mut W, k: &DepthwiseRows, g: &Geo, y: &TensorType, epi: &Epi) {
    let t = ctype(y.dtype);
    let ksz = g.h.k * g.w.k;
    // With a padded copy, rows are `reach + 4` long (the native kernel's
    // layout, with slack for paired loads) and nothing is padded.
    let (ph, pw) = (g.h.reach(), g.w.reach() + 4);
    let gc = if k.pad_copy {
        let mut c = g.clone();
        c.h.input = ph;
        c.h.pad = 0;
        c.h.pad_end = 0;
        c.w.input = pw;
        c.w.pad = 0;
        c.w.pad_end = 0;
        c
    } else {
        g.clone()
    };
    let (lo, hi) = gc.w.interior();
    let vw = k.width;
    let tiled = hi - lo >= vw;
    let (s, d, p) = (gc.w.stride, gc.w.dil, gc.w.pad);
    let iw = gc.w.input;
    w.for_("n", 0, y.dims[0]);
    w.for_("c", 0, g.m);
    w.line(format!(
        "const {t} *xs = in0 + (n * {} + c) * {};",
        g.c,
        g.h.input * g.w.input
    ));
    if k.pad_copy {
        w.line(format!("{t} xc[{}];", ph * pw));
        w.for_("i", 0, ph * pw);
        w.line(format!("xc[i] = {};", lit(0.0, y.dtype)));
        w.close();
        w.for_("r", 0, g.h.input);
        w.for_("q", 0, g.w.input);
        w.line(format!(
            "xc[(r + {}) * {pw} + q + {}] = xs[r * {} + q];",
            g.h.pad, g.w.pad, g.w.input
        ));
        w.close();
        w.close();
    } else {
        w.line(format!("const {t} *xc = xs;"));
    }
    w.line(format!("const {t} *wc = in1 + c * {ksz};"));
    w.line(format!(
        "{t} *yc = out0 + (n * {} + c) * {};",
        g.m,
        g.out_plane()
    ));
    w.line(format!(
        "const {t} b0 = {};",
        match epi.bias() {
            Some(k) => format!("in{k}[c]"),
            None => lit(0.0, y.dtype),
        }
    ));
    w.for_("oh", 0, g.h.output);
    if tiled {
        let nblk = (hi - lo).div_ceil(vw);
        w.for_("blk", 0, nblk);
        tile_start(w, vw, lo, hi);
        w.line(format!("{t} acc[{vw}];"));
        w.for_("j", 0, vw);
        w.line("acc[j] = b0;");
        w.close();
        gc.open_kh_rows(w);
        w.line(format!(
            "const {t} *xr = xc + (size_t)ih * {iw} + ow0 * {s} - {p};"
        ));
        w.for_("kw", 0, g.w.k);
        w.line(format!("const {t} wv = wc[kh * {} + kw];", g.w.k));
        w.for_("j", 0, vw);
        w.line(format!("acc[j] += wv * xr[kw * {d} + j * {s}];"));
        w.close();
        w.close();
        w.close();
        w.for_("j", 0, vw);
        let e = epi.apply("acc[j]", &format!("yc + oh * {} + ow0 + j", g.w.output));
        w.line(format!("yc[oh * {} + ow0 + j] = {e};", g.w.output));
        w.close();
        w.close(); // blk
    }
    let ranges: Vec<(usize, usize)> = if tiled {
        vec![(0, lo), (hi, g.w.output)]
    } else {
        vec![(0, g.w.output)]
    };
    for (from, to) in ranges {
        if from >= to {
            continue;
        }
        w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
        w.line(format!("{t} sacc = b0;"));
        gc.open_kh_rows(w);
        w.for_("kw", 0, g.w.k);
        w.line(format!(
            "const long iw = (long)(ow * {s} + kw * {d}) - {p};"
        ));
        w.line(format!("if (iw < 0 || iw >= {iw}) continue;"));
        w.line(format!(
            "sacc += wc[kh * {} + kw] * xc[(size_t)ih * {iw} + (size_t)iw];",
            g.w.k
        ));
        w.close();
        w.close();
        let e = epi.apply("sacc", &format!("yc + oh * {} + ow", g.w.output));
        w.line(format!("yc[oh * {} + ow] = {e};", g.w.output));
        w.close();
    }
    w.close(); // oh
    w.close(); // c
    w.close(); // n
}
