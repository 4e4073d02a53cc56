//! Kernel selection for the `winograd` op: its tile groups and output
//! channel blocks, as large as the target's stack scratch allows (larger
//! groups and blocks reuse each loaded weight and transformed input more
//! often in the batched products).

use nnc_ir::Op;
use nnc_ir::program::Kernel;
use nnc_ir::program::Winograd;
use nnc_ir::program::winograd::{Schedule, lanes};

use super::select::{STACK_COPY_LIMIT, StepCx};

/// Largest scratch (band, `V`, `M`) of the native kernel, a stack slot.
const NATIVE_LIMIT: usize = nnc_ir::program::winograd::HOST_SCRATCH_LIMIT;

/// Candidate (tiles, channels), best first. Groups of 16 tiles read each
/// transformed weight half as often as groups of 8 (SqueezeNet's 27x27
/// layers in C: 1.85x direct convolution against 1.3-1.7x; its 55x55
/// ones 1.9x against 1.5x).
const SHAPES: [(usize, usize); 11] = [
    (16, 64),
    (16, 32),
    (8, 64),
    (8, 32),
    (4, 64),
    (4, 32),
    (4, 16),
    (2, 16),
    (2, 8),
    (1, 8),
    (1, 4),
];

/// Most tiles per group any schedule takes (the first shape's).
pub const MAX_TILES: usize = SHAPES[0].0;

/// Stack bytes the kernel may use on this target.
fn limit(cx: &StepCx) -> usize {
    let t = cx.target;
    if t.is_mcu() {
        super::select::scratch_limit(t)
    } else if t.codegen == nnc_ir::program::Codegen::Cranelift {
        NATIVE_LIMIT
    } else {
        STACK_COPY_LIMIT
    }
}

fn schedule(k: &Winograd, cx: &StepCx) -> Option<Schedule> {
    let Op::Winograd(a) = cx.op else {
        return None;
    };
    if cx.ins.len() < 2 {
        return None;
    }
    Schedule::of(a, k, cx.ins[0], cx.ins[1], lanes(cx.target))
}

/// The kernel of a `winograd` step: the first shape whose scratch fits.
pub fn select(cx: &StepCx) -> Option<Kernel> {
    let Op::Winograd(a) = cx.op else {
        return None;
    };
    let fits = |&(tiles, channels): &(usize, usize)| {
        let k = Winograd {
            tile: a.tile,
            tiles,
            channels,
        };
        check(&k, cx).is_ok()
    };
    let (tiles, channels) = SHAPES.iter().copied().find(|s| fits(s)).unwrap_or((1, 4));
    let mut k = Winograd {
        tile: a.tile,
        tiles,
        channels,
    };
    // As the schedule uses them: no more tiles than a row has, no more
    // channels than the output's (in whole vectors).
    if let Some(s) = schedule(&k, cx) {
        k.tiles = s.tiles;
        k.channels = s.block;
    }
    Some(Kernel::Winograd(k))
}

/// Why `winograd` with `k` cannot compute this step.
pub fn check(k: &Winograd, cx: &StepCx) -> Result<(), String> {
    let Op::Winograd(a) = cx.op else {
        return Err("needs a winograd op".into());
    };
    if k.tile != a.tile {
        return Err(format!("m must be the op's tile, {}", a.tile));
    }
    if cx.y().dtype != nnc_ir::DType::F32 {
        return Err(format!(
            "winograd computes f32 only, the step is {}",
            cx.y().dtype
        ));
    }
    if !cx.const_params() {
        return Err("needs a constant transformed weight and bias".into());
    }
    if !(1..=64).contains(&k.tiles) || !(1..=256).contains(&k.channels) {
        return Err("tiles must be in 1..=64 and c in 1..=256".into());
    }
    let s = schedule(k, cx).ok_or("the step's shapes do not fit the op")?;
    if s.scratch_bytes() > limit(cx) {
        return Err(format!(
            "its scratch ({} bytes) exceeds the stack limit of {} bytes",
            s.scratch_bytes(),
            limit(cx)
        ));
    }
    Ok(())
}

/// Sets parameter `key` of a `winograd` kernel (None: not one).
pub fn set_param(k: &mut Kernel, key: &str, val: &str) -> Option<Result<(), String>> {
    let Kernel::Winograd(p) = k else {
        return None;
    };
    let num = val
        .parse::<usize>()
        .map_err(|_| format!("parameter {key}={val}: not a number"));
    Some(num.and_then(|n| {
        match key {
            "m" => p.tile = n,
            "tiles" => p.tiles = n,
            "c" => p.channels = n,
            _ => {
                return Err(format!(
                    "winograd has no parameter `{key}` (parameters: m, tiles, c)"
                ));
            }
        }
        Ok(())
    }))
}
