//! The C host rendering of a transposed convolution whose taps do not
//! overlap (kernel equal to the stride, no padding, dilation or output
//! padding, one group: U-Net's 2x2 stride-2 upsampling): a sub-pixel
//! decomposition. Output pixel `(i * s + a, j * s + b)` of channel `m` is
//! `sum_c w[c, m, a, b] * x[c, i, j]`, so every (channel, tap) pair is a
//! row of one matrix product over the input pixels: tiles of `R` such rows
//! by `V` input columns accumulate in registers (weights packed per row at
//! generation time) and each result is stored once at its output pixel.
//! The scatter kernel instead adds every product into the output: 25x
//! slower on U-Net's 128-channel 16x16 -> 32x32 layer.

use nnc_ir::op::ConvTransposeAttrs;
use nnc_ir::{Tensor, TensorType};

use super::Helpers;
use super::epilogue::Epi;
use super::vector::fma_step;
use super::writer::W;

/// Rows (channel, tap) per register tile.
const ROWS: usize = 8;

/// Does the sub-pixel form apply? Non-overlapping taps of a 2-D f32
/// transposed convolution with constant weights, not a partial sum.
pub(super) fn applies(a: &ConvTransposeAttrs, x: &TensorType, wt: &TensorType, epi: &Epi) -> bool {
    x.rank() == 4
        && wt.rank() == 4
        && a.group == 1
        && !epi.accumulate
        && (0..2).all(|d| {
            wt.dims[2 + d] == a.strides[d]
                && a.dilations[d] == 1
                && a.pads[d] == 0
                && a.pads[2 + d] == 0
                && a.output_padding.get(d).copied().unwrap_or(0) == 0
        })
}

/// Emits the kernel (see the module doc). Params: `in0` x, optional bias
/// (in the epilogue), `out0` y; the weights are packed.
pub(super) fn render(
    w: &mut W,
    x: &TensorType,
    wt: &Tensor,
    y: &TensorType,
    epi: &Epi,
    h: &mut Helpers,
) {
    let (batch, c, ih, iw) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let m = y.dims[1];
    let (kh, kw) = (wt.dims()[2], wt.dims()[3]);
    let (oh, ow) = (y.dims[2], y.dims[3]);
    let kk = kh * kw;
    let rows = m * kk;
    let nrb = rows.div_ceil(ROWS);
    // Packed [row block][c][ROWS], row = m * kk + tap; rows past the end
    // are zero.
    let wv = wt.to_f64();
    let mut packed = Vec::with_capacity(nrb * c * ROWS);
    for rb in 0..nrb {
        for ic in 0..c {
            for r in 0..ROWS {
                let row = rb * ROWS + r;
                packed.push(if row < rows {
                    let (o, tap) = (row / kk, row % kk);
                    wv[(ic * m + o) * kk + tap]
                } else {
                    0.0
                });
            }
        }
    }
    let wp = h.global_f32("packed_ct", &packed);
    h.need("nnc_fma");
    let vw = [32, 16, 8, 4, 2, 1]
        .into_iter()
        .find(|&v| v <= iw)
        .unwrap_or(1);
    let nt = iw.div_ceil(vw);
    let (isz, osz) = (ih * iw, oh * ow);
    w.for_("n", 0, batch);
    w.line(format!("const float *xn = in0 + n * {};", c * isz));
    w.for_("rb", 0, nrb);
    w.line(format!("const float *wb = {wp} + rb * {};", c * ROWS));
    w.for_("i", 0, ih);
    w.for_("t", 0, nt);
    // The last tile is shifted left to end at the row's end.
    w.line(format!(
        "const size_t j0 = t * {vw} + {vw} <= {iw} ? t * {vw} : {};",
        iw - vw
    ));
    let lanes = h.lanes;
    let nv = if lanes > 0 && vw.is_multiple_of(lanes) {
        vw / lanes
    } else {
        0
    };
    w.line(format!("float acc[{ROWS}][{vw}];"));
    if nv > 0 {
        // Vector accumulators (see [`super::vector`]): GCC vectorizes the
        // array form across the rows instead (13 GFLOP/s on U-Net).
        h.need("nnc_vec");
        for r in 0..ROWS {
            let vs: Vec<String> = (0..nv)
                .map(|v| format!("v{r}_{v} = NNC_VSPLAT(0.0f)"))
                .collect();
            w.line(format!("nnc_vf {};", vs.join(", ")));
        }
        w.for_("ic", 0, c);
        w.line(format!(
            "const float *xr = xn + ic * {isz} + i * {iw} + j0;"
        ));
        w.line(format!("const float *wr = wb + ic * {ROWS};"));
        fma_step(
            w,
            "v",
            ROWS,
            nv,
            |v| format!("xr + {}", v * lanes),
            |r| format!("wr[{r}]"),
        );
        w.close(); // ic
        for r in 0..ROWS {
            for v in 0..nv {
                w.line(format!("*(nnc_vf *)(acc[{r}] + {}) = v{r}_{v};", v * lanes));
            }
        }
    } else {
        w.for_("r", 0, ROWS);
        w.for_("j", 0, vw);
        w.line("acc[r][j] = 0.0f;");
        w.close();
        w.close();
        w.for_("ic", 0, c);
        w.line(format!(
            "const float *xr = xn + ic * {isz} + i * {iw} + j0;"
        ));
        w.line(format!("const float *wr = wb + ic * {ROWS};"));
        w.for_("r", 0, ROWS);
        w.line("const float wv = wr[r];");
        w.for_("j", 0, vw);
        w.line("acc[r][j] = NNC_FMA(wv, xr[j], acc[r][j]);");
        w.close();
        w.close();
        w.close(); // ic
    }
    w.for_("r", 0, ROWS);
    w.line(format!("const size_t row = rb * {ROWS} + r;"));
    if !rows.is_multiple_of(ROWS) {
        w.line(format!("if (row >= {rows}) break;"));
    }
    w.line(format!(
        "const size_t o = row / {kk}, a = (row % {kk}) / {kw}, b = row % {kw};"
    ));
    let init = epi.init("yr", "o");
    w.line(format!(
        "float *yr = out0 + (n * {m} + o) * {osz} + (i * {kh} + a) * {ow} + j0 * {kw} + b;"
    ));
    w.line(format!("const float b0 = {init};"));
    w.for_("j", 0, vw);
    w.line("const float v = acc[r][j] + b0;");
    w.line(format!(
        "yr[j * {kw}] = {};",
        epi.apply("v", &format!("yr + j * {kw}"))
    ));
    w.close();
    w.close(); // r
    w.close(); // t
    w.close(); // i
    w.close(); // rb
    w.close(); // n
}
