//! Host kernels tuned for SIMD: the C compiler (at `-O3 -march=native`)
//! vectorizes them because every inner loop has a constant trip count and
//! the accumulators are small fixed-size arrays it keeps in registers.
//!
//! - 2-D convolution, register-blocked: `OB` output channels times `VW`
//!   output columns per tile. Tiles cover the interior columns, where every
//!   kernel tap is inside the input (the last tile overlaps the previous
//!   one instead of needing a tail); the few border columns are computed
//!   one by one with bounds checks. Rows outside the input are skipped.
//! - Depthwise 2-D convolution: one channel at a time, `VW` columns per tile.
//!
//! Microcontroller targets keep the compact kernels of `nn.rs`: these
//! tiles would only spill registers there and grow the code.

use nnc_ir::op::{ConvAttrs, UnaryOp};
use nnc_ir::{DType, TensorType};

use super::elementwise::unary_expr;
use super::writer::{W, ctype, flit, lit};
use super::{Helpers, StepWeights};

/// Output channels per tile.
/// SIMD width of the host the C is generated for: the tile sizes below
/// keep the accumulators in registers, and AVX-512 has twice the lanes and
/// twice the registers of AVX2.
fn wide_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Output channels per spatial tile: pointwise layers reuse each input
/// vector across more channels.
fn ob_max(pointwise: bool) -> usize {
    if pointwise { 8 } else { 4 }
}

/// Columns per tile: the widest of 16, 8, 4 that fits the interior.
fn tile_width(interior: usize) -> usize {
    let mx = if wide_simd() { 32 } else { 16 };
    [32, 16, 8, 4]
        .into_iter()
        .filter(|&v| v <= mx)
        .find(|&v| v <= interior)
        .unwrap_or(0)
}

/// Geometry of a 2-D convolution (1-D convolutions are 2-D with H = 1).
#[derive(Clone, Debug)]
struct Geo {
    batch: usize,
    c: usize,
    m: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    s: [usize; 2],
    d: [usize; 2],
    p: [usize; 2],
    /// Pads at the end of each axis.
    pe: [usize; 2],
    /// Columns stored de-interleaved by stride phase (1: plain rows).
    phases: usize,
}

impl Geo {
    /// Opens the loop over kernel rows `kh` with `ih`, the input row they
    /// read, skipping rows outside the input.
    fn open_kh_rows(&self, w: &mut W) {
        w.for_("kh", 0, self.kh);
        w.line(format!(
            "const long ih = (long)(oh * {} + kh * {}) - {};",
            self.s[0], self.d[0], self.p[0]
        ));
        w.line(format!("if (ih < 0 || ih >= {}) continue;", self.ih));
    }

    /// Floats per stored input row (all phases).
    fn row(&self) -> usize {
        self.phases * self.iw.div_ceil(self.phases)
    }

    /// Floats per input channel.
    fn plane(&self) -> usize {
        self.ih * self.row()
    }
}

impl Geo {
    fn of(a: &ConvAttrs, x: &TensorType, wt: &TensorType, y: &TensorType) -> Option<Geo> {
        // A pointwise convolution is a matrix product over the flattened
        // spatial positions: treat it as 1-D over all of them.
        let pointwise = wt.dims[2..].iter().all(|&k| k == 1)
            && a.strides.iter().all(|&s| s == 1)
            && a.pads.iter().all(|&p| p == 0);
        if pointwise && x.rank() >= 3 {
            let sp: usize = x.dims[2..].iter().product();
            return Some(Geo {
                batch: x.dims[0],
                c: x.dims[1],
                m: y.dims[1],
                ih: 1,
                iw: sp,
                oh: 1,
                ow: sp,
                kh: 1,
                kw: 1,
                s: [1, 1],
                d: [1, 1],
                p: [0, 0],
                pe: [0, 0],
                phases: 1,
            });
        }
        match x.rank() {
            4 => Some(Geo {
                batch: x.dims[0],
                c: x.dims[1],
                m: y.dims[1],
                ih: x.dims[2],
                iw: x.dims[3],
                oh: y.dims[2],
                ow: y.dims[3],
                kh: wt.dims[2],
                kw: wt.dims[3],
                s: [a.strides[0], a.strides[1]],
                d: [a.dilations[0], a.dilations[1]],
                p: [a.pads[0], a.pads[1]],
                pe: [a.pads[2], a.pads[3]],
                phases: 1,
            }),
            3 => Some(Geo {
                batch: x.dims[0],
                c: x.dims[1],
                m: y.dims[1],
                ih: 1,
                iw: x.dims[2],
                oh: 1,
                ow: y.dims[2],
                kh: 1,
                kw: wt.dims[2],
                s: [1, a.strides[0]],
                d: [1, a.dilations[0]],
                p: [0, a.pads[0]],
                pe: [0, a.pads[1]],
                phases: 1,
            }),
            _ => None,
        }
    }

    /// Output columns whose every tap is inside the input: `[lo, hi)`.
    fn interior(&self) -> (usize, usize) {
        let (s, d, p) = (self.s[1], self.d[1], self.p[1]);
        let lo = p.div_ceil(s);
        let span = d * (self.kw - 1);
        // ow*s + span - p <= iw - 1
        let hi = if self.iw + p > span {
            ((self.iw - 1 + p - span) / s + 1).min(self.ow)
        } else {
            0
        };
        (lo.min(self.ow), hi.max(lo.min(self.ow)))
    }
}

/// Largest zero-padded input copy kept on the stack (bytes).
const PAD_COPY_LIMIT: usize = 256 * 1024;

/// Emits, inside the batch loop, `xin`: this batch element's input. When
/// the convolution pads and the input is small, `xin` is a zero-padded
/// copy on the stack and the returned geometry has no pads, so the kernel
/// never needs a bounds check.
fn padded(g: &Geo) -> Option<Geo> {
    copy_geometry(g, 1)
}

/// The geometry of a zero-padded copy whose columns are de-interleaved
/// into `phases` planes (so strided taps become contiguous loads), when a
/// copy is worth making and fits on the stack.
fn copy_geometry(g: &Geo, phases: usize) -> Option<Geo> {
    let ihp = g.ih + g.p[0] + g.pe[0];
    let iwp = g.iw + g.p[1] + g.pe[1];
    let pads = g.p[0] + g.p[1] + g.pe[0] + g.pe[1];
    let out = Geo {
        ih: ihp,
        iw: iwp,
        p: [0, 0],
        pe: [0, 0],
        phases,
        ..g.clone()
    };
    ((pads > 0 || phases > 1) && g.c * out.plane() * 4 <= PAD_COPY_LIMIT).then_some(out)
}

/// Emits the definition of `xin`, this batch element's input laid out as
/// `to` describes: either the input itself or a padded (and possibly
/// de-interleaved) stack copy of it. `g` is the convolution's geometry.
fn input_prologue(w: &mut W, g: &Geo, to: Option<&Geo>, t: &str) {
    let Some(to) = to else {
        w.line(format!("const {t} *xin = in0 + n * {};", g.c * g.ih * g.iw));
        return;
    };
    let n = g.c * to.plane();
    let (ph, wph) = (to.phases, to.iw.div_ceil(to.phases));
    w.line(format!("{t} xp[{n}];"));
    w.for_("i", 0, n);
    w.line("xp[i] = 0;");
    w.close();
    w.for_("c", 0, g.c);
    w.for_("r", 0, g.ih);
    w.for_("k", 0, g.iw);
    w.line(format!("const size_t col = k + {};", g.p[1]));
    w.line(format!(
        "xp[((c * {} + r + {}) * {ph} + col % {ph}) * {wph} + col / {ph}] = in0[((n * {} + c) * {} + r) * {} + k];",
        to.ih, g.p[0], g.c, g.ih, g.iw
    ));
    w.close();
    w.close();
    w.close();
    w.line(format!("const {t} *xin = xp;"));
}

fn act(a: &Option<UnaryOp>, v: &str, d: DType) -> String {
    match a {
        Some(u) => unary_expr(u, v, d),
        None => v.to_string(),
    }
}

/// Emits a scalar loop computing output columns `ow` in `[from, to)` of
/// the current row for channels `o0 .. o0 + ob` (bounds-checked taps).
fn scalar_columns(
    w: &mut W,
    g: &Geo,
    a: &ConvAttrs,
    ob: &str,
    cg: usize,
    bias: bool,
    t: &str,
    y: DType,
    from: &str,
    to: &str,
) {
    let ksz = g.kh * g.kw;
    w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
    w.open(format!("for (size_t b = 0; b < {ob}; ++b)"));
    w.line("const size_t o = o0 + b;");
    w.line(format!(
        "{t} s = {};",
        if bias {
            "in2[o]".to_string()
        } else {
            lit(0.0, y)
        }
    ));
    w.line(format!(
        "const size_t ic0 = (o / {}) * {cg};",
        g.m / a.group
    ));
    w.for_("ic", 0, cg);
    w.line(format!(
        "const {t} *xc = xin + (ic0 + ic) * {};",
        g.ih * g.iw
    ));
    w.line(format!("const {t} *wc = in1 + (o * {cg} + ic) * {ksz};"));
    g.open_kh_rows(w);
    w.for_("kw", 0, g.kw);
    w.line(format!(
        "const long iw = (long)(ow * {} + kw * {}) - {};",
        g.s[1], g.d[1], g.p[1]
    ));
    w.line(format!("if (iw < 0 || iw >= {}) continue;", g.iw));
    w.line(format!(
        "s += wc[kh * {} + kw] * xc[(size_t)ih * {} + (size_t)iw];",
        g.kw, g.iw
    ));
    w.close();
    w.close();
    w.close();
    let e = act(&a.act, "s", y);
    w.line(format!(
        "out0[(n * {} + o) * {} + oh * {} + ow] = {e};",
        g.m,
        g.oh * g.ow,
        g.ow
    ));
    w.close();
    w.close();
}

/// `ow0`, the first column of interior tile `blk` of `vw` columns: tiles
/// step by `vw` from `lo`, and the last one is shifted left to end at `hi`.
fn tile_start(w: &mut W, vw: usize, lo: usize, hi: usize) {
    w.line(format!(
        "const size_t ow0 = blk * {vw} + {lo} < {} ? blk * {vw} + {lo} : {};",
        hi - vw + 1,
        hi - vw
    ));
}

/// Picks a fast kernel for a convolution: channel-vectorized with packed
/// weights when the weights are constants and there is one group,
/// depthwise rows for depthwise convolutions, spatial tiles otherwise.
/// Returns false (emitting nothing) when none suits the shape.
pub fn conv(
    w: &mut W,
    a: &ConvAttrs,
    x: &TensorType,
    wt: &TensorType,
    bias: bool,
    y: &TensorType,
    ws: &StepWeights<'_>,
    h: &mut Helpers,
) -> bool {
    let Some(g) = Geo::of(a, x, wt, y) else {
        return false;
    };
    let cg = g.c / a.group;
    let mg = g.m / a.group;
    if cg == 1 && mg == 1 {
        if y.dtype == DType::F32 && depthwise_hwc(w, a, &g, ws, h) {
            return true;
        }
        return depthwise(w, a, &g, bias, y, h);
    }
    // Wide rows: vectorize over output columns. Narrow ones: over output
    // channels, which needs the weights repacked (so they must be constants).
    // Spatial tiles pay for overlap when the row is not a multiple of the
    // tile width; prefer channel vectors then, if they apply.
    let (lo, hi) = g.interior();
    let width = g.ow.min(hi - lo + g.p[1] + g.pe[1]);
    let vw = tile_width(width);
    let cv_ok =
        a.group == 1 && y.dtype == DType::F32 && g.m >= 8 && ws.get(1).copied().flatten().is_some();
    let prefer_cv = cv_ok && (width < 32 || (vw > 0 && width % vw != 0 && width < 2 * vw));
    if width >= 16 && !prefer_cv && spatial_tiles(w, a, &g, cg, mg, bias, y, h) {
        return true;
    }
    let bias_t = if bias {
        ws.get(2).copied().flatten().map(Some)
    } else {
        Some(None)
    };
    if let (1, DType::F32, Some(wv), Some(bv)) =
        (a.group, y.dtype, ws.get(1).copied().flatten(), bias_t)
        && g.m >= 8
    {
        channel_vectorized(w, a, &g, wv, bv, h);
        return true;
    }
    spatial_tiles(w, a, &g, cg, mg, bias, y, h)
}

/// Output channels per vector of the channel-vectorized kernel.
fn channel_block(m: usize) -> usize {
    let mx = if wide_simd() { 32 } else { 16 };
    [32, 16, 8]
        .into_iter()
        .find(|&v| v <= mx && v <= m.max(8))
        .unwrap_or(8)
}

/// Output positions per tile of the channel-vectorized kernel: a narrow
/// row in one tile (no overlap, no border), else a width that keeps
/// `positions x channel vectors` accumulators within the register file.
fn positions(width: usize, vb: usize) -> usize {
    let regs = if wide_simd() { 24 } else { 12 };
    let lanes = if wide_simd() { 16 } else { 8 };
    let cap = (regs / vb.div_ceil(lanes)).max(1);
    if width <= cap {
        return width.max(1);
    }
    (1..=cap)
        .rev()
        .find(|p| width.is_multiple_of(*p) && *p >= cap / 2)
        .unwrap_or(cap)
}

/// Convolution vectorized over output channels: weights repacked as
/// `[channel block][ic][kh][kw][VB]`, a tile of output positions by
/// `VB` channels accumulated in registers, each input value broadcast once
/// per tap. Border positions run the same loop with bounds checks.
fn channel_vectorized(
    w: &mut W,
    a: &ConvAttrs,
    g0: &Geo,
    wt: &nnc_ir::Tensor,
    bias: Option<&nnc_ir::Tensor>,
    h: &mut Helpers,
) {
    let gp = padded(g0);
    let g = gp.as_ref().unwrap_or(g0);
    let vb = channel_block(g.m);
    let nob = g.m.div_ceil(vb);
    let kk = g.kh * g.kw;
    let wv = wt.to_f64();
    let mut packed = Vec::with_capacity(nob * g.c * kk * vb);
    for ob in 0..nob {
        for ic in 0..g.c {
            for k in 0..kk {
                for j in 0..vb {
                    let o = ob * vb + j;
                    let v = if o < g.m {
                        wv[(o * g.c + ic) * kk + k]
                    } else {
                        0.0
                    };
                    packed.push(flit(v, DType::F32));
                }
            }
        }
    }
    let bvals = bias.map(|b| b.to_f64()).unwrap_or_default();
    let bp: Vec<String> = (0..nob * vb)
        .map(|o| flit(bvals.get(o).copied().unwrap_or(0.0), DType::F32))
        .collect();
    let wp = h.global_array("packed_w", "float", &packed);
    let bpn = h.global_array("packed_b", "float", &bp);
    h.need("nnc_fma");
    let (lo, hi) = g.interior();
    let pwv = positions(hi - lo, vb);
    let tiled = hi - lo >= pwv;
    let nt = if tiled { (hi - lo).div_ceil(pwv) } else { 0 };
    let (s, d, p) = (g.s[1], g.d[1], g.p[1]);
    let (isz, osz) = (g.ih * g.iw, g.oh * g.ow);
    // One named accumulator array per position: GCC keeps each in vector
    // registers (a 2-D array defeats its vectorizer).
    let store = |w: &mut W, pw: usize, pos: &str| {
        w.for_("j", 0, vb);
        if !g.m.is_multiple_of(vb) {
            w.line(format!("if (ob * {vb} + j >= {}) continue;", g.m));
        }
        w.line(format!(
            "float *yo = out0 + (n * {} + ob * {vb} + j) * {osz} + oh * {} + {pos};",
            g.m, g.ow
        ));
        for q in 0..pw {
            let e = act(&a.act, &format!("a{q}[j]"), DType::F32);
            w.line(format!("yo[{q}] = {e};"));
        }
        w.close();
    };
    let init = |w: &mut W, pw: usize| {
        let names: Vec<String> = (0..pw).map(|q| format!("a{q}[{vb}]")).collect();
        w.line(format!("float {};", names.join(", ")));
        w.for_("j", 0, vb);
        let lhs: Vec<String> = (0..pw).map(|q| format!("a{q}[j]")).collect();
        w.line(format!("{} = {bpn}[ob * {vb} + j];", lhs.join(" = ")));
        w.close();
    };
    let taps = |w: &mut W, pw: usize, pos: &str, checked: bool| {
        w.for_("ic", 0, g.c);
        w.line(format!("const float *xc = xin + ic * {isz};"));
        w.line(format!("const float *wc = wb + ic * {};", kk * vb));
        g.open_kh_rows(w);
        w.for_("kw", 0, g.kw);
        w.line(format!(
            "const float *wv = wc + (kh * {} + kw) * {vb};",
            g.kw
        ));
        if checked {
            w.line(format!(
                "const long iw = (long)({pos} * {s} + kw * {d}) - {p};"
            ));
            w.line(format!("if (iw < 0 || iw >= {}) continue;", g.iw));
            w.line(format!(
                "const float x0 = xc[(size_t)ih * {} + (size_t)iw];",
                g.iw
            ));
        } else {
            w.line(format!(
                "const float *xr = xc + (size_t)ih * {} + {pos} * {s} + kw * {d} - {p};",
                g.iw
            ));
            let xs: Vec<String> = (0..pw).map(|q| format!("x{q} = xr[{}]", q * s)).collect();
            w.line(format!("const float {};", xs.join(", ")));
        }
        w.for_("j", 0, vb);
        for q in 0..pw {
            w.line(format!("a{q}[j] = NNC_FMA(x{q}, wv[j], a{q}[j]);"));
        }
        w.close();
        w.close();
        w.close();
        w.close();
    };
    w.for_("n", 0, g.batch);
    input_prologue(w, g0, gp.as_ref(), "float");
    w.for_("ob", 0, nob);
    w.line(format!("const float *wb = {wp} + ob * {};", g.c * kk * vb));
    w.for_("oh", 0, g.oh);
    if tiled {
        w.for_("t", 0, nt);
        w.line(format!(
            "const size_t ow0 = t * {pwv} + {lo} < {} ? t * {pwv} + {lo} : {};",
            hi - pwv + 1,
            hi - pwv
        ));
        init(w, pwv);
        taps(w, pwv, "ow0", false);
        store(w, pwv, "ow0");
        w.close();
    }
    let ranges: Vec<(usize, usize)> = if tiled {
        vec![(0, lo), (hi, g.ow)]
    } else {
        vec![(0, g.ow)]
    };
    for (from, to) in ranges {
        if from >= to {
            continue;
        }
        w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
        init(w, 1);
        taps(w, 1, "ow", true);
        store(w, 1, "ow");
        w.close();
    }
    w.close(); // oh
    w.close(); // ob
    w.close(); // n
}

/// Register-blocked spatial tiles over output columns (any groups).
fn spatial_tiles(
    w: &mut W,
    a: &ConvAttrs,
    g0: &Geo,
    cg: usize,
    mg: usize,
    bias: bool,
    y: &TensorType,
    h: &mut Helpers,
) -> bool {
    // Strided convolutions read a copy de-interleaved by column phase.
    let gp = copy_geometry(g0, g0.s[1]);
    let g = gp.as_ref().unwrap_or(g0);
    let (lo, hi) = g.interior();
    let vw = tile_width(hi - lo);
    if vw == 0 || !y.dtype.is_float() {
        return false;
    }
    let t = ctype(y.dtype);
    let ksz = g.kh * g.kw;
    let (s, d, p) = (g.s[1], g.d[1], g.p[1]);
    // Channel blocks never straddle groups: block size divides the group.
    let obm = ob_max(g.kh * g.kw == 1);
    let ob = if mg.is_multiple_of(obm) {
        obm
    } else if mg.is_multiple_of(4) {
        4
    } else if mg.is_multiple_of(2) {
        2
    } else {
        1
    };
    let nblk = (hi - lo).div_ceil(vw);
    w.for_("n", 0, y.dims[0]);
    input_prologue(w, g0, gp.as_ref(), t);
    w.open(format!("for (size_t o0 = 0; o0 < {}; o0 += {ob})", g.m));
    w.line(format!("const size_t ic0 = (o0 / {mg}) * {cg};"));
    w.for_("oh", 0, g.oh);
    // Interior tiles; the last one is shifted left to end at `hi`.
    w.for_("blk", 0, nblk);
    tile_start(w, vw, lo, hi);
    w.line(format!("{t} acc[{ob}][{vw}];"));
    w.for_("b", 0, ob);
    w.for_("j", 0, vw);
    w.line(if bias {
        "acc[b][j] = in2[o0 + b];".to_string()
    } else {
        format!("acc[b][j] = {};", lit(0.0, y.dtype))
    });
    w.close();
    w.close();
    w.for_("ic", 0, cg);
    w.line(format!("const {t} *xc = xin + (ic0 + ic) * {};", g.plane()));
    w.line(format!("const {t} *wc = in1 + (o0 * {cg} + ic) * {ksz};"));
    g.open_kh_rows(w);
    // With phases, tap kw of a stride-s tile is a contiguous run in
    // phase (kw*d) % s, starting (kw*d) / s columns in.
    let (ph, wph) = (g.phases, g.iw.div_ceil(g.phases));
    let step = if ph > 1 { 1 } else { s };
    if ph > 1 {
        w.line(format!(
            "const {t} *xr = xc + (size_t)ih * {} + ow0;",
            g.row()
        ));
    } else {
        w.line(format!(
            "const {t} *xr = xc + (size_t)ih * {} + ow0 * {s} - {p};",
            g.row()
        ));
    }
    w.for_("kw", 0, g.kw);
    if ph > 1 {
        w.line(format!(
            "const {t} *xk = xr + ((kw * {d}) % {ph}) * {wph} + (kw * {d}) / {ph};"
        ));
    } else {
        w.line(format!("const {t} *xk = xr + kw * {d};"));
    }
    w.for_("b", 0, ob);
    w.line(format!(
        "const {t} wv = wc[b * {} + kh * {} + kw];",
        cg * ksz,
        g.kw
    ));
    w.for_("j", 0, vw);
    if y.dtype == DType::F32 {
        h.need("nnc_fma");
        w.line(format!(
            "acc[b][j] = NNC_FMA(wv, xk[j * {step}], acc[b][j]);"
        ));
    } else {
        w.line(format!("acc[b][j] += wv * xk[j * {step}];"));
    }
    w.close();
    w.close();
    w.close(); // kw
    w.close(); // kh
    w.close(); // ic
    w.for_("b", 0, ob);
    w.line(format!(
        "{t} *yr = out0 + (n * {} + o0 + b) * {} + oh * {} + ow0;",
        g.m,
        g.oh * g.ow,
        g.ow
    ));
    w.for_("j", 0, vw);
    let e = act(&a.act, "acc[b][j]", y.dtype);
    w.line(format!("yr[j] = {e};"));
    w.close();
    w.close();
    w.close(); // blk
    if lo > 0 {
        scalar_columns(
            w,
            g,
            a,
            &ob.to_string(),
            cg,
            bias,
            t,
            y.dtype,
            "0",
            &lo.to_string(),
        );
    }
    if hi < g.ow {
        scalar_columns(
            w,
            g,
            a,
            &ob.to_string(),
            cg,
            bias,
            t,
            y.dtype,
            &hi.to_string(),
            &g.ow.to_string(),
        );
    }
    w.close(); // oh
    w.close(); // o0
    w.close(); // n
    true
}

/// Depthwise convolution on a narrow plane: the channel is copied into a
/// zero-padded local plane and the output computed on a grid as wide as a
/// padded row, where every tap is a fixed offset of one flat index (so the
/// loop vectorizes); the valid columns are then copied out.
fn depthwise_wide_grid(w: &mut W, a: &ConvAttrs, g: &Geo, bias: bool, h: &mut Helpers) -> bool {
    let (pt, pl) = (g.p[0], g.p[1]);
    let pb = if a.pads.len() == 4 { a.pads[2] } else { 0 };
    let pr = *a.pads.last().unwrap_or(&0);
    let wp = pl + g.iw + pr;
    let (s0, s1) = (g.s[0], g.s[1]);
    // Row and column strides only line up on the wide grid when equal.
    if s0 != s1 || a.pads.len() != 4 && a.pads.len() != 2 {
        return false;
    }
    let s = s1;
    let (d0, d1) = (g.d[0], g.d[1]);
    let q_len = g.oh * wp;
    let need = s * (q_len - 1) + (g.kh - 1) * d0 * wp + (g.kw - 1) * d1 + 1;
    let rows = (pt + g.ih + pb) * wp;
    let plane = need.max(rows);
    if (plane + q_len) * 4 > PAD_COPY_LIMIT || q_len == 0 {
        return false;
    }
    h.need("nnc_fma");
    let ksz = g.kh * g.kw;
    w.for_("n", 0, g.batch);
    w.for_("c", 0, g.m);
    w.line(format!("float xp[{plane}], yw[{q_len}];"));
    w.line(format!(
        "const float *xc = in0 + (n * {} + c) * {};",
        g.c,
        g.ih * g.iw
    ));
    w.line(format!("const float *wc = in1 + c * {ksz};"));
    w.for_("i", 0, plane);
    w.line("xp[i] = 0.0f;");
    w.close();
    w.for_("r", 0, g.ih);
    w.for_("k", 0, g.iw);
    w.line(format!(
        "xp[(r + {pt}) * {wp} + k + {pl}] = xc[r * {} + k];",
        g.iw
    ));
    w.close();
    w.close();
    w.for_("q", 0, q_len);
    w.line(format!("yw[q] = {};", if bias { "in2[c]" } else { "0.0f" }));
    w.close();
    w.for_("kh", 0, g.kh);
    w.for_("kw", 0, g.kw);
    w.line(format!("const float wv = wc[kh * {} + kw];", g.kw));
    w.line(format!(
        "const float *xk = xp + kh * {} + kw * {d1};",
        d0 * wp
    ));
    w.for_("q", 0, q_len);
    w.line(format!("yw[q] = NNC_FMA(wv, xk[q * {s}], yw[q]);"));
    w.close();
    w.close();
    w.close();
    w.for_("oh", 0, g.oh);
    w.for_("ow", 0, g.ow);
    let e = act(&a.act, &format!("yw[oh * {wp} + ow]"), DType::F32);
    w.line(format!(
        "out0[((n * {} + c) * {} + oh) * {} + ow] = {e};",
        g.m, g.oh, g.ow
    ));
    w.close();
    w.close();
    w.close();
    w.close();
    true
}

/// Depthwise convolution on tiny planes with many channels: the input is
/// transposed to channels-last (zero-padded) on the stack, so every tap is
/// a contiguous vector over channels, with weights packed `[tap][channel]`.
fn depthwise_hwc(w: &mut W, a: &ConvAttrs, g: &Geo, ws: &StepWeights<'_>, h: &mut Helpers) -> bool {
    let Some(wt) = ws.get(1).copied().flatten() else {
        return false;
    };
    let bias = ws.get(2).copied().flatten();
    if ws.len() > 2 && bias.is_none() {
        return false;
    }
    let (ihp, iwp) = (g.ih + g.p[0] + g.pe[0], g.iw + g.p[1] + g.pe[1]);
    let c = g.m;
    if g.oh * g.ow > 64 || c < 16 || (ihp * iwp * c + c) * 4 > PAD_COPY_LIMIT {
        return false;
    }
    let kk = g.kh * g.kw;
    let wv = wt.to_f64();
    let packed: Vec<String> = (0..kk)
        .flat_map(|k| (0..c).map(move |ch| (k, ch)))
        .map(|(k, ch)| flit(wv[ch * kk + k], DType::F32))
        .collect();
    let bv = bias.map(|b| b.to_f64()).unwrap_or_else(|| vec![0.0; c]);
    let bp: Vec<String> = bv.iter().map(|&v| flit(v, DType::F32)).collect();
    let wp = h.global_array("dw_w", "float", &packed);
    let bpn = h.global_array("dw_b", "float", &bp);
    h.need("nnc_fma");
    w.for_("n", 0, g.batch);
    w.line(format!("float xt[{}], acc[{c}];", ihp * iwp * c));
    w.for_("i", 0, ihp * iwp * c);
    w.line("xt[i] = 0.0f;");
    w.close();
    w.for_("ch", 0, c);
    w.for_("r", 0, g.ih);
    w.for_("k", 0, g.iw);
    w.line(format!(
        "xt[((r + {}) * {iwp} + k + {}) * {c} + ch] = in0[((n * {c} + ch) * {} + r) * {} + k];",
        g.p[0], g.p[1], g.ih, g.iw
    ));
    w.close();
    w.close();
    w.close();
    w.for_("oh", 0, g.oh);
    w.for_("ow", 0, g.ow);
    w.for_("ch", 0, c);
    w.line(format!("acc[ch] = {bpn}[ch];"));
    w.close();
    w.for_("kh", 0, g.kh);
    w.for_("kw", 0, g.kw);
    w.line(format!(
        "const float *xr = xt + ((oh * {} + kh * {}) * {iwp} + ow * {} + kw * {}) * {c};",
        g.s[0], g.d[0], g.s[1], g.d[1]
    ));
    w.line(format!(
        "const float *wr = {wp} + (kh * {} + kw) * {c};",
        g.kw
    ));
    w.for_("ch", 0, c);
    w.line("acc[ch] = NNC_FMA(xr[ch], wr[ch], acc[ch]);");
    w.close();
    w.close();
    w.close();
    w.for_("ch", 0, c);
    let e = act(&a.act, "acc[ch]", DType::F32);
    w.line(format!(
        "out0[((n * {c} + ch) * {} + oh) * {} + ow] = {e};",
        g.oh, g.ow
    ));
    w.close();
    w.close();
    w.close();
    w.close();
    true
}

/// Depthwise convolution: per channel, `VW` interior columns at a time.
fn depthwise(
    w: &mut W,
    a: &ConvAttrs,
    g: &Geo,
    bias: bool,
    y: &TensorType,
    h: &mut Helpers,
) -> bool {
    let (lo, hi) = g.interior();
    let vw = tile_width(hi - lo);
    if y.dtype == DType::F32 && depthwise_wide_grid(w, a, g, bias, h) {
        return true;
    }
    if vw == 0 || !y.dtype.is_float() {
        return false;
    }
    let t = ctype(y.dtype);
    let ksz = g.kh * g.kw;
    let (s, d, p) = (g.s[1], g.d[1], g.p[1]);
    let nblk = (hi - lo).div_ceil(vw);
    w.for_("n", 0, y.dims[0]);
    w.for_("c", 0, g.m);
    w.line(format!(
        "const {t} *xc = in0 + (n * {} + c) * {};",
        g.c,
        g.ih * g.iw
    ));
    w.line(format!("const {t} *wc = in1 + c * {ksz};"));
    w.line(format!(
        "{t} *yc = out0 + (n * {} + c) * {};",
        g.m,
        g.oh * g.ow
    ));
    w.line(format!(
        "const {t} b0 = {};",
        if bias {
            "in2[c]".to_string()
        } else {
            lit(0.0, y.dtype)
        }
    ));
    w.for_("oh", 0, g.oh);
    w.for_("blk", 0, nblk);
    tile_start(w, vw, lo, hi);
    w.line(format!("{t} acc[{vw}];"));
    w.for_("j", 0, vw);
    w.line("acc[j] = b0;");
    w.close();
    g.open_kh_rows(w);
    w.line(format!(
        "const {t} *xr = xc + (size_t)ih * {} + ow0 * {s} - {p};",
        g.iw
    ));
    w.for_("kw", 0, g.kw);
    w.line(format!("const {t} wv = wc[kh * {} + kw];", g.kw));
    w.for_("j", 0, vw);
    w.line(format!("acc[j] += wv * xr[kw * {d} + j * {s}];"));
    w.close();
    w.close();
    w.close();
    w.for_("j", 0, vw);
    let e = act(&a.act, "acc[j]", y.dtype);
    w.line(format!("yc[oh * {} + ow0 + j] = {e};", g.ow));
    w.close();
    w.close(); // blk
    for (from, to) in [(0, lo), (hi, g.ow)] {
        if from >= to {
            continue;
        }
        w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
        w.line(format!("{t} sacc = b0;"));
        g.open_kh_rows(w);
        w.for_("kw", 0, g.kw);
        w.line(format!(
            "const long iw = (long)(ow * {s} + kw * {d}) - {p};"
        ));
        w.line(format!("if (iw < 0 || iw >= {}) continue;", g.iw));
        w.line(format!(
            "sacc += wc[kh * {} + kw] * xc[(size_t)ih * {} + (size_t)iw];",
            g.kw, g.iw
        ));
        w.close();
        w.close();
        let e = act(&a.act, "sacc", y.dtype);
        w.line(format!("yc[oh * {} + ow] = {e};", g.ow));
        w.close();
    }
    w.close(); // oh
    w.close(); // c
    w.close(); // n
    true
}
