//! Pad folded into the consumer's own padding: zero-padding into Conv and
//! AveragePool (which then counts the pad cells, as the explicit zeros
//! were counted), `-inf` padding into MaxPool. Only spatial, non-negative
//! constant pads qualify, and never with ceil mode, whose output size
//! depends on where the padding sits.

use egg::{Id, rewrite as rw};
use nnc_ir::Op;
use nnc_ir::op::{PadAttrs, PadMode, PoolKind};

use super::{B, Build, Rw};

pub fn rules() -> Vec<Rw> {
    vec![
        rw!("pad-conv"; "(conv ?ca (pad ?pa ?x) ?w ?b)" => { Build(pad_conv) }),
        rw!("pad-max-pool"; "(max_pool ?qa (pad ?pa ?x))" => { Build(|b: &mut B<'_>, c| pad_pool(b, c, PoolKind::Max)) }),
        rw!("pad-avg-pool"; "(avg_pool ?qa (pad ?pa ?x))" => { Build(|b: &mut B<'_>, c| pad_pool(b, c, PoolKind::Avg)) }),
    ]
}

/// Spatial pads (begins then ends) of a foldable pad with fill `value`.
fn spatial_pads(b: &mut B<'_>, value: f64) -> Option<Vec<usize>> {
    let Op::Pad(PadAttrs {
        mode,
        pads,
        value: v,
    }) = b.op_at("pad", "?pa")?
    else {
        return None;
    };
    if mode != PadMode::Constant || v != value {
        return None;
    }
    let r = pads.len() / 2;
    // Batch and channel dims must be untouched; pads non-negative.
    if r < 3 || pads[0] != 0 || pads[1] != 0 || pads[r] != 0 || pads[r + 1] != 0 {
        return None;
    }
    if pads.iter().any(|&p| p < 0) {
        return None;
    }
    let n = r - 2;
    let mut out = Vec::with_capacity(2 * n);
    out.extend(pads[2..r].iter().map(|&p| p as usize));
    out.extend(pads[r + 2..].iter().map(|&p| p as usize));
    Some(out)
}

fn add_pads(own: &mut [usize], extra: &[usize]) {
    for (o, e) in own.iter_mut().zip(extra) {
        *o += e;
    }
}

fn pad_conv(b: &mut B<'_>, _: Id) -> Option<Id> {
    let Op::Conv(mut ca) = b.op_at("conv", "?ca")? else {
        return None;
    };
    let extra = spatial_pads(b, 0.0)?;
    add_pads(&mut ca.pads, &extra);
    let (x, w, bias) = (b.id("?x"), b.id("?w"), b.id("?b"));
    b.add(&Op::Conv(ca), &[x, w, bias])
}

fn pad_pool(b: &mut B<'_>, _: Id, kind: PoolKind) -> Option<Id> {
    let name = match kind {
        PoolKind::Max => "max_pool",
        PoolKind::Avg => "avg_pool",
    };
    let Op::Pool(mut pa) = b.op_at(name, "?qa")? else {
        return None;
    };
    if pa.ceil_mode {
        return None;
    }
    let extra = match kind {
        PoolKind::Max => spatial_pads(b, f64::NEG_INFINITY)?,
        PoolKind::Avg => {
            // The explicit zeros were averaged in; the pool's own pads must
            // be counted the same way for the fold to be exact.
            if !pa.count_include_pad && pa.pads.iter().any(|&p| p != 0) {
                return None;
            }
            pa.count_include_pad = true;
            spatial_pads(b, 0.0)?
        }
    };
    add_pads(&mut pa.pads, &extra);
    let x = b.id("?x");
    b.add(&Op::Pool(pa), &[x])
}

#[cfg(test)]
mod tests {
    use super::super::Group;
    use super::super::testing::rewrite;

    #[test]
    fn zero_pad_folds_into_conv_and_avg_pool() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[1,1,4,4]) -> ("y": f32[1,1,4,4], "z": f32[1,1,3,3]) {
    c0 = const f32[1,1,3,3] [1, 2, 1, 0, 0, 0, -1, -2, -1]
    v1 = pad v0 {mode=constant pads=[0,0,1,1,0,0,1,1]} : f32[1,1,6,6]
    v2 = conv v1, c0 {stride=[1,1] pad=[0,0,0,0] dilation=[1,1]} : f32[1,1,4,4]
    v3 = avg_pool v1 {kernel=[2,2] stride=[2,2] pad=[0,0,0,0]} : f32[1,1,3,3]
    return v2, v3
}"#,
            &[Group::Pad],
        );
        assert!(!out.contains("= pad"), "{out}");
        assert!(out.contains("pad=[1,1,1,1]"), "{out}");
        assert!(out.contains("count_include_pad=true"), "{out}");
    }

    #[test]
    fn zero_pad_stays_before_max_pool() {
        let out = rewrite(
            r#"graph @t(v0 "x": f32[1,1,4,4]) -> ("y": f32[1,1,3,3]) {
    v1 = pad v0 {mode=constant pads=[0,0,1,1,0,0,1,1]} : f32[1,1,6,6]
    v2 = max_pool v1 {kernel=[2,2] stride=[2,2] pad=[0,0,0,0]} : f32[1,1,3,3]
    return v2
}"#,
            &[Group::Pad],
        );
        assert!(out.contains("= pad"), "{out}");
    }
}
