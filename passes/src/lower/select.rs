//! Kernel selection: the one place that decides how each step runs.
//!
//! [`select`] picks a kernel and its parameters for a step from the target
//! description alone. Its sibling [`super::check`] says whether a kernel
//! (chosen here or forced with `--kernel`) can compute a step, and builds
//! forced kernels from their names and parameters.
//!
//! The rules follow what each code generator does well. C on a host is
//! compiled with `-O3 -march=native`, so its kernels are loop nests with
//! constant trip counts the compiler vectorizes for the host's widest
//! registers; Cranelift's kernels are written with explicit 128-bit
//! vectors and register tiles sized for its sixteen registers; on a
//! microcontroller the compact direct kernels avoid code growth and stack
//! copies.

use nnc_ir::op::{ConvAttrs, PoolAttrs, UnaryOp};
use nnc_ir::program::rowband;
use nnc_ir::program::tiles::{DwBand, padded_depth};
use nnc_ir::program::{
    Axis, Codegen, ConvBlocked, ConvRowTiles, DepthwiseChannelsLast, DepthwisePairs, DepthwiseRows,
    GlobalPool, IntTiles, Kernel, MapExpr, MapKernel, MapOp, MatMulPacked, Operand, PoolRows,
    Target, Window,
};
use nnc_ir::{DType, Op, Tensor, TensorType};

/// Largest zero-padded input copy a kernel may keep on the stack (bytes).
pub const STACK_COPY_LIMIT: usize = rowband::STACK_COPY_LIMIT;
/// Largest stack scratch (im2col columns, padded bands) of an integer
/// kernel on a microcontroller, whose stack is a few kilobytes.
pub const MCU_SCRATCH_LIMIT: usize = 4096;
/// The smaller bound Cranelift's kernels use for their stack copies.
const NATIVE_COPY_LIMIT: usize = 96 * 1024;
/// Most border rows or columns a Cranelift kernel specializes at
/// generation time (each gets its own code).
const NATIVE_MAX_BORDER: usize = 12;
/// The same bound for the row-vector window kernels.
const NATIVE_WINDOW_BORDER: usize = 16;
/// Channels per block of the native channels-last depthwise kernel.
pub(super) const NATIVE_HWC_BLOCK: usize = 16;

/// What selection knows about a step.
#[derive(Debug)]
pub struct StepCx<'a> {
    /// The op with its fused activation (if any) removed.
    pub op: &'a Op,
    /// The fused activation.
    pub act: Option<&'a UnaryOp>,
    pub ins: Vec<&'a TensorType>,
    /// The weight tensor of each constant input.
    pub consts: Vec<Option<&'a Tensor>>,
    pub outs: Vec<&'a TensorType>,
    pub target: &'a Target,
}

impl StepCx<'_> {
    pub(super) fn y(&self) -> &TensorType {
        self.outs[0]
    }

    /// Input `k` is a constant.
    pub(super) fn konst(&self, k: usize) -> bool {
        self.consts.get(k).copied().flatten().is_some()
    }

    /// The weights and the bias (when present) are constants.
    pub(super) fn const_params(&self) -> bool {
        self.konst(1) && (self.ins.len() < 3 || self.konst(2))
    }

    pub(super) fn conv_window(&self) -> Option<(&ConvAttrs, Window)> {
        match self.op {
            Op::Conv(a) | Op::QConv(nnc_ir::op::QConvAttrs { conv: a, .. })
                if self.ins.len() >= 2 && self.ins[0].rank() >= 3 =>
            {
                Some((a, Window::conv(a, self.ins[0], self.ins[1], self.y())))
            }
            _ => None,
        }
    }
}

/// Does the code generator evaluate this activation on whole vectors?
pub fn vector_act(target: &Target, u: &UnaryOp) -> bool {
    target.vector_unary(u)
}

/// The kernel for a step.
pub fn select(cx: &StepCx) -> Kernel {
    if let Some(k) = fixed(cx) {
        return k;
    }
    let t = cx.target;
    match (t.codegen, t.is_mcu()) {
        (_, true) => mcu(cx),
        (Codegen::C, false) => c_host(cx),
        (Codegen::Cranelift, false) => native(cx),
    }
}

/// Ops with a single kernel on every target (`None`: the target decides,
/// in [`mcu`], [`c_host`] and [`native`]).
pub(super) fn fixed(cx: &StepCx) -> Option<Kernel> {
    Some(match cx.op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Where
        | Op::Cast(_)
        | Op::BatchNorm(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::QBinary(_)
        | Op::Requant(_)
        | Op::Lut => Kernel::Map(map_kernel(cx)?),
        Op::Identity
        | Op::Reshape(_)
        | Op::Concat(_)
        | Op::Split(_)
        | Op::Slice(_)
        | Op::Expand(_)
        | Op::Tile(_) => Kernel::Copy,
        Op::Pad(_) => Kernel::PadTable,
        Op::Gather(_) => Kernel::Gather,
        Op::Resize(_) => Kernel::ResizeTable,
        Op::ArgReduce(_) => Kernel::ArgReduce,
        Op::Softmax(_) | Op::QSoftmax(_) => Kernel::Softmax,
        Op::Lrn(_) => Kernel::Lrn,
        Op::ConvTranspose(_) => Kernel::ConvTransposeScatter,
        Op::Winograd(_) => super::wselect::select(cx)?,
        Op::Reduce(_) => Kernel::Reduce {
            // Double is emulated on microcontrollers.
            acc: if cx.target.fast_f64 {
                DType::F64
            } else {
                DType::F32
            },
        },
        Op::Conv(_)
        | Op::QConv(_)
        | Op::Gemm(_)
        | Op::MatMul
        | Op::QGemm(_)
        | Op::Pool(_)
        | Op::GlobalPool(_)
        | Op::Transpose(_)
        // ONNX's integer ops have no kernel (lowering reports them).
        | Op::ConvInteger(_)
        | Op::MatMulInteger
        | Op::Rescale
        | Op::Input
        | Op::Const(_) => return None,
    })
}

/// The map kernel of an elementwise op: the op applied to the step's inputs.
fn map_kernel(cx: &StepCx) -> Option<MapKernel> {
    let n = cx.ins.len();
    let y = cx.y();
    let along = |axis| Operand::Along { axis };
    let (op, operands) = match cx.op {
        Op::Unary(u) => (MapOp::Unary(*u), vec![Operand::Broadcast]),
        Op::Binary(b) => (MapOp::Binary(*b), vec![Operand::Broadcast; 2]),
        Op::Where => (MapOp::Where, vec![Operand::Broadcast; 3]),
        Op::Cast(_) => (MapOp::Cast, vec![Operand::Broadcast]),
        Op::BatchNorm(a) => {
            let mut v = vec![Operand::Broadcast];
            v.extend(std::iter::repeat_n(along(1), n - 1));
            (MapOp::BatchNorm { epsilon: a.epsilon }, v)
        }
        Op::Quantize(q) => {
            let mut v = vec![Operand::Broadcast];
            v.extend(std::iter::repeat_n(along(q.axis), n - 1));
            (MapOp::Quantize(q.clone()), v)
        }
        Op::Dequantize(q) => {
            let mut v = vec![Operand::Broadcast];
            v.extend(std::iter::repeat_n(along(q.axis), n - 1));
            (MapOp::Dequantize(q.clone()), v)
        }
        Op::QBinary(q) => (MapOp::QBinary(q.clone()), vec![Operand::Broadcast; 2]),
        Op::Requant(q) => (MapOp::Requant(q.clone()), vec![Operand::Broadcast]),
        Op::Lut => (MapOp::Lut, vec![Operand::Broadcast, Operand::Table]),
        _ => return None,
    };
    Some(MapKernel {
        expr: MapExpr::Apply {
            op,
            args: (0..n).map(MapExpr::Input).collect(),
            dtype: y.dtype,
        },
        operands,
    })
}

/// Microcontrollers: the compact direct kernels; on cores with the DSP
/// extension (Cortex-M4/M7) the tiled integer kernels for integer
/// convolutions and Gemm (16-bit multiply-accumulate pairs), when their
/// constants and stack scratch allow. Without it (Cortex-M0) their
/// plain-C path measured mixed against the direct kernels (KWS 12% fewer
/// instructions, SWW 1% more) for more code, so the direct kernels stay.
fn mcu(cx: &StepCx) -> Kernel {
    match cx.op {
        Op::Conv(_) => Kernel::ConvDirect,
        Op::QConv(_) if cx.target.dsp => mcu_qconv(cx).unwrap_or(Kernel::ConvDirect),
        Op::QGemm(_) if cx.target.dsp => {
            let k = Kernel::MatMulPanels(panels_default(cx));
            if check(&k, cx).is_ok() {
                k
            } else {
                Kernel::MatMulDirect
            }
        }
        Op::QConv(_) => Kernel::ConvDirect,
        Op::Gemm(_) | Op::MatMul | Op::QGemm(_) => Kernel::MatMulDirect,
        Op::Pool(_) => Kernel::PoolDirect,
        Op::GlobalPool(_) => Kernel::GlobalPool(GlobalPool { partials: 1 }),
        Op::Transpose(_) => Kernel::Copy,
        _ => fixed_only(cx),
    }
}

/// The integer convolution kernel for a microcontroller: `dw_pairs` for
/// a depthwise convolution, else (or when it does not apply) `conv_im2col`;
/// `None` when neither does.
fn mcu_qconv(cx: &StepCx) -> Option<Kernel> {
    let (_, w) = cx.conv_window()?;
    let mut cands = Vec::new();
    if w.is_depthwise()
        && let Some(p) = pairs_default(cx, &w)
    {
        cands.push(Kernel::DepthwisePairs(p));
    }
    cands.push(Kernel::ConvIm2col(im2col_default(&w)));
    cands.into_iter().find(|k| check(k, cx).is_ok())
}

/// The stack scratch an integer kernel may use on this target.
pub(super) fn scratch_limit(t: &Target) -> usize {
    if t.is_mcu() {
        MCU_SCRATCH_LIMIT
    } else {
        STACK_COPY_LIMIT
    }
}

/// Groups of four reduction steps per inner-loop iteration: four (what
/// measured best on the Cortex-M4: the loop overhead is paid once per 16
/// steps), fewer when the reduction is shorter.
fn int_unroll(k: usize) -> usize {
    (padded_depth(k) / 4).clamp(1, 4)
}

/// `conv_im2col`: tiles of 2 channels by 2 positions (the largest whose
/// accumulators, weight pairs and column words stay in the Cortex-M4's
/// registers), one position when a plane has one.
pub(super) fn im2col_default(w: &Window) -> IntTiles {
    IntTiles {
        rows: w.mg().clamp(1, 2),
        cols: w.out_plane().clamp(1, 2),
        unroll: int_unroll(w.cg() * w.taps()),
    }
}

/// `matmul_panels`: 2 output columns by 2 rows of the left-hand side;
/// with a single row (read in place, its words widened in registers for
/// every tile) 4 output columns share each widened word, one group of
/// four steps per iteration (what measured best on the Cortex-M4: the
/// autoencoder at 0.419 M instructions, against 0.454 M with 2 columns
/// and 0.400 M widening the row into 1280 B of stack).
pub(super) fn panels_default(cx: &StepCx) -> IntTiles {
    let y = cx.y();
    let (m, n) = (y.dims[0], y.dims[y.rank() - 1]);
    let k = cx.ins[0].dims[cx.ins[0].rank() - 1];
    if m == 1 {
        return IntTiles {
            rows: n.clamp(1, 4),
            cols: 1,
            unroll: 1,
        };
    }
    IntTiles {
        rows: n.clamp(1, 2),
        cols: 2,
        unroll: int_unroll(k),
    }
}

/// `dw_pairs`: two positions per strip at column stride 1 (they share
/// their input words), one otherwise; the most output rows per band the
/// scratch limit allows (`None` when not even one fits).
pub(super) fn pairs_default(cx: &StepCx, w: &Window) -> Option<DepthwisePairs> {
    let b = DwBand::of(w)?;
    let limit = scratch_limit(cx.target);
    let rows = (1..=b.rows.output.max(1))
        .rev()
        .find(|&r| b.bytes(r) <= limit)?;
    Some(DepthwisePairs {
        positions: if b.cols.stride == 1 && b.cols.output > 1 {
            2
        } else {
            1
        },
        rows,
    })
}

/// C for a host CPU.
fn c_host(cx: &StepCx) -> Kernel {
    match cx.op {
        Op::Conv(_) => c_conv(cx).unwrap_or(Kernel::ConvDirect),
        Op::QConv(_) => super::qselect::conv(cx).unwrap_or(Kernel::ConvDirect),
        Op::QGemm(_) => super::qselect::gemm(cx).unwrap_or(Kernel::MatMulDirect),
        // Packed column blocks: half the time of the plain loops on
        // MobileNetV2's classifier (1280 x 1000).
        Op::Gemm(_) | Op::MatMul if packed_ok(cx) => Kernel::MatMulPacked(MatMulPacked {
            cols: 32,
            unroll: 4,
        }),
        Op::Gemm(_) | Op::MatMul => Kernel::MatMulDirect,
        Op::Pool(_) if check(&Kernel::DepthwisePhases, cx).is_ok() => Kernel::DepthwisePhases,
        Op::Pool(_) => Kernel::PoolDirect,
        Op::GlobalPool(_) => Kernel::GlobalPool(GlobalPool {
            partials: c_partials(cx.ins[0]),
        }),
        Op::Transpose(_) => Kernel::Copy,
        _ => fixed_only(cx),
    }
}

/// Partial sums of a host C global pool: sixteen (two AVX2 vectors or one
/// AVX-512 vector, kept in registers by the C compiler) over planes of at
/// least sixteen floats, eight over at least eight, else one. One
/// accumulator chains every addition of a plane: SqueezeNet's 1000 planes
/// of 13 x 13 took 5.7x ONNX Runtime's time with it.
fn c_partials(x: &TensorType) -> usize {
    f32_partials(x, &[16, 8])
}

/// Input columns from which `dw_phases` beats the narrow-plane kernels
/// (measured on MobileNetV2's depthwise layers: 2-4x at 112 and 56
/// columns; below that its per-channel copy dominates).
pub(super) const PHASES_MIN_WIDTH: usize = 56;

/// The phase planes of `dw_phases` fit the stack.
pub(super) fn phases_fit(w: &Window) -> bool {
    nnc_ir::program::Phases::of(w).is_some_and(|p| p.floats() * 4 <= STACK_COPY_LIMIT)
}

/// Ops [`fixed`] decides reach the per-target rules only when their fixed
/// kernel does not apply (a map that is not elementwise, a graph input or
/// constant): the copy kernel, which [`super::check`] then rejects with
/// the reason.
fn fixed_only(cx: &StepCx) -> Kernel {
    debug_assert!(
        !matches!(
            cx.op,
            Op::Conv(_)
                | Op::QConv(_)
                | Op::Gemm(_)
                | Op::MatMul
                | Op::QGemm(_)
                | Op::Pool(_)
                | Op::GlobalPool(_)
                | Op::Transpose(_)
        ),
        "per-target op {} fell through",
        cx.op.name()
    );
    Kernel::Copy
}

/// The C compiler's vector registers are 512 bits wide (AVX-512: twice the
/// lanes and twice the registers of AVX2).
pub(super) fn wide(t: &Target) -> bool {
    t.vector_bits >= 512
}

/// Columns per C row tile: the widest of 32 (wide vectors only), 16, 8, 4
/// that fits `interior`; 0 when none does.
pub(super) fn c_tile_width(t: &Target, interior: usize) -> usize {
    let mx = if wide(t) { 32 } else { 16 };
    [32, 16, 8, 4]
        .into_iter()
        .filter(|&v| v <= mx)
        .find(|&v| v <= interior)
        .unwrap_or(0)
}

/// Output channels per vector of the C blocked kernel.
pub(super) fn c_channel_block(t: &Target, m: usize) -> usize {
    let mx = if wide(t) { 32 } else { 16 };
    [32, 16, 8]
        .into_iter()
        .find(|&v| v <= mx && v <= m.max(8))
        .unwrap_or(8)
}

/// Output positions per tile of the C blocked kernel: a narrow row in one
/// tile, else the width whose tiles (the last one shifted to end the row)
/// take the fewest multiply-add issue slots, with `positions x channel
/// vectors` accumulators within the register file. A tile of fewer than
/// ten accumulators costs ten: two FMA ports of four to five cycles'
/// latency need that many chains in flight.
pub(super) fn c_positions(t: &Target, width: usize, vb: usize) -> usize {
    let (regs, lanes) = if wide(t) { (24, 16) } else { (12, 8) };
    let nv = vb.div_ceil(lanes).max(1);
    let cap = (regs / nv).max(1);
    if width <= cap {
        return width.max(1);
    }
    let cost = |p: usize| width.div_ceil(p) * (p * nv).max(10);
    (1..=cap).rev().min_by_key(|&p| cost(p)).unwrap_or(cap)
}

/// The (rows, columns) axes the blocked and tiled kernels iterate, and the
/// column axis as read from a zero-padded copy (de-interleaved by `phases`
/// stride phases when `phases > 1`).
pub(super) fn copy_bytes(w: &Window, h: &Axis, c: &Axis, phases: usize, elem: usize) -> usize {
    let ihp = h.input + h.pad + h.pad_end;
    let iwp = c.input + c.pad + c.pad_end;
    w.channels * ihp * phases * iwp.div_ceil(phases) * elem
}

/// The C kernel choice for a convolution (None: the direct kernel).
fn c_conv(cx: &StepCx) -> Option<Kernel> {
    let (a, w) = cx.conv_window()?;
    let (h, c) = w.rows_cols()?;
    let t = cx.target;
    let y = cx.y();
    let f32 = y.dtype == DType::F32;
    let (cg, mg) = (w.cg(), w.mg());
    if cg == 1 && mg == 1 {
        if f32 && let Some(k) = c_depthwise_channels_last(cx, &w, &h, &c) {
            return Some(k);
        }
        let (lo, hi) = c.interior();
        let vw = c_tile_width(t, hi - lo);
        if f32 && c.input >= PHASES_MIN_WIDTH && phases_fit(&w) {
            return Some(Kernel::DepthwisePhases);
        }
        if f32 && dw_grid_fits(&w) {
            return Some(Kernel::DepthwiseGrid);
        }
        if vw == 0 || !f32 || c.stride > 2 || !cx.const_params() {
            return None;
        }
        return Some(Kernel::DepthwiseRows(DepthwiseRows {
            width: vw,
            pad_copy: false,
        }));
    }
    let (lo, hi) = c.interior();
    let width = c.output.min(hi - lo + c.pad + c.pad_end);
    let vw = c_tile_width(t, width);
    let cv_ok = a.group == 1 && f32 && w.out_channels >= 8 && cx.konst(1);
    // Pointwise convolutions of small planes on 256-bit (or narrower)
    // vector hosts run channel-blocked: the row tile of 8 channels by 16
    // columns needs 16 accumulators, the whole register file, and spills
    // (GCC 12, AVX2: 0.69 ms against 1.24 ms on MobileNetV2's 320 -> 1280
    // at 7x7, 0.6x at 14x14, 0.85x at 28x28). On large planes the
    // channel-blocked tile's 16 output planes and its input planes, a
    // plane apart, collide in the L1 sets (1.3x slower at 56x56, 6x at
    // 112x112 with 16 input channels).
    let narrow_host = narrow_host(t);
    let small_pointwise = w.is_pointwise() && h.output * c.output <= 1024;
    let prefer_cv = cv_ok
        && (width < 32
            || (vw > 0 && width % vw != 0 && width < 2 * vw)
            || (narrow_host && small_pointwise));
    let tiles = || c_row_tiles(cx, &w, &h, &c);
    // Row tiles of a windowed convolution without their padded copy (too
    // large for the stack) load strided columns or run their borders
    // column by column: the channel-blocked kernel is 5x faster on
    // 224x224 stems (3 input channels, stride 2) and 2-10x on 3x3
    // convolutions of 64-256 channels at 32x32 to 128x128.
    let gathers = |k: &Kernel| matches!(k, Kernel::ConvRowTiles(r) if !r.pad_copy && (c.stride > 1 || w.padded()));
    if width >= 16
        && !prefer_cv
        && let Some(k) = tiles()
        && !(cv_ok && cx.const_params() && gathers(&k))
    {
        return Some(k);
    }
    if a.group == 1 && f32 && cx.const_params() && w.out_channels >= 8 {
        let pad_copy = w.padded() && copy_bytes(&w, &h, &c, 1, 4) <= STACK_COPY_LIMIT;
        let cols = if pad_copy { c.unpadded() } else { c };
        let vb = c_channel_block(t, w.out_channels);
        let (lo, hi) = cols.interior();
        return Some(Kernel::ConvBlocked(ConvBlocked {
            positions: c_positions(t, hi - lo, vb),
            channels: vb,
            unroll: 1,
            pad_copy,
        }));
    }
    tiles()
}

/// C row tiles, when the interior is wide enough.
pub(super) fn c_row_tiles(cx: &StepCx, w: &Window, h: &Axis, c: &Axis) -> Option<Kernel> {
    if !cx.y().dtype.is_float() {
        return None;
    }
    let s = c.stride;
    let elem = cx.y().dtype.size();
    // A copy too large for the stack is copied in bands of rows when the
    // weights are small enough to reread per output row (stems: 2-3x
    // faster than the channel-blocked kernel, whose stores scatter).
    let band = cx.konst(1)
        && cx
            .ins
            .get(1)
            .is_some_and(|t| t.bytes() <= rowband::BAND_WEIGHTS_LIMIT)
        && rowband::copy_fits(w.channels, h, c, elem);
    let pad_copy =
        (w.padded() || s > 1) && (copy_bytes(w, h, c, s, elem) <= STACK_COPY_LIMIT || band);
    let cols = if pad_copy { c.unpadded() } else { *c };
    let (lo, hi) = cols.interior();
    let vw = c_tile_width(cx.target, hi - lo);
    if vw == 0 {
        return None;
    }
    let mg = w.mg();
    let obm = if h.k * c.k == 1 || (pad_copy && rowband::uses_band(w.channels, h, c, elem)) {
        8
    } else {
        4
    };
    let ob = [obm, 4, 2, 1]
        .into_iter()
        .find(|&b| mg.is_multiple_of(b))
        .unwrap_or(1);
    // On 256-bit (and narrower) hosts the C renderer keeps the tile's
    // accumulators as vector values: at most 12 of the 16 registers, as
    // 4 channels by 3 vectors (8 x 16 spills; 4 x 24 took 0.72 against
    // 1.04 ms on MobileNetV2's 16 -> 96 pointwise at 112x112, 0.38
    // against 0.52 at 56x56, AVX2).
    let contiguous = pad_copy || s == 1;
    if narrow_host(cx.target) && elem == 4 && contiguous {
        let lanes = cx.target.vector_bits / 32;
        let ob = [4, 2, 1]
            .into_iter()
            .find(|&b| mg.is_multiple_of(b))
            .unwrap_or(1);
        let cap = ((12 / ob) * lanes).min(64);
        if let Some(vw) = (1..=cap / lanes)
            .rev()
            .map(|v| v * lanes)
            .find(|&v| v <= hi - lo)
        {
            return Some(Kernel::ConvRowTiles(ConvRowTiles {
                channels: ob,
                width: vw,
                pad_copy,
            }));
        }
    }
    Some(Kernel::ConvRowTiles(ConvRowTiles {
        channels: ob,
        width: vw,
        pad_copy,
    }))
}

/// A host whose vectors are narrower than 512 bits (16 registers on x86).
fn narrow_host(t: &Target) -> bool {
    t.vector_bits >= 128 && t.vector_bits < 512 && !t.arch.is_mcu()
}

/// C channels-last depthwise for tiny planes with many channels.
fn c_depthwise_channels_last(cx: &StepCx, w: &Window, h: &Axis, c: &Axis) -> Option<Kernel> {
    if !cx.const_params() {
        return None;
    }
    let (ihp, iwp) = (h.input + h.pad + h.pad_end, c.input + c.pad + c.pad_end);
    let ch = w.out_channels;
    if h.output * c.output > 64 || ch < 16 || (ihp * iwp * ch + ch) * 4 > STACK_COPY_LIMIT {
        return None;
    }
    Some(Kernel::DepthwiseChannelsLast(DepthwiseChannelsLast {
        block: ch,
        positions: 1,
    }))
}

pub(super) fn dw_grid_fits(w: &Window) -> bool {
    w.grid()
        .is_some_and(|(plane, q, _)| (plane + q) * 4 <= STACK_COPY_LIMIT)
}

/// Cranelift.
fn native(cx: &StepCx) -> Kernel {
    match cx.op {
        Op::Conv(_) => native_conv(cx).unwrap_or(Kernel::ConvDirect),
        Op::QConv(_) => super::qselect::conv(cx).unwrap_or(Kernel::ConvDirect),
        Op::Gemm(_) | Op::MatMul => native_matmul(cx).unwrap_or(Kernel::MatMulDirect),
        Op::QGemm(_) => super::qselect::gemm(cx).unwrap_or(Kernel::MatMulDirect),
        Op::Pool(a) => native_pool(cx, a).unwrap_or(Kernel::PoolDirect),
        Op::GlobalPool(_) => Kernel::GlobalPool(GlobalPool {
            partials: native_partials(cx.ins[0]),
        }),
        Op::Transpose(_) => deinterleave(cx).unwrap_or(Kernel::Copy),
        _ => fixed_only(cx),
    }
}

/// Two f32x4 partial results per plane for f32 planes of 8 or more.
fn native_partials(x: &TensorType) -> usize {
    f32_partials(x, &[8])
}

/// The first of `counts` (widest first) that an f32 global pool's plane
/// fills at least once; one for smaller planes and other element types.
fn f32_partials(x: &TensorType, counts: &[usize]) -> usize {
    let plane: usize = x.dims[2..].iter().product();
    match x.dtype {
        DType::F32 => counts.iter().copied().find(|&k| plane >= k).unwrap_or(1),
        _ => 1,
    }
}

/// Candidate native tile shapes (positions, vectors of four channels): the
/// accumulators plus the weight vectors and one broadcast must fit the
/// sixteen xmm registers of x86-64.
pub(super) const NATIVE_SHAPES: [(usize, usize); 4] = [(5, 2), (3, 3), (4, 2), (8, 1)];

/// Estimated cost of one output row-plane with tile shape `(tp, tv)`: per
/// tile and tap, the multiply-adds of its real positions and channel
/// vectors plus a fixed overhead, summed over the tiles the native kernel
/// emits and the channel blocks.
pub(super) fn shape_cost(tp: usize, tv: usize, mg: usize, w: &Axis) -> usize {
    const OVERHEAD: usize = 4;
    let cb = 4 * tv;
    let (full, rem) = (mg / cb, mg % cb);
    let (clo, chi) = w.interior();
    let mut tiles: Vec<usize> = vec![];
    let consts = |tiles: &mut Vec<usize>, n: usize| {
        let mut left = n;
        while left > 0 {
            let t = left.min(tp);
            tiles.push(t);
            left -= t;
        }
    };
    if clo >= chi {
        consts(&mut tiles, w.output);
    } else {
        consts(&mut tiles, clo);
        let n = chi - clo;
        for _ in 0..n / tp {
            tiles.push(tp);
        }
        consts(&mut tiles, n % tp);
        consts(&mut tiles, w.output - chi);
    }
    let row = |v: usize| -> usize { tiles.iter().map(|&p| p * v + OVERHEAD).sum() };
    full * row(tv) + if rem > 0 { row(rem.div_ceil(4)) } else { 0 }
}

/// Input channels per iteration of the native blocked kernel: short tap
/// lists are unrolled across channels so the loop overhead is paid less
/// often.
pub(super) fn native_unroll(taps: usize, cg: usize) -> usize {
    match taps {
        1 => 4,
        2..=4 => 2,
        _ => 1,
    }
    .min(cg)
    .max(1)
}

fn native_conv(cx: &StepCx) -> Option<Kernel> {
    let (_, w) = cx.conv_window()?;
    let t = cx.target;
    // 1-D convolutions (rank 3) take the blocked kernel: 6x over the
    // direct one on the M5 audio network's.
    let rank = cx.ins[0].rank();
    if cx.y().dtype != DType::F32
        || !(rank == 4 || rank == 3 && !w.is_depthwise())
        || !cx.const_params()
    {
        return None;
    }
    if cx.act.is_some_and(|u| !vector_act(t, u)) {
        return None;
    }
    let (h, c) = w.hw()?;
    if w.is_depthwise() {
        let hwc_bytes = h.reach() * c.reach() * NATIVE_HWC_BLOCK * 4;
        if c.output < 16 && hwc_bytes <= NATIVE_COPY_LIMIT {
            return Some(Kernel::DepthwiseChannelsLast(DepthwiseChannelsLast {
                block: NATIVE_HWC_BLOCK,
                positions: 2,
            }));
        }
        // Measured on MobileNetV2: 1.1-1.4x over dw_rows on stride-1
        // planes of 56 columns and more; strided phase copies cost more
        // than they save in Cranelift's scalar copy.
        if c.stride == 1 && h.stride == 1 && c.input >= PHASES_MIN_WIDTH && phases_fit(&w) {
            return Some(Kernel::DepthwisePhases);
        }
        if c.stride > 2 || h.border() > NATIVE_WINDOW_BORDER || c.border() > NATIVE_WINDOW_BORDER {
            return None;
        }
        let (ph, pw) = (h.reach(), c.reach() + 4);
        let pad_copy = (h.pad > 0 || c.pad > 0 || h.reach() > h.input || c.reach() > c.input)
            && ph * pw * 4 <= NATIVE_COPY_LIMIT;
        return Some(Kernel::DepthwiseRows(DepthwiseRows {
            width: 12,
            pad_copy,
        }));
    }
    let mg = w.mg();
    // Windows with more border positions than the kernel specializes read
    // a zero-padded copy instead (12x on a 1-D stem of 80 taps, stride 4).
    let wide_border = h.border() > NATIVE_MAX_BORDER || c.border() > NATIVE_MAX_BORDER;
    let pad_copy = wide_border && w.padded() && copy_bytes(&w, &h, &c, 1, 4) <= NATIVE_COPY_LIMIT;
    if mg < 4 || wide_border && !pad_copy {
        return None;
    }
    let (_, cols) = w.rows_cols()?;
    let cols = if pad_copy { cols.unpadded() } else { cols };
    let (tp, tv) = NATIVE_SHAPES
        .into_iter()
        .min_by_key(|&(p, v)| shape_cost(p, v, mg, &cols))
        .unwrap_or((4, 2));
    Some(Kernel::ConvBlocked(ConvBlocked {
        positions: tp,
        channels: 4 * tv,
        unroll: native_unroll(w.taps(), w.cg()),
        pad_copy,
    }))
}

use nnc_ir::op::matmul::gemm_c_strides;

/// Can the packed matrix kernel compute this step? (constant `B`, f32,
/// `C` absent or a constant per-column vector)
pub(super) fn packed_ok(cx: &StepCx) -> bool {
    let y = cx.y();
    if y.dtype != DType::F32 || !cx.konst(1) {
        return false;
    }
    match cx.op {
        Op::Gemm(_) => match cx.ins.get(2) {
            None => true,
            Some(ct) => {
                let (m, n) = (y.dims[0], y.dims[1]);
                let (row, _) = gemm_c_strides(&ct.dims, m, n);
                cx.konst(2) && (m == 1 || row == 0)
            }
        },
        Op::MatMul => cx.ins[0].rank() == 2 && cx.ins[1].rank() == 2,
        _ => false,
    }
}

fn native_matmul(cx: &StepCx) -> Option<Kernel> {
    if cx.act.is_some_and(|u| !vector_act(cx.target, u)) || !packed_ok(cx) {
        return None;
    }
    Some(Kernel::MatMulPacked(MatMulPacked {
        cols: 32,
        unroll: 4,
    }))
}

/// A pooling window that covers each whole plane: a global pool.
pub(super) fn whole_plane(a: &PoolAttrs, x: &TensorType, y: &TensorType) -> bool {
    a.kernel[..] == x.dims[2..]
        && a.pads.iter().all(|&p| p == 0)
        && y.dims[2..].iter().all(|&d| d == 1)
        && a.dilations.iter().all(|&d| d == 1)
}

fn native_pool(cx: &StepCx, a: &PoolAttrs) -> Option<Kernel> {
    let (x, y) = (cx.ins[0], cx.y());
    if y.dtype != DType::F32 {
        return None;
    }
    if whole_plane(a, x, y) {
        return Some(Kernel::GlobalPool(GlobalPool {
            partials: native_partials(x),
        }));
    }
    let w = Window::pool(a, x, y);
    let (h, c) = match w.axes[..] {
        [h, c] => (h, c),
        // 1-D max pooling on phase planes: 5x over the direct kernel on
        // the M5 audio network's (stride 4).
        [_] if check(&Kernel::DepthwisePhases, cx).is_ok() => {
            return Some(Kernel::DepthwisePhases);
        }
        _ => return None,
    };
    if c.output < 4
        || c.stride > 2
        || h.border() > NATIVE_WINDOW_BORDER
        || c.border() > NATIVE_WINDOW_BORDER
    {
        return None;
    }
    Some(Kernel::PoolRows(PoolRows { width: 12 }))
}

/// Channels-last to channels-first with 2 to 4 channels of 4-byte
/// elements: after merging dims, `out[c][p] = in[p][c]`.
pub(super) fn deinterleave(cx: &StepCx) -> Option<Kernel> {
    let Op::Transpose(t) = cx.op else {
        return None;
    };
    let (x, y) = (cx.ins[0], cx.y());
    let ch = deinterleave_channels(&t.perm, x, y)?;
    Some(Kernel::Deinterleave { channels: ch })
}

/// The channel count when a transpose is a deinterleave of 2 to 4
/// channels of 4-byte elements over at least four positions.
pub fn deinterleave_channels(perm: &[usize], x: &TensorType, y: &TensorType) -> Option<usize> {
    let xs: Vec<i64> = nnc_ir::dtype::strides(&x.dims)
        .iter()
        .map(|&s| s as i64)
        .collect();
    let ins: Vec<i64> = perm.iter().map(|&p| xs[p]).collect();
    let outs: Vec<i64> = nnc_ir::dtype::strides(&y.dims)
        .iter()
        .map(|&s| s as i64)
        .collect();
    let (dims, st) = nnc_ir::program::geometry::merge_dims(&y.dims, &[outs, ins]);
    match dims[..] {
        [ch, n]
            if (2..=4).contains(&ch)
                && n >= 4
                && st[0] == [n as i64, 1]
                && st[1] == [1, ch as i64]
                && y.dtype.size() == 4 =>
        {
            Some(ch)
        }
        _ => None,
    }
}

pub use super::check::{check, with_params};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_tile_shapes_prefer_full_blocks() {
        // 12 channels over 9 columns: three vectors in one block (3x3)
        // beat 5x2, whose second block holds a single vector.
        let w = Axis::unit(9);
        assert!(shape_cost(3, 3, 12, &w) < shape_cost(5, 2, 12, &w));
        // 16 channels over 32 columns: 5x2 needs fewer tiles than 4x2.
        let w = Axis::unit(32);
        assert!(shape_cost(5, 2, 16, &w) < shape_cost(4, 2, 16, &w));
    }

    #[test]
    fn c_positions_fit_the_register_file() {
        let mut t = Target::cpu(nnc_ir::program::Arch::X86_64, Codegen::C, 512, 32);
        assert_eq!(c_positions(&t, 7, 16), 7);
        assert_eq!(c_positions(&t, 100, 16), 20);
        t.vector_bits = 256;
        t.vector_regs = 16;
        assert_eq!(c_positions(&t, 100, 16), 5);
    }
}
