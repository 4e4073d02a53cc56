//! Matrix kernels in C: Gemm and batched MatMul with plain loops, and the
//! packed kernel for a constant right-hand side (column blocks packed at
//! generation time, `alpha` and `beta * C` folded in).

use nnc_ir::op::GemmAttrs;
use nnc_ir::program::MatMulPacked;
use nnc_ir::{Tensor, TensorType};

use super::Helpers;
use super::epilogue::Epi;
use super::writer::{W, ctype, flit, lit};

/// Applies the epilogue to `n` contiguous results at `ptr`.
fn epilogue_loop(w: &mut W, epi: &Epi, ptr: &str, n: usize) {
    if epi.is_identity() {
        return;
    }
    w.for_("p", 0, n);
    let e = epi.apply(&format!("{ptr}[p]"), &format!("{ptr} + p"));
    w.line(format!("{ptr}[p] = {e};"));
    w.close();
}

/// Gemm. Params: `in0` A, `in1` B, optional `in2` C, `out0` Y `[M, N]`.
pub(super) fn gemm(
    w: &mut W,
    a: &GemmAttrs,
    at: &TensorType,
    ct: Option<&TensorType>,
    y: &TensorType,
    epi: &Epi,
) {
    let t = ctype(y.dtype);
    let (m, nn) = (y.dims[0], y.dims[1]);
    let k = if a.trans_a { at.dims[0] } else { at.dims[1] };
    let aidx = |i: &str, p: &str| {
        if a.trans_a {
            format!("{p} * {m} + {i}")
        } else {
            format!("{i} * {k} + {p}")
        }
    };
    let alpha = flit(a.alpha as f64, y.dtype);
    let beta = flit(a.beta as f64, y.dtype);
    if epi.accumulate {
        // A later slice adds to the partial sum already in the output.
    } else if let Some(ct) = ct {
        // C broadcast to [M, N]: row and column strides.
        let (cs_row, cs_col) = crate::tables::gemm_c_strides(&ct.dims, m, nn);
        w.for_("i", 0, m);
        w.for_("j", 0, nn);
        w.line(format!(
            "out0[i * {nn} + j] = {beta} * in2[i * {cs_row} + j * {cs_col}];"
        ));
        w.close();
        w.close();
    } else {
        w.for_("i", 0, m * nn);
        w.line(format!("out0[i] = {};", lit(0.0, y.dtype)));
        w.close();
    }
    w.for_("i", 0, m);
    w.line(format!("{t} *yr = out0 + i * {nn};"));
    if a.trans_b {
        // B is [N, K]: dot products along contiguous rows.
        w.for_("j", 0, nn);
        w.line(format!("const {t} *br = in1 + j * {k};"));
        w.line(format!("{t} acc = {};", lit(0.0, y.dtype)));
        w.for_("p", 0, k);
        w.line(format!("acc += in0[{}] * br[p];", aidx("i", "p")));
        w.close();
        w.line(format!("yr[j] += {alpha} * acc;"));
        w.close();
    } else {
        w.for_("p", 0, k);
        w.line(format!("const {t} av = {alpha} * in0[{}];", aidx("i", "p")));
        w.line(format!("const {t} *br = in1 + p * {nn};"));
        w.for_("j", 0, nn);
        w.line("yr[j] += av * br[j];");
        w.close();
        w.close();
    }
    epilogue_loop(w, epi, "yr", nn);
    w.close();
}

/// MatMul with numpy batching. Params: `in0` A, `in1` B, `out0` Y.
pub(super) fn matmul(w: &mut W, at: &TensorType, bt: &TensorType, y: &TensorType, epi: &Epi) {
    let t = ctype(y.dtype);
    let mb = crate::tables::matmul_batches(at, bt);
    let (m, k, n) = (mb.m, mb.k, mb.n);
    let nb = mb.a_off.len();
    let int = !y.dtype.is_float();
    let acc_t = if int { "uint64_t" } else { t };
    let list = |v: &[usize]| {
        v.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    w.line(format!(
        "static const size_t aoff[{nb}] = {{{}}};",
        list(&mb.a_off)
    ));
    w.line(format!(
        "static const size_t boff[{nb}] = {{{}}};",
        list(&mb.b_off)
    ));
    w.for_("bi", 0, nb);
    w.line(format!("const {t} *a = in0 + aoff[bi];"));
    w.line(format!("const {t} *b = in1 + boff[bi];"));
    w.line(format!("{t} *yb = out0 + bi * {};", m * n));
    w.for_("i", 0, m);
    if int {
        w.for_("j", 0, n);
        if epi.accumulate {
            w.line(format!("{acc_t} acc = (uint64_t)yb[i * {n} + j];"));
        } else {
            w.line(format!("{acc_t} acc = 0;"));
        }
        w.for_("p", 0, k);
        w.line(format!(
            "acc += (uint64_t)a[i * {k} + p] * (uint64_t)b[p * {n} + j];"
        ));
        w.close();
        w.line(format!("yb[i * {n} + j] = ({t})acc;"));
        w.close();
    } else {
        if !epi.accumulate {
            w.for_("j", 0, n);
            w.line(format!("yb[i * {n} + j] = {};", lit(0.0, y.dtype)));
            w.close();
        }
        w.for_("p", 0, k);
        w.line(format!("const {t} av = a[i * {k} + p];"));
        w.for_("j", 0, n);
        w.line(format!("yb[i * {n} + j] += av * b[p * {n} + j];"));
        w.close();
        w.close();
    }
    if !epi.is_identity() {
        w.line(format!("{t} *yr = yb + i * {n};"));
        epilogue_loop(w, epi, "yr", n);
    }
    w.close();
    w.close();
}

/// The operands of a packed matrix product: `y[i, :] = bias + sum_k
/// a[i * sa_row + k * sa_k] * B[k, :]`.
pub(super) struct Packed<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub sa_row: usize,
    pub sa_k: usize,
    /// `beta * C` per output column.
    pub bias: Vec<f64>,
    /// `alpha * B[k, j]`.
    pub b: Box<dyn Fn(usize, usize) -> f64 + 'a>,
}

impl<'a> Packed<'a> {
    /// The packed view of a Gemm or 2-D MatMul step whose `B` values are
    /// `bv` and whose C (if any) is the constant `c`.
    pub fn of(
        op: &nnc_ir::Op,
        at: &TensorType,
        y: &TensorType,
        bv: &'a [f64],
        c: Option<(&TensorType, &Tensor)>,
    ) -> Packed<'a> {
        let (m, n) = (y.dims[0], y.dims[1]);
        match op {
            nnc_ir::Op::Gemm(g) => {
                let k = if g.trans_a { at.dims[0] } else { at.dims[1] };
                let bias: Vec<f64> = match c {
                    None => vec![0.0; n],
                    Some((ct, c)) => {
                        let (_, col) = crate::tables::gemm_c_strides(&ct.dims, m, n);
                        let cv = c.to_f64();
                        (0..n)
                            .map(|j| (g.beta as f64 * cv[j * col]) as f32 as f64)
                            .collect()
                    }
                };
                let (trans_b, alpha) = (g.trans_b, g.alpha as f64);
                let (sa_row, sa_k) = if g.trans_a { (1, m) } else { (k, 1) };
                Packed {
                    m,
                    n,
                    k,
                    sa_row,
                    sa_k,
                    bias,
                    b: Box::new(move |kk, j| {
                        alpha
                            * if trans_b {
                                bv[j * k + kk]
                            } else {
                                bv[kk * n + j]
                            }
                    }),
                }
            }
            _ => {
                let k = at.dims[1];
                Packed {
                    m,
                    n,
                    k,
                    sa_row: k,
                    sa_k: 1,
                    bias: vec![0.0; n],
                    b: Box::new(move |kk, j| bv[kk * n + j]),
                }
            }
        }
    }
}

/// Packed matrix product: `B` packed as `[column block][k][cols]`, each
/// output row a sweep over `k` broadcasting one element of `A` against a
/// block of columns held in an accumulator array.
pub(super) fn packed(w: &mut W, kp: &MatMulPacked, p: &Packed, epi: &Epi, h: &mut Helpers) {
    let cb = kp.cols;
    let nblk = p.n.div_ceil(cb);
    let mut wp = Vec::with_capacity(nblk * p.k * cb);
    let mut bp = Vec::with_capacity(nblk * cb);
    for blk in 0..nblk {
        for kk in 0..p.k {
            for j in 0..cb {
                let col = blk * cb + j;
                wp.push(if col < p.n {
                    (p.b)(kk, col) as f32 as f64
                } else {
                    0.0
                });
            }
        }
        for j in 0..cb {
            let col = blk * cb + j;
            bp.push(p.bias.get(col).copied().unwrap_or(0.0));
        }
    }
    let wname = h.global_f32("packed_b", &wp);
    let bname = h.global_f32("packed_c", &bp);
    h.need("nnc_fma");
    w.for_("i", 0, p.m);
    w.line(format!("const float *ar = in0 + i * {};", p.sa_row));
    w.for_("blk", 0, nblk);
    w.line(format!("const float *bb = {wname} + blk * {};", p.k * cb));
    w.line(format!("float *yr = out0 + i * {} + blk * {cb};", p.n));
    w.line(format!(
        "const size_t cols = blk + 1 < {nblk} ? {cb} : {};",
        p.n - (nblk - 1) * cb
    ));
    w.line(format!("float acc[{cb}];"));
    w.for_("j", 0, cb);
    if epi.accumulate {
        w.line("acc[j] = j < cols ? yr[j] : 0.0f;");
    } else {
        w.line(format!("acc[j] = {bname}[blk * {cb} + j];"));
    }
    w.close();
    if kp.unroll > 1 {
        w.line(format!("#pragma GCC unroll {}", kp.unroll));
    }
    w.for_("kk", 0, p.k);
    w.line(format!("const float av = ar[kk * {}];", p.sa_k));
    w.line(format!("const float *br = bb + kk * {cb};"));
    w.for_("j", 0, cb);
    w.line("acc[j] = NNC_FMA(av, br[j], acc[j]);");
    w.close();
    w.close();
    w.open("for (size_t j = 0; j < cols; ++j)");
    let e = epi.apply("acc[j]", "yr + j");
    w.line(format!("yr[j] = {e};"));
    w.close();
    w.close(); // blk
    w.close(); // i
}
