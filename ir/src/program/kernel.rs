//! The kernel of a step: which algorithm runs it, with which parameters,
//! and what is fused after it. Chosen once by kernel selection (in
//! `nnc-passes`) from the target description; the C and Cranelift
//! generators render every variant with every parameter value, so the same
//! program means the same computation on both.

use std::fmt;

use crate::dtype::DType;
use crate::op::attr::AttrWriter;
use crate::op::{BinaryOp, DequantizeAttrs, QBinaryAttrs, QuantizeAttrs, RequantAttrs, UnaryOp};

/// How a step is computed. Variants are grouped by family (see
/// [`Kernel::family`]); the parameters of a variant are everything its
/// renderers need to decide, so a backend makes no choices of its own.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// Direct convolution of any spatial rank, groups and dilation: per
    /// output channel, every (input channel, tap) accumulated over that
    /// tap's valid output range.
    ConvDirect,
    /// Register-blocked 2-D convolution: tiles of `positions` output
    /// columns by `channels` output channels accumulate in registers, with
    /// the weights packed per channel block at generation time.
    ConvBlocked(ConvBlocked),
    /// 2-D convolution tiled over output columns: `width` columns of
    /// `channels` output channels per tile, weights broadcast.
    ConvRowTiles(ConvRowTiles),
    /// Integer convolution (regular, grouped, pointwise) as a matrix
    /// product over im2col columns: `cols` output positions are gathered
    /// into 16-bit columns (padding as the input zero point, which is
    /// folded into the bias), and register tiles of `rows` output channels
    /// by `cols` positions multiply-accumulate them with int8 weights
    /// re-laid out in panels at generation time (Cortex-M `SMLAD`).
    ConvIm2col(IntTiles),
    /// Depthwise convolution, vectors along each output row of a channel.
    DepthwiseRows(DepthwiseRows),
    /// Depthwise convolution on a zero-padded channels-last copy, vectors
    /// across channels.
    DepthwiseChannelsLast(DepthwiseChannelsLast),
    /// Depthwise convolution on a zero-padded plane, computed on a grid as
    /// wide as a padded row so every tap is one fixed offset.
    DepthwiseGrid,
    /// Depthwise convolution (or max pooling) on stride-phase planes: each
    /// channel is copied once into `stride_h x stride_w` zero-padded
    /// planes (columns and rows de-interleaved by stride phase), where every
    /// tap of a strided window is a contiguous run, and each output row is
    /// one vector sweep with all taps summed per output.
    DepthwisePhases,
    /// Integer depthwise convolution for microcontrollers: each channel's
    /// input rows are copied into a band padded with the input zero point
    /// (folded into the bias at generation time), and taps two columns
    /// apart multiply-accumulate as 16-bit pairs (Cortex-M `SMLAD`).
    DepthwisePairs(DepthwisePairs),
    /// Transposed convolution in scatter form.
    ConvTransposeScatter,
    /// Gemm or batched MatMul with plain loops.
    MatMulDirect,
    /// Gemm or 2-D MatMul with a constant right-hand side packed into
    /// column blocks.
    MatMulPacked(MatMulPacked),
    /// Integer Gemm with constant weights in panels: register tiles of
    /// `rows` output columns by `cols` rows of the left-hand side, which
    /// are widened to 16 bits once (the same tiles as
    /// [`Kernel::ConvIm2col`]); with `cols = 1` the row is read in place
    /// and widened in registers (no scratch).
    MatMulPanels(IntTiles),
    /// Pooling of any rank with per-axis tap tables.
    PoolDirect,
    /// 2-D pooling with vectors along each output row.
    PoolRows(PoolRows),
    /// Pooling over whole planes (a reduction per channel).
    GlobalPool(GlobalPool),
    /// Elementwise map: one loop nest computing a fused expression.
    Map(MapKernel),
    /// Strided copy (identity, transpose, concat, split, slice, expand, tile).
    Copy,
    /// Rows of every channel plane from one tensor to another (or upward
    /// within one): the data movement of streamed execution, where windows
    /// of a few rows stand in for whole tensors. Reads the loop iteration.
    RowCopy(RowCopy),
    /// Channels-last to channels-first for a few channels through lane
    /// shuffles (the NHWC inputs of converted TensorFlow models).
    Deinterleave {
        channels: usize,
    },
    /// Pad through a generation-time source map.
    PadTable,
    /// Gather with checked indices.
    Gather,
    /// Resize through generation-time tap tables.
    ResizeTable,
    /// Reduction over axes with an accumulator of type `acc`.
    Reduce {
        acc: DType,
    },
    ArgReduce,
    Softmax,
    Lrn,
    /// Integer convolution by vector dot products: tiles of `vectors x
    /// lanes` grid positions by `channels` output channels accumulate
    /// `dot` products per 32-bit lane, reading a padded, stride-phase
    /// split copy of the input with `dot` consecutive reduction elements
    /// interleaved per position; weights packed and the input zero point
    /// folded into the bias at generation time.
    QConvDot(QConvDot),
    /// Integer depthwise convolution by vector dot products over groups
    /// of taps at consecutive grid offsets (a sliding window per lane).
    QDwDot(QDwDot),
    /// Integer matrix product by vector dot products: tiles of `vectors x
    /// lanes` output columns, weights packed by column block.
    QGemmDot(QGemmDot),
    /// Winograd F(m,3) convolution (the `winograd` op): per row of tiles
    /// and group of `tiles` tiles, the input transform of every channel,
    /// then per block of `channels` output channels one product per tile
    /// element over the input channels and the output transform with the
    /// epilogue (see [`super::winograd`]).
    Winograd(Winograd),
}

/// Families of kernels; every family has plan file tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Conv,
    Depthwise,
    ConvTranspose,
    MatMul,
    Pool,
    Map,
    Copy,
    Lookup,
    Reduction,
}

/// Parameters of [`Kernel::ConvBlocked`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvBlocked {
    /// Output columns per tile.
    pub positions: usize,
    /// Output channels per block (the register tile's other side).
    pub channels: usize,
    /// Input channels per iteration of the reduction loop.
    pub unroll: usize,
    /// Read a zero-padded copy of the input (no border cases).
    pub pad_copy: bool,
}

/// Parameters of [`Kernel::ConvRowTiles`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvRowTiles {
    /// Output channels per tile.
    pub channels: usize,
    /// Output columns per tile.
    pub width: usize,
    /// Read a zero-padded copy of the input whose columns are de-interleaved
    /// by stride phase (strided taps become contiguous). In C, a copy too
    /// large for the stack is made one band of rows per output row (see
    /// [`super::rowband`]).
    pub pad_copy: bool,
}

/// Parameters of [`Kernel::DepthwiseRows`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseRows {
    /// Output columns per block (a multiple of four).
    pub width: usize,
    /// Read a zero-padded copy of each plane (no border cases).
    pub pad_copy: bool,
}

/// Parameters of [`Kernel::DepthwiseChannelsLast`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseChannelsLast {
    /// Channels per block copied channels-last.
    pub block: usize,
    /// Output positions per tile.
    pub positions: usize,
}

/// Parameters of the integer matrix kernels [`Kernel::ConvIm2col`] and
/// [`Kernel::MatMulPanels`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IntTiles {
    /// Output channels per register tile (a weight panel's rows).
    pub rows: usize,
    /// Output positions (convolution) or left-hand rows (Gemm) per tile:
    /// the columns gathered at a time.
    pub cols: usize,
    /// Groups of four reduction steps per iteration of the inner loop.
    pub unroll: usize,
}

/// Parameters of [`Kernel::DepthwisePairs`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DepthwisePairs {
    /// Output positions per strip (at column stride 1, two neighbours
    /// share their input words).
    pub positions: usize,
    /// Output rows per band (the band holds the input rows they read).
    pub rows: usize,
}

/// Parameters of [`Kernel::MatMulPacked`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatMulPacked {
    /// Output columns per block.
    pub cols: usize,
    /// Steps of the reduction per loop iteration.
    pub unroll: usize,
}

/// Parameters of [`Kernel::QConvDot`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QConvDot {
    /// 32-bit lanes per vector: output positions per vector.
    pub lanes: usize,
    /// Vectors of positions per register tile.
    pub vectors: usize,
    /// Output channels per register tile.
    pub channels: usize,
    /// Products summed per lane and instruction: 4 (unsigned 8-bit
    /// activations by signed 8-bit weights) or 2 (16-bit pairs).
    pub dot: usize,
    /// Group the reduction over (input channel, tap) in weight order, read
    /// from an im2col copy, instead of over input channels at each tap
    /// (for inputs with fewer channels than `dot`).
    pub im2col: bool,
}

/// Parameters of [`Kernel::QDwDot`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QDwDot {
    /// 32-bit lanes per vector: output positions per vector.
    pub lanes: usize,
    /// Vectors of positions per register tile.
    pub vectors: usize,
    /// Taps summed per lane and instruction: 4 or 2 (as [`QConvDot`]).
    pub dot: usize,
}

/// Parameters of [`Kernel::QGemmDot`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QGemmDot {
    /// 32-bit lanes per vector: output columns per vector.
    pub lanes: usize,
    /// Vectors of columns per register tile.
    pub vectors: usize,
    /// Products summed per lane and instruction: 4 or 2 (as [`QConvDot`]).
    pub dot: usize,
}

/// Parameters of [`Kernel::Winograd`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Winograd {
    /// Output tile side `m` of F(m,3) (the op's).
    pub tile: usize,
    /// Tiles per group: the rows of each batched product.
    pub tiles: usize,
    /// Output channels per block: the columns of each batched product.
    pub channels: usize,
}

/// Parameters of [`Kernel::RowCopy`]. Source and destination are batch-1
/// tensors `[1, C, H, ...]` with the same channels and row size (the
/// product of the dims after H); in iteration `it` of the enclosing loop
/// (0 outside loops), source row `src_row + it * src_step + j` goes to
/// destination row `dst_row + it * dst_step + j` for `j < rows`, and source
/// rows outside the source tensor read as `fill` (the padding value of the
/// window being filled). Rows are copied in ascending order, so a move
/// upward within one tensor (`dst < src`) is safe. With `cols`, only a
/// column range of each row moves (rank-4 tensors, whose widths may
/// differ): the column tiles of a spatially tiled chain.
#[derive(Clone, Debug, PartialEq)]
pub struct RowCopy {
    pub rows: usize,
    pub src_row: i64,
    pub src_step: i64,
    pub dst_row: usize,
    pub dst_step: usize,
    pub fill: f64,
    pub cols: Option<ColRange>,
}

/// `n` columns from column `src` of each source row to column `dst` of
/// the destination row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColRange {
    pub src: usize,
    pub dst: usize,
    pub n: usize,
}

impl RowCopy {
    /// The source row of row `j` in iteration `it`.
    pub fn src(&self, it: usize, j: usize) -> i64 {
        self.src_row + it as i64 * self.src_step + j as i64
    }

    /// The destination row of row `j` in iteration `it`.
    pub fn dst(&self, it: usize, j: usize) -> usize {
        self.dst_row + it * self.dst_step + j
    }
}

/// Parameters of [`Kernel::PoolRows`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolRows {
    /// Output columns per block (a multiple of four).
    pub width: usize,
}

/// Parameters of [`Kernel::GlobalPool`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobalPool {
    /// Independent partial results per plane, combined at the end (1: one
    /// serial accumulator). Sets the summation order.
    pub partials: usize,
}

/// One elementwise operation of a map expression.
#[derive(Clone, Debug, PartialEq)]
pub enum MapOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, x, y)`.
    Where,
    Cast,
    /// `(x - mean) / sqrt(var + eps) * scale + bias`, arguments x, scale,
    /// bias, mean, var.
    BatchNorm {
        epsilon: f32,
    },
    /// QuantizeLinear: x, scale, optional zero point.
    Quantize(QuantizeAttrs),
    /// DequantizeLinear: x, scale, optional zero point.
    Dequantize(DequantizeAttrs),
    /// TFLite's integer add or multiply of two quantized arguments.
    QBinary(QBinaryAttrs),
    /// Requantization of a quantized argument.
    Requant(RequantAttrs),
    /// `table[x]`: the first argument (8-bit) indexes the second, a
    /// [`Operand::Table`] of 256 entries (offset by 128 for i8).
    Lut,
}

impl MapOp {
    pub fn name(&self) -> &'static str {
        match self {
            MapOp::Unary(u) => u.name(),
            MapOp::Binary(b) => b.name(),
            MapOp::Where => "where",
            MapOp::Cast => "cast",
            MapOp::BatchNorm { .. } => "batch_norm",
            MapOp::Quantize(_) => "quantize",
            MapOp::Dequantize(_) => "dequantize",
            MapOp::QBinary(q) => q.name(),
            MapOp::Requant(_) => "requant",
            MapOp::Lut => "lut",
        }
    }
}

/// A map expression over the step's inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum MapExpr {
    /// Step input `k`, read through its [`Operand`] layout.
    Input(usize),
    /// An operation on sub-expressions, producing `dtype`.
    Apply {
        op: MapOp,
        args: Vec<MapExpr>,
        dtype: DType,
    },
}

/// How a map reads one step input while it loops over the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// Numpy broadcasting (dims right-aligned, unit dims repeated).
    Broadcast,
    /// A vector laid along one axis of the output (per-channel parameters;
    /// a single value when it has one element).
    Along { axis: usize },
    /// A lookup table, indexed by value rather than by position.
    Table,
}

/// Parameters of [`Kernel::Map`].
#[derive(Clone, Debug, PartialEq)]
pub struct MapKernel {
    pub expr: MapExpr,
    /// One per step input.
    pub operands: Vec<Operand>,
}

/// What a convolution or matrix kernel does to each result before it is
/// stored, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Epilogue {
    /// Add step input `input` per output channel (in practice the
    /// accumulator starts from it).
    Bias { input: usize },
    /// Apply an activation.
    Act(UnaryOp),
    /// Add step input `input`, a tensor of the output's shape (a residual
    /// branch).
    Residual { input: usize },
    /// Clamp to `[lo, hi]`.
    Clamp { lo: f64, hi: f64 },
    /// Integer kernels: the int32 accumulator scaled by the fixed-point
    /// multiplier in step input `mult` and the shift in input `shift`
    /// (one per output channel, or one for all; TFLite's single-rounding
    /// `MultiplyByQuantizedMultiplier`), plus `zero_point`. A `Clamp` to
    /// the output range follows, then the narrowing store.
    Requantize {
        mult: usize,
        shift: usize,
        zero_point: i32,
    },
}

/// The part of its op's output a step computes. The step's buffers hold
/// exactly that part (their types are the part's shapes); the ranges say
/// where it sits in the op's whole output, so a pass can split an op into
/// steps over slices without changing any kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Part {
    /// Output channels `[lo, hi)` of the op.
    pub channels: Option<(usize, usize)>,
    /// Input channels `[lo, hi)` of the op this step reduces over: a
    /// partial sum of the whole result.
    pub in_channels: Option<(usize, usize)>,
    /// Output rows `[lo, hi)` of the op (spatial tiling).
    pub rows: Option<(usize, usize)>,
    /// Add into the output instead of overwriting it (a later slice of a
    /// partial sum; the bias belongs to the first slice only).
    pub accumulate: bool,
}

impl Part {
    /// The whole output, overwritten.
    pub fn is_whole(&self) -> bool {
        *self == Part::default()
    }
}

impl Kernel {
    /// The kernel's name, as in `kernel=NAME` and `--kernel SEL=NAME`.
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::ConvDirect => "conv_direct",
            Kernel::ConvBlocked(_) => "conv_blocked",
            Kernel::ConvRowTiles(_) => "conv_row_tiles",
            Kernel::ConvIm2col(_) => "conv_im2col",
            Kernel::DepthwiseRows(_) => "dw_rows",
            Kernel::DepthwiseChannelsLast(_) => "dw_channels_last",
            Kernel::DepthwiseGrid => "dw_grid",
            Kernel::DepthwisePhases => "dw_phases",
            Kernel::DepthwisePairs(_) => "dw_pairs",
            Kernel::ConvTransposeScatter => "conv_transpose_scatter",
            Kernel::MatMulDirect => "matmul_direct",
            Kernel::MatMulPacked(_) => "matmul_packed",
            Kernel::MatMulPanels(_) => "matmul_panels",
            Kernel::PoolDirect => "pool_direct",
            Kernel::PoolRows(_) => "pool_rows",
            Kernel::GlobalPool(_) => "global_pool",
            Kernel::Map(_) => "map",
            Kernel::Copy => "copy",
            Kernel::RowCopy(_) => "row_copy",
            Kernel::Deinterleave { .. } => "deinterleave",
            Kernel::PadTable => "pad_table",
            Kernel::Gather => "gather",
            Kernel::ResizeTable => "resize_table",
            Kernel::Reduce { .. } => "reduce",
            Kernel::ArgReduce => "arg_reduce",
            Kernel::Softmax => "softmax",
            Kernel::Lrn => "lrn",
            Kernel::QConvDot(_) => "qconv_dot",
            Kernel::QDwDot(_) => "qdw_dot",
            Kernel::QGemmDot(_) => "qgemm_dot",
            Kernel::Winograd(_) => "winograd",
        }
    }

    /// Every kernel name, for help texts and error messages.
    pub const NAMES: &'static [&'static str] = &[
        "conv_direct",
        "conv_blocked",
        "conv_row_tiles",
        "conv_im2col",
        "dw_rows",
        "dw_channels_last",
        "dw_grid",
        "dw_phases",
        "dw_pairs",
        "conv_transpose_scatter",
        "matmul_direct",
        "matmul_packed",
        "matmul_panels",
        "pool_direct",
        "pool_rows",
        "global_pool",
        "map",
        "copy",
        "row_copy",
        "deinterleave",
        "pad_table",
        "gather",
        "resize_table",
        "reduce",
        "arg_reduce",
        "softmax",
        "lrn",
        "qconv_dot",
        "qdw_dot",
        "qgemm_dot",
        "winograd",
    ];

    pub fn family(&self) -> Family {
        match self {
            Kernel::ConvDirect
            | Kernel::ConvBlocked(_)
            | Kernel::ConvRowTiles(_)
            | Kernel::ConvIm2col(_) => Family::Conv,
            Kernel::DepthwiseRows(_)
            | Kernel::DepthwiseChannelsLast(_)
            | Kernel::DepthwiseGrid
            | Kernel::DepthwisePhases
            | Kernel::DepthwisePairs(_) => Family::Depthwise,
            Kernel::ConvTransposeScatter => Family::ConvTranspose,
            Kernel::MatMulDirect | Kernel::MatMulPacked(_) | Kernel::MatMulPanels(_) => {
                Family::MatMul
            }
            Kernel::PoolDirect | Kernel::PoolRows(_) | Kernel::GlobalPool(_) => Family::Pool,
            Kernel::Map(_) => Family::Map,
            Kernel::Copy | Kernel::Deinterleave { .. } | Kernel::RowCopy(_) => Family::Copy,
            Kernel::PadTable | Kernel::Gather | Kernel::ResizeTable => Family::Lookup,
            Kernel::Reduce { .. } | Kernel::ArgReduce | Kernel::Softmax | Kernel::Lrn => {
                Family::Reduction
            }
            Kernel::QConvDot(_) => Family::Conv,
            Kernel::QDwDot(_) => Family::Depthwise,
            Kernel::QGemmDot(_) => Family::MatMul,
            Kernel::Winograd(_) => Family::Conv,
        }
    }

    /// The parameters as `key=value` pairs (empty for kernels without).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let b = |v: bool| if v { "1" } else { "0" }.to_string();
        match self {
            Kernel::ConvBlocked(k) => vec![
                ("p", k.positions.to_string()),
                ("c", k.channels.to_string()),
                ("unroll", k.unroll.to_string()),
                ("pad_copy", b(k.pad_copy)),
            ],
            Kernel::ConvRowTiles(k) => vec![
                ("c", k.channels.to_string()),
                ("w", k.width.to_string()),
                ("pad_copy", b(k.pad_copy)),
            ],
            Kernel::ConvIm2col(k) | Kernel::MatMulPanels(k) => vec![
                ("r", k.rows.to_string()),
                ("c", k.cols.to_string()),
                ("unroll", k.unroll.to_string()),
            ],
            Kernel::DepthwiseRows(k) => {
                vec![("w", k.width.to_string()), ("pad_copy", b(k.pad_copy))]
            }
            Kernel::DepthwisePairs(k) => {
                vec![("p", k.positions.to_string()), ("rows", k.rows.to_string())]
            }
            Kernel::DepthwiseChannelsLast(k) => vec![
                ("block", k.block.to_string()),
                ("p", k.positions.to_string()),
            ],
            Kernel::MatMulPacked(k) => vec![
                ("cols", k.cols.to_string()),
                ("unroll", k.unroll.to_string()),
            ],
            Kernel::PoolRows(k) => vec![("w", k.width.to_string())],
            Kernel::GlobalPool(k) => vec![("partials", k.partials.to_string())],
            Kernel::Deinterleave { channels } => vec![("c", channels.to_string())],
            Kernel::Reduce { acc } => vec![("acc", acc.name().to_string())],
            Kernel::Map(m) => vec![("expr", m.expr.to_string())],
            Kernel::QConvDot(k) => vec![
                ("lanes", k.lanes.to_string()),
                ("v", k.vectors.to_string()),
                ("c", k.channels.to_string()),
                ("dot", k.dot.to_string()),
                ("im2col", b(k.im2col)),
            ],
            Kernel::QDwDot(k) => vec![
                ("lanes", k.lanes.to_string()),
                ("v", k.vectors.to_string()),
                ("dot", k.dot.to_string()),
            ],
            Kernel::QGemmDot(k) => vec![
                ("lanes", k.lanes.to_string()),
                ("v", k.vectors.to_string()),
                ("dot", k.dot.to_string()),
            ],
            Kernel::Winograd(k) => vec![
                ("m", k.tile.to_string()),
                ("tiles", k.tiles.to_string()),
                ("c", k.channels.to_string()),
            ],
            Kernel::RowCopy(r) => {
                let mut v = vec![("rows", r.rows.to_string()), ("src", r.src_row.to_string())];
                if r.src_step != 0 {
                    v.push(("src_step", r.src_step.to_string()));
                }
                v.push(("dst", r.dst_row.to_string()));
                if r.dst_step != 0 {
                    v.push(("dst_step", r.dst_step.to_string()));
                }
                v.push(("fill", r.fill.to_string()));
                if let Some(c) = r.cols {
                    v.push(("cols", format!("{}>{}+{}", c.src, c.dst, c.n)));
                }
                v
            }
            _ => vec![],
        }
    }
}

impl fmt::Display for Kernel {
    /// `conv_blocked(p=5,c=8,unroll=1,pad_copy=0)`, `map(expr=relu(in0))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let ps = self.params();
        if !ps.is_empty() {
            let items: Vec<String> = ps.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "({})", items.join(","))?;
        }
        Ok(())
    }
}

impl fmt::Display for MapExpr {
    /// `add(relu(in0), in1)`; attributes in braces: `clip{min=0 max=6}(in0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapExpr::Input(k) => write!(f, "in{k}"),
            MapExpr::Apply { op, args, dtype } => {
                f.write_str(op.name())?;
                let mut w = AttrWriter::new();
                match op {
                    MapOp::Unary(u) => u.write_attrs(&mut w),
                    MapOp::Cast => w.ident("to", dtype.name()),
                    MapOp::BatchNorm { epsilon } => w.f32("epsilon", *epsilon),
                    MapOp::Quantize(q) => q.write(&mut w),
                    MapOp::Dequantize(d) => d.write(&mut w),
                    MapOp::QBinary(q) => q.write(&mut w),
                    MapOp::Requant(r) => r.write(&mut w),
                    MapOp::Binary(_) | MapOp::Where | MapOp::Lut => {}
                }
                if !w.is_empty() {
                    write!(f, "{{{}}}", w.join())?;
                }
                let a: Vec<String> = args.iter().map(|e| e.to_string()).collect();
                write!(f, "({})", a.join(","))
            }
        }
    }
}

impl fmt::Display for Epilogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Epilogue::Bias { input } => write!(f, "bias(in{input})"),
            Epilogue::Act(u) => {
                let mut w = AttrWriter::new();
                u.write_attrs(&mut w);
                if w.is_empty() {
                    f.write_str(u.name())
                } else {
                    write!(f, "{}{{{}}}", u.name(), w.join())
                }
            }
            Epilogue::Residual { input } => write!(f, "residual(in{input})"),
            Epilogue::Clamp { lo, hi } => write!(f, "clamp({lo},{hi})"),
            Epilogue::Requantize {
                mult,
                shift,
                zero_point,
            } => write!(f, "requantize(in{mult},in{shift},zp={zero_point})"),
        }
    }
}

impl fmt::Display for Part {
    /// `channels=[0,16) in_channels=[16,32) accumulate`; empty for the whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        if let Some((a, b)) = self.channels {
            items.push(format!("channels=[{a},{b})"));
        }
        if let Some((a, b)) = self.in_channels {
            items.push(format!("in_channels=[{a},{b})"));
        }
        if let Some((a, b)) = self.rows {
            items.push(format!("rows=[{a},{b})"));
        }
        if self.accumulate {
            items.push("accumulate".into());
        }
        f.write_str(&items.join(" "))
    }
}
