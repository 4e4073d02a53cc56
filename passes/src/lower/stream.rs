//! Streamed execution: a chain of steps runs row by row, so the tensors
//! between them never exist in full.
//!
//! A chain is a run of consecutive steps where each step reads the
//! previous one's output and nobody else does: convolutions (float and
//! integer, any kernel, stride, dilation and padding along the rows),
//! pooling, and elementwise maps (whose other inputs may be whole tensors
//! of the same shape, read one row at a time, like the skip branch of a
//! residual add). Every step of the chain keeps a *window* of the few rows
//! of its input it needs for one output row ([`RowCopy`] shifts the window
//! up and appends rows; rows beyond the input are the padding value, so the
//! kernel sees no padding along the rows), and writes one output row into
//! a one-row buffer. The steps are the model's own steps on those small
//! buffers, with the kernels selection picks for them: streaming changes
//! where data lives, never the arithmetic, so results are bit for bit
//! those of the unstreamed plan and no multiply-accumulate is repeated.
//! The rows of the chain's output that repeat the same steps become one
//! loop; the first and last rows (where windows meet the padding) are
//! written out.
//!
//! When every step has stride 1, the chain's output can overwrite a chain
//! input that dies with the chain (its rows are read before the output
//! row of the same index is written): pointwise and depthwise
//! convolutions, and residual blocks, run in place.

use nnc_ir::op::{PoolKind, QConvAttrs};

use nnc_ir::program::{Buffer, ColRange, Kernel, Loc, Loop, Operand, Program, RowCopy, Step};
use nnc_ir::{Op, TensorType};

use super::edit::Edit;
use super::partition::Uses;
use crate::pass::{PassError, Result};

fn fail(msg: String) -> PassError {
    PassError::Failed {
        pass: "stream".into(),
        msg,
    }
}

/// How a step walks the rows of its input: output row `r` reads input rows
/// `r * stride - pad_top .. + extent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowGeom {
    pub extent: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
}

impl RowGeom {
    const ONE: RowGeom = RowGeom {
        extent: 1,
        stride: 1,
        pad_top: 0,
        pad_bottom: 0,
    };

    fn windowless(&self) -> bool {
        *self == RowGeom::ONE
    }
}

/// One step of a chain: which input is the chain, which inputs are whole
/// tensors read row by row, and the row geometry.
#[derive(Clone, Debug)]
struct Link {
    step: Step,
    main: usize,
    sides: Vec<usize>,
    geom: RowGeom,
    /// The value of padding rows in this step's window.
    fill: f64,
    /// A channels-last to channels-first transpose at the head of a chain:
    /// each output row is one contiguous row of its input, read in place.
    nhwc: bool,
}

/// The padded dims of `t` right-aligned to `rank` (1 where absent).
fn aligned(t: &TensorType, rank: usize) -> Vec<usize> {
    let mut d = vec![1; rank.saturating_sub(t.rank())];
    d.extend_from_slice(&t.dims);
    d
}

/// Batch-1 tensors with a row axis (rank 3 or more).
fn rowed(t: &TensorType) -> bool {
    t.rank() >= 3 && t.dims[0] == 1 && t.dims[2] > 0
}

fn conv_geom(
    a: &nnc_ir::op::ConvAttrs,
    x: &TensorType,
    w: &TensorType,
    y: &TensorType,
) -> Option<RowGeom> {
    let n = x.rank() - 2;
    let (k, s, d) = (w.dims[2], a.strides[0], a.dilations[0]);
    let g = RowGeom {
        extent: (k - 1) * d + 1,
        stride: s,
        pad_top: a.pads[0],
        pad_bottom: a.pads[n],
    };
    window_fits(&g, x.dims[2], y.dims[2]).then_some(g)
}

/// The last window of the output ends inside the padded input.
fn window_fits(g: &RowGeom, h_in: usize, h_out: usize) -> bool {
    h_out >= 1 && (h_out - 1) * g.stride + g.extent <= h_in + g.pad_top + g.pad_bottom
}

/// What streaming needs to know about a step, or `None` when it cannot be
/// part of a chain.
fn link(st: &Step) -> Option<Link> {
    if st.outputs.len() != 1 || !st.part.is_whole() || st.in_place || st.residual().is_some() {
        return None;
    }
    let y = &st.outputs[0].ty;
    if !rowed(y) {
        return None;
    }
    let one = |geom, fill| {
        Some(Link {
            step: st.clone(),
            main: 0,
            sides: vec![],
            geom,
            fill,
            nhwc: false,
        })
    };
    let x = &st.inputs.first()?.ty;
    match (&st.op, &st.kernel) {
        (Op::Conv(a), _) if rowed(x) && x.rank() == y.rank() => {
            one(conv_geom(a, x, &st.inputs[1].ty, y)?, 0.0)
        }
        (Op::QConv(QConvAttrs { conv, q }), _) if rowed(x) && x.rank() == y.rank() => {
            one(conv_geom(conv, x, &st.inputs[1].ty, y)?, q.x_zp as f64)
        }
        (Op::Pool(a), _) if rowed(x) && x.rank() == y.rank() => {
            let n = x.rank() - 2;
            let g = RowGeom {
                extent: (a.kernel[0] - 1) * a.dilations[0] + 1,
                stride: a.strides[0],
                pad_top: a.pads[0],
                pad_bottom: a.pads[n],
            };
            // Padding rows become real rows: an average that does not
            // count them would count them, and a ceil-mode overhang is not
            // padding at all.
            if !window_fits(&g, x.dims[2], y.dims[2])
                || (a.kind == PoolKind::Avg
                    && !a.count_include_pad
                    && (g.pad_top > 0 || g.pad_bottom > 0))
            {
                return None;
            }
            let fill = match (a.kind, x.dtype.int_range()) {
                (PoolKind::Max, Some((lo, _))) => lo as f64,
                (PoolKind::Max, None) => f64::NEG_INFINITY,
                (PoolKind::Avg, _) => 0.0,
            };
            one(g, fill)
        }
        (_, Kernel::Map(m)) => {
            // Elementwise: the chain is the first input with the output's
            // rows; other inputs with rows are read row by row, the rest
            // (weights, per-channel vectors) do not depend on the row.
            let r = y.rank();
            let mut main = None;
            let mut sides = vec![];
            for (k, (b, o)) in st.inputs.iter().zip(&m.operands).enumerate() {
                let d = aligned(&b.ty, r);
                let has_rows = match o {
                    Operand::Broadcast => d[2] > 1,
                    Operand::Along { axis } => *axis == 2 && b.ty.len() > 1,
                    Operand::Table => false,
                };
                if !has_rows {
                    continue;
                }
                if b.ty.dims != y.dims || !matches!(o, Operand::Broadcast) {
                    return None;
                }
                if main.is_none() && !matches!(b.loc, Loc::Const(_)) {
                    main = Some(k);
                } else {
                    sides.push(k);
                }
            }
            let main = main?;
            if sides
                .iter()
                .any(|&k| matches!(st.inputs[k].loc, Loc::Const(_)))
            {
                // A weight with rows would need its rows copied too.
                return None;
            }
            Some(Link {
                step: st.clone(),
                main,
                sides,
                geom: RowGeom::ONE,
                fill: 0.0,
                nhwc: false,
            })
        }
        (Op::Transpose(t), _)
            if t.perm == [0, 3, 1, 2]
                && x.rank() == 4
                && x.dims[0] == 1
                && y.dims[2] == x.dims[1] =>
        {
            Some(Link {
                step: st.clone(),
                main: 0,
                sides: vec![],
                geom: RowGeom::ONE,
                fill: 0.0,
                nhwc: true,
            })
        }
        _ => None,
    }
}

fn temp_of(b: &Buffer) -> Option<usize> {
    match b.loc {
        Loc::Temp(k) => Some(k),
        _ => None,
    }
}

/// The chain `first..=last`, or why it is not one.
fn chain(
    p: &Program,
    first: usize,
    last: usize,
    u: &Uses,
) -> std::result::Result<Vec<Link>, String> {
    if last >= p.steps.len() || first > last {
        return Err(format!("no steps {first}..={last}"));
    }
    if p.loops.iter().any(|l| l.first <= last && first < l.end()) {
        return Err("the steps are already in a loop".into());
    }
    let mut links = Vec::new();
    for i in first..=last {
        let st = &p.steps[i];
        let mut l = link(st).ok_or_else(|| {
            format!(
                "step {i} ({} `{}`) cannot stream (kernel {})",
                st.op.name(),
                st.name,
                st.kernel
            )
        })?;
        if l.nhwc && !links.is_empty() {
            return Err(format!(
                "step {i}: a transpose streams only at the head of a chain"
            ));
        }
        if let Some(prev) = links.last() {
            let prev: &Link = prev;
            let y = &prev.step.outputs[0];
            let Some(k) = temp_of(y) else {
                return Err(format!("step {} writes a graph output", i - 1));
            };
            if y.offset != 0 {
                return Err(format!("step {} writes part of a tensor", i - 1));
            }
            // The previous output must be this step's chain input, and no
            // other step may read it.
            let slots: Vec<usize> = (0..st.inputs.len())
                .filter(|&s| st.inputs[s].loc == Loc::Temp(k))
                .collect();
            if slots.len() != 1 || u.of(k) != [i - 1, i] {
                return Err(format!("step {}'s output is read elsewhere", i - 1));
            }
            let s = slots[0];
            if s != l.main {
                if !l.sides.contains(&s) {
                    return Err(format!("step {i} reads step {}'s output by value", i - 1));
                }
                l.sides.retain(|&x| x != s);
                l.sides.push(l.main);
                l.main = s;
            }
            let x = &st.inputs[l.main].ty;
            if !rowed(x) || x.dims[3..] != y.ty.dims[3..] || x.dims[1] != y.ty.dims[1] {
                return Err(format!("step {i} reads step {}'s output reshaped", i - 1));
            }
        }
        links.push(l);
    }
    Ok(links)
}

/// True when `first..=last` can stream.
pub fn streamable(p: &Program, first: usize, last: usize) -> bool {
    chain(p, first, last, &super::partition::uses(p)).is_ok()
}

/// [`streamable`] with the storage uses already known.
pub(super) fn streamable_with(p: &Program, first: usize, last: usize, u: &Uses) -> bool {
    chain(p, first, last, u).is_ok()
}

/// A one-off storage number.
fn fresh(next: &mut usize) -> Loc {
    *next += 1;
    Loc::Temp(*next - 1)
}

fn rows_of(t: &TensorType, rows: usize) -> TensorType {
    let mut d = t.dims.clone();
    d[2] = rows;
    TensorType::new(t.dtype, d)
}

fn copy_step(src: &Buffer, dst: &Buffer, r: RowCopy, name: &str) -> Step {
    let in_place = src.same_place(dst);
    Step {
        op: Op::Identity,
        kernel: Kernel::RowCopy(r),
        epilogue: vec![],
        part: Default::default(),
        inputs: vec![src.clone()],
        outputs: vec![dst.clone()],
        name: name.to_string(),
        in_place,
    }
}

/// The kernel selection would pick for a step on its new buffers.
pub(super) fn reselect(p: &Program, st: &mut Step) -> Result<()> {
    let what = st.name.clone();
    super::split::reselect(p, st, &what)
}

/// The op with no padding along the rows (its window holds padding rows).
fn unpadded_rows(op: &Op, rank: usize) -> Op {
    let n = rank - 2;
    let strip = |pads: &mut Vec<usize>| {
        pads[0] = 0;
        pads[n] = 0;
    };
    match op {
        Op::Conv(a) => {
            let mut a = a.clone();
            strip(&mut a.pads);
            Op::Conv(a)
        }
        Op::QConv(a) => {
            let mut a = a.clone();
            strip(&mut a.conv.pads);
            Op::QConv(a)
        }
        Op::Pool(a) => {
            let mut a = a.clone();
            strip(&mut a.pads);
            a.ceil_mode = false;
            Op::Pool(a)
        }
        op => op.clone(),
    }
}

/// The streamed form of a chain under construction.
struct Builder {
    links: Vec<Link>,
    /// The chain's input (whole) and each link's window over its input.
    input: Buffer,
    windows: Vec<Option<Buffer>>,
    /// Each link's one-row output.
    outs: Vec<Buffer>,
    /// Each link's side inputs: (slot, whole tensor, one-row copy).
    sides: Vec<Vec<(usize, Buffer, Buffer)>>,
    /// Each link's step on the small buffers.
    computes: Vec<Step>,
    /// Rows of its input each window has taken in so far (its end).
    have: Vec<i64>,
    /// The columns of the chain's input a column tile reads: the window
    /// copy of a windowed head, or the first column and width of a
    /// channels-last head.
    head_cols: Option<ColRange>,
    head_lo: usize,
    head_w: usize,
    /// Each link's columns of its side inputs, when tiled.
    side_cols: Vec<Option<ColRange>>,
}

impl Builder {
    /// Emits the steps that compute row `q` of link `i`'s output into
    /// `outs[i]`.
    fn produce(&mut self, i: usize, q: i64, ev: &mut Vec<Step>) {
        let g = self.links[i].geom;
        let name = self.links[i].step.name.clone();
        let h_in = self.links[i].step.inputs[self.links[i].main].ty.dims[2] as i64;
        if let Some(win) = self.windows[i].clone() {
            let e = g.extent as i64;
            let target = q * g.stride as i64 - g.pad_top as i64 + e;
            let need = target - self.have[i];
            if need < e {
                ev.push(copy_step(
                    &win,
                    &win,
                    RowCopy {
                        rows: (e - need) as usize,
                        src_row: need,
                        src_step: 0,
                        dst_row: 0,
                        dst_step: 0,
                        fill: self.links[i].fill,
                        cols: None,
                    },
                    &format!("shift window of {name}"),
                ));
            }
            for t in self.have[i].max(target - e)..target {
                let slot = (e - (target - t)) as usize;
                let fill = self.links[i].fill;
                let (src, row) = if t < 0 || t >= h_in || i == 0 {
                    // Padding rows come from outside any source; the
                    // chain's input is read in place.
                    let src = if i == 0 {
                        self.input.clone()
                    } else {
                        self.outs[i - 1].clone()
                    };
                    (src, if i == 0 { t } else { -1 })
                } else {
                    self.produce(i - 1, t, ev);
                    (self.outs[i - 1].clone(), 0)
                };
                ev.push(copy_step(
                    &src,
                    &win,
                    RowCopy {
                        rows: 1,
                        src_row: row,
                        src_step: 0,
                        dst_row: slot,
                        dst_step: 0,
                        fill,
                        cols: if i == 0 { self.head_cols } else { None },
                    },
                    &format!("window row {t} of {name}"),
                ));
            }
            self.have[i] = target;
        } else if i == 0 {
            // A channels-last head: row `q` of its input is contiguous.
            let mut c = self.computes[0].clone();
            let x = &mut c.inputs[0];
            let full = &self.input.ty;
            let row = full.bytes() / full.dims[1].max(1);
            let pixel = full.dims[3..].iter().product::<usize>() * full.dtype.size();
            x.offset = self.input.offset + q as usize * row + self.head_lo * pixel;
            x.ty = TensorType::new(x.ty.dtype, {
                let mut d = full.dims.clone();
                d[1] = 1;
                d[2] = self.head_w;
                d
            });
            ev.push(c);
            return;
        } else {
            self.produce(i - 1, q, ev);
        }
        for (_, whole, row) in self.sides[i].clone() {
            ev.push(copy_step(
                &whole,
                &row,
                RowCopy {
                    rows: 1,
                    src_row: q,
                    src_step: 0,
                    dst_row: 0,
                    dst_step: 0,
                    fill: 0.0,
                    cols: self.side_cols[i],
                },
                &format!("row {q} of an input of {name}"),
            ));
        }
        ev.push(self.computes[i].clone());
    }
}

/// How a step changes from one row to the next: the row deltas of a row
/// copy and the byte delta of each buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Delta {
    src: i64,
    dst: i64,
    bufs: Vec<usize>,
}

impl Delta {
    fn times(&self, n: usize) -> Delta {
        Delta {
            src: self.src * n as i64,
            dst: self.dst * n as i64,
            bufs: self.bufs.iter().map(|b| b * n).collect(),
        }
    }
}

/// Two steps the same except for where their row copies start and where
/// their buffers are: the change, or `None`.
fn delta(a: &Step, b: &Step) -> Option<Delta> {
    if a.op != b.op
        || a.epilogue != b.epilogue
        || a.inputs.len() != b.inputs.len()
        || a.outputs.len() != b.outputs.len()
    {
        return None;
    }
    let mut bufs = Vec::new();
    for (x, y) in a
        .inputs
        .iter()
        .chain(&a.outputs)
        .zip(b.inputs.iter().chain(&b.outputs))
    {
        if x.loc != y.loc || x.ty != y.ty || x.step != y.step || y.offset < x.offset {
            return None;
        }
        if matches!(x.loc, Loc::Const(_)) && x.offset != y.offset {
            return None;
        }
        bufs.push(y.offset - x.offset);
    }
    let (src, dst) = match (&a.kernel, &b.kernel) {
        (Kernel::RowCopy(x), Kernel::RowCopy(y)) => {
            if x.rows != y.rows || x.fill.to_bits() != y.fill.to_bits() || y.dst_row < x.dst_row {
                return None;
            }
            (y.src_row - x.src_row, (y.dst_row - x.dst_row) as i64)
        }
        (x, y) if x == y => (0, 0),
        _ => return None,
    };
    Some(Delta { src, dst, bufs })
}

/// The longest run of rows whose steps repeat with constant deltas:
/// (first row, count, per-step deltas).
fn steady(rows: &[Vec<Step>]) -> Option<(usize, usize, Vec<Delta>)> {
    let mut best: Option<(usize, usize, Vec<Delta>)> = None;
    let mut r = 0;
    while r + 1 < rows.len() {
        let (a, b) = (&rows[r], &rows[r + 1]);
        let d: Option<Vec<Delta>> = (a.len() == b.len())
            .then(|| a.iter().zip(b).map(|(x, y)| delta(x, y)).collect())
            .flatten();
        let Some(d) = d else {
            r += 1;
            continue;
        };
        let mut n = 2;
        while r + n < rows.len() {
            let c = &rows[r + n];
            let ok = c.len() == a.len()
                && a.iter()
                    .zip(c)
                    .zip(&d)
                    .all(|((x, y), dd)| delta(x, y).is_some_and(|e| e == dd.times(n)));
            if !ok {
                break;
            }
            n += 1;
        }
        if best.as_ref().is_none_or(|b| n > b.1) {
            best = Some((r, n, d));
        }
        r += n;
    }
    best.filter(|b| b.1 >= 3)
}

/// What streaming a chain did.
#[derive(Clone, Debug, PartialEq)]
pub struct Streamed {
    /// Steps of the chain and of its streamed form.
    pub steps_before: usize,
    pub steps_after: usize,
    /// The chain's output overwrites this input storage.
    pub in_place: bool,
    /// Bytes the row copies move per inference.
    pub copied_bytes: usize,
    /// Column tiles the chain runs in (1: whole rows).
    pub tiles: usize,
    /// Multiply-accumulates the tiles' overlapping halos repeat.
    pub extra_macs: u64,
}

/// Streams the chain `first..=last` of an unplaced program (see the
/// module documentation). The chain's steps are replaced by their streamed
/// form; everything else is unchanged.
pub fn stream(p: &Program, first: usize, last: usize) -> Result<(Program, Streamed)> {
    let mut q = p.clone();
    let s = stream_mut(&mut q, first, last)?;
    q.verify_unplaced()?;
    Ok((q, s))
}

/// [`stream`] in place, without verifying the result (callers that apply
/// many transforms verify once at the end).
pub fn stream_mut(p: &mut Program, first: usize, last: usize) -> Result<Streamed> {
    stream_tiled_mut(p, first, last, 1)
}

/// The columns one link of a column tile covers: its input columns
/// `in_lo..in_lo + in_w` (of its chain input), its output columns, and the
/// padding its op then needs on the left and right.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    in_lo: usize,
    in_w: usize,
    out_w: usize,
    pad_l: usize,
    pad_r: usize,
}

/// Does an elementwise link read any input other than its chain input
/// and side inputs differently along the columns?
fn width_free(l: &Link) -> bool {
    let Kernel::Map(m) = &l.step.kernel else {
        return true;
    };
    let r = l.step.outputs[0].ty.rank();
    l.step
        .inputs
        .iter()
        .zip(&m.operands)
        .enumerate()
        .all(|(k, (b, o))| {
            k == l.main
                || l.sides.contains(&k)
                || match o {
                    Operand::Broadcast => aligned(&b.ty, r).get(3).is_none_or(|&w| w == 1),
                    Operand::Along { axis } => *axis != 3 || b.ty.len() <= 1,
                    Operand::Table => true,
                }
        })
}

/// The columns each link computes for output columns `a..b` of the
/// chain, from the last link back to the first (halos included).
fn col_spans(links: &[Link], a: usize, b: usize) -> std::result::Result<Vec<Span>, String> {
    let mut spans = vec![Span::default(); links.len()];
    let (mut lo, mut hi) = (a, b);
    for (i, l) in links.iter().enumerate().rev() {
        let x = &l.step.inputs[l.main].ty;
        let y = &l.step.outputs[0].ty;
        if y.rank() != 4 || (!l.nhwc && x.rank() != 4) {
            return Err(format!("step `{}` has no columns to tile", l.step.name));
        }
        let conv = match &l.step.op {
            Op::Conv(c) => Some(c),
            Op::QConv(QConvAttrs { conv, .. }) => Some(conv),
            _ => None,
        };
        spans[i] = match conv {
            Some(c) => {
                let w = &l.step.inputs[1].ty;
                let (s, ext) = (
                    c.strides[1] as i64,
                    ((w.dims[3] - 1) * c.dilations[1] + 1) as i64,
                );
                let need_lo = lo as i64 * s - c.pads[1] as i64;
                let need_hi = (hi as i64 - 1) * s - c.pads[1] as i64 + ext;
                let in_lo = need_lo.max(0);
                let in_hi = need_hi.min(x.dims[3] as i64);
                if in_hi <= in_lo {
                    return Err(format!("a column tile of `{}` reads no input", l.step.name));
                }
                Span {
                    in_lo: in_lo as usize,
                    in_w: (in_hi - in_lo) as usize,
                    out_w: hi - lo,
                    pad_l: (in_lo - need_lo) as usize,
                    pad_r: (need_hi - in_hi) as usize,
                }
            }
            None if l.nhwc || (matches!(l.step.kernel, Kernel::Map(_)) && width_free(l)) => Span {
                in_lo: lo,
                in_w: hi - lo,
                out_w: hi - lo,
                pad_l: 0,
                pad_r: 0,
            },
            None => {
                return Err(format!(
                    "step `{}` ({}) cannot run in column tiles",
                    l.step.name,
                    l.step.op.name()
                ));
            }
        };
        lo = spans[i].in_lo;
        hi = lo + spans[i].in_w;
    }
    Ok(spans)
}

/// The op with its column padding replaced.
fn col_padded(op: &Op, left: usize, right: usize) -> Op {
    match op {
        Op::Conv(a) => {
            let mut a = a.clone();
            a.pads[1] = left;
            a.pads[3] = right;
            Op::Conv(a)
        }
        Op::QConv(a) => {
            let mut a = a.clone();
            a.conv.pads[1] = left;
            a.conv.pads[3] = right;
            Op::QConv(a)
        }
        op => op.clone(),
    }
}

/// `t` with `w` columns.
fn cols_of(t: &TensorType, w: usize) -> TensorType {
    let mut d = t.dims.clone();
    d[3] = w;
    TensorType::new(t.dtype, d)
}

/// [`stream_mut`] in `tiles` column tiles: the chain runs once per tile of
/// its output's columns, each link computing the columns that tile needs
/// (the halo columns between tiles twice, reported as extra
/// multiply-accumulates), so every window holds a fraction of a row. With
/// one tile this is row streaming.
pub fn stream_tiled_mut(
    p: &mut Program,
    first: usize,
    last: usize,
    tiles: usize,
) -> Result<Streamed> {
    let u = super::partition::uses(p);
    let (e, s) = stream_edit(p, first, last, tiles, &u)?;
    e.apply(p);
    Ok(s)
}

/// [`stream_tiled_mut`] as an [`Edit`] of `p` (whose storage uses are
/// `u`), not applied yet.
pub(super) fn stream_edit(
    p: &Program,
    first: usize,
    last: usize,
    tiles: usize,
    u: &Uses,
) -> Result<(Edit, Streamed)> {
    let links = chain(p, first, last, u).map_err(fail)?;
    let n = links.len();
    let tiles = tiles.max(1);
    let mut next = 1 + p
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter().chain(&s.outputs))
        .filter_map(temp_of)
        .max()
        .unwrap_or(0);
    let input = links[0].step.inputs[links[0].main].clone();
    let mut output = links[n - 1].step.outputs[0].clone();
    // The column range of each tile of the output.
    let ranges: Vec<Option<(usize, usize)>> = if tiles == 1 {
        vec![None]
    } else {
        let w = output.ty.dims.get(3).copied().unwrap_or(0);
        if output.ty.rank() != 4 || w < 2 * tiles {
            return Err(fail(format!(
                "{} columns do not make {tiles} tiles",
                output.ty
            )));
        }
        (0..tiles)
            .map(|t| Some((t * w / tiles, (t + 1) * w / tiles)))
            .collect()
    };
    // Storage, shared by every tile.
    let mut win_locs = Vec::with_capacity(n);
    let mut out_locs = Vec::with_capacity(n);
    let mut side_locs = Vec::with_capacity(n);
    for (i, l) in links.iter().enumerate() {
        let windowed = (i == 0 && !l.nhwc) || !l.geom.windowless();
        win_locs.push(windowed.then(|| fresh(&mut next)));
        out_locs.push(fresh(&mut next));
        side_locs.push(l.sides.iter().map(|_| fresh(&mut next)).collect::<Vec<_>>());
    }
    // The chain's output may overwrite an input that dies with the chain
    // (not across column tiles: a later tile reads halo columns an
    // earlier one would have overwritten).
    let stride1 = links
        .iter()
        .all(|l| l.geom.stride == 1 && l.geom.pad_top < l.geom.extent)
        && input.ty.dims[2] == output.ty.dims[2];
    let mut in_place = false;
    if tiles == 1 && stride1 && temp_of(&output).is_some() {
        let mut cands = vec![input.clone()];
        for l in &links {
            cands.extend(l.sides.iter().map(|&k| l.step.inputs[k].clone()));
        }
        for c in cands {
            let Some(k) = temp_of(&c) else { continue };
            let dies = u.of(k).iter().all(|&s| s <= last);
            let row = |t: &TensorType| t.dims[3..].iter().product::<usize>();
            if dies && c.offset == 0 && row(&c.ty) == row(&output.ty) {
                output.loc = c.loc;
                in_place = true;
                break;
            }
        }
    }
    let old_out = links[n - 1].step.outputs[0].loc;
    let h_out = output.ty.dims[2];
    let whole_macs: u64 = links
        .iter()
        .map(|l| {
            let ins: Vec<&TensorType> = l.step.inputs.iter().map(|b| &b.ty).collect();
            let outs: Vec<TensorType> = l.step.outputs.iter().map(|b| b.ty.clone()).collect();
            nnc_ir::stats::op_macs(&l.step.op, &ins, &outs)
        })
        .sum();
    let mut tile_macs = 0u64;
    let mut body: Vec<Step> = Vec::new();
    let mut new_loops = Vec::new();
    let mut copied_bytes = 0;
    for range in &ranges {
        let spans = match range {
            Some((a, b)) => Some(col_spans(&links, *a, *b).map_err(fail)?),
            None => None,
        };
        let span = |i: usize| spans.as_ref().map(|s| s[i]);
        let mut windows = Vec::with_capacity(n);
        let mut outs = Vec::with_capacity(n);
        let mut sides = Vec::with_capacity(n);
        let mut side_cols = Vec::with_capacity(n);
        for (i, l) in links.iter().enumerate() {
            let mut x = l.step.inputs[l.main].ty.clone();
            let mut y = rows_of(&l.step.outputs[0].ty, 1);
            if let Some(sp) = span(i) {
                if !l.nhwc {
                    x = cols_of(&x, sp.in_w);
                }
                y = cols_of(&y, sp.out_w);
            }
            windows.push(win_locs[i].map(|loc| Buffer::new(loc, rows_of(&x, l.geom.extent))));
            outs.push(Buffer::new(out_locs[i], y));
            side_cols.push(span(i).map(|sp| ColRange {
                src: sp.in_lo,
                dst: 0,
                n: sp.out_w,
            }));
            sides.push(
                l.sides
                    .iter()
                    .zip(&side_locs[i])
                    .map(|(&k, &loc)| {
                        let whole = l.step.inputs[k].clone();
                        let mut t = rows_of(&whole.ty, 1);
                        if let Some(sp) = span(i) {
                            t = cols_of(&t, sp.out_w);
                        }
                        (k, whole, Buffer::new(loc, t))
                    })
                    .collect::<Vec<_>>(),
            );
        }
        let mut computes = Vec::with_capacity(n);
        for (i, l) in links.iter().enumerate() {
            let mut s = l.step.clone();
            s.op = unpadded_rows(&s.op, s.outputs[0].ty.rank());
            if let Some(sp) = span(i) {
                s.op = col_padded(&s.op, sp.pad_l, sp.pad_r);
            }
            s.inputs[l.main] = match &windows[i] {
                Some(w) => w.clone(),
                None if l.nhwc => {
                    let mut x = input.clone();
                    x.ty.dims[1] = 1;
                    if let Some(sp) = span(i) {
                        x.ty.dims[2] = sp.in_w;
                    }
                    x
                }
                None => outs[i - 1].clone(),
            };
            for (k, _, row) in &sides[i] {
                s.inputs[*k] = row.clone();
            }
            s.outputs[0] = outs[i].clone();
            s.in_place = false;
            reselect(p, &mut s)?;
            if spans.is_some() {
                let ins: Vec<&TensorType> = s.inputs.iter().map(|b| &b.ty).collect();
                let o: Vec<TensorType> = s.outputs.iter().map(|b| b.ty.clone()).collect();
                tile_macs +=
                    nnc_ir::stats::op_macs(&s.op, &ins, &o) * l.step.outputs[0].ty.dims[2] as u64;
            }
            computes.push(s);
        }
        let (head_lo, head_w) = match span(0) {
            Some(sp) => (sp.in_lo, sp.in_w),
            None => (0, input.ty.dims.get(2).copied().unwrap_or(0)),
        };
        let mut b = Builder {
            links: links.clone(),
            input: input.clone(),
            windows,
            outs,
            sides,
            computes,
            have: vec![],
            head_cols: span(0).filter(|_| !links[0].nhwc).map(|sp| ColRange {
                src: sp.in_lo,
                dst: 0,
                n: sp.in_w,
            }),
            head_lo,
            head_w,
            side_cols,
        };
        // A window starts empty: its first output row takes in all its rows.
        b.have = b.links.iter().map(|l| -(l.geom.pad_top as i64)).collect();
        let tail_cols = range.map(|(a, c)| ColRange {
            src: 0,
            dst: a,
            n: c - a,
        });
        let mut rows: Vec<Vec<Step>> = Vec::with_capacity(h_out);
        for r in 0..h_out {
            let mut ev = Vec::new();
            b.produce(n - 1, r as i64, &mut ev);
            ev.push(copy_step(
                &b.outs[n - 1],
                &output,
                RowCopy {
                    rows: 1,
                    src_row: 0,
                    src_step: 0,
                    dst_row: r,
                    dst_step: 0,
                    fill: 0.0,
                    cols: tail_cols,
                },
                &format!("row {r} of {}", b.links[n - 1].step.name),
            ));
            rows.push(ev);
        }
        copied_bytes += rows
            .iter()
            .flatten()
            .filter_map(|s| match &s.kernel {
                Kernel::RowCopy(r) => {
                    let t = &s.outputs[0].ty;
                    let row = r
                        .cols
                        .map_or(t.dims[3..].iter().product::<usize>(), |c| c.n);
                    Some(r.rows * t.dims[1] * row * t.dtype.size())
                }
                _ => None,
            })
            .sum::<usize>();
        // Rows that repeat become a loop.
        match steady(&rows) {
            Some((r0, count, d)) => {
                for ev in &rows[..r0] {
                    body.extend(ev.iter().cloned());
                }
                let start = first + body.len();
                for (st, dd) in rows[r0].iter().zip(&d) {
                    let mut st = st.clone();
                    if let Kernel::RowCopy(rc) = &mut st.kernel {
                        rc.src_step = dd.src;
                        rc.dst_step = dd.dst as usize;
                    }
                    for (b, &step) in st
                        .inputs
                        .iter_mut()
                        .chain(st.outputs.iter_mut())
                        .zip(&dd.bufs)
                    {
                        b.step = step;
                    }
                    body.push(st);
                }
                new_loops.push(Loop {
                    first: start,
                    len: rows[r0].len(),
                    count,
                });
                for ev in &rows[r0 + count..] {
                    body.extend(ev.iter().cloned());
                }
            }
            None => {
                for ev in &rows {
                    body.extend(ev.iter().cloned());
                }
            }
        }
    }
    let before = last + 1 - first;
    let after = body.len();
    let edit = Edit {
        first,
        last,
        body,
        loops: new_loops,
        rename: (in_place && old_out != output.loc).then_some((old_out, output.loc)),
    };
    let streamed = Streamed {
        steps_before: before,
        steps_after: after,
        in_place,
        copied_bytes,
        tiles,
        extra_macs: if tiles > 1 {
            tile_macs.saturating_sub(whole_macs)
        } else {
            0
        },
    };
    Ok((edit, streamed))
}
