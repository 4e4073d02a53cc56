//! `qdw_dot` and `qgemm_dot` in C (the shared pieces are in the parent).

use super::*;

/// Renders `qdw_dot`: per channel, the padded phase planes, then tiles of
/// positions summing sliding groups of taps.
pub(in crate::c) fn depthwise(
    w: &mut W,
    st: &Step,
    k: &QDwDot,
    q: &QConvAttrs,
    win: &Window,
    ws: &[Option<&Tensor>],
    h: &mut Helpers,
) -> Option<()> {
    h.need("nnc_idot");
    let x = &st.inputs[0].ty;
    let y = &st.outputs[0].ty;
    let (dot, l) = (k.dot, k.lanes);
    let g = Grid::new(win, l, DW_SLACK)?;
    let sl: Vec<Slide> = qdot::slides(&g, dot);
    let wt = ws.get(1).copied().flatten()?;
    let words = qdot::dw_words(wt, q.q.w_zp, &sl, dot);
    let pw: Vec<i32> = words.iter().flatten().copied().collect();
    let wname = h.global_i32("qw", &pw);
    let taps = g.taps.len();
    let bias = qdot::folded_bias(
        st.bias().and_then(|b| ws.get(b).copied().flatten()),
        wt,
        q.q.w_zp,
        x.dtype,
        q.q.x_zp,
        taps,
    );
    let bv: Vec<String> = bias.iter().map(|v| v.to_string()).collect();
    let bname = h.global_array("qb", "int32_t", &bv);
    let ch = win.channels;
    let (qm, qs) = rq_tables(st, ws, ch, h);
    let pad = qdot::pad_value(x.dtype, q.q.x_zp);
    let plane = g.plane();
    let np = g.phases();
    let t_pos = k.vectors * l;
    let oplane = g.h.output * g.w.output;
    let in_plane = g.h.input * g.w.input;
    // Pairs read the byte planes, except the 16-lane form, whose 16-bit
    // permutes need them widened.
    let widen = dot == 2 && l == 16;
    w.line(format!("uint8_t xp[{}];", np * plane));
    if widen {
        w.line(format!("int16_t xw[{}];", np * plane));
    }
    w.line(format!("int32_t acc[{t_pos}];"));
    w.line("(void)acc;");
    if !g.dense() {
        w.line(format!("{} yg[{}];", ctype(y.dtype), g.computed));
    }
    w.for_("n", 0, win.batch);
    w.for_("ch", 0, ch);
    w.line(format!(
        "const {} *xg = in0 + (n * {ch} + ch) * {in_plane};",
        ctype(x.dtype)
    ));
    phase_planes(w, &g, 1, x.dtype, pad);
    let copy = if widen {
        w.for_("i", 0, np * plane);
        w.line("xw[i] = (int16_t)xp[i];");
        w.close();
        "xw"
    } else {
        "xp"
    };
    w.line(format!("const int32_t *wb = {wname} + ch * {};", sl.len()));
    let vecs = g.computed / l;
    let (nfull, vrem) = (vecs / k.vectors, vecs % k.vectors);
    let body = |w: &mut W, tv: usize, q0: &str| {
        let t = tv * l;
        let out = Out {
            st,
            qm: &qm,
            qs: &qs,
            y: y.dtype,
            ch: vec!["ch".into()],
            dst: vec![if g.dense() {
                format!("out0 + (n * {ch} + ch) * {oplane} + ({q0})")
            } else {
                format!("yg + ({q0})")
            }],
            nj: if g.dense() {
                format!(
                    "(({q0}) + {t} <= {len} ? {t} : {len} - ({q0}))",
                    len = g.len
                )
            } else {
                t.to_string()
            },
        };
        dw_tile(w, dot, l, tv, copy, q0, &sl, plane, "wb", &bname, &out);
    };
    if nfull > 0 {
        w.for_("tq", 0, nfull);
        w.line(format!("const size_t q0 = tq * {t_pos};"));
        body(w, k.vectors, "q0");
        w.close();
    }
    if vrem > 0 {
        w.block();
        body(w, vrem, &(nfull * t_pos).to_string());
        w.close();
    }
    if !g.dense() {
        w.for_("oh", 0, g.h.output);
        w.line(format!(
            "{} *d = out0 + (n * {ch} + ch) * {oplane} + oh * {};",
            ctype(y.dtype),
            g.w.output
        ));
        w.line(format!(
            "const {} *s = yg + oh * {};",
            ctype(y.dtype),
            g.width
        ));
        w.for_("j", 0, g.w.output);
        w.line("d[j] = s[j];");
        w.close();
        w.close();
    }
    w.close();
    w.close();
    Some(())
}

/// Elements a depthwise plane keeps readable past its last tap (as
/// kernel selection sized it).
const DW_SLACK: usize = 64;

/// One depthwise tile: `tv` vectors at `q0`; lane `j` of slide `s` reads
/// `copy[phase plane][q0 + j + off + t]`. With 16 lanes, the sliding
/// window is a byte (or 16-bit) permute of one load (AVX512-VBMI for
/// bytes, AVX512BW for pairs); otherwise portable loops.
#[allow(clippy::too_many_arguments)]
fn dw_tile(
    w: &mut W,
    dot: usize,
    lanes: usize,
    tv: usize,
    copy: &str,
    q0: &str,
    sl: &[Slide],
    plane: usize,
    wk: &str,
    bias: &str,
    out: &Out,
) {
    let et = etype(dot);
    let t = tv * lanes;
    let vector = lanes == 16;
    if vector {
        let is = isa(dot, 16);
        let (guard, perm) = if dot == 4 {
            (
                "defined(__AVX512VBMI__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)",
                "_mm512_permutexvar_epi8",
            )
        } else {
            ("defined(__AVX512BW__)", "_mm512_permutexvar_epi16")
        };
        w.line(format!("#if {guard}"));
        w.block();
        // Lane j, element t: j + t.
        let idx: Vec<String> = if dot == 4 {
            (0..64).rev().map(|b| (b / 4 + b % 4).to_string()).collect()
        } else {
            (0..32).rev().map(|b| (b / 2 + b % 2).to_string()).collect()
        };
        let set = if dot == 4 {
            "_mm512_set_epi8"
        } else {
            "_mm512_set_epi16"
        };
        w.line(format!("const __m512i si = {set}({});", idx.join(", ")));
        let accs: Vec<String> = (0..tv)
            .map(|v| format!("a{v} = {}({bias}[ch])", is.set1))
            .collect();
        w.line(format!("__m512i {};", accs.join(", ")));
        for (si, s) in sl.iter().enumerate() {
            w.block();
            w.line(format!(
                "const {et} *xa = {copy} + {} + ({q0});",
                s.phase * plane + s.off
            ));
            w.line(format!("const __m512i w = {}({wk}[{si}]);", is.set1));
            for v in 0..tv {
                let x = format!(
                    "{perm}(si, {})",
                    fill(is.load, &[("p", &format!("xa + {}", v * 16))])
                );
                let a = format!("a{v}");
                w.line(format!(
                    "a{v} = {};",
                    fill(is.dot, &[("a", &a), ("x", &x), ("w", "w")])
                ));
            }
            w.close();
        }
        let accs: Vec<String> = (0..tv).map(|v| format!("a{v}")).collect();
        out.vector(w, 0, &accs);
        w.close();
        w.line("#else");
    }
    let avx2 = lanes == 8 && dot == 2;
    if avx2 {
        // Lane j's word is the 16-bit pair (x[j], x[j + 1]) of the byte
        // plane (`copy` widens the same bytes): both zero-extended from
        // bytes, the second shifted into the high half.
        w.line("#if defined(__AVX2__)");
        w.block();
        let accs: Vec<String> = (0..tv)
            .map(|v| format!("a{v} = _mm256_set1_epi32({bias}[ch])"))
            .collect();
        w.line(format!("__m256i {};", accs.join(", ")));
        let ld = |p: String| {
            format!("_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)({p})))")
        };
        for (si, s) in sl.iter().enumerate() {
            w.block();
            w.line(format!(
                "const uint8_t *xa = xp + {} + ({q0});",
                s.phase * plane + s.off
            ));
            w.line(format!("const __m256i w = _mm256_set1_epi32({wk}[{si}]);"));
            for v in 0..tv {
                let x = if s.taps[1].is_some() {
                    format!(
                        "_mm256_or_si256({}, _mm256_slli_epi32({}, 16))",
                        ld(format!("xa + {}", v * 8)),
                        ld(format!("xa + {}", v * 8 + 1))
                    )
                } else {
                    ld(format!("xa + {}", v * 8))
                };
                w.line(format!(
                    "a{v} = _mm256_add_epi32(a{v}, _mm256_madd_epi16({x}, w));"
                ));
            }
            w.close();
        }
        let accs: Vec<String> = (0..tv).map(|v| format!("a{v}")).collect();
        out.vector8(w, 0, &accs);
        w.close();
        w.line("#else");
    }
    let et = if copy == "xp" { "uint8_t" } else { et };
    w.block();
    w.for_("j", 0, t);
    w.line(format!("acc[j] = {bias}[ch];"));
    w.close();
    for (si, s) in sl.iter().enumerate() {
        w.block();
        w.line(format!(
            "const {et} *xa = {copy} + {} + ({q0});",
            s.phase * plane + s.off
        ));
        w.line(format!("const int32_t wv = {wk}[{si}];"));
        let used: Vec<usize> = (0..dot).filter(|&k| s.taps[k].is_some()).collect();
        let ws: Vec<String> = used
            .iter()
            .map(|&k| format!("w{k} = {}", decode("wv", k, dot)))
            .collect();
        w.line(format!("const int32_t {};", ws.join(", ")));
        w.for_("j", 0, t);
        let terms: Vec<String> = used
            .iter()
            .map(|&k| format!("(int32_t)xa[j + {k}] * w{k}"))
            .collect();
        w.line(format!("acc[j] += {};", terms.join(" + ")));
        w.close();
        w.close();
    }
    w.close();
    out.portable(w, 1, t);
    if vector || avx2 {
        w.line("#endif");
    }
}

/// Renders `qgemm_dot`: per row of `a`, the row as unsigned words, then
/// column blocks of `v` vectors.
#[allow(clippy::too_many_arguments)]
pub(in crate::c) fn gemm(
    w: &mut W,
    st: &Step,
    k: &QGemmDot,
    q: &QGemmAttrs,
    at: &TensorType,
    ws: &[Option<&Tensor>],
    h: &mut Helpers,
) -> Option<()> {
    h.need("nnc_idot");
    let y = &st.outputs[0].ty;
    let (dot, l) = (k.dot, k.lanes);
    let (m, n) = (y.dims[0], y.dims[1]);
    let kk = at.dims[1];
    let ng = kk.div_ceil(dot);
    let bt = ws.get(1).copied().flatten()?;
    let words = qdot::gemm_words(bt, q.q.w_zp, q.trans_b, dot);
    // Column blocks of v * l columns (the last padded with zero columns):
    // [block][group][column].
    let cols = k.vectors * l;
    let nb = n.div_ceil(cols);
    let mut packed = Vec::new();
    for b in 0..nb {
        let width = if b + 1 == nb {
            (n - b * cols).div_ceil(l) * l
        } else {
            cols
        };
        for gi in 0..ng {
            for j in b * cols..b * cols + width {
                packed.push(words.get(j).map_or(0, |r| r[gi]));
            }
        }
    }
    let wname = h.global_i32("qw", &packed);
    let mut bias = qdot::gemm_bias(
        st.bias().and_then(|b| ws.get(b).copied().flatten()),
        bt,
        q.q.w_zp,
        q.trans_b,
        at.dtype,
        q.q.x_zp,
    );
    bias.resize(nb * cols, 0);
    let bv: Vec<String> = bias.iter().map(|v| v.to_string()).collect();
    let bname = h.global_array("qb", "int32_t", &bv);
    let (qm, qs) = rq_tables(st, ws, n, h);
    let shift = qdot::unsigned_shift(at.dtype);
    let pad = qdot::pad_value(at.dtype, q.q.x_zp);
    let is = isa(dot, l);
    let ew = if dot == 4 { "uint8_t" } else { "uint16_t" };
    w.line(format!("int32_t xa[{ng}];"));
    w.line(format!("int32_t acc[{cols}];"));
    w.for_("i", 0, m);
    // The row as words of `dot` unsigned elements.
    w.block();
    w.line(format!("{ew} e[{}];", ng * dot));
    w.for_("p", 0, kk);
    w.line(format!("e[p] = ({ew})(in0[i * {kk} + p] + {shift});"));
    w.close();
    if ng * dot > kk {
        w.open(format!("for (size_t p = {kk}; p < {}; ++p)", ng * dot));
        w.line(format!("e[p] = {pad};"));
        w.close();
    }
    w.for_("p", 0, ng);
    let parts: Vec<String> = (0..dot)
        .map(|t| format!("(uint32_t)e[{dot} * p + {t}] << {}", t * 32 / dot))
        .collect();
    w.line(format!("xa[p] = (int32_t)({});", parts.join(" | ")));
    w.close();
    w.close();
    let block = |w: &mut W, tv: usize, b0: &str| {
        let width = tv * l;
        w.line(format!("const int32_t *wb = {wname} + ({b0}) * {ng};"));
        w.line(format!("#if {}", is.guard));
        w.block();
        let accs: Vec<String> = (0..tv)
            .map(|v| {
                format!(
                    "a{v} = {}",
                    fill(is.load, &[("p", &format!("{bname} + ({b0}) + {}", v * l))])
                )
            })
            .collect();
        w.line(format!("{} {};", is.vt, accs.join(", ")));
        w.for_("p", 0, ng);
        w.line(format!("const {} x = {}(xa[p]);", is.vt, is.set1));
        w.line(format!("const int32_t *wp = wb + p * {width};"));
        for v in 0..tv {
            let wv = fill(is.load, &[("p", &format!("wp + {}", v * l))]);
            w.line(format!(
                "a{v} = {};",
                fill(is.dot, &[("a", &format!("a{v}")), ("x", "x"), ("w", &wv)])
            ));
        }
        w.close();
        for v in 0..tv {
            w.line(format!(
                "{};",
                fill(
                    is.store,
                    &[("p", &format!("acc + {}", v * l)), ("v", &format!("a{v}"))]
                )
            ));
        }
        w.close();
        w.line("#else");
        w.block();
        w.for_("j", 0, width);
        w.line(format!("acc[j] = {bname}[({b0}) + j];"));
        w.close();
        w.for_("p", 0, ng);
        w.line("const int32_t xv = xa[p];");
        let xs: Vec<String> = (0..dot)
            .map(|t| {
                if dot == 4 {
                    format!("x{t} = (int32_t)(((uint32_t)xv >> {}) & 0xffu)", 8 * t)
                } else {
                    format!("x{t} = (int32_t)(((uint32_t)xv >> {}) & 0xffffu)", 16 * t)
                }
            })
            .collect();
        w.line(format!("const int32_t {};", xs.join(", ")));
        w.line(format!("const int32_t *wp = wb + p * {width};"));
        w.for_("j", 0, width);
        let terms: Vec<String> = (0..dot)
            .map(|t| format!("{} * x{t}", decode("wp[j]", t, dot)))
            .collect();
        w.line(format!("acc[j] += {};", terms.join(" + ")));
        w.close();
        w.close();
        w.close();
        w.line("#endif");
        let valid = format!("(({b0}) + {width} <= {n} ? {width} : {n} - ({b0}))");
        // Requantize column by column (per-column multipliers).
        let (zp, lo, hi) = out_range(st, y.dtype);
        w.line("const int32_t *s = acc;");
        w.open(format!("for (size_t j = 0; j < {valid}; ++j)"));
        w.line(format!("const size_t c = ({b0}) + j;"));
        w.line(format!("const int32_t mq = {qm}[c];"));
        w.line(format!("const int k = {qs}[c] - 31;"));
        w.line(REQUANT_CONSTS);
        w.line(REQUANT_Q);
        w.line(format!(
            "out0[i * {n} + c] = ({})((v < {} ? {} : (v > {} ? {} : v)) + {zp});",
            ctype(y.dtype),
            lo - zp,
            lo - zp,
            hi - zp,
            hi - zp
        ));
        w.close();
    };
    let full = n / cols;
    let rem = n % cols;
    if full > 0 {
        w.for_("b", 0, full);
        block(w, k.vectors, &format!("b * {cols}"));
        w.close();
    }
    if rem > 0 {
        w.block();
        block(w, rem.div_ceil(l), &(full * cols).to_string());
        w.close();
    }
    w.close();
    Some(())
}
