//! Winograd alternatives for convolutions: every float, 2-D, group-1,
//! stride-1, dilation-1 convolution with a 3x3 (or 1x3 / 3x1) kernel and
//! constant weights gets `winograd` forms F(2,3) and F(4,3) in its class,
//! whose transformed weight `G g G^T` is folded here, at compile time.
//! Extraction then weighs them against the direct convolution
//! ([`cost_adjust`]): on a host the products saved (2.25x for F(2,3),
//! 4x for F(4,3) on 3x3) against the transforms and the scratch they
//! stream through; on a microcontroller also the transformed weights'
//! extra flash (16/9 and 4 times the 3x3 weights) and the scratch's
//! stack, which in practice keeps the direct kernel there.

use std::fmt;
use std::str::FromStr;

use egg::{Id, rewrite as rw};
use nnc_ir::op::WinogradAttrs;
use nnc_ir::op::winograd::transform_weight;
use nnc_ir::{Op, TensorType};

use super::super::lang::{AttrKey, TLang};
use super::{B, Build, Rw};

/// Which convolutions become Winograd convolutions (`--winograd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WinogradMode {
    /// Never.
    Off,
    /// Where the cost model prefers it (F(2,3) or F(4,3), per layer).
    #[default]
    Auto,
    /// Every eligible convolution, with F(2,3).
    F23,
    /// Every eligible convolution, with F(4,3).
    F43,
}

impl WinogradMode {
    /// The forced tile, if any.
    pub fn forced(self) -> Option<usize> {
        match self {
            WinogradMode::F23 => Some(2),
            WinogradMode::F43 => Some(4),
            _ => None,
        }
    }

    /// May the rules offer tile `m`?
    fn offers(self, m: usize) -> bool {
        match self {
            WinogradMode::Off => false,
            WinogradMode::Auto => true,
            f => f.forced() == Some(m),
        }
    }
}

impl FromStr for WinogradMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "off" => WinogradMode::Off,
            "auto" => WinogradMode::Auto,
            "f23" => WinogradMode::F23,
            "f43" => WinogradMode::F43,
            _ => return Err(format!("`{s}` is not one of off, auto, f23, f43")),
        })
    }
}

impl fmt::Display for WinogradMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WinogradMode::Off => "off",
            WinogradMode::Auto => "auto",
            WinogradMode::F23 => "f23",
            WinogradMode::F43 => "f43",
        })
    }
}

pub fn rules() -> Vec<Rw> {
    vec![
        rw!("conv-winograd-f23"; "(conv ?ca ?x ?w ?b)" => { Build(|b: &mut B<'_>, c| winograd(b, c, 2)) }),
        rw!("conv-winograd-f43"; "(conv ?ca ?x ?w ?b)" => { Build(|b: &mut B<'_>, c| winograd(b, c, 4)) }),
    ]
}

fn winograd(b: &mut B<'_>, class: Id, tile: usize) -> Option<Id> {
    if !b.eg.analysis.winograd.offers(tile) {
        return None;
    }
    let Op::Conv(ca) = b.op_at("conv", "?ca")? else {
        return None;
    };
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    let (xt, wv) = (b.ty(x)?, b.value(w)?);
    // Chosen by cost, a convolution of few input channels stays direct:
    // its batched products reduce over those few channels, too short to
    // pay for the transforms, which the cost model does not see (UNet's
    // 3->32 stem at 128x128: 2.26 ms in Winograd, 0.27 ms direct).
    if b.eg.analysis.winograd == WinogradMode::Auto
        && xt.dims.get(1).is_some_and(|&c| c < MIN_AUTO_CHANNELS)
    {
        return None;
    }
    if !b.is_none(bias) && b.value(bias).is_none() {
        return None;
    }
    let a = WinogradAttrs::of_conv(&ca, &xt, &wv.ty(), tile)?;
    let op = Op::Winograd(a);
    // Re-applied each iteration: the class already has this form.
    let key = AttrKey::of(&op);
    let has = b.eg[class].nodes.iter().any(|n| {
        matches!(n, TLang::Op(s, ch) if s.as_str() == "winograd"
            && super::super::analysis::attr_of(b.eg, ch[0]) == Some(key))
    });
    if has {
        return None;
    }
    let u = transform_weight(&wv, tile).ok()?;
    let Op::Winograd(a) = &op else { return None };
    if !nnc_ir::program::winograd::fits_host_scratch(a, &xt, &u.ty()) {
        return None;
    }
    let u = b.konst(u);
    b.add(&op, &[x, u, bias])
}

/// Fewest input channels for which `auto` offers Winograd (forced modes
/// offer it for any).
pub const MIN_AUTO_CHANNELS: usize = 16;

/// Extraction cost of a `winograd` node whose arithmetic and traffic
/// (as for every op: `op_macs` counts the batched products and the
/// transforms) cost `base`: plus the scratch it writes and reads back
/// (band, `V`, `M`) at `byte`; plus, on a target whose level-2 cache
/// (`l2_bytes`, 0: unknown) the transformed weight does not fit, that
/// weight read again by every group of tiles at [`STREAM_BYTE_COST`]; and,
/// when memory counts (microcontrollers, `-Os`), the transformed weight's
/// bytes beyond the direct weight's at [`FLASH_BYTE_COST`] and the scratch
/// at `memory_byte`. A forced mode makes it cost one unit, so it always
/// wins.
pub fn node_cost(
    a: &WinogradAttrs,
    ins: &[&TensorType],
    base: f64,
    mode: WinogradMode,
    byte: f64,
    memory_byte: Option<f64>,
    l2_bytes: usize,
) -> f64 {
    if mode.forced().is_some() {
        return 1.0;
    }
    let (Some(x), Some(u)) = (ins.first(), ins.get(1)) else {
        return f64::INFINITY;
    };
    let Ok(t) = a.tiling(x) else {
        return f64::INFINITY;
    };
    let (n, c, m) = (x.dims[0], x.dims[1], u.dims[2]);
    let band = t.th * t.h.alpha * (t.tw * t.w.m + 2) * c;
    let vm = t.tiles() * t.elems() * (c + m);
    let scratch = (n * (band + vm) * 4) as f64;
    let mut cost = base + 2.0 * byte * scratch;
    if l2_bytes > 0 && u.bytes() > l2_bytes {
        let groups = n * t.tiles().div_ceil(crate::lower::wselect::MAX_TILES);
        cost += STREAM_BYTE_COST * (groups * u.bytes()) as f64;
    }
    if let Some(mb) = memory_byte {
        let direct = (m * c * a.kernel.iter().product::<usize>() * 4) as f64;
        cost += FLASH_BYTE_COST * (u.bytes() as f64 - direct).max(0.0) + mb * scratch;
    }
    cost
}

/// Extraction cost of one byte of a transformed weight read from beyond
/// the level-2 cache, in MAC equivalents. Measured when groups held 8
/// tiles: SqueezeNet's 64 -> 256 layer at 13x13 in F(4,3) has a 2.4 MB
/// transformed weight, then read by each of its 2 groups: 0.36 ms in C on
/// a 2 MiB-L2 AVX-512 host, where F(2,3) (1 MiB, in the L2) took 0.21 ms
/// and direct convolution 0.35; the 0.15 ms difference is about 2.7 MACs
/// per byte streamed.
pub const STREAM_BYTE_COST: f64 = 2.0;

/// Extraction cost of one byte of flash on a microcontroller, in MAC
/// equivalents: flash is the binding constraint there (a float model's
/// weights are most of it), so a layer's transformed weights must save
/// far more arithmetic than they add bytes.
pub const FLASH_BYTE_COST: f64 = 256.0;

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::{operands, rewrite, saturate, saturate_mode, value};
    use super::WinogradMode;

    /// Constant data of `n` varied values.
    fn data(n: usize) -> String {
        let v: Vec<String> = (0..n)
            .map(|i| format!("{:.3}", ((i * 37 % 23) as f64 - 11.0) / 40.0))
            .collect();
        format!("[{}]", v.join(", "))
    }

    fn resnet_layer() -> String {
        format!(
            r#"graph @t(v0 "x": f32[1,16,16,16]) -> ("y": f32[1,16,16,16]) {{
    c0 = const f32[16,16,3,3] {}
    c1 = const f32[16] {}
    v1 = conv v0, c0, c1 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1]}} : f32[1,16,16,16]
    v2 = relu v1 : f32[1,16,16,16]
    return v2
}}"#,
            data(16 * 16 * 9),
            data(16)
        )
    }

    /// The fused convolution becomes a Winograd convolution with its
    /// activation and bias, weights transformed at compile time.
    #[test]
    fn a_resnet_layer_becomes_winograd() {
        let out = rewrite(&resnet_layer(), &[Group::Fusion, Group::Winograd]);
        assert!(out.contains("= winograd v0, c"), "{out}");
        assert!(out.contains("kernel=[3,3] pad=[1,1,1,1] act=relu"), "{out}");
        assert!(!out.contains("= conv"), "{out}");
    }

    /// Both tiles are offered; the transformed weight of F(2,3) for a
    /// constant 3x3 kernel of ones has G 1 G^T entries (1, 1.5, ...).
    #[test]
    fn both_tiles_are_alternatives() {
        let ones = vec!["1"; 16 * 9].join(", ");
        let src = format!(
            "graph @t(v0 \"x\": f32[1,16,6,6]) -> (\"y\": f32[1,1,4,4]) {{\n    c0 = const f32[1,16,3,3] [{ones}]\n    v1 = conv v0, c0 {{stride=[1,1] pad=[0,0,0,0] dilation=[1,1]}} : f32[1,1,4,4]\n    return v1\n}}"
        );
        let (eg, roots) = saturate(&src, &[Group::Winograd]);
        let forms = operands(&eg, roots[0], "winograd");
        assert_eq!(forms.len(), 2, "F(2,3) and F(4,3)");
        let mut sizes: Vec<usize> = forms
            .iter()
            .map(|f| value(&eg, f[1]).unwrap().len())
            .collect();
        sizes.sort();
        assert_eq!(sizes, [16 * 16, 36 * 16]);
        let u = forms
            .iter()
            .map(|f| value(&eg, f[1]).unwrap())
            .find(|v| v.len() == 16 * 16)
            .unwrap();
        // U[k][c][0] for k = (1,1): (G 1 G^T)[1][1] = 1.5 * 1.5.
        assert_eq!(u[5 * 16], 2.25);
    }

    /// A stem of 3 input channels stays direct when the cost model
    /// chooses, and becomes Winograd when it is forced.
    #[test]
    fn few_input_channels_stay_direct_unless_forced() {
        let src = format!(
            "graph @t(v0 \"x\": f32[1,3,16,16]) -> (\"y\": f32[1,32,16,16]) {{\n    c0 = const f32[32,3,3,3] {}\n    v1 = conv v0, c0 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1]}} : f32[1,32,16,16]\n    return v1\n}}",
            data(32 * 3 * 9)
        );
        for (mode, forms) in [(WinogradMode::Auto, 0), (WinogradMode::F43, 1)] {
            let (eg, roots) = saturate_mode(&src, &[Group::Winograd], mode);
            assert_eq!(operands(&eg, roots[0], "winograd").len(), forms, "{mode}");
        }
    }

    /// A transformed weight larger than the L2 costs its bytes for every
    /// group of tiles that reads it (SqueezeNet's 64 -> 256 layer at 13x13:
    /// 2.4 MB at F(4,3), its 16 tiles one group); F(2,3)'s 1 MiB fits and
    /// costs nothing more; with the L2 unknown neither does.
    #[test]
    fn transformed_weights_beyond_the_l2_cost_a_stream_per_group() {
        use nnc_ir::op::{ConvAttrs, WinogradAttrs};
        use nnc_ir::{DType, TensorType};
        let x = TensorType::new(DType::F32, vec![1, 64, 13, 13]);
        let w = TensorType::new(DType::F32, vec![256, 64, 3, 3]);
        let ca = ConvAttrs {
            pads: vec![1, 1, 1, 1],
            ..ConvAttrs::new(2)
        };
        let extra = |tile: usize, l2: usize| {
            let a = WinogradAttrs::of_conv(&ca, &x, &w, tile).unwrap();
            let alpha = tile + 2;
            let u = TensorType::new(DType::F32, vec![alpha * alpha, 64, 256]);
            let ins = [&x, &u];
            let cost = |l2| super::node_cost(&a, &ins, 0.0, WinogradMode::Auto, 0.25, None, l2);
            (cost(l2) - cost(0), u.bytes())
        };
        let mib = 1 << 20;
        let (f43, u43) = extra(4, mib);
        assert_eq!(f43, super::STREAM_BYTE_COST * u43 as f64);
        assert_eq!(extra(2, mib), (0.0, mib));
        assert_eq!(extra(4, 4 * mib).0, 0.0);
    }

    /// Strided, dilated, grouped and 5x5 convolutions keep their direct form.
    #[test]
    fn ineligible_convolutions_stay() {
        for (w, attrs, y) in [
            (
                "[4,4,3,3]",
                "stride=[2,2] pad=[1,1,1,1] dilation=[1,1]",
                "[1,4,4,4]",
            ),
            (
                "[4,4,3,3]",
                "stride=[1,1] pad=[2,2,2,2] dilation=[2,2]",
                "[1,4,8,8]",
            ),
            (
                "[4,1,3,3]",
                "stride=[1,1] pad=[1,1,1,1] dilation=[1,1] group=4",
                "[1,4,8,8]",
            ),
            (
                "[4,4,5,5]",
                "stride=[1,1] pad=[2,2,2,2] dilation=[1,1]",
                "[1,4,8,8]",
            ),
        ] {
            let n: usize = w[1..w.len() - 1]
                .split(',')
                .map(|d| d.parse::<usize>().unwrap())
                .product();
            let src = format!(
                "graph @t(v0 \"x\": f32[1,4,8,8]) -> (\"y\": f32{y}) {{\n    c0 = const f32{w} {}\n    v1 = conv v0, c0 {{{attrs}}} : f32{y}\n    return v1\n}}",
                data(n)
            );
            let (eg, roots) = saturate(&src, &[Group::Winograd]);
            assert!(operands(&eg, roots[0], "winograd").is_empty(), "{attrs}");
        }
    }

    /// A plane too wide for the band of the smallest schedule (every
    /// input channel of `alpha` rows) stays direct at F(4,3) and still gets
    /// F(2,3), whose band has two rows fewer.
    #[test]
    fn wide_planes_of_many_channels_stay_direct() {
        let src = format!(
            "graph @t(v0 \"x\": f32[1,64,56,56]) -> (\"y\": f32[1,8,56,56]) {{\n    c0 = const f32[8,64,3,3] {}\n    v1 = conv v0, c0 {{stride=[1,1] pad=[1,1,1,1] dilation=[1,1]}} : f32[1,8,56,56]\n    return v1\n}}",
            data(8 * 64 * 9)
        );
        let (eg, roots) = saturate(&src, &[Group::Winograd]);
        let tiles: Vec<String> = operands(&eg, roots[0], "winograd")
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        assert_eq!(tiles.len(), 1, "{tiles:?}");
    }

    /// One-dimensional kernels (1x3) get the 1-D transform.
    #[test]
    fn a_1x3_kernel_becomes_winograd() {
        let src = format!(
            r#"graph @t(v0 "x": f32[1,32,4,40]) -> ("y": f32[1,32,4,40]) {{
    c0 = const f32[32,32,1,3] {}
    v1 = conv v0, c0 {{stride=[1,1] pad=[0,1,0,1] dilation=[1,1]}} : f32[1,32,4,40]
    return v1
}}"#,
            data(32 * 32 * 3)
        );
        let out = rewrite(&src, &[Group::Winograd]);
        assert!(out.contains("= winograd"), "{out}");
        assert!(out.contains("kernel=[1,3]"), "{out}");
    }
}
