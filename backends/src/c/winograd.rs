//! The Winograd kernel in C, on the schedule of
//! [`nnc_ir::program::winograd`]: channels are the innermost, contiguous
//! dimension of the band, `V` and `M` (rounded up to the compiler's vector
//! width), so the input transform, the batched products (on a host,
//! register tiles of vector accumulators; else four tiles by a block of
//! output channels held in named accumulator arrays) and the output
//! transform are loops with constant trip counts over contiguous channels
//! that GCC vectorizes at `-O3 -march=native`. The transform
//! coefficients are written into the expressions (additions for ±1).

use nnc_ir::op::WinogradAttrs;
use nnc_ir::program::Winograd;
use nnc_ir::program::winograd::{Schedule, row_terms};
use nnc_ir::{DType, Tensor, TensorType};

use super::Helpers;
use super::epilogue::Epi;
use super::vector::fma_step;
use super::writer::{W, flit};

/// Tiles per register tile of the products.
const TP: usize = 4;

/// `sum coef * name` as a C expression.
fn lin(terms: &[(String, f64)]) -> String {
    let mut s = String::new();
    for (i, (x, c)) in terms.iter().enumerate() {
        let (sign, mag) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
        let term = if mag == 1.0 {
            x.clone()
        } else {
            format!("{} * {x}", flit(mag, DType::F32))
        };
        match (i, sign) {
            (0, "+") => s.push_str(&term),
            (0, _) => s.push_str(&format!("-{term}")),
            _ => s.push_str(&format!(" {sign} {term}")),
        }
    }
    if s.is_empty() { "0.0f".into() } else { s }
}

/// Declares `out{i}_{j} = sum_r mat[i][r] * {d}{r}_{j}` for `rows x cols`.
fn left(w: &mut W, out: &str, d: &str, mat: &[f64], rows: usize, k: usize, cols: usize) {
    for i in 0..rows {
        let terms = row_terms(mat, k, i);
        for j in 0..cols {
            let t: Vec<(String, f64)> = terms
                .iter()
                .map(|&(r, c)| (format!("{d}{r}_{j}"), c))
                .collect();
            w.line(format!("const float {out}{i}_{j} = {};", lin(&t)));
        }
    }
}

/// The expression of `sum_s mat[j][s] * {d}{i}_{s}`.
fn right(d: &str, i: usize, mat: &[f64], k: usize, j: usize) -> String {
    let t: Vec<(String, f64)> = row_terms(mat, k, j)
        .into_iter()
        .map(|(s, c)| (format!("{d}{i}_{s}"), c))
        .collect();
    lin(&t)
}

/// The kernel. Params: `in0` x, `in1` the transformed weight (packed here
/// again at generation time), optional bias, `out0` y.
#[allow(clippy::too_many_arguments)]
pub(super) fn winograd(
    w: &mut W,
    a: &WinogradAttrs,
    k: &Winograd,
    x: &TensorType,
    u: &Tensor,
    bias: Option<&Tensor>,
    epi: &Epi,
    lanes: usize,
    h: &mut Helpers,
) -> Option<()> {
    let s = Schedule::of(a, k, x, &u.ty(), lanes)?;
    let t = &s.t;
    let (c, m, cp) = (s.c, s.m, s.cp());
    let blk = s.block;
    // Columns of the packed weight: whole blocks.
    let nb = s.mp().div_ceil(blk);
    let mq = nb * blk;
    let e = t.elems();
    let uv = u.to_f64();
    let mut packed = Vec::with_capacity(e * c * mq);
    for kk in 0..e {
        for ch in 0..c {
            for o in 0..mq {
                packed.push(flit(
                    if o < m {
                        uv[(kk * c + ch) * m + o]
                    } else {
                        0.0
                    },
                    DType::F32,
                ));
            }
        }
    }
    let up = h.global_array("wino_u", "float", &packed);
    let bvals = bias.map(|b| b.to_f64()).unwrap_or_default();
    let bp: Vec<String> = (0..mq)
        .map(|o| flit(bvals.get(o).copied().unwrap_or(0.0), DType::F32))
        .collect();
    let bp = h.global_array("wino_b", "float", &bp);
    let (ah, aw, mh, mw) = (t.h.alpha, t.w.alpha, t.h.m, t.w.m);
    let (ih, iw, oh, ow) = (s.ih, s.iw, t.oh, t.ow);
    let bw = s.band_cols();
    let tiles = s.tiles;
    let plane = oh * ow;
    w.line(format!(
        "/* winograd F({mh}x{mw},3): {} x {} tiles, {tiles} per group, {blk} channels per block */",
        t.th, t.tw
    ));
    w.line(format!("float band[{}];", s.band_len()));
    w.line(format!("float wv[{}];", s.v_len()));
    w.line(format!("float wm[{}];", s.m_len()));
    if s.staged() {
        w.line(format!("float ws[{}];", s.stage_len()));
    }
    w.for_("i", 0, s.band_len());
    w.line("band[i] = 0.0f;");
    w.close();
    w.for_("n", 0, s.batch);
    w.line(format!("const float *x = in0 + n * {};", c * ih * iw));
    w.line(format!("float *y = out0 + n * {};", m * plane));
    w.open(format!("for (size_t i = 0; i < {}; i += {})", t.th, s.rows));
    w.line(format!(
        "const size_t nr = {} - i < {} ? {} - i : {};",
        t.th, s.rows, t.th, s.rows
    ));
    // The band: the input rows of these tile rows, channels last.
    w.for_("r", 0, s.band_rows());
    w.line(format!("const long iy = (long)(i * {mh} + r) - {};", s.pt));
    w.line(format!("float *row = band + (r * {bw} + {}) * {cp};", s.pl));
    w.open(format!("if (iy < 0 || iy >= {ih})"));
    w.for_("q", 0, iw * cp);
    w.line("row[q] = 0.0f;");
    w.close();
    w.close();
    w.open("else");
    w.line(format!("const float *sp = x + (size_t)iy * {iw};"));
    let l = h.lanes;
    if l > 1 {
        // Blocks of lanes channels by lanes columns, transposed in
        // vectors; the columns and channels past the last block one by one.
        h.need("nnc_tr");
        w.line("size_t ch = 0;");
        w.open(format!("for (; ch + {l} <= {c}; ch += {l})"));
        w.line("size_t xx = 0;");
        w.open(format!("for (; xx + {l} <= {iw}; xx += {l})"));
        w.line(format!(
            "nnc_tr(sp + ch * {} + xx, {}, row + xx * {cp} + ch, {cp});",
            ih * iw,
            ih * iw
        ));
        w.close();
        w.open(format!("for (; xx < {iw}; ++xx)"));
        w.for_("k", 0, l);
        w.line(format!(
            "row[xx * {cp} + ch + k] = sp[(ch + k) * {} + xx];",
            ih * iw
        ));
        w.close();
        w.close();
        w.close();
        w.open(format!("for (; ch < {c}; ++ch)"));
    } else {
        w.for_("ch", 0, c);
    }
    w.for_("xx", 0, iw);
    w.line(format!("row[xx * {cp} + ch] = sp[ch * {} + xx];", ih * iw));
    w.close();
    w.close();
    w.close();
    w.close();
    let cols = s.cols;
    w.open(format!("for (size_t j0 = 0; j0 < {}; j0 += {cols})", t.tw));
    w.line(format!(
        "const size_t nc = {} - j0 < {cols} ? {} - j0 : {cols};",
        t.tw, t.tw
    ));
    w.line("const size_t nt = nr * nc;");
    // Input transform.
    w.for_("rr", 0, "nr");
    w.for_("jt", 0, "nc");
    w.line(format!(
        "const float *b0 = band + rr * {} + (j0 + jt) * {};",
        mh * bw * cp,
        mw * cp
    ));
    w.line(format!("float *v0 = wv + (rr * nc + jt) * {cp};"));
    w.for_("c", 0, cp);
    for r in 0..ah {
        for q in 0..aw {
            w.line(format!(
                "const float d{r}_{q} = b0[{} + c];",
                (r * bw + q) * cp
            ));
        }
    }
    left(w, "t", "d", &t.h.bt, ah, ah, aw);
    for i in 0..ah {
        for j in 0..aw {
            let el = i * aw + j;
            w.line(format!(
                "v0[{} + c] = {};",
                el * tiles * cp,
                right("t", i, &t.w.bt, aw, j)
            ));
        }
    }
    w.close();
    w.close();
    w.close();
    // Blocks of output channels.
    w.open(format!("for (size_t o0 = 0; o0 < {mq}; o0 += {blk})"));
    w.for_("k", 0, e);
    w.line(format!("const float *uk = {up} + k * {} + o0;", c * mq));
    w.line(format!("const float *vk = wv + k * {};", tiles * cp));
    w.line(format!("float *mk = wm + k * {};", s.m_stride()));
    if h.lanes > 0 && blk.is_multiple_of(h.lanes) {
        products_vector(w, blk, c, cp, mq, tiles, h);
    } else {
        products_arrays(w, blk, c, cp, mq);
    }
    w.close();
    // Output transform, bias, epilogue.
    let staged = s.staged();
    let sc = s.stage_cols();
    // A pointwise epilogue is applied as the stage is written, and the
    // stage is then transposed into the planes in vectors; one reading
    // the output's position (a residual) is applied as the planes are.
    let early = staged && h.lanes > 1 && epi.is_pointwise();
    w.for_("rr", 0, "nr");
    w.for_("jt", 0, "nc");
    w.line(format!("const float *m0 = wm + (rr * nc + jt) * {blk};"));
    if staged {
        w.line(format!(
            "float *s0 = ws + (rr * {} + jt * {mw}) * {blk};",
            mh * sc
        ));
    } else {
        w.line(format!("const size_t oy = (i + rr) * {mh};"));
        w.line(format!("const size_t ox = (j0 + jt) * {mw};"));
        let rnames: Vec<String> = (0..mh * mw).map(|pq| format!("r{pq}[{blk}]")).collect();
        w.line(format!("float {};", rnames.join(", ")));
    }
    w.for_("j", 0, blk);
    for r in 0..ah {
        for q in 0..aw {
            let el = r * aw + q;
            w.line(format!(
                "const float d{r}_{q} = m0[{} + j];",
                el * s.m_stride()
            ));
        }
    }
    left(w, "t", "d", &t.h.at, mh, ah, aw);
    for p in 0..mh {
        for q in 0..mw {
            let val = format!("{} + {bp}[o0 + j]", right("t", p, &t.w.at, aw, q));
            if early {
                let v = epi.apply(&format!("({val})"), "");
                w.line(format!("s0[{} + j] = {v};", (p * sc + q) * blk));
            } else if staged {
                w.line(format!("s0[{} + j] = {val};", (p * sc + q) * blk));
            } else {
                w.line(format!("r{}[j] = {val};", p * mw + q));
            }
        }
    }
    w.close();
    let jmax = format!("(o0 + {blk} <= {m} ? {blk} : {m} - o0)");
    if !staged {
        for p in 0..mh {
            for q in 0..mw {
                let mut conds = Vec::new();
                if !oh.is_multiple_of(mh) {
                    conds.push(format!("oy + {p} < {oh}"));
                }
                if !ow.is_multiple_of(mw) {
                    conds.push(format!("ox + {q} < {ow}"));
                }
                if conds.is_empty() {
                    w.block();
                } else {
                    w.open(format!("if ({})", conds.join(" && ")));
                }
                w.line(format!(
                    "float *yo = y + o0 * {plane} + (oy + {p}) * {ow} + ox + {q};"
                ));
                w.open(format!("for (size_t j = 0; j < {jmax}; ++j)"));
                let at = format!("yo + j * {plane}");
                w.line(format!(
                    "yo[j * {plane}] = {};",
                    epi.apply(&format!("r{}[j]", p * mw + q), &at)
                ));
                w.close();
                w.close();
            }
        }
    }
    w.close();
    w.close();
    if staged {
        // The group's outputs, plane by plane along contiguous rows (the
        // parts of overhanging tiles dropped).
        w.line(format!("const size_t oy0 = i * {mh}, ox0 = j0 * {mw};"));
        w.line(format!(
            "const size_t ny = nr * {mh} < {oh} - oy0 ? nr * {mh} : {oh} - oy0;"
        ));
        w.line(format!(
            "const size_t nx = nc * {mw} < {ow} - ox0 ? nc * {mw} : {ow} - ox0;"
        ));
        // Channels past the last whole vector (an output channel count
        // that is not a multiple of the lanes) one by one; emitted only
        // then: GCC 12 warns of undefined behaviour in the dead loop.
        let rest = !early || !m.is_multiple_of(h.lanes);
        if early {
            let l = h.lanes;
            w.line(format!("const size_t nj = {jmax};"));
            w.line("size_t j = 0;");
            w.open(format!("for (; j + {l} <= nj; j += {l})"));
            w.for_("py", 0, "ny");
            w.line(format!(
                "float *yo = y + (o0 + j) * {plane} + (oy0 + py) * {ow} + ox0;"
            ));
            w.line(format!("const float *sp = ws + py * {} + j;", sc * blk));
            w.line("size_t px = 0;");
            w.open(format!("for (; px + {l} <= nx; px += {l})"));
            w.line(format!("nnc_tr(sp + px * {blk}, {blk}, yo + px, {plane});"));
            w.close();
            w.open("for (; px < nx; ++px)");
            w.for_("k", 0, l);
            w.line(format!("yo[k * {plane} + px] = sp[px * {blk} + k];"));
            w.close();
            w.close();
            w.close();
            w.close();
            if rest {
                w.open("for (; j < nj; ++j)");
            }
        } else {
            w.open(format!("for (size_t j = 0; j < {jmax}; ++j)"));
        }
        if rest {
            w.for_("py", 0, "ny");
            w.line(format!(
                "float *yo = y + (o0 + j) * {plane} + (oy0 + py) * {ow} + ox0;"
            ));
            w.line(format!("const float *sp = ws + py * {} + j;", sc * blk));
            w.for_("px", 0, "nx");
            if early {
                w.line(format!("yo[px] = sp[px * {blk}];"));
            } else {
                w.line(format!(
                    "yo[px] = {};",
                    epi.apply(&format!("sp[px * {blk}]"), "yo + px")
                ));
            }
            w.close();
            w.close();
            w.close();
        }
    }
    w.close();
    w.close();
    w.close();
    w.close();
    Some(())
}

/// The batched products `M[k] = U[k] V[k]` of one output-channel block on
/// a host, as vector accumulators (registers by construction, see
/// [`super::vector`]): register tiles of `p` tiles by `sv` vectors that
/// fit the register file and no more tiles than a group holds, the last
/// one shifted to end at `nt` (a tile computed twice gives the same sums).
/// A group with fewer tiles than a register tile (the last of a row) takes
/// register tiles of half as many, down to one. The array form's four
/// tiles by a 64-channel block need 32 accumulators: on AVX2 (16
/// registers) that spilled, and the Winograd convolutions of SqueezeNet at
/// 13x13 ran slower than direct ones. A block of one vector (16 output
/// channels) used to go one tile at a time whenever a group held fewer
/// tiles than the register tile (24): one accumulator, a chain of
/// dependent multiply-adds, and ResNet-8's 16-channel 32x32 layers ran
/// 2.3x slower than direct convolution.
#[allow(clippy::too_many_arguments)]
fn products_vector(
    w: &mut W,
    blk: usize,
    c: usize,
    cp: usize,
    mq: usize,
    tiles: usize,
    h: &mut Helpers,
) {
    h.need("nnc_vec");
    let lanes = h.lanes;
    let nv = blk / lanes;
    let (sv, p) = register_tile(nv, lanes, tiles);
    let tile = |w: &mut W, p: usize, js: &str| {
        w.open(format!(
            "for (size_t o = 0; o < {blk}; o += {})",
            sv * lanes
        ));
        for q in 0..p {
            let names: Vec<String> = (0..sv)
                .map(|v| format!("a{q}_{v} = NNC_VSPLAT(0.0f)"))
                .collect();
            w.line(format!("nnc_vf {};", names.join(", ")));
        }
        w.for_("c", 0, c);
        w.line(format!("const float *uc = uk + c * {mq} + o;"));
        fma_step(
            w,
            "a",
            p,
            sv,
            |v| format!("uc + {}", v * lanes),
            |q| format!("vk[({js} + {q}) * {cp} + c]"),
        );
        w.close();
        for q in 0..p {
            for v in 0..sv {
                w.line(format!(
                    "*(nnc_vf *)(mk + ({js} + {q}) * {blk} + o + {}) = a{q}_{v};",
                    v * lanes
                ));
            }
        }
        w.close();
    };
    // Register tiles of q tiles while the group has q, halving q; then one
    // tile at a time.
    let mut q = p.min(tiles).max(1);
    let mut first = true;
    while q > 1 {
        let cond = format!("if (nt >= {q})");
        w.open(if first { cond } else { format!("else {cond}") });
        w.open(format!("for (size_t jb = 0; jb < nt; jb += {q})"));
        w.line(format!("const size_t js = jb + {q} <= nt ? jb : nt - {q};"));
        tile(w, q, "js");
        w.close();
        w.close();
        q /= 2;
        first = false;
    }
    if first {
        w.block();
    } else {
        w.open("else");
    }
    w.for_("jt", 0, "nt");
    tile(w, 1, "jt");
    w.close();
    w.close();
}

/// Register tile (vectors of channels, tiles) of the vector products for a
/// block of `nv` vectors and groups of `tiles` tiles: the fewest cycles
/// per useful multiply-add, with at most 12 of 16 registers (24 of 32 with
/// 16-lane vectors) as accumulators. A register tile of `p` tiles covers a
/// group in `ceil(tiles / p)` passes, the last shifted back over tiles
/// already computed (work done twice); per pass and input channel it loads
/// `sv` vectors and broadcasts `p` values (two loads a cycle) for `sv * p`
/// multiply-adds (two a cycle, each accumulator once per 6 cycles of
/// latency). Ties: fewer loads per multiply-add. A block of four vectors
/// by six tiles (24 accumulators) on groups of eight tiles did 50% more
/// work than four by four.
fn register_tile(nv: usize, lanes: usize, tiles: usize) -> (usize, usize) {
    let budget = if lanes >= 16 { 24 } else { 12 };
    let tiles = tiles.max(1);
    let mut best: Option<((usize, usize), f64, f64)> = None;
    for sv in (1..=nv.min(budget)).filter(|sv| nv.is_multiple_of(*sv)) {
        for p in 1..=(budget / sv).min(tiles) {
            let acc = (sv * p) as f64;
            let issued = (tiles.div_ceil(p) * p) as f64 / tiles as f64;
            let loads = (sv + p) as f64 / acc;
            let cycles = issued * 0.5f64.max(6.0 / acc).max(loads / 2.0);
            let better = best.is_none_or(|(_, c, l)| {
                cycles < c - 1e-9 || ((cycles - c).abs() <= 1e-9 && loads < l)
            });
            if better {
                best = Some(((sv, p), cycles, loads));
            }
        }
    }
    best.map_or((1, 1), |(t, _, _)| t)
}

/// The batched products as accumulator arrays the compiler vectorizes (a
/// target without vector registers): four tiles at a time, then one.
fn products_arrays(w: &mut W, blk: usize, c: usize, cp: usize, mq: usize) {
    w.line("size_t jt = 0;");
    w.open(format!("for (; jt + {TP} <= nt; jt += {TP})"));
    let names: Vec<String> = (0..TP).map(|p| format!("a{p}[{blk}]")).collect();
    w.line(format!("float {};", names.join(", ")));
    w.for_("j", 0, blk);
    for p in 0..TP {
        w.line(format!("a{p}[j] = 0.0f;"));
    }
    w.close();
    w.for_("c", 0, c);
    w.line(format!("const float *uc = uk + c * {mq};"));
    for p in 0..TP {
        w.line(format!("const float x{p} = vk[(jt + {p}) * {cp} + c];"));
    }
    w.for_("j", 0, blk);
    for p in 0..TP {
        w.line(format!("a{p}[j] += x{p} * uc[j];"));
    }
    w.close();
    w.close();
    w.for_("j", 0, blk);
    for p in 0..TP {
        w.line(format!("mk[(jt + {p}) * {blk} + j] = a{p}[j];"));
    }
    w.close();
    w.close();
    w.open("for (; jt < nt; ++jt)");
    w.line(format!("float a0[{blk}];"));
    w.for_("j", 0, blk);
    w.line("a0[j] = 0.0f;");
    w.close();
    w.for_("c", 0, c);
    w.line(format!("const float *uc = uk + c * {mq};"));
    w.line(format!("const float x0 = vk[jt * {cp} + c];"));
    w.for_("j", 0, blk);
    w.line("a0[j] += x0 * uc[j];");
    w.close();
    w.close();
    w.for_("j", 0, blk);
    w.line(format!("mk[jt * {blk} + j] = a0[j];"));
    w.close();
    w.close();
}

#[cfg(test)]
mod tests {
    use super::register_tile;

    #[test]
    fn register_tiles_fill_the_register_file() {
        // AVX2, a block of 64 channels, long groups: 4 vectors by 3 tiles
        // (12 of 16 registers; 7 loads per 12 products against 8 for 2 by
        // 6).
        assert_eq!(register_tile(8, 8, 48), (4, 3));
        assert_eq!(register_tile(2, 8, 48), (2, 6));
        assert_eq!(register_tile(1, 8, 48), (1, 12));
        // Three vectors: all three, by four tiles.
        assert_eq!(register_tile(3, 8, 48), (3, 4));
        // AVX-512: 24 of 32 registers.
        assert_eq!(register_tile(4, 16, 48), (4, 6));
    }

    #[test]
    fn register_tiles_fit_the_group() {
        // AVX-512, groups of 8 tiles: 4 by 4 (two passes, nothing done
        // twice) rather than 4 by 6 (two passes over 12 tiles); one vector
        // by all 8 tiles (ResNet-8's 16-channel layers).
        assert_eq!(register_tile(4, 16, 8), (4, 4));
        assert_eq!(register_tile(1, 16, 8), (1, 8));
        assert_eq!(register_tile(2, 16, 8), (2, 8));
        // Fewer tiles than any tile wants: all of them.
        assert_eq!(register_tile(1, 16, 2), (1, 2));
    }
}
