//! What a kernel can compute, and kernels forced by name: [`check`] gives
//! the limits every renderer of a kernel shares (a kernel chosen by
//! selection or forced with `--kernel` must pass it), [`with_params`]
//! builds a forced kernel from its name and the parameters the user gave,
//! the rest defaulted as selection would pick them on this target.

use nnc_ir::program::tiles::{DwBand, DwConsts, MatConsts, im2col_bytes, panels_bytes};
use nnc_ir::program::{
    Codegen, ConvBlocked, ConvRowTiles, DepthwiseChannelsLast, DepthwisePairs, DepthwiseRows,
    GlobalPool, IntTiles, Kernel, MatMulPacked, Phases, PoolRows, Window,
};
use nnc_ir::{DType, Op, Tensor};

use super::select::{
    NATIVE_HWC_BLOCK, NATIVE_SHAPES, STACK_COPY_LIMIT, StepCx, c_channel_block, c_positions,
    c_row_tiles, c_tile_width, copy_bytes, deinterleave, deinterleave_channels, dw_grid_fits,
    fixed, im2col_default, native_unroll, packed_ok, pairs_default, panels_default, scratch_limit,
    select, shape_cost, whole_plane,
};

/// The constant weights, bias, multipliers and shifts (inputs 1 to 4) of
/// an integer convolution or Gemm.
fn int_consts<'a>(
    cx: &StepCx<'a>,
) -> Result<(&'a Tensor, &'a Tensor, &'a Tensor, &'a Tensor), String> {
    let c = |k: usize| cx.consts.get(k).copied().flatten();
    match (c(1), c(2), c(3), c(4)) {
        (Some(w), Some(b), Some(m), Some(s)) => Ok((w, b, m, s)),
        _ => Err("needs constant weights, bias, multipliers and shifts".into()),
    }
}

/// The tile parameters of `conv_im2col` and `matmul_panels`.
fn int_tiles(p: &IntTiles) -> Result<(), String> {
    if !(1..=4).contains(&p.rows) || !(1..=4).contains(&p.cols) {
        return Err("r and c must be in 1..=4".into());
    }
    if !(1..=16).contains(&p.unroll) {
        return Err("unroll must be in 1..=16".into());
    }
    Ok(())
}

/// Why `k` cannot compute this step, or `Ok` when it can: the limits every
/// renderer of the kernel shares.
pub fn check(k: &Kernel, cx: &StepCx) -> Result<(), String> {
    let y = cx.y();
    let f32_only = |what: &str| -> Result<(), String> {
        if y.dtype == DType::F32 {
            Ok(())
        } else {
            Err(format!("{what} computes f32 only, the step is {}", y.dtype))
        }
    };
    let need = |ok: bool, why: &str| -> Result<(), String> {
        if ok { Ok(()) } else { Err(why.to_string()) }
    };
    let conv = || {
        cx.conv_window()
            .ok_or_else(|| "needs a convolution".to_string())
    };
    match k {
        Kernel::ConvDirect => conv().map(|_| ()),
        Kernel::ConvBlocked(p) => {
            let (_, w) = conv()?;
            f32_only("conv_blocked")?;
            need(cx.const_params(), "needs constant weights and bias")?;
            let (h, c) = w.rows_cols().ok_or("needs a 1-D or 2-D window")?;
            need(p.positions >= 1 && p.positions <= 64, "p must be in 1..=64")?;
            need(
                p.channels >= 4 && p.channels.is_multiple_of(4) && p.channels <= 64,
                "c must be a multiple of 4 in 4..=64",
            )?;
            need(p.unroll >= 1 && p.unroll <= 8, "unroll must be in 1..=8")?;
            if p.pad_copy {
                need(w.padded(), "pad_copy needs a padded convolution")?;
                need(
                    copy_bytes(&w, &h, &c, 1, 4) <= STACK_COPY_LIMIT,
                    "the padded copy is too large for the stack",
                )?;
            }
            Ok(())
        }
        Kernel::ConvRowTiles(p) => {
            let (_, w) = conv()?;
            need(y.dtype.is_float(), "conv_row_tiles computes floats only")?;
            let (h, c) = w.rows_cols().ok_or("needs a 1-D or 2-D window")?;
            need(
                p.channels >= 1 && p.channels <= 64 && w.mg().is_multiple_of(p.channels),
                "c must divide the output channels per group (at most 64)",
            )?;
            need(p.width >= 1 && p.width <= 64, "w must be in 1..=64")?;
            if p.pad_copy {
                // C copies bands of rows when the whole copy is too large.
                let elem = y.dtype.size();
                let fits = if cx.target.codegen == Codegen::C {
                    nnc_ir::program::rowband::copy_fits(w.channels, &h, &c, elem)
                } else {
                    copy_bytes(&w, &h, &c, c.stride, elem) <= STACK_COPY_LIMIT
                };
                need(fits, "the padded copy is too large for the stack")?;
            }
            Ok(())
        }
        Kernel::DepthwiseRows(p) => {
            let (_, w) = conv()?;
            f32_only("dw_rows")?;
            need(w.is_depthwise(), "needs a depthwise convolution")?;
            need(cx.const_params(), "needs constant weights and bias")?;
            let (h, c) = w.rows_cols().ok_or("needs a 1-D or 2-D window")?;
            need(
                p.width >= 4 && p.width.is_multiple_of(4) && p.width <= 64,
                "w must be a multiple of 4 in 4..=64",
            )?;
            need(c.stride <= 2, "column stride must be 1 or 2")?;
            if p.pad_copy {
                need(
                    h.reach() * (c.reach() + 4) * 4 <= STACK_COPY_LIMIT,
                    "the padded plane is too large for the stack",
                )?;
            }
            Ok(())
        }
        Kernel::DepthwiseChannelsLast(p) => {
            let (_, w) = conv()?;
            f32_only("dw_channels_last")?;
            need(w.is_depthwise(), "needs a depthwise convolution")?;
            need(cx.const_params(), "needs constant weights and bias")?;
            let (h, c) = w.rows_cols().ok_or("needs a 1-D or 2-D window")?;
            need(
                p.block >= 1 && p.positions >= 1,
                "block and p must be positive",
            )?;
            need(p.positions <= 16, "p must be at most 16")?;
            need(
                h.reach() * c.reach() * p.block.min(w.out_channels) * 4 <= STACK_COPY_LIMIT,
                "the channels-last copy is too large for the stack",
            )
        }
        Kernel::DepthwiseGrid => {
            let (_, w) = conv()?;
            f32_only("dw_grid")?;
            need(w.is_depthwise(), "needs a depthwise convolution")?;
            need(
                w.grid().is_some(),
                "needs equal row and column strides and a 1-D or 2-D window",
            )?;
            need(
                dw_grid_fits(&w),
                "the padded plane is too large for the stack",
            )
        }
        Kernel::DepthwisePhases => {
            f32_only("dw_phases")?;
            let w = match cx.op {
                Op::Pool(a) => {
                    need(
                        a.kind == nnc_ir::op::PoolKind::Max,
                        "pools by maximum only (an average divides by a count per position)",
                    )?;
                    Window::pool(a, cx.ins[0], y)
                }
                _ => {
                    let (_, w) = conv()?;
                    need(w.is_depthwise(), "needs a depthwise convolution")?;
                    w
                }
            };
            let p = Phases::of(&w).ok_or("needs a 1-D or 2-D window")?;
            need(
                p.floats() * 4 <= STACK_COPY_LIMIT,
                "the phase planes are too large for the stack",
            )
        }
        Kernel::ConvIm2col(p) => {
            let Op::QConv(q) = cx.op else {
                return Err("needs an integer convolution (qconv)".into());
            };
            let (_, w) = conv()?;
            w.hw().ok_or("needs a 1-D or 2-D window")?;
            int_tiles(p)?;
            need(
                im2col_bytes(w.cg() * w.taps(), p.cols) <= scratch_limit(cx.target),
                "the im2col columns exceed the stack scratch limit",
            )?;
            let (wt, b, m, s) = int_consts(cx)?;
            MatConsts::for_qconv(q, wt, b, m, s, p.rows).map(|_| ())
        }
        Kernel::DepthwisePairs(p) => {
            let Op::QConv(q) = cx.op else {
                return Err("needs an integer convolution (qconv)".into());
            };
            let (_, w) = conv()?;
            need(w.is_depthwise(), "needs a depthwise convolution")?;
            let band = DwBand::of(&w).ok_or("needs a 1-D or 2-D window")?;
            need(
                band.cols.dil == 1,
                "needs column dilation 1 (the pairs are taps two columns apart)",
            )?;
            need((1..=4).contains(&p.positions), "p must be in 1..=4")?;
            need(
                p.rows >= 1 && p.rows <= band.rows.output.max(1),
                "rows must be between 1 and the output rows",
            )?;
            need(
                band.bytes(p.rows) <= scratch_limit(cx.target),
                "the band exceeds the stack scratch limit",
            )?;
            let (wt, b, m, s) = int_consts(cx)?;
            DwConsts::for_qconv(q, &band, wt, b, m, s).map(|_| ())
        }
        Kernel::MatMulPanels(p) => {
            let Op::QGemm(q) = cx.op else {
                return Err("needs an integer Gemm (qgemm)".into());
            };
            int_tiles(p)?;
            need(
                panels_bytes(cx.ins[0].dims[1], p.cols) <= scratch_limit(cx.target),
                "the widened rows exceed the stack scratch limit",
            )?;
            let (wt, b, m, s) = int_consts(cx)?;
            MatConsts::for_qgemm(q, wt, b, m, s, p.rows).map(|_| ())
        }
        Kernel::ConvTransposeScatter => need(
            matches!(cx.op, Op::ConvTranspose(_)),
            "needs a transposed convolution",
        ),
        Kernel::MatMulDirect => need(
            matches!(cx.op, Op::Gemm(_) | Op::MatMul | Op::QGemm(_)),
            "needs a Gemm or MatMul",
        ),
        Kernel::MatMulPacked(p) => {
            need(
                matches!(cx.op, Op::Gemm(_) | Op::MatMul),
                "needs a Gemm or MatMul",
            )?;
            need(
                packed_ok(cx),
                "needs f32, a constant right-hand side and a constant per-column C",
            )?;
            need(
                p.cols >= 4 && p.cols.is_multiple_of(4) && p.cols <= 64,
                "cols must be a multiple of 4 in 4..=64",
            )?;
            need(p.unroll >= 1 && p.unroll <= 16, "unroll must be in 1..=16")
        }
        Kernel::PoolDirect => need(matches!(cx.op, Op::Pool(_)), "needs a pooling"),
        Kernel::PoolRows(p) => {
            let Op::Pool(a) = cx.op else {
                return Err("needs a pooling".into());
            };
            f32_only("pool_rows")?;
            let w = Window::pool(a, cx.ins[0], y);
            let [_, c] = w.axes[..] else {
                return Err("needs a 2-D window".into());
            };
            need(c.stride <= 2, "column stride must be 1 or 2")?;
            need(
                p.width >= 4 && p.width.is_multiple_of(4) && p.width <= 64,
                "w must be a multiple of 4 in 4..=64",
            )
        }
        Kernel::GlobalPool(p) => {
            let x = cx.ins[0];
            let whole = match cx.op {
                Op::GlobalPool(_) => true,
                Op::Pool(a) => whole_plane(a, x, y),
                _ => false,
            };
            need(whole, "needs a pooling over whole planes")?;
            need(
                p.partials == 1 || (p.partials.is_multiple_of(4) && p.partials <= 32),
                "partials must be 1 or a multiple of 4 up to 32",
            )?;
            if p.partials > 1 {
                f32_only("global_pool with partials")?;
            }
            Ok(())
        }
        Kernel::Map(m) => {
            need(
                fixed(cx).is_some_and(|f| matches!(f, Kernel::Map(_))),
                "needs an elementwise op",
            )?;
            need(m.operands.len() == cx.ins.len(), "one operand per input")
        }
        Kernel::Copy => need(
            matches!(
                cx.op,
                Op::Identity
                    | Op::Reshape(_)
                    | Op::Transpose(_)
                    | Op::Concat(_)
                    | Op::Split(_)
                    | Op::Slice(_)
                    | Op::Expand(_)
                    | Op::Tile(_)
            ),
            "needs a data movement op",
        ),
        Kernel::RowCopy(_) => need(
            matches!(cx.op, Op::Identity),
            "row copies are made by streamed execution, not selected",
        ),
        Kernel::Deinterleave { channels } => {
            let Op::Transpose(t) = cx.op else {
                return Err("needs a transpose".into());
            };
            need(
                deinterleave_channels(&t.perm, cx.ins[0], y) == Some(*channels),
                "the transpose is not a deinterleave of that many channels",
            )
        }
        Kernel::PadTable => need(matches!(cx.op, Op::Pad(_)), "needs a Pad"),
        Kernel::Gather => need(matches!(cx.op, Op::Gather(_)), "needs a Gather"),
        Kernel::ResizeTable => need(matches!(cx.op, Op::Resize(_)), "needs a Resize"),
        Kernel::Reduce { acc } => {
            need(matches!(cx.op, Op::Reduce(_)), "needs a reduction")?;
            need(
                matches!(acc, DType::F32 | DType::F64),
                "acc must be f32 or f64",
            )
        }
        Kernel::ArgReduce => need(matches!(cx.op, Op::ArgReduce(_)), "needs ArgMax/ArgMin"),
        Kernel::Softmax => need(
            matches!(cx.op, Op::Softmax(_) | Op::QSoftmax(_)),
            "needs a Softmax",
        ),
        Kernel::Lrn => need(matches!(cx.op, Op::Lrn(_)), "needs an LRN"),
        Kernel::QConvDot(p) => super::qselect::check_conv(p, cx),
        Kernel::QDwDot(p) => super::qselect::check_dw(p, cx),
        Kernel::QGemmDot(p) => super::qselect::check_gemm(p, cx),
        Kernel::Winograd(p) => super::wselect::check(p, cx),
    }
}

/// The kernel called `name` for this step, with `params` (`key=value`)
/// overriding the values selection would pick for it.
pub fn with_params(name: &str, params: &[(String, String)], cx: &StepCx) -> Result<Kernel, String> {
    let mut k = defaults(name, cx)?;
    for (key, val) in params {
        set_param(&mut k, key, val)?;
    }
    check(&k, cx)?;
    Ok(k)
}

/// The kernel called `name` with the parameters selection would give it
/// on this target.
fn defaults(name: &str, cx: &StepCx) -> Result<Kernel, String> {
    let chosen = select(cx);
    if chosen.name() == name {
        return Ok(chosen);
    }
    if let Some(k) = super::qselect::defaults(name, cx) {
        return k;
    }
    let t = cx.target;
    let c_like = t.codegen == Codegen::C;
    let window = || {
        cx.conv_window()
            .map(|(_, w)| w)
            .ok_or_else(|| format!("{name} needs a convolution"))
    };
    Ok(match name {
        "conv_direct" => Kernel::ConvDirect,
        "conv_blocked" => {
            let w = window()?;
            let (_, cols) = w
                .rows_cols()
                .ok_or("conv_blocked needs a 1-D or 2-D window")?;
            if c_like {
                let vb = c_channel_block(t, w.out_channels);
                let (lo, hi) = cols.interior();
                Kernel::ConvBlocked(ConvBlocked {
                    positions: c_positions(t, hi - lo, vb),
                    channels: vb,
                    unroll: 1,
                    pad_copy: false,
                })
            } else {
                let (tp, tv) = NATIVE_SHAPES
                    .into_iter()
                    .min_by_key(|&(p, v)| shape_cost(p, v, w.mg(), &cols))
                    .unwrap_or((4, 2));
                Kernel::ConvBlocked(ConvBlocked {
                    positions: tp,
                    channels: 4 * tv,
                    unroll: native_unroll(w.taps(), w.cg()),
                    pad_copy: false,
                })
            }
        }
        "conv_row_tiles" => {
            let w = window()?;
            let (h, c) = w
                .rows_cols()
                .ok_or("conv_row_tiles needs a 1-D or 2-D window")?;
            // Selection's choice when it fits; otherwise the narrowest
            // tile, column by column (the parameters may still say more).
            c_row_tiles(cx, &w, &h, &c).unwrap_or(Kernel::ConvRowTiles(ConvRowTiles {
                channels: 1,
                width: 4,
                pad_copy: false,
            }))
        }
        "dw_rows" => {
            let w = window()?;
            let (_, c) = w.rows_cols().ok_or("dw_rows needs a 1-D or 2-D window")?;
            let (lo, hi) = c.interior();
            let width = if c_like {
                c_tile_width(t, hi - lo).max(4)
            } else {
                12
            };
            Kernel::DepthwiseRows(DepthwiseRows {
                width,
                pad_copy: false,
            })
        }
        "dw_channels_last" => Kernel::DepthwiseChannelsLast(DepthwiseChannelsLast {
            block: NATIVE_HWC_BLOCK,
            positions: 2,
        }),
        "dw_grid" => Kernel::DepthwiseGrid,
        "dw_phases" => Kernel::DepthwisePhases,
        "conv_im2col" => Kernel::ConvIm2col(im2col_default(&window()?)),
        "dw_pairs" => {
            let w = window()?;
            Kernel::DepthwisePairs(pairs_default(cx, &w).unwrap_or(DepthwisePairs {
                positions: 1,
                rows: 1,
            }))
        }
        "matmul_panels" => {
            if !matches!(cx.op, Op::QGemm(_)) {
                return Err("matmul_panels needs an integer Gemm (qgemm)".into());
            }
            Kernel::MatMulPanels(panels_default(cx))
        }
        "conv_transpose_scatter" => Kernel::ConvTransposeScatter,
        "matmul_direct" => Kernel::MatMulDirect,
        "matmul_packed" => Kernel::MatMulPacked(MatMulPacked {
            cols: 32,
            unroll: 4,
        }),
        "pool_direct" => Kernel::PoolDirect,
        "pool_rows" => Kernel::PoolRows(PoolRows { width: 12 }),
        "global_pool" => Kernel::GlobalPool(GlobalPool { partials: 1 }),
        "map" | "copy" | "row_copy" | "pad_table" | "gather" | "resize_table" | "reduce"
        | "arg_reduce" | "softmax" | "lrn" => {
            return Err(format!(
                "{name} cannot compute this step (its kernel is {})",
                chosen.name()
            ));
        }
        "deinterleave" => deinterleave(cx).ok_or("the transpose is not a deinterleave")?,
        _ => {
            return Err(format!(
                "unknown kernel `{name}` (kernels: {})",
                Kernel::NAMES.join(", ")
            ));
        }
    })
}

fn set_param(k: &mut Kernel, key: &str, val: &str) -> Result<(), String> {
    let num = || -> Result<usize, String> {
        val.parse::<usize>()
            .map_err(|_| format!("parameter {key}={val}: not a number"))
    };
    let flag = || -> Result<bool, String> {
        match val {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(format!("parameter {key}={val}: use 0 or 1")),
        }
    };
    if let Some(r) = super::qselect::set_param(k, key, val) {
        return r;
    }
    if let Some(r) = super::wselect::set_param(k, key, val) {
        return r;
    }
    let known: Vec<&str> = k.params().iter().map(|(n, _)| *n).collect();
    let bad = format!(
        "{} has no parameter `{key}`{}",
        k.name(),
        if known.is_empty() {
            String::new()
        } else {
            format!(" (parameters: {})", known.join(", "))
        }
    );
    match (k, key) {
        (Kernel::ConvBlocked(p), "p") => p.positions = num()?,
        (Kernel::ConvBlocked(p), "c") => p.channels = num()?,
        (Kernel::ConvBlocked(p), "unroll") => p.unroll = num()?,
        (Kernel::ConvBlocked(p), "pad_copy") => p.pad_copy = flag()?,
        (Kernel::ConvRowTiles(p), "c") => p.channels = num()?,
        (Kernel::ConvRowTiles(p), "w") => p.width = num()?,
        (Kernel::ConvRowTiles(p), "pad_copy") => p.pad_copy = flag()?,
        (Kernel::ConvIm2col(p) | Kernel::MatMulPanels(p), "r") => p.rows = num()?,
        (Kernel::ConvIm2col(p) | Kernel::MatMulPanels(p), "c") => p.cols = num()?,
        (Kernel::ConvIm2col(p) | Kernel::MatMulPanels(p), "unroll") => p.unroll = num()?,
        (Kernel::DepthwisePairs(p), "p") => p.positions = num()?,
        (Kernel::DepthwisePairs(p), "rows") => p.rows = num()?,
        (Kernel::DepthwiseRows(p), "w") => p.width = num()?,
        (Kernel::DepthwiseRows(p), "pad_copy") => p.pad_copy = flag()?,
        (Kernel::DepthwiseChannelsLast(p), "block") => p.block = num()?,
        (Kernel::DepthwiseChannelsLast(p), "p") => p.positions = num()?,
        (Kernel::MatMulPacked(p), "cols") => p.cols = num()?,
        (Kernel::MatMulPacked(p), "unroll") => p.unroll = num()?,
        (Kernel::PoolRows(p), "w") => p.width = num()?,
        (Kernel::GlobalPool(p), "partials") => p.partials = num()?,
        (Kernel::Reduce { acc }, "acc") => {
            *acc = match val {
                "f32" => DType::F32,
                "f64" => DType::F64,
                _ => return Err(format!("parameter acc={val}: use f32 or f64")),
            }
        }
        _ => return Err(bad),
    }
    Ok(())
}
