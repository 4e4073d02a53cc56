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
    w.for_("ch", 0, c);
    w.line(format!(
        "const float *sp = x + (ch * {ih} + (size_t)iy) * {iw};"
    ));
    w.for_("xx", 0, iw);
    w.line(format!("row[xx * {cp} + ch] = sp[xx];"));
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
        products_vector(w, blk, c, cp, mq, h);
    } else {
        products_arrays(w, blk, c, cp, mq);
    }
    w.close();
    // Output transform, bias, epilogue.
    w.for_("rr", 0, "nr");
    w.for_("jt", 0, "nc");
    w.line(format!("const size_t oy = (i + rr) * {mh};"));
    w.line(format!("const size_t ox = (j0 + jt) * {mw};"));
    w.line(format!("const float *m0 = wm + (rr * nc + jt) * {blk};"));
    let rnames: Vec<String> = (0..mh * mw).map(|pq| format!("r{pq}[{blk}]")).collect();
    w.line(format!("float {};", rnames.join(", ")));
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
            w.line(format!(
                "r{}[j] = {} + {bp}[o0 + j];",
                p * mw + q,
                right("t", p, &t.w.at, aw, q)
            ));
        }
    }
    w.close();
    let jmax = format!("(o0 + {blk} <= {m} ? {blk} : {m} - o0)");
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
    w.close();
    w.close();
    w.close();
    w.close();
    w.close();
    w.close();
    Some(())
}

/// The batched products `M[k] = U[k] V[k]` of one output-channel block on
/// a host, as vector accumulators (registers by construction, see
/// [`super::vector`]): register tiles of `p` tiles by `sv` vectors that
/// fit the register file, the last one shifted to end at `nt` (a tile
/// computed twice gives the same sums). Fewer tiles than a register tile
/// go one by one. The array form's four tiles by a 64-channel block need
/// 32 accumulators: on AVX2 (16 registers) that spilled, and the Winograd
/// convolutions of SqueezeNet at 13x13 ran slower than direct ones.
fn products_vector(w: &mut W, blk: usize, c: usize, cp: usize, mq: usize, h: &mut Helpers) {
    h.need("nnc_vec");
    let lanes = h.lanes;
    let nv = blk / lanes;
    let (sv, p) = register_tile(nv, lanes);
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
    w.open(format!("if (nt >= {p})"));
    w.open(format!("for (size_t jb = 0; jb < nt; jb += {p})"));
    w.line(format!("const size_t js = jb + {p} <= nt ? jb : nt - {p};"));
    tile(w, p, "js");
    w.close();
    w.close();
    w.open("else");
    w.for_("jt", 0, "nt");
    tile(w, 1, "jt");
    w.close();
    w.close();
}

/// Register tile (vectors of channels, tiles) of the vector products for a
/// block of `nv` vectors: the most accumulators within the register file
/// (12 of 16 registers, 24 of 32 with 16-lane vectors), then the fewest
/// loads per multiply-add.
fn register_tile(nv: usize, lanes: usize) -> (usize, usize) {
    let budget = if lanes >= 16 { 24 } else { 12 };
    (1..=nv.min(budget))
        .filter(|sv| nv.is_multiple_of(*sv))
        .map(|sv| (sv, (budget / sv).max(1)))
        .max_by(|a, b| {
            let (ka, kb) = (a.0 * a.1, b.0 * b.1);
            // More accumulators; then fewer loads (sv + p) per product.
            ka.cmp(&kb)
                .then(((b.0 + b.1) * ka).cmp(&((a.0 + a.1) * kb)))
        })
        .unwrap_or((1, 1))
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
        // AVX2, a block of 64 channels: 4 vectors by 3 tiles (12 of 16
        // registers; 7 loads per 12 products against 8 for 2 by 6).
        assert_eq!(register_tile(8, 8), (4, 3));
        assert_eq!(register_tile(2, 8), (2, 6));
        assert_eq!(register_tile(1, 8), (1, 12));
        // AVX-512: 24 of 32 registers.
        assert_eq!(register_tile(4, 16), (4, 6));
        // Three vectors: all three, by four tiles.
        assert_eq!(register_tile(3, 8), (3, 4));
    }
}
