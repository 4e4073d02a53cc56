//! Integer average pooling of whole planes: a window that covers the
//! plane, no padding, one output per plane (the global average pooling
//! MLPerf Tiny's KWS and VWW write as `AveragePool`). Each plane's bytes
//! are summed 16 at a time by the unsigned-by-signed dot product against
//! ones (one `vpdpbusd` with VNNI), int8 made unsigned by flipping the top
//! bit and the `128 * n` taken back off; the mean rounds to nearest, ties
//! away from zero, as the scalar kernel and the interpreter do.

use cranelift_codegen::ir::{ConstantData, InstBuilder, Type, Value, types};
use nnc_ir::op::{PoolAttrs, PoolKind};
use nnc_ir::{DType, TensorType};

use super::Args;
use super::kb::Kb;
use crate::error::Result;

const I8X16: Type = types::I8X16;
const I32X4: Type = types::I32X4;

/// The pooling is a mean of whole 8-bit planes this kernel computes: the
/// window is the plane (no padding, dilation 1, one output per plane) and
/// the tensor holds at least one vector (short planes read past their own
/// bytes, within the tensor).
pub fn applies(a: &PoolAttrs, x: &TensorType, y: &TensorType) -> bool {
    let sp = x.dims.get(2..).unwrap_or(&[]);
    matches!(x.dtype, DType::I8 | DType::U8)
        && y.dtype == x.dtype
        && a.kind == PoolKind::Avg
        && !sp.is_empty()
        && a.kernel == sp
        && a.pads.iter().all(|&p| p == 0)
        && a.dilations.iter().all(|&d| d == 1)
        && y.dims.len() == x.dims.len()
        && y.dims[2..].iter().all(|&d| d == 1)
        && x.dims.iter().product::<usize>() >= 16
}

/// Renders the mean of every plane (see [`applies`]).
pub fn mean_planes(kb: &mut Kb, x: &TensorType, args: &Args) -> Result<()> {
    let n: usize = x.dims[2..].iter().product();
    let planes = x.dims[0] * x.dims[1];
    let signed = x.dtype == DType::I8;
    let (xb, yb) = (args.x(kb, 0)?, args.outs[0]);
    // The last plane of a tensor of short planes reads backwards.
    let forward = if n < 16 { planes - 1 } else { planes };
    if forward > 0 {
        kb.for_range(0, forward as i64, 1, |kb, p| {
            plane(kb, xb, yb, p, n, signed, false);
            Ok(())
        })?;
    }
    if forward < planes {
        let p = kb.ci(forward as i64);
        plane(kb, xb, yb, p, n, signed, true);
    }
    Ok(())
}

/// A vector constant of `ty` from its 16 bytes.
fn vconst(kb: &mut Kb, ty: Type, b: Vec<u8>) -> Value {
    let c = kb.b.func.dfg.constants.insert(ConstantData::from(b));
    kb.b.ins().vconst(ty, c)
}

/// The mean of plane `p` (`n` bytes) stored to output `p`. Whole vectors,
/// then the rest from one load that ends at the plane's end (or, for a
/// plane shorter than a vector, starts at its start; `back`: ends at its
/// end) with the bytes outside the plane masked to zero.
fn plane(kb: &mut Kb, xb: Value, yb: Value, p: Value, n: usize, signed: bool, back: bool) {
    let xp = kb.at(xb, p, n as i64);
    let ones = vconst(kb, I8X16, vec![1; 16]);
    let mut acc = vconst(kb, I32X4, vec![0; 16]);
    let load = |kb: &mut Kb, off: i64| {
        let v = kb.load(I8X16, xp, off);
        if signed {
            let k = vconst(kb, I8X16, vec![0x80; 16]);
            kb.b.ins().bxor(v, k)
        } else {
            v
        }
    };
    for i in 0..n / 16 {
        let v = load(kb, (i * 16) as i64);
        acc = super::qdot::dot(kb, 4, acc, v, ones);
    }
    let rem = n % 16;
    if rem > 0 {
        // Keep the bytes of the plane not summed yet: the top `rem` of a
        // load ending at the plane's end, or the first `n` of one at its
        // start.
        let (off, keep): (i64, Vec<bool>) = if n >= 16 || back {
            (n as i64 - 16, (0..16).map(|b| b >= 16 - rem).collect())
        } else {
            (0, (0..16).map(|b| b < rem).collect())
        };
        let v = load(kb, off);
        let m = vconst(
            kb,
            I8X16,
            keep.iter().map(|&k| if k { 0xff } else { 0 }).collect(),
        );
        let v = kb.b.ins().band(v, m);
        acc = super::qdot::dot(kb, 4, acc, v, ones);
    }
    let s = kb.b.ins().iadd_pairwise(acc, acc);
    let s = kb.b.ins().iadd_pairwise(s, s);
    let s = kb.b.ins().extractlane(s, 0);
    let s = kb.b.ins().sextend(types::I64, s);
    let s = if signed {
        kb.b.ins().iadd_imm_s(s, -128 * n as i64)
    } else {
        s
    };
    let cnt = kb.ci(n as i64);
    let q = super::integer::round_div(kb, s, cnt);
    let q = kb.b.ins().ireduce(types::I8, q);
    let yp = kb.at(yb, p, 1);
    kb.store(q, yp, 0);
}
