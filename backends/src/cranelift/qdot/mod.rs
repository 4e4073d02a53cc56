//! Integer dot-product kernels in Cranelift: `qconv_dot`, `qdw_dot` and
//! `qgemm_dot` (layouts in [`nnc_ir::program::qdot`]), on 128-bit vectors
//! of four 32-bit lanes.
//!
//! The dot products are written as the widening trees the x64 backend
//! folds into one instruction: quads as `iadd(iadd_pairwise(...), acc)` over
//! `imul(swiden(w), uwiden(x))` (one `vpdpbusd` with AVX-VNNI or
//! AVX512-VNNI; the same sums, slower, without), pairs as
//! `iadd_pairwise(imul(swiden_low), imul(swiden_high))` (`pmaddwd`). The dot
//! copies (padded, stride-phase split, interleaved) are runs of elements
//! computed at generation time and copied by one loop; requantization is
//! vector code rounding once, as [`super::integer::rq`] does.

use cranelift_codegen::ir::{
    ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value, types,
};
use nnc_ir::op::{QConvAttrs, QGemmAttrs};
use nnc_ir::program::qdot::{self, Grid, Slide};
use nnc_ir::program::{Epilogue, QConvDot, QDwDot, QGemmDot, Step, Window};
use nnc_ir::{DType, Tensor, TensorType};

use super::Args;
use super::integer::{rq, sat};
use super::kb::Kb;
use crate::error::Result;

mod kernels;
pub use kernels::{conv, depthwise, gemm};

const I8X16: Type = types::I8X16;
const I16X8: Type = types::I16X8;
const I32X4: Type = types::I32X4;
const I64X2: Type = types::I64X2;
/// 32-bit lanes per vector.
const L: usize = 4;
/// Elements a depthwise plane keeps readable past its last tap (as
/// kernel selection sized it).
const DW_SLACK: usize = 64;

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

fn cast(kb: &mut Kb, ty: Type, v: Value) -> Value {
    if kb.ty(v) == ty {
        return v;
    }
    kb.b.ins().bitcast(ty, little(), v)
}

/// `acc + dot(x, w)`: `x` the unsigned activations, `w` the signed
/// weights, both 16 bytes: quads of bytes or pairs of 16-bit values per
/// 32-bit lane (quads: the tree the x64 backend folds into `vpdpbusd`).
pub(super) fn dot(kb: &mut Kb, d: usize, acc: Value, x: Value, w: Value) -> Value {
    if d == 4 {
        let (wl, xl) = (kb.b.ins().swiden_low(w), kb.b.ins().uwiden_low(x));
        let lo = kb.b.ins().imul(wl, xl);
        let (wh, xh) = (kb.b.ins().swiden_high(w), kb.b.ins().uwiden_high(x));
        let hi = kb.b.ins().imul(wh, xh);
        let (a, b) = (kb.b.ins().swiden_low(lo), kb.b.ins().swiden_high(lo));
        let s0 = kb.b.ins().iadd_pairwise(a, b);
        let (a, b) = (kb.b.ins().swiden_low(hi), kb.b.ins().swiden_high(hi));
        let s1 = kb.b.ins().iadd_pairwise(a, b);
        let s = kb.b.ins().iadd_pairwise(s0, s1);
        kb.b.ins().iadd(s, acc)
    } else {
        let (xl, wl) = (kb.b.ins().swiden_low(x), kb.b.ins().swiden_low(w));
        let lo = kb.b.ins().imul(xl, wl);
        let (xh, wh) = (kb.b.ins().swiden_high(x), kb.b.ins().swiden_high(w));
        let hi = kb.b.ins().imul(xh, wh);
        let p = kb.b.ins().iadd_pairwise(lo, hi);
        kb.b.ins().iadd(acc, p)
    }
}

/// The vector type of a dot copy's 16 bytes.
fn vty(d: usize) -> Type {
    if d == 4 { I8X16 } else { I16X8 }
}

/// A 32-bit word broadcast to every lane, as `d`-element vectors.
fn bcast_word(kb: &mut Kb, d: usize, addr: Value, off: i64) -> Value {
    let w = kb.load(types::I32, addr, off);
    let v = kb.b.ins().splat(I32X4, w);
    cast(kb, vty(d), v)
}

/// One run of a dot copy: `len` elements to `dst + k * dot` (elements of
/// the copy) from `src + k * step` (elements of the source image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    dst: i64,
    src: i64,
    len: i64,
    step: i64,
}

/// The runs of a copy of `slots` slots of `d` elements, slot `s` element
/// `t` being source element `src(s, t)` (padding where `None`).
fn runs(slots: usize, d: usize, src: impl Fn(usize, usize) -> Option<i64>) -> Vec<Run> {
    let mut out = Vec::new();
    for t in 0..d {
        let mut cur: Option<(Run, usize)> = None;
        for s in 0..slots {
            match src(s, t) {
                Some(v) => {
                    if let Some((r, last)) = &mut cur
                        && *last + 1 == s
                        && (r.len == 1 || v == r.src + r.len * r.step)
                    {
                        if r.len == 1 {
                            r.step = v - r.src;
                        }
                        r.len += 1;
                        *last = s;
                        continue;
                    }
                    if let Some((r, _)) = cur.take() {
                        out.push(r);
                    }
                    cur = Some((
                        Run {
                            dst: (s * d + t) as i64,
                            src: v,
                            len: 1,
                            step: 0,
                        },
                        s,
                    ));
                }
                None => {
                    if let Some((r, _)) = cur.take() {
                        out.push(r);
                    }
                }
            }
        }
        if let Some((r, _)) = cur {
            out.push(r);
        }
    }
    out
}

/// Source element of phase plane `p`, element `i`, of the (one-channel)
/// image of a grid, or `None` for padding.
fn plane_src(g: &Grid, p: usize, i: usize) -> Option<i64> {
    let (sh, sw) = (g.h.stride.max(1), g.w.stride.max(1));
    let (ph, pw) = (p / sw, p % sw);
    let (r, j) = (i / g.width, i % g.width);
    if r >= g.rows {
        return None;
    }
    let ir = (r * sh + ph) as i64 - g.h.pad as i64;
    let ic = (j * sw + pw) as i64 - g.w.pad as i64;
    ((0..g.h.input as i64).contains(&ir) && (0..g.w.input as i64).contains(&ic))
        .then(|| ir * g.w.input as i64 + ic)
}

/// A dot copy: a stack buffer of unsigned activations filled with the
/// padding value, then the runs copied from an image.
struct Copy {
    buf: Value,
    vecs: usize,
    /// Bytes per element and elements per slot.
    eb: usize,
    per_slot: usize,
    pad: i32,
    runs: Value,
    nruns: usize,
    xd: DType,
    shift: i32,
    /// The runs themselves, when they are copied by straight-line code.
    unrolled: Option<Vec<Run>>,
    /// Bytes of the image the runs read (how far a vector load of a
    /// strided run may reach; 0 when unknown).
    img_bytes: usize,
    /// Interleaved quads (or pairs) of whole input planes (`qconv_dot` on
    /// the input itself): channel quads (pairs), channels, elements per
    /// plane, plane stride of the copy.
    quads: Option<(usize, usize, usize, usize)>,
}

impl Copy {
    fn new(
        kb: &mut Kb,
        elems: usize,
        (eb, per_slot): (usize, usize),
        pad: i32,
        runs: &[Run],
        x: DType,
    ) -> Result<Copy> {
        let vecs = (elems * eb).div_ceil(16).max(1);
        let buf = kb.stack(vecs * 16);
        let xs = x.size() as i64;
        let t: Vec<i64> = runs
            .iter()
            .flat_map(|r| [r.dst * eb as i64, r.src * xs, r.len, r.step * xs])
            .collect();
        let tab = kb.table_i64(if t.is_empty() { &[0] } else { &t })?;
        Ok(Copy {
            buf,
            vecs,
            eb,
            per_slot,
            pad,
            runs: tab,
            nruns: runs.len(),
            xd: x,
            shift: qdot::unsigned_shift(x),
            unrolled: unrollable(runs, eb, per_slot).then(|| runs.to_vec()),
            img_bytes: 0,
            quads: None,
        })
    }

    /// Fills the copy from the image at `img`.
    fn fill(&self, kb: &mut Kb, img: Value) -> Result<()> {
        let eb = self.eb;
        let pv = if eb == 1 {
            let s = kb.cint(types::I8, self.pad as i64);
            kb.b.ins().splat(I8X16, s)
        } else {
            let s = kb.cint(types::I16, self.pad as i64);
            kb.b.ins().splat(I16X8, s)
        };
        let buf = self.buf;
        kb.for_range(0, self.vecs as i64, 1, |kb, i| {
            let a = kb.at(buf, i, 16);
            kb.store(pv, a, 0);
            Ok(())
        })?;
        if let Some((nq, cg, n, plane)) = self.quads {
            let b = kb.cint(types::I8, self.pad as i64);
            let pb = kb.b.ins().splat(I8X16, b);
            return self.fill_quads(kb, img, (nq, cg, n, plane), pb);
        }
        if let Some(rs) = &self.unrolled {
            let xor = self.shift != 0;
            for r in rs {
                let dst = kb.off(buf, r.dst);
                let src = kb.off(img, r.src * self.xd.size() as i64);
                if r.len == 1 || r.step == 1 {
                    copy_run(kb, dst, src, r.len as usize, xor);
                } else if r.step == 2 && self.xd.size() == 1 {
                    strided_run(kb, dst, img, r, self.img_bytes, xor);
                } else {
                    for k in 0..r.len {
                        let v = kb.load(types::I8, src, k * r.step);
                        let v = flip(kb, v, types::I8, xor);
                        kb.store(v, dst, k);
                    }
                }
            }
            return Ok(());
        }
        let (tab, xd, shift, dstep) = (self.runs, self.xd, self.shift, (self.per_slot * eb) as i64);
        kb.for_range(0, self.nruns as i64, 1, |kb, r| {
            let e = kb.at(tab, r, 32);
            let d0 = kb.load(types::I64, e, 0);
            let s0 = kb.load(types::I64, e, 8);
            let n = kb.load(types::I64, e, 16);
            let st = kb.load(types::I64, e, 24);
            let dst = kb.b.ins().iadd(buf, d0);
            let src = kb.b.ins().iadd(img, s0);
            let z = kb.ci(0);
            kb.for_dyn(z, n, |kb, k| {
                let so = kb.b.ins().imul(k, st);
                let sa = kb.b.ins().iadd(src, so);
                let mem = kb.mem;
                let v = if xd.is_signed() {
                    kb.b.ins().sload8(types::I32, mem, sa, 0)
                } else {
                    kb.b.ins().uload8(types::I32, mem, sa, 0)
                };
                let v = kb.b.ins().iadd_imm_s(v, shift as i64);
                let da = kb.at(dst, k, dstep);
                if eb == 1 {
                    kb.b.ins().istore8(mem, v, da, 0);
                } else {
                    kb.b.ins().istore16(mem, v, da, 0);
                }
                Ok(())
            })
        })
    }
}

impl Copy {
    /// The quads (pairs) of whole planes: per quad (pair) of channels,
    /// the channel planes interleaved (channel innermost).
    fn fill_quads(
        &self,
        kb: &mut Kb,
        img: Value,
        (nq, cg, n, plane): (usize, usize, usize, usize),
        pad: Value,
    ) -> Result<()> {
        let xor = self.shift != 0;
        let buf = self.buf;
        let padb = self.pad as i64;
        // Quads are four bytes per position, pairs two 16-bit values.
        let d = self.per_slot;
        let quad = |kb: &mut Kb, cq: Value, have: usize| -> Result<()> {
            let src = kb.at(img, cq, (d * n) as i64);
            let dst = kb.at(buf, cq, (plane * 4) as i64);
            let srcs: Vec<Option<Value>> = (0..d)
                .map(|t| (t < have).then(|| kb.off(src, (t * n) as i64)))
                .collect();
            interleave(kb, d, dst, &srcs, n, (pad, padb), xor)
        };
        let full = cg / d;
        if full > 0 {
            kb.for_range(0, full as i64, 1, |kb, cq| quad(kb, cq, d))?;
        }
        if full < nq {
            let cq = kb.ci(full as i64);
            quad(kb, cq, cg - d * full)?;
        }
        Ok(())
    }
}

/// Interleaves `d` byte sequences of `n` elements into `dst`, four bytes
/// per position: quads of bytes (element `i` of sequence `t` to byte
/// `4 i + t`) or pairs of 16-bit values (zero-extended, to the 16 bits at
/// byte `4 i + 2 t`). Each sequence is read from its pointer (made
/// unsigned when `xor`) or is the padding value; 16 elements at a time by
/// byte interleaves (then a second interleave for quads, zero-extension
/// for pairs), the rest one by one.
pub(super) fn interleave(
    kb: &mut Kb,
    d: usize,
    dst: Value,
    srcs: &[Option<Value>],
    n: usize,
    (pad, padb): (Value, i64),
    xor: bool,
) -> Result<()> {
    let chunks = n / 16;
    if chunks > 0 {
        kb.for_range(0, chunks as i64, 1, |kb, i| {
            let out = kb.at(dst, i, 64);
            let ch: Vec<Value> = srcs
                .iter()
                .map(|s| match s {
                    Some(p) => {
                        let a = kb.at(*p, i, 16);
                        let v = kb.load(I8X16, a, 0);
                        flip(kb, v, I8X16, xor)
                    }
                    None => pad,
                })
                .collect();
            // Bytes of `a` and `b` alternating: the low (high) eight of each.
            let lo_hi = |kb: &mut Kb, a: Value, b: Value, hi: bool| {
                let base = if hi { 8u8 } else { 0 };
                let m: Vec<u8> = (0..8u8).flat_map(|k| [base + k, 16 + base + k]).collect();
                let imm = kb.b.func.dfg.immediates.push(ConstantData::from(m));
                kb.b.ins().shuffle(a, b, imm)
            };
            let ab = [
                lo_hi(kb, ch[0], ch[1], false),
                lo_hi(kb, ch[0], ch[1], true),
            ];
            if d == 2 {
                for (h, &v) in ab.iter().enumerate() {
                    let lo = kb.b.ins().uwiden_low(v);
                    let hi = kb.b.ins().uwiden_high(v);
                    kb.store(lo, out, (32 * h) as i64);
                    kb.store(hi, out, (32 * h + 16) as i64);
                }
                return Ok(());
            }
            let cd = [
                lo_hi(kb, ch[2], ch[3], false),
                lo_hi(kb, ch[2], ch[3], true),
            ];
            for h in 0..2 {
                for part in 0..2u8 {
                    let m: Vec<u8> = (0..4u8)
                        .flat_map(|k| {
                            let e = 2 * (4 * part + k);
                            [e, e + 1, 16 + e, 17 + e]
                        })
                        .collect();
                    let imm = kb.b.func.dfg.immediates.push(ConstantData::from(m));
                    let v = kb.b.ins().shuffle(ab[h], cd[h], imm);
                    kb.store(v, out, ((2 * h + part as usize) * 16) as i64);
                }
            }
            Ok(())
        })?;
    }
    let eb = 4 / d;
    for i in chunks * 16..n {
        for (t, s) in srcs.iter().enumerate() {
            let v = match s {
                Some(p) => {
                    let v = kb.load(types::I8, *p, i as i64);
                    flip(kb, v, types::I8, xor)
                }
                None => kb.cint(types::I8, padb),
            };
            let v = if d == 2 {
                kb.b.ins().uextend(types::I16, v)
            } else {
                v
            };
            kb.store(v, dst, (4 * i + eb * t) as i64);
        }
    }
    Ok(())
}

/// Padded, stride-phase split byte planes of the channels of one group
/// (unsigned): per channel, the runs of one channel by straight-line
/// code, in a loop over the channels.
struct Planes {
    buf: Value,
    vecs: usize,
    runs: Vec<Run>,
    channels: usize,
    chan: usize,
    in_plane: usize,
    xs: usize,
    xor: bool,
    pad: i64,
}

impl Planes {
    fn fill(&self, kb: &mut Kb, img: Value) -> Result<()> {
        let b = kb.cint(types::I8, self.pad);
        let pv = kb.b.ins().splat(I8X16, b);
        let buf = self.buf;
        kb.for_range(0, self.vecs as i64, 1, |kb, i| {
            let a = kb.at(buf, i, 16);
            kb.store(pv, a, 0);
            Ok(())
        })?;
        kb.for_range(0, self.channels as i64, 1, |kb, c| {
            let src = kb.at(img, c, (self.in_plane * self.xs) as i64);
            let dst = kb.at(buf, c, self.chan as i64);
            for r in &self.runs {
                let d = kb.off(dst, r.dst);
                if r.len == 1 || r.step == 1 {
                    let sp = kb.off(src, r.src);
                    copy_run(kb, d, sp, r.len as usize, self.xor);
                } else {
                    strided_run(kb, d, src, r, self.in_plane, self.xor);
                }
            }
            Ok(())
        })
    }
}

/// Copies a run of source step `r.step` (bytes): for step 2, 16 elements
/// at a time from two loads and an even-byte shuffle while the loads stay
/// inside the `n`-byte image; the rest one by one.
fn strided_run(kb: &mut Kb, dst: Value, img: Value, r: &Run, n: usize, xor: bool) {
    let mut k = 0i64;
    if r.step == 2 {
        let m: Vec<u8> = (0..16u8).map(|i| 2 * i).collect();
        let imm = kb.b.func.dfg.immediates.push(ConstantData::from(m));
        while k + 16 <= r.len && r.src + 2 * (k + 16) <= n as i64 {
            let a = kb.load(I8X16, img, r.src + 2 * k);
            let b = kb.load(I8X16, img, r.src + 2 * k + 16);
            let v = kb.b.ins().shuffle(a, b, imm);
            let v = flip(kb, v, I8X16, xor);
            kb.store(v, dst, k);
            k += 16;
        }
        // Eight or four more from one load (of 16 source bytes).
        for (n8, ty) in [(8i64, types::I64), (4, types::I32)] {
            if k + n8 <= r.len && r.src + 2 * k + 16 <= n as i64 {
                let a = kb.load(I8X16, img, r.src + 2 * k);
                let v = kb.b.ins().shuffle(a, a, imm);
                let v = flip(kb, v, I8X16, xor);
                let w = cast(kb, if n8 == 8 { I64X2 } else { I32X4 }, v);
                let w = kb.b.ins().extractlane(w, 0);
                debug_assert_eq!(kb.ty(w), ty);
                kb.store(w, dst, k);
                k += n8;
            }
        }
    }
    while k < r.len {
        let v = kb.load(types::I8, img, r.src + k * r.step);
        let v = flip(kb, v, types::I8, xor);
        kb.store(v, dst, k);
        k += 1;
    }
}

/// Runs short enough to copy by straight-line code: bytes, one element
/// per slot, few runs (strided ones element by element, few elements;
/// runs of step 2 go 16 elements per shuffle).
fn unrollable(runs: &[Run], eb: usize, per_slot: usize) -> bool {
    let strided: i64 = runs
        .iter()
        .filter(|r| r.len > 1 && r.step != 1)
        .map(|r| {
            if r.step == 2 {
                r.len / 16 + r.len % 16
            } else {
                r.len
            }
        })
        .sum();
    eb == 1 && per_slot == 1 && runs.len() <= 256 && strided <= 2048
}

/// A vector constant of `ty`: `lane` (its bytes) in every lane.
fn vconst(kb: &mut Kb, ty: Type, lane: &[u8]) -> Value {
    let b: Vec<u8> = lane.iter().copied().cycle().take(16).collect();
    let c = kb.b.func.dfg.constants.insert(ConstantData::from(b));
    kb.b.ins().vconst(ty, c)
}

/// `v` made unsigned (the top bit flipped) when `xor`.
fn flip(kb: &mut Kb, v: Value, ty: Type, xor: bool) -> Value {
    if !xor {
        return v;
    }
    let k = if ty.is_vector() {
        let b = kb.cint(types::I8, 0x80);
        kb.b.ins().splat(ty, b)
    } else {
        kb.cint(ty, 0x8080_8080_8080_8080u64 as i64)
    };
    kb.b.ins().bxor(v, k)
}

/// Copies `len` contiguous bytes, flipping their top bits when `xor`:
/// 16 at a time, then 8, 4, 2, 1.
fn copy_run(kb: &mut Kb, dst: Value, src: Value, len: usize, xor: bool) {
    let mut o = 0;
    for (ty, n) in [
        (I8X16, 16),
        (types::I64, 8),
        (types::I32, 4),
        (types::I16, 2),
        (types::I8, 1),
    ] {
        while len - o >= n {
            let v = kb.load(ty, src, o as i64);
            let v = flip(kb, v, ty, xor);
            kb.store(v, dst, o as i64);
            o += n;
        }
    }
}

/// Per-channel requantization tables: multipliers (i32), the shift past
/// bit 31 (i32) and the rounding constant (i64), for `n` channels; the
/// constants of the store, made once per step.
///
/// Where every channel's `|acc| * mult + 2^(total - 1)` stays below
/// 2^53 (from a bound on the accumulator computed from the weights and
/// bias at generation time), the requantization runs in f64 instead:
/// `floor(acc * (mult * 2^-total) + 0.5)` is then computed without any
/// rounding (the product is an integer times a power of two, the sum
/// has at most 53 significant bits), so it equals the single-rounding
/// integer form bit for bit, in 5 instructions per two lanes (convert,
/// fused multiply-add, floor, truncate) and no per-channel variable
/// shift; the clamp is the saturating narrowing of the store.
///
/// The vector constants are made where a channel's values are
/// ([`Rq::channel`]), not once per step: values live across a kernel's
/// reduction loop push its accumulators out of registers.
struct Rq {
    mult: Value,
    rsh: Value,
    rnd: Value,
    /// Per-channel `mult * 2^-total` (f64), when the f64 form is exact.
    scale: Option<Value>,
    /// `K` of the offset f64 form (see [`fp_offset`]): `2^K` added with the
    /// rounding half makes every sum positive, so truncation is the floor.
    offset: Option<u32>,
    /// Per-channel halves (f64) when some channels are constant: their
    /// value less the zero point added to the half (their scale is zero).
    halves: Option<Value>,
    lo: i64,
    hi: i64,
    y: DType,
    k: Consts,
}

/// The shuffle masks and constants of a requantizing store.
struct Consts {
    zp: i64,
    /// Dwords 0 and 2 of two vectors (the integer form's narrowing).
    evens: cranelift_codegen::ir::Immediate,
    /// Lanes 2 and 3 moved to 0 and 1 (`pshufd`).
    upper: cranelift_codegen::ir::Immediate,
    /// The low halves of two vectors (`punpcklqdq`).
    lows: cranelift_codegen::ir::Immediate,
    /// The clamp is narrower than the output type (f64 form: clamp the
    /// narrowed bytes).
    bytes: bool,
}

impl Rq {
    /// The requantization of `n` channels; `bound`, when given, bounds
    /// every channel's accumulator (`|acc| <= bound[c]`) and lets the
    /// exact f64 form be used.
    fn new(kb: &mut Kb, st: &Step, a: &Args, n: usize, range: Option<&[(i64, i64)]>) -> Result<Rq> {
        let (mi, si, zp) = st.requantize().ok_or_else(|| {
            super::unsupported(st, "an integer kernel without requantization".into())
        })?;
        let get = |kb: &mut Kb, k: usize| -> Result<Vec<i64>> {
            let t = a
                .weight(kb, k)
                .ok_or_else(|| super::unsupported(st, "computed requantization".into()))?;
            let v = t.to_i64();
            Ok((0..n)
                .map(|i| if v.len() == 1 { v[0] } else { v[i] })
                .collect())
        };
        let m = get(kb, mi)?;
        let s = get(kb, si)?;
        let total: Vec<i64> = s.iter().map(|&v| 31 - v.clamp(-31, 30)).collect();
        let mt: Vec<u8> = m.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
        let rt: Vec<u8> = total
            .iter()
            .flat_map(|&t| ((t - 31) as i32).to_le_bytes())
            .collect();
        let nt: Vec<i64> = total.iter().map(|&t| 1i64 << (t - 1)).collect();
        let y = st.outputs[0].ty.dtype;
        let (tlo, thi) = y.int_range().unwrap_or((-128, 127));
        let (mut lo, mut hi) = (tlo, thi);
        for e in &st.epilogue {
            if let Epilogue::Clamp { lo: l, hi: h } = e {
                lo = lo.max(*l as i64);
                hi = hi.min(*h as i64);
            }
        }
        // Channels whose output is one value over their whole accumulator
        // range (dead channels: zero weights, a huge bias, a tiny
        // multiplier) take the f64 forms with a zero scale and that value
        // in their half, out of the bounds that decide the form.
        let konst: Vec<Option<i64>> = match range {
            Some(r) => (0..n)
                .map(|c| {
                    let q = |acc: i64| {
                        let t = total[c];
                        let v =
                            ((acc as i128 * m[c] as i128 + (1i128 << (t - 1))) >> t) + zp as i128;
                        v.clamp(lo as i128, hi as i128) as i64
                    };
                    let (bot, top) = r[c];
                    (q(bot) == q(top)).then(|| q(bot))
                })
                .collect(),
            None => vec![None; n],
        };
        let bound = range.map(|r| {
            let b = bounds_of(r);
            (0..n)
                .map(|c| if konst[c].is_some() { 0 } else { b[c] })
                .collect::<Vec<_>>()
        });
        let em: Vec<i64> = (0..n)
            .map(|c| if konst[c].is_some() { 0 } else { m[c] })
            .collect();
        let et: Vec<i64> = (0..n)
            .map(|c| if konst[c].is_some() { 31 } else { total[c] })
            .collect();
        let offset = match &bound {
            Some(b) if fp_ok(kb) => fp_offset(b, &em, &et),
            _ => None,
        };
        let scale = match &bound {
            Some(b) if fp_ok(kb) && (offset.is_some() || fp_exact(b, &em, &et)) => {
                let f: Vec<f64> = em
                    .iter()
                    .zip(&et)
                    .map(|(&mm, &t)| mm as f64 * (-(t as f64)).exp2())
                    .collect();
                Some(kb.table_f64(&f)?)
            }
            _ => None,
        };
        let big = offset.map_or(0, |k| 1i64 << k);
        let halves = match scale {
            Some(_) if konst.iter().any(Option::is_some) => {
                let h: Vec<f64> = konst
                    .iter()
                    .map(|q| 0.5 + big as f64 + q.map_or(0, |q| q - zp as i64) as f64)
                    .collect();
                Some(kb.table_f64(&h)?)
            }
            _ => None,
        };
        let imm = |kb: &mut Kb, m: Vec<u8>| kb.b.func.dfg.immediates.push(ConstantData::from(m));
        let evens = imm(
            kb,
            vec![0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27],
        );
        let upper = imm(kb, (8..16).chain(8..16).collect());
        let lows = imm(kb, (0..8).chain(16..24).collect());
        let k = Consts {
            zp: zp as i64,
            evens,
            upper,
            lows,
            bytes: scale.is_some() && (lo > tlo || hi < thi),
        };
        Ok(Rq {
            mult: kb.table(mt, 16)?,
            rsh: kb.table(rt, 16)?,
            rnd: kb.table_i64(&nt)?,
            scale,
            offset,
            halves,
            lo,
            hi,
            y,
            k,
        })
    }

    /// The per-channel values of channel `ch` (a pointer-sized value) and
    /// the store's constants, as vectors.
    fn channel(&self, kb: &mut Kb, ch: Value) -> Chan {
        // Constants as `vconst`s: memory operands of the instructions
        // that use them, not materialized per channel.
        let splat = |kb: &mut Kb, v: i64| vconst(kb, I32X4, &(v as i32).to_le_bytes());
        if let Some(sc) = self.scale {
            let a = kb.at(sc, ch, 8);
            let f = kb.load(types::F64, a, 0);
            let f = kb.b.ins().splat(types::F64X2, f);
            // The offset form adds 2^K with the half and takes it back
            // with the zero point.
            let big = self.offset.map_or(0, |k| 1i64 << k);
            let half = match self.halves {
                Some(h) => {
                    let a = kb.at(h, ch, 8);
                    let v = kb.load(types::F64, a, 0);
                    kb.b.ins().splat(types::F64X2, v)
                }
                None => vconst(kb, types::F64X2, &(0.5 + big as f64).to_le_bytes()),
            };
            let zp = splat(kb, self.k.zp - big);
            let zero = vconst(kb, I64X2, &[0; 8]);
            return Chan::Fp {
                f,
                half,
                zp,
                zero,
                floor: self.offset.is_none(),
            };
        }
        let zp = splat(kb, self.k.zp);
        let a = kb.at(self.mult, ch, 4);
        let m = kb.load(types::I32, a, 0);
        let a = kb.at(self.rsh, ch, 4);
        let s = kb.load(types::I32, a, 0);
        let a = kb.at(self.rnd, ch, 8);
        let r = kb.load(types::I64, a, 0);
        let m = kb.b.ins().splat(I32X4, m);
        let r = kb.b.ins().splat(I64X2, r);
        Chan::Int {
            m,
            s,
            r,
            zp,
            lo: splat(kb, self.lo),
            hi: splat(kb, self.hi),
        }
    }

    /// Four accumulators of one channel requantized: clamped (integer
    /// form), or with the zero point added and the clamp left to the
    /// saturating narrowing of [`Rq::store_row`] (f64 form, whose
    /// results are small).
    fn vector(&self, kb: &mut Kb, acc: Value, c: &Chan) -> Value {
        let k = &self.k;
        let (m, s, r, zp, clo, chi) = match *c {
            Chan::Fp {
                f,
                half,
                zp,
                zero,
                floor,
            } => {
                let a8 = cast(kb, I8X16, acc);
                let up = kb.b.ins().shuffle(a8, a8, k.upper);
                let up = cast(kb, I32X4, up);
                let half = |kb: &mut Kb, v: Value| {
                    let w = kb.b.ins().swiden_low(v);
                    let d = kb.b.ins().fcvt_from_sint(types::F64X2, w);
                    let d = kb.b.ins().fma(d, f, half);
                    let d = if floor { kb.b.ins().floor(d) } else { d };
                    let i = kb.b.ins().x86_cvtt2dq(I64X2, d);
                    let n = kb.b.ins().snarrow(i, zero);
                    cast(kb, I8X16, n)
                };
                let lo = half(kb, acc);
                let hi = half(kb, up);
                let q = kb.b.ins().shuffle(lo, hi, k.lows);
                let q = cast(kb, I32X4, q);
                return kb.b.ins().iadd(q, zp);
            }
            Chan::Int {
                m,
                s,
                r,
                zp,
                lo,
                hi,
            } => (m, s, r, zp, lo, hi),
        };
        let half = |kb: &mut Kb, high: bool| {
            let (a, b) = if high {
                (kb.b.ins().swiden_high(acc), kb.b.ins().swiden_high(m))
            } else {
                (kb.b.ins().swiden_low(acc), kb.b.ins().swiden_low(m))
            };
            let p = kb.b.ins().imul(a, b);
            let p = kb.b.ins().iadd(p, r);
            let p = kb.b.ins().ushr_imm_s(p, 31);
            cast(kb, I8X16, p)
        };
        let lo = half(kb, false);
        let hi = half(kb, true);
        let q = kb.b.ins().shuffle(lo, hi, k.evens);
        let q = cast(kb, I32X4, q);
        let q = kb.b.ins().sshr(q, s);
        let q = kb.b.ins().iadd(q, zp);
        let q = kb.b.ins().smax(q, clo);
        kb.b.ins().smin(q, chi)
    }

    /// Narrows requantized vectors of consecutive positions and stores
    /// them at `dst`, four vectors per 16-byte store; only the first
    /// `valid` positions of the last vector when it is partial.
    fn store_row(&self, kb: &mut Kb, qs: &[Value], dst: Value, valid_last: usize) {
        let narrow8 = |kb: &mut Kb, a: Value, b: Value| {
            if self.y == DType::U8 {
                kb.b.ins().unarrow(a, b)
            } else {
                kb.b.ins().snarrow(a, b)
            }
        };
        let n = qs.len();
        for (ci, chunk) in qs.chunks(4).enumerate() {
            let base = ci * 4;
            let n16: Vec<Value> = chunk
                .chunks(2)
                .map(|p| {
                    let b = if p.len() == 2 { p[1] } else { p[0] };
                    kb.b.ins().snarrow(p[0], b)
                })
                .collect();
            let b8 = if n16.len() == 2 { n16[1] } else { n16[0] };
            let mut v8 = narrow8(kb, n16[0], b8);
            if self.k.bytes {
                let l = vconst(kb, I8X16, &[self.lo as u8]);
                let h = vconst(kb, I8X16, &[self.hi as u8]);
                v8 = if self.y == DType::U8 {
                    let v = kb.b.ins().umax(v8, l);
                    kb.b.ins().umin(v, h)
                } else {
                    let v = kb.b.ins().smax(v8, l);
                    kb.b.ins().smin(v, h)
                };
            }
            let last_partial = base + chunk.len() == n && valid_last < L;
            let at = kb.off(dst, (base * L) as i64);
            if !last_partial && chunk.len() == 4 {
                kb.store(v8, at, 0);
                continue;
            }
            let bytes = if last_partial {
                (chunk.len() - 1) * L + valid_last
            } else {
                chunk.len() * L
            };
            let mut o = 0;
            while o < bytes {
                if o % 4 == 0 && bytes - o >= 4 {
                    let w = cast(kb, I32X4, v8);
                    let w = kb.b.ins().extractlane(w, (o / 4) as u8);
                    kb.store(w, at, o as i64);
                    o += 4;
                } else {
                    let b = kb.b.ins().extractlane(v8, o as u8);
                    kb.store(b, at, o as i64);
                    o += 1;
                }
            }
        }
    }
}

/// The per-channel values of [`Rq::vector`] (the f64 scale, or the
/// integer multiplier, shift and rounding constant) and the store's
/// constants.
#[derive(Clone, Copy)]
enum Chan {
    Fp {
        f: Value,
        half: Value,
        zp: Value,
        zero: Value,
        /// Round down explicitly (no offset: sums may be negative).
        floor: bool,
    },
    Int {
        m: Value,
        s: Value,
        r: Value,
        zp: Value,
        lo: Value,
        hi: Value,
    },
}

/// The f64 requantization is available: x86-64 (`cvttpd2dq`) with FMA
/// (which implies the SSE4.1 `roundpd` of `floor`).
fn fp_ok(kb: &Kb) -> bool {
    kb.sh.fma && kb.sh.module.isa().name() == "x64"
}

/// Every channel's `bound * |mult| + 2^(total - 1)` is below 2^53, so the
/// f64 form computes without rounding (see [`Rq`]).
fn fp_exact(bound: &[i64], mult: &[i64], total: &[i64]) -> bool {
    bound.len() == mult.len()
        && bound.iter().zip(mult).zip(total).all(|((&b, &m), &t)| {
            (1..=53).contains(&t)
                && (b as i128) * (m as i128).abs() + (1i128 << (t - 1)) < (1i128 << 53)
        })
}

/// The offset f64 form: the smallest `K` with `2^K` above every
/// channel's `|acc| * mult * 2^-total + 1/2`, when every
/// `acc * mult + 2^(total - 1) + 2^(K + total)` (a positive integer)
/// stays below 2^53 and `2^(K + 1)` fits an i32. Then
/// `acc * (mult * 2^-total) + (1/2 + 2^K)` is computed without rounding
/// and is positive, so truncating it (`cvttpd2dq`) is the floor: one
/// instruction fewer per two lanes than [`fp_exact`]'s explicit floor,
/// and `2^K` comes back off with the zero point.
fn fp_offset(bound: &[i64], mult: &[i64], total: &[i64]) -> Option<u32> {
    if bound.len() != mult.len() || bound.is_empty() {
        return None;
    }
    // Every channel's `2^total * (|acc| * mult * 2^-total + 1/2)`, and the
    // K that passes it, per channel; the step takes the largest.
    let mut k = 0u32;
    for ((&b, &m), &t) in bound.iter().zip(mult).zip(total) {
        if !(1..=53).contains(&t) {
            return None;
        }
        let top = (b as i128) * (m as i128).abs() + (1i128 << (t - 1));
        while (1i128 << (k as i64 + t)) <= top {
            k += 1;
            if k > 29 {
                return None;
            }
        }
    }
    total.iter().all(|&t| k as i64 + t < 53).then_some(k)
}

/// The range `[smallest, largest]` of the accumulator `bias + sum (x -
/// x_zp) (w - w_zp)` of each of `n` output channels (`w` holds the
/// channels' weights one after another): with `x - x_zp` anywhere in
/// `[a, b]` (the input type's range less the zero point), the largest
/// takes `b` for positive weights and `a` for negative ones, the smallest
/// the other way round. Its larger magnitude ([`bounds_of`]) is, for int8
/// input with zero point -128 (`x - x_zp` in `[0, 255]`), about half of
/// `max|x - x_zp| * sum |w - w_zp|`.
fn acc_ranges(
    w: &Tensor,
    n: usize,
    w_zp: i32,
    bias: Option<&Tensor>,
    x: DType,
    x_zp: i32,
) -> Vec<(i64, i64)> {
    let wv = w.to_i64();
    let per = wv.len() / n.max(1);
    let (lo, hi) = x.int_range().unwrap_or((-128, 127));
    let (a, b) = ((lo - x_zp as i64) as i128, (hi - x_zp as i64) as i128);
    let bv = bias.map(|b| b.to_i64());
    (0..n)
        .map(|c| {
            let bias = bv.as_ref().map_or(0, |b| b.get(c).copied().unwrap_or(0)) as i128;
            let (mut top, mut bot) = (bias, bias);
            for &v in &wv[c * per..(c + 1) * per] {
                let d = (v - w_zp as i64) as i128;
                top += (d * a).max(d * b);
                bot += (d * a).min(d * b);
            }
            let c = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            (c(bot), c(top))
        })
        .collect()
}

/// The largest magnitude of each range.
fn bounds_of(r: &[(i64, i64)]) -> Vec<i64> {
    r.iter()
        .map(|&(lo, hi)| {
            lo.unsigned_abs()
                .max(hi.unsigned_abs())
                .min(i64::MAX as u64) as i64
        })
        .collect()
}

/// How a tile walks the reduction: `outer` iterations `stride` elements
/// apart, each reading the vectors at every inner offset (elements of the
/// copy) in order, then `tail` offsets once more.
struct Walk {
    outer: usize,
    stride: usize,
    inner: Vec<usize>,
    tail: Vec<usize>,
}

/// Accumulates one register tile: `cb` channels by `tv` vectors at copy
/// element `q0 * d`, weights `[group][channel]` from `wk0`, starting from
/// the bias of channels `ch0..ch0 + cb`. Returns the accumulators
/// `[channel][vector]`.
#[allow(clippy::too_many_arguments)]
fn tile(
    kb: &mut Kb,
    d: usize,
    cb: usize,
    tv: usize,
    copy: Value,
    q0: Value,
    walk: &Walk,
    wk0: Value,
    bias: Value,
    ch0: Value,
) -> Result<Vec<Vec<Value>>> {
    let eb = qdot::elem_bytes(d) as i64;
    let mut vars = Vec::with_capacity(cb);
    let ba = kb.at(bias, ch0, 4);
    let bw = words_of(kb, I32X4, ba, 0, cb);
    for r in 0..cb {
        let b = lane_splat(kb, I32X4, bw[r / L], r % L);
        vars.push((0..tv).map(|_| kb.var(I32X4, b)).collect::<Vec<_>>());
    }
    let xt = kb.at(copy, q0, d as i64 * eb);
    let group = |kb: &mut Kb, xa: Value, wk: Value, wofs: i64| {
        let xs: Vec<Value> = (0..tv)
            .map(|v| kb.load(vty(d), xa, (v * 16) as i64))
            .collect();
        let ws = words_of(kb, vty(d), wk, wofs, cb);
        for (r, row) in vars.iter().enumerate() {
            let w = lane_splat(kb, vty(d), ws[r / L], r % L);
            for (v, &x) in xs.iter().enumerate() {
                let a = kb.get(row[v]);
                let n = dot(kb, d, a, x, w);
                kb.set(row[v], n);
            }
        }
    };
    let per = (walk.inner.len() * cb * 4) as i64;
    if walk.outer > 0 && !walk.inner.is_empty() && walk.outer * walk.inner.len() <= UNROLL_GROUPS {
        // Few groups: straight-line code, every address a constant offset.
        for o in 0..walk.outer {
            let xo = kb.off(xt, (o * walk.stride) as i64 * eb);
            let wk = kb.off(wk0, o as i64 * per);
            for (i, &off) in walk.inner.iter().enumerate() {
                let xa = kb.off(xo, off as i64 * eb);
                group(kb, xa, wk, (i * cb * 4) as i64);
            }
        }
    } else if walk.outer > 0 && !walk.inner.is_empty() {
        kb.for_range(0, walk.outer as i64, 1, |kb, o| {
            let xo = kb.at(xt, o, walk.stride as i64 * eb);
            let wk = kb.at(wk0, o, per);
            for (i, &off) in walk.inner.iter().enumerate() {
                let xa = kb.off(xo, off as i64 * eb);
                group(kb, xa, wk, (i * cb * 4) as i64);
            }
            Ok(())
        })?;
    }
    if !walk.tail.is_empty() {
        let xo = kb.off(xt, (walk.outer * walk.stride) as i64 * eb);
        let wk = kb.off(wk0, walk.outer as i64 * per);
        for (i, &off) in walk.tail.iter().enumerate() {
            let xa = kb.off(xo, off as i64 * eb);
            group(kb, xa, wk, (i * cb * 4) as i64);
        }
    }
    Ok(vars
        .iter()
        .map(|row| row.iter().map(|&v| kb.get(v)).collect())
        .collect())
}

/// Tiles of `vectors` vectors over a grid's `vecs` vectors: the number of
/// full tiles in the loop and the vectors of the static remainder, which
/// holds the grid's last, partial vector when there is one.
fn tiling(vecs: usize, vectors: usize, partial: bool) -> (usize, usize) {
    let (mut full, mut rem) = (vecs / vectors, vecs % vectors);
    if partial && rem == 0 && full > 0 {
        full -= 1;
        rem = vectors;
    }
    (full, rem)
}

/// A table of 32-bit words, with 16 bytes of zeros past the end: the
/// vector loads of [`words_of`] read up to three words past a run.
fn words_table(kb: &mut Kb, w: &[i32]) -> Result<Value> {
    let mut b: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    b.extend([0u8; 16]);
    kb.table(b, 64)
}

/// Reduction groups up to which a tile's reduction is straight-line code
/// rather than a loop.
const UNROLL_GROUPS: usize = 16;

/// The `n` consecutive 32-bit words at `addr + off` as vectors of four
/// (one 16-byte load per four words; the last may read past the run,
/// which [`words_table`] keeps readable).
fn words_of(kb: &mut Kb, ty: Type, addr: Value, off: i64, n: usize) -> Vec<Value> {
    (0..n.div_ceil(L))
        .map(|j| kb.load(ty, addr, off + (j * 16) as i64))
        .collect()
}

/// Word `lane` of `v` broadcast to every lane (one `pshufd`).
fn lane_splat(kb: &mut Kb, ty: Type, v: Value, lane: usize) -> Value {
    let v8 = cast(kb, I8X16, v);
    let m: Vec<u8> = (0..16u8).map(|b| 4 * lane as u8 + b % 4).collect();
    let imm = kb.b.func.dfg.immediates.push(ConstantData::from(m));
    let s = kb.b.ins().shuffle(v8, v8, imm);
    cast(kb, ty, s)
}

fn weight<'m>(
    kb: &Kb<'_, '_, 'm>,
    st: &Step,
    a: &Args,
    k: usize,
) -> Result<std::borrow::Cow<'m, Tensor>> {
    a.weight(kb, k).ok_or_else(|| {
        super::unsupported(st, format!("kernel {} with computed weights", st.kernel))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_bounds_take_each_weight_at_its_worst_input() {
        let w = Tensor::from_i64(DType::I8, vec![2, 3], vec![1, -2, 3, -4, 5, 0]).unwrap();
        let b = Tensor::from_i64(DType::I32, vec![2], vec![-10, 7]).unwrap();
        // int8 with zero point -3: x - x_zp in [-125, 130]. Channel 0
        // (1, -2, 3): largest -10 + 4 * 130 + 2 * 125, smallest
        // -10 - 4 * 125 - 2 * 130; channel 1 (-4, 5, 0): largest
        // 7 + 5 * 130 + 4 * 125, smallest 7 - 5 * 125 - 4 * 130.
        assert_eq!(
            bounds_of(&acc_ranges(&w, 2, 0, Some(&b), DType::I8, -3)),
            vec![10 + 4 * 125 + 2 * 130, 7 + 5 * 130 + 4 * 125]
        );
        // uint8 with zero point 200 (x - x_zp in [-200, 55]) and a weight
        // zero point of 1: weights (0, -3, 2) and (-5, 4, -1).
        assert_eq!(
            bounds_of(&acc_ranges(&w, 2, 1, None, DType::U8, 200)),
            vec![3 * 200 + 2 * 55, 6 * 200 + 4 * 55]
        );
        // int8 with zero point -128 (x - x_zp in [0, 255]): the larger of
        // the positive and negative weight sums, not their total.
        let w = Tensor::from_i64(DType::I8, vec![1, 4], vec![100, -60, 27, -127]).unwrap();
        assert_eq!(
            acc_ranges(&w, 1, 0, None, DType::I8, -128),
            vec![(-187 * 255, 127 * 255)]
        );
    }

    #[test]
    fn offset_form_needs_room_for_the_offset() {
        let m = 1i64 << 30;
        // |acc| * m + 2^30 below 2^(K + 31): |acc| = 2^19 needs K = 19,
        // 2^20 - 1 (2^50 exactly) already 20.
        assert_eq!(fp_offset(&[1 << 19], &[m], &[31]), Some(19));
        assert_eq!(fp_offset(&[(1 << 20) - 1], &[m], &[31]), Some(20));
        // 2^20 itself needs K = 20 too: 20 + 31 < 53.
        assert_eq!(fp_offset(&[1 << 20], &[m], &[31]), Some(20));
        // 2^21 needs K = 21 and 21 + 31 = 52 < 53; 2^22 needs 22: no.
        assert_eq!(fp_offset(&[1 << 21], &[m], &[31]), Some(21));
        assert_eq!(fp_offset(&[1 << 22], &[m], &[31]), None);
        // The step takes the largest K; every channel's K + total < 53.
        assert_eq!(fp_offset(&[1, 1 << 20], &[m, m], &[31, 31]), Some(20));
        assert_eq!(fp_offset(&[1 << 10, 1], &[m, m], &[31, 45]), None);
        // Large results: K stays below 30 (2^(K + 1) fits an i32).
        assert_eq!(fp_offset(&[1 << 20], &[m], &[2]), None);
        assert_eq!(fp_offset(&[], &[], &[]), None);
    }

    #[test]
    fn f64_form_only_where_it_cannot_round() {
        let m = 1i64 << 30;
        // 2^22 * 2^30 + 2^30 < 2^53.
        assert!(fp_exact(&[1 << 22], &[m], &[31]));
        // 2^23 * 2^30 + 2^30 > 2^53.
        assert!(!fp_exact(&[1 << 23], &[m], &[31]));
        // The rounding constant alone: 2^53 at a total shift of 54.
        assert!(!fp_exact(&[1], &[m], &[54]));
        assert!(fp_exact(&[1], &[m], &[53]));
        // One channel out of range sends the whole step to the integer form.
        assert!(!fp_exact(&[1, 1 << 23], &[m, m], &[31, 31]));
    }
}
