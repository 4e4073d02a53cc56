//! Selection and limits of the integer dot-product kernels (`qconv_dot`,
//! `qdw_dot`, `qgemm_dot`) on host CPUs: which steps they compute, the
//! tile shapes selection gives them, and what `--kernel` may set.
//!
//! The dot width comes from the target (`IntDot`: VNNI's quads of 8-bit
//! products, or 16-bit pairs), the lanes from its vector registers (the C
//! compiler's widest, Cranelift's 128 bits). The kernels need constant
//! weights, bias and requantization (they are packed, folded and read at
//! generation time), weights that fit the dot's signed element after
//! their zero point is taken off, and multipliers below one (shifts of
//! at most zero: the vector requantization relies on it). Anything else
//! keeps the reference kernels.

use nnc_ir::Op;
use nnc_ir::op::QConvAttrs;
use nnc_ir::program::qdot::{self, Grid};
use nnc_ir::program::{Codegen, Kernel, QConvDot, QDwDot, QGemmDot, Target, Window};

use super::select::{STACK_COPY_LIMIT, StepCx};

/// Extra elements a depthwise plane keeps readable past its last tap:
/// sliding-window loads read a whole vector ahead.
pub const DW_SLACK: usize = 64;

/// 32-bit lanes of the dot kernels' vectors on this target.
fn lanes(t: &Target) -> usize {
    match t.codegen {
        Codegen::Cranelift => 4,
        Codegen::C => (t.vector_bits / 32).clamp(4, 16),
    }
}

/// The dot width selection uses (None: no vector dot product).
fn dot(t: &Target) -> Option<usize> {
    (!t.is_mcu() && t.vector_bits >= 128 && t.int_dot.width() >= 2).then(|| t.int_dot.width())
}

/// The quantized convolution's attributes and window.
fn qconv<'a>(cx: &StepCx<'a>) -> Option<(&'a QConvAttrs, Window)> {
    let Op::QConv(q) = cx.op else { return None };
    let (_, w) = cx.conv_window()?;
    Some((q, w))
}

/// The requirements every dot kernel shares, for dot width `dot`.
fn common(cx: &StepCx, w_zp: i32, dot: usize) -> Result<(), String> {
    if !(1..=4).all(|k| cx.konst(k)) {
        return Err("needs constant weights, bias, multipliers and shifts".into());
    }
    if dot != 2 && dot != 4 {
        return Err("dot must be 2 or 4".into());
    }
    let w = cx.consts[1].expect("constant");
    if !qdot::weights_fit(w, w_zp, dot) {
        return Err(format!(
            "weights minus their zero point do not fit {} bits",
            if dot == 4 { 8 } else { 16 }
        ));
    }
    if !qdot::shifts_fit(cx.consts[4].expect("constant")) {
        return Err("needs requantization multipliers below one (shifts <= 0)".into());
    }
    Ok(())
}

fn lanes_ok(cx: &StepCx, lanes: usize) -> Result<(), String> {
    let ok = match cx.target.codegen {
        Codegen::Cranelift => lanes == 4,
        Codegen::C => matches!(lanes, 4 | 8 | 16),
    };
    if ok {
        Ok(())
    } else if cx.target.codegen == Codegen::Cranelift {
        Err("lanes must be 4 (128-bit vectors)".into())
    } else {
        Err("lanes must be 4, 8 or 16".into())
    }
}

/// Why `qconv_dot` cannot compute this step.
pub(super) fn check_conv(k: &QConvDot, cx: &StepCx) -> Result<(), String> {
    let (q, win) = qconv(cx).ok_or("needs a quantized convolution")?;
    common(cx, q.q.w_zp, k.dot)?;
    lanes_ok(cx, k.lanes)?;
    if !(1..=8).contains(&k.vectors) || !(1..=32).contains(&k.channels) {
        return Err("v must be in 1..=8 and c in 1..=32".into());
    }
    let g = Grid::new(&win, k.lanes, 0).ok_or("needs a 1-D or 2-D window")?;
    let s = qdot::conv_scratch(
        &g,
        win.cg(),
        k.dot,
        k.im2col,
        k.channels,
        k.vectors,
        k.lanes,
    );
    if s.total() > STACK_COPY_LIMIT {
        return Err(format!(
            "its copies ({} bytes) are too large for the stack",
            s.total()
        ));
    }
    Ok(())
}

/// Why `qdw_dot` cannot compute this step.
pub(super) fn check_dw(k: &QDwDot, cx: &StepCx) -> Result<(), String> {
    let (q, win) = qconv(cx).ok_or("needs a quantized convolution")?;
    if !win.is_depthwise() {
        return Err("needs a depthwise convolution".into());
    }
    common(cx, q.q.w_zp, k.dot)?;
    lanes_ok(cx, k.lanes)?;
    if !(1..=8).contains(&k.vectors) {
        return Err("v must be in 1..=8".into());
    }
    let g = Grid::new(&win, k.lanes, DW_SLACK).ok_or("needs a 1-D or 2-D window")?;
    if qdot::dw_scratch(&g, k.dot, k.vectors, k.lanes) > STACK_COPY_LIMIT {
        return Err("its copies are too large for the stack".into());
    }
    Ok(())
}

/// Why `qgemm_dot` cannot compute this step.
pub(super) fn check_gemm(k: &QGemmDot, cx: &StepCx) -> Result<(), String> {
    let Op::QGemm(q) = cx.op else {
        return Err("needs a quantized matrix product".into());
    };
    common(cx, q.q.w_zp, k.dot)?;
    lanes_ok(cx, k.lanes)?;
    if !(1..=16).contains(&k.vectors) {
        return Err("v must be in 1..=16".into());
    }
    Ok(())
}

/// Estimated cost of a convolution's channel blocks and position tiles
/// with tile shape `(v, c)`: per tile, every reduction group issues `c *
/// v` dot products plus `v + c` loads; every result vector is
/// requantized once. Natively (`rows`) every channel row of a tile also
/// pays its requantization constants and its stores: one per four
/// vectors, a word at a time for the rest (measured on VWW's and KWS's
/// pointwise layers: 4x2 tiles 3-14% under 3x3).
fn conv_cost(v: usize, c: usize, mg: usize, vecs: usize, groups: usize, rows: bool) -> usize {
    let row = |tv: usize| if rows { 8 + tv / 4 + tv % 4 } else { 0 };
    let tile =
        |tv: usize, tc: usize| groups * (2 * tc * tv + tv + tc) + 10 * tc * tv + tc * row(tv) + 8;
    let blocks = |tv: usize| {
        (mg / c) * tile(tv, c)
            + if !mg.is_multiple_of(c) {
                tile(tv, mg % c)
            } else {
                0
            }
    };
    (vecs / v) * blocks(v)
        + if !vecs.is_multiple_of(v) {
            blocks(vecs % v)
        } else {
            0
        }
}

/// The tile shape of `qconv_dot`: accumulators, the activation vectors
/// of a group and a broadcast weight within the vector registers. Natively
/// a long reduction over several taps fills all sixteen registers; others
/// leave two spare (measured on the MLPerf Tiny models: 3x4 tiles for
/// their 3x3 convolutions, 3x3 for pointwise ones).
fn conv_tile(t: &Target, mg: usize, vecs: usize, groups: usize, taps: usize) -> (usize, usize) {
    let regs = t.vector_regs.max(8);
    let spare = match t.codegen {
        Codegen::C => 2,
        Codegen::Cranelift if groups >= 32 && taps > 1 => 1,
        Codegen::Cranelift => 3,
    };
    let mut best = (1, 1);
    let mut best_cost = usize::MAX;
    for v in 1..=8usize.min(vecs.max(1)) {
        for c in 1..=mg.clamp(1, 32) {
            if c * v + v + spare > regs {
                continue;
            }
            let cost = conv_cost(v, c, mg, vecs, groups, t.codegen == Codegen::Cranelift);
            if cost < best_cost {
                best = (v, c);
                best_cost = cost;
            }
        }
    }
    best
}

/// The convolution kernel for a quantized convolution on a host target.
pub(super) fn conv(cx: &StepCx) -> Option<Kernel> {
    let t = cx.target;
    let d = dot(t)?;
    let (_, win) = qconv(cx)?;
    let l = lanes(t);
    let k = if win.is_depthwise() {
        // Four vectors: one 16-byte store per tile (10% under three on
        // KWS's 64-channel 25x5 depthwise layers, natively).
        Kernel::QDwDot(QDwDot {
            lanes: l,
            vectors: 4,
            dot: d,
        })
    } else {
        let g = Grid::new(&win, l, 0)?;
        let (cg, taps) = (win.cg(), g.taps.len());
        // Input channels in whole groups unless that pads the reduction
        // by more than an eighth.
        let im2col = taps > 1
            && 8 * qdot::conv_groups(cg, taps, d, false) > 9 * qdot::conv_groups(cg, taps, d, true);
        let groups = qdot::conv_groups(cg, taps, d, im2col);
        let (v, c) = conv_tile(t, win.mg(), g.computed / l, groups, taps);
        Kernel::QConvDot(QConvDot {
            lanes: l,
            vectors: v,
            channels: c,
            dot: d,
            im2col,
        })
    };
    super::check::check(&k, cx).is_ok().then_some(k)
}

/// The matrix kernel for a quantized matrix product on a host target.
pub(super) fn gemm(cx: &StepCx) -> Option<Kernel> {
    let t = cx.target;
    let d = dot(t)?;
    let Op::QGemm(_) = cx.op else { return None };
    let l = lanes(t);
    let n = cx.y().dims[1];
    let vecs = n.div_ceil(l).max(1);
    let most = if t.codegen == Codegen::C {
        (t.vector_regs.max(8) - 4).min(16)
    } else {
        12
    };
    let k = Kernel::QGemmDot(QGemmDot {
        lanes: l,
        vectors: vecs.div_ceil(vecs.div_ceil(most)),
        dot: d,
    });
    super::check::check(&k, cx).is_ok().then_some(k)
}

/// The kernel called `name` with the parameters selection would give it
/// on this target (`None` for kernels not from this module).
pub(super) fn defaults(name: &str, cx: &StepCx) -> Option<Result<Kernel, String>> {
    let t = cx.target;
    let l = lanes(t);
    let d = dot(t).unwrap_or(2);
    Some(Ok(match name {
        "qconv_dot" => match conv(cx) {
            Some(k @ Kernel::QConvDot(_)) => k,
            _ => {
                let Some((_, win)) = qconv(cx) else {
                    return Some(Err("qconv_dot needs a quantized convolution".into()));
                };
                let vecs = Grid::new(&win, l, 0).map_or(1, |g| g.computed / l);
                let groups = qdot::conv_groups(win.cg(), win.taps(), d, false);
                let (v, c) = conv_tile(t, win.mg(), vecs, groups, win.taps());
                Kernel::QConvDot(QConvDot {
                    lanes: l,
                    vectors: v,
                    channels: c,
                    dot: d,
                    im2col: false,
                })
            }
        },
        "qdw_dot" => Kernel::QDwDot(QDwDot {
            lanes: l,
            vectors: 4,
            dot: d,
        }),
        "qgemm_dot" => match gemm(cx) {
            Some(k) => k,
            None => Kernel::QGemmDot(QGemmDot {
                lanes: l,
                vectors: 4,
                dot: d,
            }),
        },
        _ => return None,
    }))
}

/// Sets parameter `key` of a dot kernel (`None` for other kernels).
pub(super) fn set_param(k: &mut Kernel, key: &str, val: &str) -> Option<Result<(), String>> {
    let num = || -> Result<usize, String> {
        val.parse::<usize>()
            .map_err(|_| format!("parameter {key}={val}: not a number"))
    };
    let r = match (k, key) {
        (Kernel::QConvDot(p), "lanes") => num().map(|v| p.lanes = v),
        (Kernel::QConvDot(p), "v") => num().map(|v| p.vectors = v),
        (Kernel::QConvDot(p), "c") => num().map(|v| p.channels = v),
        (Kernel::QConvDot(p), "dot") => num().map(|v| p.dot = v),
        (Kernel::QConvDot(p), "im2col") => match val {
            "1" | "true" | "yes" | "0" | "false" | "no" => {
                p.im2col = matches!(val, "1" | "true" | "yes");
                Ok(())
            }
            _ => Err(format!("parameter {key}={val}: use 0 or 1")),
        },
        (Kernel::QDwDot(p), "lanes") => num().map(|v| p.lanes = v),
        (Kernel::QDwDot(p), "v") => num().map(|v| p.vectors = v),
        (Kernel::QDwDot(p), "dot") => num().map(|v| p.dot = v),
        (Kernel::QGemmDot(p), "lanes") => num().map(|v| p.lanes = v),
        (Kernel::QGemmDot(p), "v") => num().map(|v| p.vectors = v),
        (Kernel::QGemmDot(p), "dot") => num().map(|v| p.dot = v),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::conv_cost;

    #[test]
    fn native_tiles_count_each_rows_stores() {
        // VWW's 8 -> 16 pointwise at 48x48 (576 vectors, two groups):
        // natively four vectors (one 16-byte store per row) by two
        // channels beat three by three (three word stores per row).
        let (mg, vecs, groups) = (16, 576, 2);
        assert!(conv_cost(4, 2, mg, vecs, groups, true) < conv_cost(3, 3, mg, vecs, groups, true));
        // Without the row term (the C renderer's masked stores) the
        // estimate is the reduction and requantization alone.
        assert_eq!(
            conv_cost(3, 3, mg, vecs, groups, false),
            (vecs / 3) * (5 * (groups * (18 + 6) + 90 + 8) + (groups * (6 + 4) + 30 + 8))
        );
    }
}
