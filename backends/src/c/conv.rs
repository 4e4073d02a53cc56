//! Convolution kernels in C: the direct kernel of any spatial rank (and
//! the scatter form of the transposed convolution), the register-blocked
//! kernel vectorized over output channels, and the row-tile kernel
//! vectorized over output columns. Every parameter (tile shape, padded
//! copy) comes from the step's kernel; the tile kernels keep their
//! accumulators in small fixed-size arrays the C compiler holds in vector
//! registers at `-O3 -march=native`.

use nnc_ir::program::{Axis, ConvBlocked, ConvRowTiles, Window, rowband};
use nnc_ir::{DType, Tensor, TensorType, dtype::strides};

use super::Helpers;
use super::epilogue::Epi;
use super::vector::fma_step;
use super::writer::{W, ctype, lit};
use crate::tables::{scatter_range, tap_range};

/// A 1-D or 2-D convolution window as the tile kernels iterate it: rows
/// and columns (a pointwise window is one long row), and the stride
/// phases a padded copy de-interleaves its columns into.
#[derive(Clone, Debug)]
pub(super) struct Geo {
    pub batch: usize,
    pub c: usize,
    pub m: usize,
    pub groups: usize,
    pub h: Axis,
    pub w: Axis,
    /// Columns stored de-interleaved by stride phase (1: plain rows).
    pub phases: usize,
}

impl Geo {
    pub fn of(win: &Window) -> Option<Geo> {
        let (h, w) = win.rows_cols()?;
        Some(Geo {
            batch: win.batch,
            c: win.channels,
            m: win.out_channels,
            groups: win.groups,
            h,
            w,
            phases: 1,
        })
    }

    /// The geometry of a zero-padded copy whose columns are de-interleaved
    /// into `phases` planes.
    pub fn copied(&self, phases: usize) -> Geo {
        Geo {
            h: self.h.unpadded(),
            w: self.w.unpadded(),
            phases,
            ..self.clone()
        }
    }

    /// Floats per stored input row (all phases).
    pub fn row(&self) -> usize {
        self.phases * self.w.input.div_ceil(self.phases)
    }

    /// Floats per input channel.
    pub fn plane(&self) -> usize {
        self.h.input * self.row()
    }

    pub fn out_plane(&self) -> usize {
        self.h.output * self.w.output
    }

    /// Opens the loop over kernel rows `kh` with `ih`, the input row they
    /// read, skipping rows outside the input.
    pub fn open_kh_rows(&self, w: &mut W) {
        w.for_("kh", 0, self.h.k);
        w.line(format!(
            "const long ih = (long)(oh * {} + kh * {}) - {};",
            self.h.stride, self.h.dil, self.h.pad
        ));
        w.line(format!("if (ih < 0 || ih >= {}) continue;", self.h.input));
    }
}

/// Emits, inside the batch loop, `xin`: this batch element's input, either
/// the input itself or (`to`) a zero-padded, possibly de-interleaved stack
/// copy of it.
pub(super) fn input_prologue(w: &mut W, g: &Geo, to: Option<&Geo>, t: &str) {
    match to {
        Some(to) => padded_copy(w, g, to, t, CopyRows::All),
        None => w.line(format!(
            "const {t} *xin = in0 + n * {};",
            g.c * g.h.input * g.w.input
        )),
    }
}

/// The input rows a padded copy holds.
#[derive(Clone, Copy, PartialEq)]
enum CopyRows {
    /// Every row, at row offset `pad` (inside the batch loop).
    All,
    /// The `to.h.input` rows output row `oh` reads, from row
    /// `oh * stride - pad` (inside the batch and output row loops).
    Band,
}

/// Emits `xin`: a zero-filled stack copy in `to`'s layout (padding, columns
/// de-interleaved into `to.phases` stride phases) of this batch element's
/// input rows `rows`.
fn padded_copy(w: &mut W, g: &Geo, to: &Geo, t: &str, rows: CopyRows) {
    let n = g.c * to.plane();
    let (ph, wph) = (to.phases, to.w.input.div_ceil(to.phases));
    w.line(format!("{t} xp[{n}];"));
    w.for_("i", 0, n);
    w.line("xp[i] = 0;");
    w.close();
    w.for_("c", 0, g.c);
    let dest = match rows {
        CopyRows::All => {
            w.for_("r", 0, g.h.input);
            w.line("const size_t ir = r;");
            format!("r + {}", g.h.pad)
        }
        CopyRows::Band => {
            w.for_("r", 0, to.h.input);
            w.line(format!(
                "const long ir = (long)(oh * {} + r) - {};",
                g.h.stride, g.h.pad
            ));
            w.line(format!("if (ir < 0 || ir >= {}) continue;", g.h.input));
            "r".to_string()
        }
    };
    w.line(format!(
        "const {t} *xs = in0 + ((n * {} + c) * {} + (size_t)ir) * {};",
        g.c, g.h.input, g.w.input
    ));
    w.line(format!(
        "{t} *xd = xp + (c * {} + {dest}) * {};",
        to.h.input,
        to.row()
    ));
    w.for_("k", 0, g.w.input);
    w.line(format!("const size_t col = k + {};", g.w.pad));
    w.line(format!("xd[(col % {ph}) * {wph} + col / {ph}] = xs[k];"));
    w.close();
    w.close();
    w.close();
    w.line(format!("const {t} *xin = xp;"));
}

fn table(w: &mut W, name: &str, v: &[usize]) {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    w.line(format!(
        "static const size_t {name}[{}] = {{{}}};",
        v.len().max(1),
        if items.is_empty() {
            "0".into()
        } else {
            items.join(", ")
        }
    ));
}

/// Convolution (`Gather`: each output reads a window of the input) or
/// transposed convolution (`Scatter`: each input adds a window to the
/// output).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Dir {
    Gather,
    Scatter,
}

/// The direct kernel of both directions: image, output channel (filled
/// with its bias), input channel of its group, every tap, then the
/// positions the tap reaches (generation-time tables, no bounds checks);
/// the epilogue runs per output channel after the accumulation.
/// Params: `in0` x, `in1` w, optional bias, `out0` y.
#[allow(clippy::too_many_arguments)]
pub(super) fn direct(
    w: &mut W,
    dir: Dir,
    (strides_, dilations, pads): (&[usize], &[usize], &[usize]),
    group: usize,
    x: &TensorType,
    wt: &TensorType,
    y: &TensorType,
    epi: &Epi,
) {
    let t = ctype(y.dtype);
    let n = x.rank() - 2;
    let (batch, c, m) = (x.dims[0], x.dims[1], y.dims[1]);
    let cg = c / group;
    let mg = m / group;
    let in_sp = &x.dims[2..];
    let out_sp = &y.dims[2..];
    let k_sp = &wt.dims[2..];
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let ist = strides(in_sp);
    let ost = strides(out_sp);
    let kst = strides(k_sp);
    let pointwise = dir == Dir::Gather
        && k_sp.iter().all(|&k| k == 1)
        && strides_.iter().all(|&s| s == 1)
        && pads.iter().all(|&p| p == 0);
    if !pointwise {
        for d in 0..n {
            let range = match dir {
                Dir::Gather => tap_range,
                Dir::Scatter => scatter_range,
            };
            let (lo, hi): (Vec<usize>, Vec<usize>) = (0..k_sp[d])
                .map(|k| range(k, strides_[d], dilations[d], pads[d], in_sp[d], out_sp[d]))
                .unzip();
            table(w, &format!("lo{d}"), &lo);
            table(w, &format!("hi{d}"), &hi);
        }
    }
    w.for_("n", 0, batch);
    w.for_("o", 0, m);
    match dir {
        Dir::Gather => w.line(format!("const size_t g = o / {mg};")),
        Dir::Scatter => w.line(format!("const size_t g = o / {mg}, oc = o % {mg};")),
    }
    w.line(format!("{t} *yo = out0 + (n * {m} + o) * {osz};"));
    if !epi.accumulate {
        w.for_("p", 0, osz);
        match epi.bias() {
            Some(k) => w.line(format!("yo[p] = in{k}[o];")),
            None => w.line(format!("yo[p] = {};", lit(0.0, y.dtype))),
        }
        w.close();
    }
    w.for_("ic", 0, cg);
    w.line(format!("const size_t ci = g * {cg} + ic;"));
    w.line(format!("const {t} *xi = in0 + (n * {c} + ci) * {isz};"));
    // Weights are [M, C/group, K...] for a convolution and
    // [C, M/group, K...] for a transposed one.
    let row = match dir {
        Dir::Gather => format!("o * {cg} + ic"),
        Dir::Scatter => format!("ci * {mg} + oc"),
    };
    w.line(format!("const {t} *wk = in1 + ({row}) * {ksz};"));
    if pointwise {
        w.line(format!("const {t} wv = wk[0];"));
        w.for_("p", 0, osz);
        w.line("yo[p] += wv * xi[p];");
        w.close();
    } else {
        for d in 0..n {
            w.for_(&format!("k{d}"), 0, k_sp[d]);
        }
        let kidx: Vec<String> = (0..n).map(|d| format!("k{d} * {}", kst[d])).collect();
        w.line(format!("const {t} wv = wk[{}];", kidx.join(" + ")));
        for d in 0..n {
            w.open(format!(
                "for (size_t i{d} = lo{d}[k{d}]; i{d} < hi{d}[k{d}]; ++i{d})"
            ));
        }
        // The iterated position indexes one side directly; the other side
        // is at `i * stride + k * dil - pad`.
        let direct =
            |st: &[usize]| -> Vec<String> { (0..n).map(|d| format!("i{d} * {}", st[d])).collect() };
        let windowed = |st: &[usize]| -> Vec<String> {
            (0..n)
                .map(|d| {
                    format!(
                        "(i{d} * {} + k{d} * {} - {}) * {}",
                        strides_[d], dilations[d], pads[d], st[d]
                    )
                })
                .collect()
        };
        let (yidx, xidx) = match dir {
            Dir::Gather => (direct(&ost), windowed(&ist)),
            Dir::Scatter => (windowed(&ost), direct(&ist)),
        };
        w.line(format!(
            "yo[{}] += wv * xi[{}];",
            yidx.join(" + "),
            xidx.join(" + ")
        ));
        for _ in 0..2 * n {
            w.close();
        }
    }
    w.close(); // ic
    if !epi.is_identity() {
        w.for_("p", 0, osz);
        w.line(format!("yo[p] = {};", epi.apply("yo[p]", "yo + p")));
        w.close();
    }
    w.close(); // o
    w.close(); // n
}

/// Register-blocked convolution vectorized over output channels: weights
/// repacked per group as `[channel block][ic][kh][kw][C]`, a tile of `P`
/// output positions by `C` channels accumulated in registers, each input
/// value broadcast once per tap. Border positions run the same loop with
/// bounds checks, unless the input is read from a zero-padded copy.
pub(super) fn blocked(
    w: &mut W,
    k: &ConvBlocked,
    g0: &Geo,
    wt: &Tensor,
    bias: Option<&Tensor>,
    epi: &Epi,
    h: &mut Helpers,
) {
    let gp = k.pad_copy.then(|| g0.copied(1));
    let g = gp.as_ref().unwrap_or(g0);
    let vb = k.channels;
    let (cg, mg) = (g.c / g.groups, g.m / g.groups);
    let nob = mg.div_ceil(vb);
    let kk = g.h.k * g.w.k;
    let wv = wt.to_f64();
    let mut packed = Vec::with_capacity(g.groups * nob * cg * kk * vb);
    let mut bp = Vec::with_capacity(g.groups * nob * vb);
    let bvals = bias.map(|b| b.to_f64()).unwrap_or_default();
    for grp in 0..g.groups {
        for ob in 0..nob {
            for ic in 0..cg {
                for tap in 0..kk {
                    for j in 0..vb {
                        let oc = ob * vb + j;
                        let v = if oc < mg {
                            wv[((grp * mg + oc) * cg + ic) * kk + tap]
                        } else {
                            0.0
                        };
                        packed.push(v);
                    }
                }
            }
            for j in 0..vb {
                let oc = ob * vb + j;
                let v = if oc < mg {
                    bvals.get(grp * mg + oc).copied().unwrap_or(0.0)
                } else {
                    0.0
                };
                bp.push(v);
            }
        }
    }
    let wp = h.global_f32("packed_w", &packed);
    // An accumulating slice starts from the output, not the bias.
    let bpn = if epi.accumulate {
        String::new()
    } else {
        h.global_f32("packed_b", &bp)
    };
    h.need("nnc_fma");
    let (lo, hi) = g.w.interior();
    let pwv = k.positions.max(1);
    let tiled = hi - lo >= pwv;
    // The last tile is shifted left to end at `hi`, recomputing a few
    // columns; a partial-sum slice must not add twice, so it stops at the
    // last whole tile and leaves the rest to the single-column loop.
    let nt = match (tiled, epi.accumulate) {
        (false, _) => 0,
        (true, false) => (hi - lo).div_ceil(pwv),
        (true, true) => (hi - lo) / pwv,
    };
    let tail = lo + nt * pwv;
    let (s, d, p) = (g.w.stride, g.w.dil, g.w.pad);
    let (isz, osz) = (g.h.input * g.w.input, g.out_plane());
    let ow = g.w.output;
    let unroll = k.unroll.max(1);
    // With groups, blocks are numbered across groups and channels offset by
    // the group; with one group the group loop is left out.
    let grouped = g.groups > 1;
    let blk = if grouped {
        format!("(grp * {nob} + ob)")
    } else {
        "ob".to_string()
    };
    let ch = if grouped {
        format!("grp * {mg} + ob * {vb} + j")
    } else {
        format!("ob * {vb} + j")
    };
    let ic0 = if grouped {
        format!("(grp * {cg} + ic)")
    } else {
        "ic".to_string()
    };
    let partial = !mg.is_multiple_of(vb);
    // One named accumulator array per position: GCC keeps each in vector
    // registers (a 2-D array defeats its vectorizer).
    // On a host, the accumulators are vector values (registers by
    // construction, see [`super::vector`]), spilled to arrays only to be
    // stored.
    let lanes = h.lanes;
    let nv = if lanes > 0 && vb.is_multiple_of(lanes) {
        vb / lanes
    } else {
        0
    };
    if nv > 0 {
        h.need("nnc_vec");
    }
    let store = |w: &mut W, pw: usize, pos: &str| {
        if nv > 0 {
            w.block();
            let names: Vec<String> = (0..pw).map(|q| format!("a{q}[{vb}]")).collect();
            w.line(format!("float {};", names.join(", ")));
            for q in 0..pw {
                for v in 0..nv {
                    w.line(format!("*(nnc_vf *)(a{q} + {}) = v{q}_{v};", v * lanes));
                }
            }
        }
        w.for_("j", 0, vb);
        if partial {
            w.line(format!("if (ob * {vb} + j >= {mg}) continue;"));
        }
        w.line(format!(
            "float *yo = out0 + (n * {} + {ch}) * {osz} + oh * {ow} + {pos};",
            g.m
        ));
        for q in 0..pw {
            let e = epi.apply(&format!("a{q}[j]"), &format!("yo + {q}"));
            w.line(format!("yo[{q}] = {e};"));
        }
        w.close();
        if nv > 0 {
            w.close();
        }
    };
    let init = |w: &mut W, pw: usize, pos: &str| {
        let names: Vec<String> = (0..pw).map(|q| format!("a{q}[{vb}]")).collect();
        w.line(format!("float {};", names.join(", ")));
        w.for_("j", 0, vb);
        if epi.accumulate {
            if partial {
                let lhs: Vec<String> = (0..pw).map(|q| format!("a{q}[j]")).collect();
                w.open(format!("if (ob * {vb} + j >= {mg})"));
                w.line(format!("{} = 0.0f;", lhs.join(" = ")));
                w.line("continue;");
                w.close();
            }
            w.line(format!(
                "const float *yo = out0 + (n * {} + {ch}) * {osz} + oh * {ow} + {pos};",
                g.m
            ));
            for q in 0..pw {
                w.line(format!("a{q}[j] = yo[{q}];"));
            }
        } else {
            let lhs: Vec<String> = (0..pw).map(|q| format!("a{q}[j]")).collect();
            w.line(format!("{} = {bpn}[{blk} * {vb} + j];", lhs.join(" = ")));
        }
        w.close();
    };
    // Vector accumulators start from the bias block, or (a partial-sum
    // slice) from the arrays the scalar form fills from the output.
    let init = |w: &mut W, pw: usize, pos: &str| {
        if nv == 0 || epi.accumulate {
            init(w, pw, pos);
        }
        if nv == 0 {
            return;
        }
        for q in 0..pw {
            let vs: Vec<String> = (0..nv)
                .map(|v| {
                    let from = if epi.accumulate {
                        format!("a{q} + {}", v * lanes)
                    } else {
                        format!("{bpn} + {blk} * {vb} + {}", v * lanes)
                    };
                    format!("v{q}_{v} = *(const nnc_vf *)({from})")
                })
                .collect();
            w.line(format!("nnc_vf {};", vs.join(", ")));
        }
    };
    let taps = |w: &mut W, pw: usize, pos: &str, checked: bool| {
        if unroll > 1 {
            w.line(format!("#pragma GCC unroll {unroll}"));
        }
        w.for_("ic", 0, cg);
        w.line(format!("const float *xc = xin + {ic0} * {isz};"));
        w.line(format!("const float *wc = wb + ic * {};", kk * vb));
        g.open_kh_rows(w);
        w.for_("kw", 0, g.w.k);
        w.line(format!(
            "const float *wv = wc + (kh * {} + kw) * {vb};",
            g.w.k
        ));
        if checked {
            w.line(format!(
                "const long iw = (long)({pos} * {s} + kw * {d}) - {p};"
            ));
            w.line(format!("if (iw < 0 || iw >= {}) continue;", g.w.input));
            w.line(format!(
                "const float x0 = xc[(size_t)ih * {} + (size_t)iw];",
                g.w.input
            ));
        } else {
            w.line(format!(
                "const float *xr = xc + (size_t)ih * {} + {pos} * {s} + kw * {d} - {p};",
                g.w.input
            ));
            let xs: Vec<String> = (0..pw).map(|q| format!("x{q} = xr[{}]", q * s)).collect();
            w.line(format!("const float {};", xs.join(", ")));
        }
        if nv > 0 {
            fma_step(
                w,
                "v",
                pw,
                nv,
                |v| format!("wv + {}", v * lanes),
                |q| format!("x{q}"),
            );
        } else {
            w.for_("j", 0, vb);
            for q in 0..pw {
                w.line(format!("a{q}[j] = NNC_FMA(x{q}, wv[j], a{q}[j]);"));
            }
            w.close();
        }
        w.close();
        w.close();
        w.close();
    };
    w.for_("n", 0, g.batch);
    input_prologue(w, g0, gp.as_ref(), "float");
    if grouped {
        w.for_("grp", 0, g.groups);
    }
    w.for_("ob", 0, nob);
    w.line(format!(
        "const float *wb = {wp} + {blk} * {};",
        cg * kk * vb
    ));
    w.for_("oh", 0, g.h.output);
    if tiled {
        w.for_("t", 0, nt);
        w.line(format!(
            "const size_t ow0 = t * {pwv} + {lo} < {} ? t * {pwv} + {lo} : {};",
            hi - pwv + 1,
            hi - pwv
        ));
        init(w, pwv, "ow0");
        taps(w, pwv, "ow0", false);
        store(w, pwv, "ow0");
        w.close();
    }
    let ranges: Vec<(usize, usize)> = match (tiled, epi.accumulate) {
        (false, _) => vec![(0, ow)],
        (true, false) => vec![(0, lo), (hi, ow)],
        (true, true) => vec![(0, lo), (tail.min(hi), ow)],
    };
    for (from, to) in ranges {
        if from >= to {
            continue;
        }
        w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
        init(w, 1, "ow");
        taps(w, 1, "ow", true);
        store(w, 1, "ow");
        w.close();
    }
    w.close(); // oh
    w.close(); // ob
    if grouped {
        w.close(); // grp
    }
    w.close(); // n
}

/// `ow0`, the first column of interior tile `blk` of `vw` columns: tiles
/// step by `vw` from `lo`, and the last one is shifted left to end at `hi`.
pub(super) fn tile_start(w: &mut W, vw: usize, lo: usize, hi: usize) {
    w.line(format!(
        "const size_t ow0 = blk * {vw} + {lo} < {} ? blk * {vw} + {lo} : {};",
        hi - vw + 1,
        hi - vw
    ));
}

/// Emits a scalar loop computing output columns `ow` in `[from, to)` of
/// the current row for channels `o0 .. o0 + ob` (bounds-checked taps).
#[allow(clippy::too_many_arguments)]
fn scalar_columns(
    w: &mut W,
    g: &Geo,
    ob: usize,
    cg: usize,
    t: &str,
    epi: &Epi,
    from: usize,
    to: usize,
) {
    let ksz = g.h.k * g.w.k;
    let osz = g.out_plane();
    w.open(format!("for (size_t ow = {from}; ow < {to}; ++ow)"));
    w.open(format!("for (size_t b = 0; b < {ob}; ++b)"));
    w.line("const size_t o = o0 + b;");
    w.line(format!(
        "{t} *yp = out0 + (n * {} + o) * {osz} + oh * {} + ow;",
        g.m, g.w.output
    ));
    w.line(format!("{t} s = {};", epi.init("yp", "o")));
    w.line(format!(
        "const size_t ic0 = (o / {}) * {cg};",
        g.m / g.groups
    ));
    w.for_("ic", 0, cg);
    w.line(format!("const {t} *xc = xin + (ic0 + ic) * {};", g.plane()));
    w.line(format!("const {t} *wc = in1 + (o * {cg} + ic) * {ksz};"));
    g.open_kh_rows(w);
    w.for_("kw", 0, g.w.k);
    w.line(format!(
        "const long iw = (long)(ow * {} + kw * {}) - {};",
        g.w.stride, g.w.dil, g.w.pad
    ));
    w.line(format!("if (iw < 0 || iw >= {}) continue;", g.w.input));
    // Columns of a de-interleaved copy are stored by stride phase.
    let col = if g.phases > 1 {
        format!(
            "((size_t)iw % {ph}) * {wph} + (size_t)iw / {ph}",
            ph = g.phases,
            wph = g.w.input.div_ceil(g.phases)
        )
    } else {
        "(size_t)iw".to_string()
    };
    w.line(format!(
        "s += wc[kh * {} + kw] * xc[(size_t)ih * {} + {col}];",
        g.w.k,
        g.row()
    ));
    w.close();
    w.close();
    w.close();
    w.line(format!("*yp = {};", epi.apply("s", "yp")));
    w.close();
    w.close();
}

/// Register-blocked tiles over output columns (any groups): `C` output
/// channels by `W` columns accumulate, each weight broadcast over the
/// columns. Strided convolutions can read a copy de-interleaved by column
/// phase, so every tap is a contiguous run. A copy too large for the stack
/// is made one band of rows per output row (see
/// [`nnc_ir::program::rowband`]), with the output row loop outermost.
pub(super) fn row_tiles(
    w: &mut W,
    k: &ConvRowTiles,
    g0: &Geo,
    y: &TensorType,
    epi: &Epi,
    h: &mut Helpers,
) {
    let t = ctype(y.dtype);
    let band = k.pad_copy && rowband::uses_band(g0.c, &g0.h, &g0.w, y.dtype.size());
    let gp = k.pad_copy.then(|| g0.copied(g0.w.stride));
    // Small weights, at least half as many input channels as output
    // channels: every channel block of a column tile runs before the next
    // tile, so the tile's input columns are read from L1 by all of them
    // (with the blocks outermost, MobileNetV2's 144 -> 24 pointwise at
    // 56x56 read its 1.8 MB input once per block, from L3). Large weights
    // keep the blocks outermost, their weights in cache, and so do wide
    // outputs of few inputs, whose stores would scatter over every output
    // plane (16 -> 96 at 112x112: 1.1 against 0.9 ms).
    let cg0 = g0.c / g0.groups;
    let inner = cg0 * g0.h.k * g0.w.k * g0.m * y.dtype.size() <= INNER_BLOCKS_WEIGHTS
        && 2 * cg0 >= g0.m / g0.groups;
    let blocks = |w: &mut W, m: usize| {
        w.open(format!(
            "for (size_t o0 = 0; o0 < {m}; o0 += {})",
            k.channels
        ))
    };
    w.for_("n", 0, y.dims[0]);
    if band {
        // The band holds padded rows `oh * stride_h + r`, r < band_rows:
        // the kernel reads its row `kh * dil` (a row stride of zero).
        let mut gb = gp.clone().expect("band implies pad_copy");
        gb.h.input = rowband::band_rows(&g0.h);
        gb.h.stride = 0;
        w.for_("oh", 0, g0.h.output);
        padded_copy(w, g0, &gb, t, CopyRows::Band);
        if !inner {
            blocks(w, gb.m);
        }
        row_tiles_row(w, k, &gb, y, epi, h, inner);
        if !inner {
            w.close(); // o0
        }
        w.close(); // oh
    } else {
        let g = gp.as_ref().unwrap_or(g0);
        input_prologue(w, g0, gp.as_ref(), t);
        if !inner {
            blocks(w, g.m);
        }
        w.for_("oh", 0, g.h.output);
        row_tiles_row(w, k, g, y, epi, h, inner);
        w.close(); // oh
        if !inner {
            w.close(); // o0
        }
    }
    w.close(); // n
}

/// Weight bytes up to which the row-tile kernel loops over channel blocks
/// inside each column tile.
const INNER_BLOCKS_WEIGHTS: usize = 64 * 1024;

/// Stack bytes of a row tile's packed input columns.
const PACK_LIMIT: usize = 32 * 1024;

/// One output row `oh` of output channels `o0 .. o0 + C` of the row-tile
/// kernel, reading `xin` laid out as `g` says.
/// With `inner`, the loop over channel blocks `o0` is opened here, inside
/// each column tile and around each border column loop.
fn row_tiles_row(
    w: &mut W,
    k: &ConvRowTiles,
    g: &Geo,
    y: &TensorType,
    epi: &Epi,
    h: &mut Helpers,
    inner: bool,
) {
    let (lo, hi) = g.w.interior();
    let vw = k.width;
    let t = ctype(y.dtype);
    let ksz = g.h.k * g.w.k;
    let (s, d, p) = (g.w.stride, g.w.dil, g.w.pad);
    let (cg, mg) = (g.c / g.groups, g.m / g.groups);
    let ob = k.channels;
    let osz = g.out_plane();
    let tiled = hi - lo >= vw;
    let blocks = |w: &mut W| w.open(format!("for (size_t o0 = 0; o0 < {}; o0 += {ob})", g.m));
    if tiled && !inner {
        w.line(format!("const size_t ic0 = (o0 / {mg}) * {cg};"));
    }
    // On a host, f32 tiles over contiguous columns keep their accumulators
    // as vector values (registers by construction, see [`super::vector`]):
    // GCC keeps `acc[C][W]` in registers only sometimes (4 x 16 ran 1.6x
    // slower than 8 x 16 on SqueezeNet's stem, AVX2).
    let lanes = h.lanes;
    let step1 = g.phases > 1 || g.w.stride == 1;
    let vector = tiled && lanes > 0 && y.dtype == DType::F32 && step1 && vw.is_multiple_of(lanes);
    let nv = if vector { vw / lanes } else { 0 };
    // Pointwise tiles of every channel block read one packed copy of their
    // input columns.
    let pointwise = ksz == 1 && g.groups == 1 && g.phases == 1 && s == 1 && p == 0;
    let pack = vector && inner && pointwise && g.h.input == 1 && cg * vw * 4 <= PACK_LIMIT;
    if vector {
        h.need("nnc_vec");
    }
    // Interior tiles; the last one is shifted left to end at `hi`. An
    // interior narrower than a tile is computed column by column.
    // A partial-sum slice must not add a column twice: no shifted last
    // tile, the rest goes to the column loop.
    let nblk = match (tiled, epi.accumulate) {
        (false, _) => 0,
        (true, false) => (hi - lo).div_ceil(vw),
        (true, true) => (hi - lo) / vw,
    };
    let tail = lo + nblk * vw;
    if tiled {
        w.for_("blk", 0, nblk);
        tile_start(w, vw, lo, hi);
        if pack {
            // The tile's input columns, contiguous: input planes a plane
            // apart collide in the L1 sets (0.48 -> 0.38 ms on
            // MobileNetV2's 144 -> 24 pointwise at 56x56).
            w.line(format!("{t} xs[{}];", cg * vw));
            w.for_("ic", 0, cg);
            w.for_("j", 0, vw);
            w.line(format!(
                "xs[ic * {vw} + j] = xin[ic * {} + ow0 + j];",
                g.plane()
            ));
            w.close();
            w.close();
        }
        if inner {
            blocks(w);
            w.line(format!("const size_t ic0 = (o0 / {mg}) * {cg};"));
        }
        w.line(format!("{t} acc[{ob}][{vw}];"));
        w.for_("b", 0, ob);
        if epi.accumulate {
            w.line(format!(
                "const {t} *yr = out0 + (n * {} + o0 + b) * {osz} + oh * {} + ow0;",
                g.m, g.w.output
            ));
        }
        w.for_("j", 0, vw);
        w.line(format!("acc[b][j] = {};", epi.init("yr + j", "o0 + b")));
        w.close();
        w.close();
        if vector {
            for b in 0..ob {
                let names: Vec<String> = (0..nv)
                    .map(|v| format!("v{b}_{v} = *(const nnc_vf *)(&acc[{b}][{}])", v * lanes))
                    .collect();
                w.line(format!("nnc_vf {};", names.join(", ")));
            }
        }
        w.for_("ic", 0, cg);
        w.line(format!("const {t} *xc = xin + (ic0 + ic) * {};", g.plane()));
        w.line(format!("const {t} *wc = in1 + (o0 * {cg} + ic) * {ksz};"));
        g.open_kh_rows(w);
        // With phases, tap kw of a stride-s tile is a contiguous run in
        // phase (kw*d) % s, starting (kw*d) / s columns in.
        let (ph, wph) = (g.phases, g.w.input.div_ceil(g.phases));
        let step = if ph > 1 { 1 } else { s };
        if pack {
            w.line("(void)xc;");
            w.line(format!("const {t} *xr = xs + ic * {vw};"));
        } else if ph > 1 {
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
        w.for_("kw", 0, g.w.k);
        if ph > 1 {
            w.line(format!(
                "const {t} *xk = xr + ((kw * {d}) % {ph}) * {wph} + (kw * {d}) / {ph};"
            ));
        } else {
            w.line(format!("const {t} *xk = xr + kw * {d};"));
        }
        if vector {
            fma_step(
                w,
                "v",
                ob,
                nv,
                |v| format!("xk + {}", v * lanes),
                |b| format!("wc[{} + kh * {} + kw]", b * cg * ksz, g.w.k),
            );
        } else {
            w.for_("b", 0, ob);
            w.line(format!(
                "const {t} wv = wc[b * {} + kh * {} + kw];",
                cg * ksz,
                g.w.k
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
        }
        w.close(); // kw
        w.close(); // kh
        w.close(); // ic
        if vector {
            for b in 0..ob {
                for v in 0..nv {
                    w.line(format!("*(nnc_vf *)(&acc[{b}][{}]) = v{b}_{v};", v * lanes));
                }
            }
        }
        w.for_("b", 0, ob);
        w.line(format!(
            "{t} *yr = out0 + (n * {} + o0 + b) * {osz} + oh * {} + ow0;",
            g.m, g.w.output
        ));
        w.for_("j", 0, vw);
        let e = epi.apply("acc[b][j]", "yr + j");
        w.line(format!("yr[j] = {e};"));
        w.close();
        w.close();
        if inner {
            w.close(); // o0
        }
        w.close(); // blk
    }
    let ranges: Vec<(usize, usize)> = match (tiled, epi.accumulate) {
        (false, _) => vec![(0, g.w.output)],
        (true, false) => vec![(0, lo), (hi, g.w.output)],
        (true, true) => vec![(0, lo), (tail.min(hi), g.w.output)],
    };
    for (from, to) in ranges {
        if from < to {
            if inner {
                blocks(w);
            }
            scalar_columns(w, g, ob, cg, t, epi, from, to);
            if inner {
                w.close(); // o0
            }
        }
    }
}
