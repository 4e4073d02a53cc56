//! Resize (and the older Upsample): nearest, linear and cubic interpolation
//! with every ONNX coordinate transformation mode, applied one axis at a time
//! (all three kernels are separable).

use super::attr::{AttrReader, AttrWriter};
use crate::dtype::{TensorType, checked_numel, strides};
use crate::tensor::Tensor;

type R<T> = Result<T, String>;

/// Interpolation kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps back to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// Rounding of nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

macro_rules! named_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn name(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

named_enum!(ResizeMode {
    Nearest = "nearest",
    Linear = "linear",
    Cubic = "cubic"
});
named_enum!(CoordMode {
    HalfPixel = "half_pixel",
    HalfPixelSymmetric = "half_pixel_symmetric",
    PytorchHalfPixel = "pytorch_half_pixel",
    AlignCorners = "align_corners",
    Asymmetric = "asymmetric",
    TfCropAndResize = "tf_crop_and_resize",
});
named_enum!(NearestMode {
    RoundPreferFloor = "round_prefer_floor",
    RoundPreferCeil = "round_prefer_ceil",
    Floor = "floor",
    Ceil = "ceil",
});

/// Resize attributes; `sizes` is the output shape, `scales` the per-axis
/// factors used by the coordinate transform, `roi` (start..., end...) only
/// matters for `tf_crop_and_resize`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub cubic_a: f32,
    pub exclude_outside: bool,
    pub extrapolation: f32,
    pub scales: Vec<f32>,
    pub roi: Vec<f32>,
    pub sizes: Vec<usize>,
}

impl ResizeAttrs {
    pub fn write(&self, w: &mut AttrWriter) {
        w.ident("mode", self.mode.name());
        w.ident("coord", self.coord.name());
        if self.mode == ResizeMode::Nearest {
            w.ident("nearest", self.nearest.name());
        }
        if self.mode == ResizeMode::Cubic {
            w.f32("cubic_a", self.cubic_a);
        }
        if self.exclude_outside {
            w.bool("exclude_outside", true);
        }
        if self.coord == CoordMode::TfCropAndResize {
            w.f32("extrapolation", self.extrapolation);
            w.f32s("roi", &self.roi);
        }
        w.f32s("scales", &self.scales);
        w.usizes("sizes", &self.sizes);
    }

    pub fn read(r: &mut AttrReader) -> R<Self> {
        let m = r.ident("mode")?;
        let c = r.ident("coord")?;
        let nm = r.ident_or("nearest", "round_prefer_floor")?;
        Ok(ResizeAttrs {
            mode: ResizeMode::from_name(&m).ok_or_else(|| format!("unknown mode `{m}`"))?,
            coord: CoordMode::from_name(&c).ok_or_else(|| format!("unknown coord `{c}`"))?,
            nearest: NearestMode::from_name(&nm)
                .ok_or_else(|| format!("unknown nearest mode `{nm}`"))?,
            cubic_a: r.f32_or("cubic_a", -0.75)?,
            exclude_outside: r.bool_or("exclude_outside", false)?,
            extrapolation: r.f32_or("extrapolation", 0.0)?,
            roi: r.f32s_or("roi", vec![])?,
            scales: r.f32s("scales")?,
            sizes: r.usizes("sizes")?,
        })
    }

    pub fn infer(&self, ins: &[&TensorType]) -> R<Vec<TensorType>> {
        let [x] = ins else {
            return Err(format!("expects 1 input, got {}", ins.len()));
        };
        let n = x.rank();
        if self.scales.len() != n || self.sizes.len() != n {
            return Err(format!("scales and sizes must have {n} entries"));
        }
        if self.coord == CoordMode::TfCropAndResize && self.roi.len() != 2 * n {
            return Err(format!("roi must have {} entries", 2 * n));
        }
        if self
            .scales
            .iter()
            .any(|&s| s.is_nan() || s <= 0.0 || !s.is_finite())
        {
            return Err(format!("scales {:?} must be positive", self.scales));
        }
        if !x.dtype.is_float() && self.mode != ResizeMode::Nearest {
            return Err(format!("{} resize needs a float input", self.mode.name()));
        }
        if x.dims.contains(&0) && !self.sizes.contains(&0) {
            return Err(format!("cannot resize the empty tensor {x}"));
        }
        checked_numel(&self.sizes).ok_or("output too large")?;
        Ok(vec![TensorType::new(x.dtype, self.sizes.clone())])
    }

    /// Input coordinate for output coordinate `o` on an axis.
    fn source(&self, o: usize, axis: usize, in_len: usize, out_len: usize) -> f64 {
        let x = o as f64;
        let scale = self.scales[axis] as f64;
        let in_f = in_len as f64;
        match self.coord {
            CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let adjustment = out_len as f64 / (scale * in_f);
                let center = in_f / 2.0;
                let offset = center * (1.0 - adjustment);
                offset + (x + 0.5) / scale - 0.5
            }
            CoordMode::PytorchHalfPixel => {
                if out_len > 1 {
                    (x + 0.5) / scale - 0.5
                } else {
                    -0.5
                }
            }
            CoordMode::AlignCorners => {
                let out_f = scale * in_f;
                if out_f == 1.0 {
                    0.0
                } else {
                    x * (in_f - 1.0) / (out_f - 1.0)
                }
            }
            CoordMode::Asymmetric => x / scale,
            CoordMode::TfCropAndResize => {
                let n = self.sizes.len();
                let (s, e) = (self.roi[axis] as f64, self.roi[n + axis] as f64);
                if out_len > 1 {
                    s * (in_f - 1.0) + x * (e - s) * (in_f - 1.0) / (out_len as f64 - 1.0)
                } else {
                    0.5 * (s + e) * (in_f - 1.0)
                }
            }
        }
    }

    /// Taps (input index, weight) for one output coordinate; `None` means
    /// the extrapolation value.
    fn taps(
        &self,
        o: usize,
        axis: usize,
        in_len: usize,
        out_len: usize,
    ) -> Option<Vec<(usize, f64)>> {
        let x = self.source(o, axis, in_len, out_len);
        let last = in_len as f64 - 1.0;
        if self.coord == CoordMode::TfCropAndResize && (x < 0.0 || x > last) {
            return None;
        }
        let clamp = |i: i64| i.clamp(0, in_len as i64 - 1) as usize;
        // The ONNX reference treats integral coordinates as ratio 1 from the
        // previous index; that matters only for the rounding of ties.
        let (base, ratio) = if x.fract() == 0.0 {
            (x as i64 - 1, 1.0)
        } else {
            (x.floor() as i64, x - x.floor())
        };
        Some(match self.mode {
            ResizeMode::Nearest => {
                let up = match self.nearest {
                    _ if ratio == 1.0 => true,
                    NearestMode::RoundPreferFloor => ratio > 0.5,
                    NearestMode::RoundPreferCeil => ratio >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                };
                vec![(clamp(if up { base + 1 } else { base }), 1.0)]
            }
            ResizeMode::Linear => vec![(clamp(base), 1.0 - ratio), (clamp(base + 1), ratio)],
            ResizeMode::Cubic => {
                let a = self.cubic_a as f64;
                let r = ratio;
                let c = [
                    ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                    ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                    ((a + 2.0) * (1.0 - r) - (a + 3.0)) * (1.0 - r) * (1.0 - r) + 1.0,
                    ((a * (2.0 - r) - 5.0 * a) * (2.0 - r) + 8.0 * a) * (2.0 - r) - 4.0 * a,
                ];
                let mut taps: Vec<(i64, f64)> =
                    (0..4).map(|k| (base - 1 + k, c[k as usize])).collect();
                if self.exclude_outside {
                    for t in taps.iter_mut() {
                        if t.0 < 0 || t.0 >= in_len as i64 {
                            t.1 = 0.0;
                        }
                    }
                    let s: f64 = taps.iter().map(|t| t.1).sum();
                    if s != 0.0 {
                        taps.iter_mut().for_each(|t| t.1 /= s);
                    }
                }
                taps.into_iter().map(|(i, w)| (clamp(i), w)).collect()
            }
        })
    }

    pub fn eval(&self, x: &Tensor) -> R<Tensor> {
        let out = self.infer(&[&x.ty()])?.remove(0);
        if out.is_empty() {
            return Tensor::from_f64(x.dtype(), out.dims.clone(), vec![])
                .map_err(|e| e.to_string());
        }
        if x.is_empty() {
            return Err(format!("cannot resize the empty {} to {}", x.ty(), out));
        }
        let mut cur = x.to_f64();
        let mut dims = x.dims().to_vec();
        // Axes are separable: shrinking ones first keeps every intermediate
        // no larger than the input or the output (a huge size on one axis
        // and a tiny one on another must not allocate their product).
        let mut order: Vec<usize> = (0..dims.len()).collect();
        order.sort_by_key(|&a| self.sizes[a] > dims[a]);
        for axis in order {
            let (in_len, out_len) = (dims[axis], self.sizes[axis]);
            let taps: Vec<Option<Vec<(usize, f64)>>> = (0..out_len)
                .map(|o| self.taps(o, axis, in_len, out_len))
                .collect();
            let st = strides(&dims);
            let outer: usize = dims[..axis].iter().product();
            let inner = st[axis];
            let mut next = vec![0.0; outer * out_len * inner];
            for a in 0..outer {
                for (o, t) in taps.iter().enumerate() {
                    for i in 0..inner {
                        next[(a * out_len + o) * inner + i] = match t {
                            None => self.extrapolation as f64,
                            Some(t) => t
                                .iter()
                                .map(|&(k, w)| w * cur[(a * in_len + k) * inner + i])
                                .sum(),
                        };
                    }
                }
            }
            cur = next;
            dims[axis] = out_len;
        }
        Tensor::from_f64(x.dtype(), out.dims, cur).map_err(|e| e.to_string())
    }
}
