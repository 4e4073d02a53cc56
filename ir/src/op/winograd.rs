//! Winograd convolution F(m, 3): a 2-D, stride-1, group-1 convolution
//! with a 3x3 (or 1x3 / 3x1) kernel computed on `m x m` output tiles as
//! `A^T [ (G g G^T) . (B^T d B) ] A`, the channel sum of the elementwise
//! products being one small matrix product per tile element. The weight
//! input is the transformed weight `U = G g G^T` (folded at compile time
//! by the e-graph rule that creates the op), laid out
//! `[alpha_h * alpha_w, C, M]`: one `[C x M]` matrix per tile element.
//!
//! The matrices are the Toom-Cook ones of Lavin and Gray ("Fast
//! Algorithms for Convolutional Neural Networks", 2016): F(2,3) on the
//! points 0, 1, -1, infinity and F(4,3) on 0, 1, -1, 2, -2, infinity. The
//! reference evaluation below runs the algorithm itself (in f64), so the
//! interpreter checks the transformed weights and the tiling, and tests
//! compare it with the direct convolution.

use super::attr::{AttrReader, AttrWriter};
use super::elementwise::UnaryOp;
use super::read_act;
use super::{ConvAttrs, conv::increment};
use crate::dtype::{TensorType, checked_numel};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// Output tile sides the op supports: F(2,3) and F(4,3).
pub const TILES: [usize; 2] = [2, 4];

/// Attributes of `winograd`. Inputs: x `[N, C, H, W]`, the transformed
/// weight u `[alpha_h * alpha_w, C, M]`, optional bias `[M]`.
#[derive(Clone, Debug, PartialEq)]
pub struct WinogradAttrs {
    /// Output tile side `m` of F(m, 3) on every axis whose kernel is 3.
    pub tile: usize,
    /// The convolution's kernel extent per spatial axis (3, or 1 for the
    /// one-dimensional forms 1x3 and 3x1).
    pub kernel: Vec<usize>,
    /// ONNX-ordered pads: begins, then ends.
    pub pads: Vec<usize>,
    /// Activation applied to the result (after the bias).
    pub act: Option<UnaryOp>,
}

/// The one-dimensional transform of one axis: F(m, r) with `alpha = m + r - 1`
/// input points. Matrices are row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis1 {
    pub m: usize,
    pub r: usize,
    pub alpha: usize,
    /// `B^T`, `alpha x alpha`: input tile to transformed tile.
    pub bt: Vec<f64>,
    /// `G`, `alpha x r`: kernel to transformed kernel.
    pub g: Vec<f64>,
    /// `A^T`, `m x alpha`: transformed product to output tile.
    pub at: Vec<f64>,
}

impl Axis1 {
    /// The transform of an axis with kernel extent `k` (3 or 1) and tile `m`.
    pub fn new(k: usize, m: usize) -> Option<Axis1> {
        Some(match (k, m) {
            (1, _) => Axis1 {
                m: 1,
                r: 1,
                alpha: 1,
                bt: vec![1.0],
                g: vec![1.0],
                at: vec![1.0],
            },
            (3, 2) => Axis1 {
                m: 2,
                r: 3,
                alpha: 4,
                #[rustfmt::skip]
                bt: vec![
                    1.0, 0.0, -1.0, 0.0,
                    0.0, 1.0, 1.0, 0.0,
                    0.0, -1.0, 1.0, 0.0,
                    0.0, 1.0, 0.0, -1.0,
                ],
                #[rustfmt::skip]
                g: vec![
                    1.0, 0.0, 0.0,
                    0.5, 0.5, 0.5,
                    0.5, -0.5, 0.5,
                    0.0, 0.0, 1.0,
                ],
                #[rustfmt::skip]
                at: vec![
                    1.0, 1.0, 1.0, 0.0,
                    0.0, 1.0, -1.0, -1.0,
                ],
            },
            (3, 4) => Axis1 {
                m: 4,
                r: 3,
                alpha: 6,
                #[rustfmt::skip]
                bt: vec![
                    4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
                    0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
                    0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
                    0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
                    0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
                    0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
                ],
                #[rustfmt::skip]
                g: vec![
                    0.25, 0.0, 0.0,
                    -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
                    -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
                    1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
                    1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
                    0.0, 0.0, 1.0,
                ],
                #[rustfmt::skip]
                at: vec![
                    1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
                    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
                    0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
                    0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
                ],
            },
            _ => return None,
        })
    }

    /// Nonzero entries of `B^T` and of `A^T`: the additions (or
    /// multiply-adds) of one pass of the input and output transforms.
    pub fn nnz(&self) -> (usize, usize) {
        let nz = |v: &[f64]| v.iter().filter(|x| **x != 0.0).count();
        (nz(&self.bt), nz(&self.at))
    }
}

/// The two axes' transforms and the tile geometry of one `winograd` op.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiling {
    pub h: Axis1,
    pub w: Axis1,
    /// Output size.
    pub oh: usize,
    pub ow: usize,
    /// Tiles per column and per row (the last may overhang the output).
    pub th: usize,
    pub tw: usize,
}

impl Tiling {
    /// Tile elements `alpha_h * alpha_w` (the transformed weight's first dim).
    pub fn elems(&self) -> usize {
        self.h.alpha * self.w.alpha
    }

    pub fn tiles(&self) -> usize {
        self.th * self.tw
    }

    /// Arithmetic of one image with `c` input and `m` output channels:
    /// (products of the batched matrix products, additions of the input
    /// and output transforms).
    pub fn work(&self, c: usize, m: usize) -> (u64, u64) {
        let t = self.tiles() as u64;
        let gemm = t * (self.elems() * c * m) as u64;
        let (bh, ah) = self.h.nnz();
        let (bw, aw) = self.w.nnz();
        let input = bh * self.w.alpha + self.h.alpha * bw;
        let output = ah * self.w.alpha + self.h.m * aw;
        (gemm, t * (input * c + output * m) as u64)
    }
}

impl WinogradAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.usize("tile", self.tile);
        w.usizes("kernel", &self.kernel);
        w.usizes("pad", &self.pads);
        if let Some(act) = &self.act {
            let mut inner = AttrWriter::new();
            act.write_attrs(&mut inner);
            w.nested("act", act.name(), inner);
        }
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        Ok(WinogradAttrs {
            tile: r.usize("tile")?,
            kernel: r.usizes("kernel")?,
            pads: r.usizes("pad")?,
            act: read_act(r)?,
        })
    }

    /// The F(`tile`, 3) form of a convolution, when it has one: f32, 2-D,
    /// group 1, stride 1, dilation 1, kernel 3x3, 1x3 or 3x1.
    pub fn of_conv(a: &ConvAttrs, x: &TensorType, w: &TensorType, tile: usize) -> Option<Self> {
        // The kernels compute f32 (as every fast float kernel here).
        let ok = x.dtype == crate::dtype::DType::F32
            && x.rank() == 4
            && w.rank() == 4
            && a.group == 1
            && a.strides.iter().all(|&s| s == 1)
            && a.dilations.iter().all(|&d| d == 1)
            && TILES.contains(&tile)
            && matches!(w.dims[2..], [3, 3] | [1, 3] | [3, 1]);
        ok.then(|| WinogradAttrs {
            tile,
            kernel: w.dims[2..].to_vec(),
            pads: a.pads.clone(),
            act: a.act,
        })
    }

    /// The per-axis transforms and tiles for input `x`.
    pub fn tiling(&self, x: &TensorType) -> R<Tiling> {
        if !TILES.contains(&self.tile) {
            return Err(format!("tile must be 2 or 4, got {}", self.tile));
        }
        if self.kernel.len() != 2 || self.pads.len() != 4 || x.rank() != 4 {
            return Err("expects a 2-D input, kernel and pads".into());
        }
        let ax = |i: usize| {
            Axis1::new(self.kernel[i], self.tile)
                .ok_or_else(|| format!("kernel extent {} is not 3 or 1", self.kernel[i]))
        };
        let (h, w) = (ax(0)?, ax(1)?);
        if self.kernel == [1, 1] {
            return Err("a 1x1 kernel has no Winograd form".into());
        }
        let out = |i: usize| {
            let padded = x.dims[2 + i] + self.pads[i] + self.pads[2 + i];
            padded
                .checked_sub(self.kernel[i] - 1)
                .filter(|&o| o > 0)
                .ok_or_else(|| format!("kernel exceeds the padded input on axis {i}"))
        };
        let (oh, ow) = (out(0)?, out(1)?);
        Ok(Tiling {
            th: oh.div_ceil(h.m),
            tw: ow.div_ceil(w.m),
            oh,
            ow,
            h,
            w,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let (x, u, b) = match ins {
            [x, u] => (*x, *u, None),
            [x, u, b] => (*x, *u, Some(*b)),
            _ => return Err(format!("expects 2 or 3 inputs, got {}", ins.len())),
        };
        if !x.dtype.is_float() || u.dtype != x.dtype {
            return Err(format!("expects float input and weight, got {x} and {u}"));
        }
        let t = self.tiling(x)?;
        if u.rank() != 3 || u.dims[0] != t.elems() || u.dims[1] != x.dims[1] {
            return Err(format!(
                "transformed weight {u} must be [{}, {}, M]",
                t.elems(),
                x.dims[1]
            ));
        }
        let m = u.dims[2];
        if let Some(b) = b
            && b.dims != [m]
        {
            return Err(format!("bias {b} must have shape [{m}]"));
        }
        if let Some(act) = &self.act {
            act.infer(&[x])?;
        }
        let dims = vec![x.dims[0], m, t.oh, t.ow];
        checked_numel(&dims).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, dims)])
    }

    /// Runs the algorithm in f64: input transform of every (zero-padded)
    /// tile, one product per tile element summed over channels, output
    /// transform, bias and activation.
    pub fn eval(&self, ins: &[&Tensor]) -> R<Tensor> {
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let out = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let t = self.tiling(&tys[0])?;
        let (x, u) = (ins[0].to_f64(), ins[1].to_f64());
        let bias = ins.get(2).map(|b| b.to_f64());
        let (n, c, ih, iw) = (
            tys[0].dims[0],
            tys[0].dims[1],
            tys[0].dims[2],
            tys[0].dims[3],
        );
        let m = out.dims[1];
        let (ah, aw, e) = (t.h.alpha, t.w.alpha, t.elems());
        let mut y = vec![0.0f64; out.len()];
        let mut v = vec![0.0f64; c * e];
        let mut d = vec![0.0f64; e];
        let mut tmp = vec![0.0f64; e];
        let mut prod = vec![0.0f64; e];
        let mut idx = [0usize; 2];
        for b in 0..n {
            for _ in 0..t.tiles() {
                let (oy, ox) = (idx[0] * t.h.m, idx[1] * t.w.m);
                for ch in 0..c {
                    let plane = &x[(b * c + ch) * ih * iw..][..ih * iw];
                    for r in 0..ah {
                        for s in 0..aw {
                            let yy = (oy + r) as isize - self.pads[0] as isize;
                            let xx = (ox + s) as isize - self.pads[1] as isize;
                            let inside =
                                (0..ih as isize).contains(&yy) && (0..iw as isize).contains(&xx);
                            d[r * aw + s] = if inside {
                                plane[yy as usize * iw + xx as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                    // B^T d B: rows, then columns.
                    mat_left(&t.h.bt, ah, ah, &d, aw, &mut tmp);
                    mat_right(&tmp, ah, aw, &t.w.bt, aw, &mut v[ch * e..][..e]);
                }
                for o in 0..m {
                    for (k, p) in prod.iter_mut().enumerate() {
                        *p = (0..c)
                            .map(|ch| u[(k * c + ch) * m + o] * v[ch * e + k])
                            .sum();
                    }
                    mat_left(&t.h.at, t.h.m, ah, &prod, aw, &mut tmp);
                    let mut res = vec![0.0; t.h.m * t.w.m];
                    mat_right(&tmp, t.h.m, aw, &t.w.at, t.w.m, &mut res);
                    for p in 0..t.h.m {
                        for q in 0..t.w.m {
                            let (yy, xx) = (oy + p, ox + q);
                            if yy >= t.oh || xx >= t.ow {
                                continue;
                            }
                            let mut r = res[p * t.w.m + q];
                            if let Some(bias) = &bias {
                                r += bias[o];
                            }
                            if let Some(act) = &self.act {
                                r = act.apply_f64(r);
                            }
                            y[((b * m + o) * t.oh + yy) * t.ow + xx] = r;
                        }
                    }
                }
                increment(&mut idx, &[t.th, t.tw]);
            }
        }
        Tensor::from_f64(out.dtype, out.dims, y).map_err(|e| e.to_string())
    }
}

/// `out (rows x cols) = a (rows x k) * x (k x cols)`.
fn mat_left(a: &[f64], rows: usize, k: usize, x: &[f64], cols: usize, out: &mut [f64]) {
    for i in 0..rows {
        for j in 0..cols {
            out[i * cols + j] = (0..k).map(|l| a[i * k + l] * x[l * cols + j]).sum();
        }
    }
}

/// `out (rows x n) = x (rows x k) * b^T`, `b` being `n x k`.
fn mat_right(x: &[f64], rows: usize, k: usize, b: &[f64], n: usize, out: &mut [f64]) {
    for i in 0..rows {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|l| x[i * k + l] * b[j * k + l]).sum();
        }
    }
}

/// The transformed weight `U = G g G^T` of a convolution weight
/// `[M, C, kh, kw]`, laid out `[alpha_h * alpha_w, C, M]`, in the weight's
/// type.
pub fn transform_weight(w: &Tensor, tile: usize) -> R<Tensor> {
    let dims = w.dims();
    let [m, c, kh, kw] = dims[..] else {
        return Err(format!("weight {} is not 2-D", w.ty()));
    };
    let bad = || format!("no F({tile},3) for kernel {kh}x{kw}");
    let h = Axis1::new(kh, tile).ok_or_else(bad)?;
    let wx = Axis1::new(kw, tile).ok_or_else(bad)?;
    let (ah, aw) = (h.alpha, wx.alpha);
    let wv = w.to_f64();
    let mut u = vec![0.0f64; ah * aw * c * m];
    let mut tmp = vec![0.0f64; ah * kw];
    let mut res = vec![0.0f64; ah * aw];
    for o in 0..m {
        for ch in 0..c {
            let g = &wv[(o * c + ch) * kh * kw..][..kh * kw];
            mat_left(&h.g, ah, kh, g, kw, &mut tmp);
            mat_right(&tmp, ah, kw, &wx.g, aw, &mut res);
            for (k, r) in res.iter().enumerate() {
                u[(k * c + ch) * m + o] = *r;
            }
        }
    }
    Tensor::from_f64(w.ty().dtype, vec![ah * aw, c, m], u).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn t(dims: &[usize], seed: u64) -> Tensor {
        let n: usize = dims.iter().product();
        let mut s = seed;
        let v = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5
            })
            .collect();
        Tensor::from_f64(DType::F32, dims.to_vec(), v).unwrap()
    }

    /// The algorithm equals the direct convolution for every tile, kernel
    /// form and padding, including tiles that overhang the output.
    #[test]
    fn matches_direct_convolution() {
        for tile in TILES {
            for (k, pads) in [
                ([3, 3], [1, 1, 1, 1]),
                ([3, 3], [0, 0, 0, 0]),
                ([3, 3], [2, 0, 1, 2]),
                ([1, 3], [0, 1, 0, 1]),
                ([3, 1], [1, 0, 1, 0]),
            ] {
                for (h, w) in [(7, 5), (8, 8), (3, 3)] {
                    let x = t(&[2, 3, h, w], 1);
                    let wt = t(&[5, 3, k[0], k[1]], 2);
                    let b = t(&[5], 3);
                    let mut ca = ConvAttrs::new(2);
                    ca.pads = pads.to_vec();
                    ca.act = Some(UnaryOp::Relu);
                    let direct = ca.eval(&[&x, &wt, &b]).unwrap();
                    let a = WinogradAttrs::of_conv(&ca, &x.ty(), &wt.ty(), tile).unwrap();
                    let u = transform_weight(&wt, tile).unwrap();
                    let got = a.eval(&[&x, &u, &b]).unwrap();
                    assert_eq!(got.dims(), direct.dims());
                    for (p, q) in got.to_f64().iter().zip(direct.to_f64()) {
                        assert!((p - q).abs() < 1e-5, "{tile} {k:?} {pads:?}: {p} vs {q}");
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let a = WinogradAttrs {
            tile: 2,
            kernel: vec![3, 3],
            pads: vec![1, 1, 1, 1],
            act: None,
        };
        let x = TensorType::new(DType::F32, vec![1, 4, 8, 8]);
        let u = TensorType::new(DType::F32, vec![16, 4, 6]);
        assert_eq!(a.infer(&[&x, &u]).unwrap()[0].dims, [1, 6, 8, 8]);
        let bad = TensorType::new(DType::F32, vec![36, 4, 6]);
        assert!(a.infer(&[&x, &bad]).is_err());
        let a3 = WinogradAttrs { tile: 3, ..a };
        assert!(a3.infer(&[&x, &u]).is_err());
    }
}
