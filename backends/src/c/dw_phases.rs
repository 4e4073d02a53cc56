//! `dw_phases` in C: depthwise convolution and max pooling of any stride
//! on stride-phase planes (layout in [`nnc_ir::program::Phases`]). Each
//! channel is copied once into a local buffer holding its padded plane
//! de-interleaved by stride phase, so every tap of every output is a
//! fixed offset and a row of outputs reads contiguous runs; each output
//! row is then one loop over its columns with every tap unrolled, which
//! the C compiler vectorizes along the row with no border cases and no
//! strided loads. Per output the order is the direct kernel's: bias (or
//! the first tap of a pool), then the taps row-major.
//!
//! A 2-D max pool takes a separable path with no copy: per output row, the
//! maximum over the window's rows, read in place (contiguous, one `maxps`
//! per tap), then the maximum over the window's columns of that row. The
//! plain compare there drops a NaN, so the reads are also checked for NaN,
//! and a channel with one is computed again by the phase planes, whose
//! compare keeps NaN sticky as the reference does. Without NaN the two
//! agree on every value; only which of two equal zeros of opposite sign
//! wins may differ (column-major instead of row-major).

use nnc_ir::program::{Phases, Window};

use super::Helpers;
use super::epilogue::Epi;
use super::writer::W;

/// What the sweep computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sweep {
    /// Depthwise convolution: `in1` weights `[C, 1, kh, kw]`, fused
    /// multiply-adds, zero padding.
    Conv,
    /// Max pooling: padding reads as minus infinity, NaN sticks.
    Max,
}

/// Renders `dw_phases` for `win` (f32, one channel per group) reading
/// `in0` and writing `out0`.
pub(super) fn render(w: &mut W, win: &Window, p: &Phases, op: Sweep, epi: &Epi, h: &mut Helpers) {
    let (hx, wx) = (p.h, p.w);
    let c = win.channels;
    let (sh, sw) = (hx.stride, wx.stride);
    let (ho, wo) = (hx.output, wx.output);
    let plane = p.plane();
    let taps: Vec<(usize, usize)> = (0..hx.k)
        .flat_map(|kh| (0..wx.k).map(move |kw| (kh, kw)))
        .collect();
    let fill = match op {
        Sweep::Conv => "0.0f",
        Sweep::Max => "(-INFINITY)",
    };
    if op == Sweep::Conv {
        h.need("nnc_fma");
    }
    // Slack past the planes for the last row's rounded-up vectors.
    let len = p.floats() + wo.div_ceil(16) * 16 - wo;
    w.line(format!("float xp[{len}];"));
    // The padding is the same for every channel: fill once, and let each
    // channel overwrite only the interior.
    w.for_("i", 0, len);
    w.line(format!("xp[i] = {fill};"));
    w.close();
    let separable = op == Sweep::Max && hx.k > 1;
    if separable {
        separable_setup(w, p);
    }
    w.for_("n", 0, win.batch);
    w.for_("c", 0, c);
    w.line(format!(
        "const float *xc = in0 + (n * {c} + c) * {};",
        hx.input * wx.input
    ));
    if separable {
        separable_channel(w, p, c);
    }
    // Copy: row r of the input is padded row r + pad_h, in row phase
    // (r + pad_h) % s_h; its columns go to their column phases.
    w.for_("r", 0, hx.input);
    w.line(format!("const size_t ri = r + {};", hx.pad));
    w.line(format!(
        "float *xd = xp + (ri % {sh}) * {} + (ri / {sh}) * {};",
        sw * plane,
        p.row
    ));
    w.line(format!("const float *xs = xc + r * {};", wx.input));
    for jc in 0..sw {
        // Input columns k with (k + pad_w) % s_w == jc.
        let k0 = (jc + sw - wx.pad % sw) % sw;
        if k0 >= wx.input {
            continue;
        }
        let cnt = (wx.input - k0).div_ceil(sw);
        let dst = jc * plane + (k0 + wx.pad) / sw;
        w.for_("q", 0, cnt);
        w.line(format!("xd[{dst} + q] = xs[{k0} + q * {sw}];"));
        w.close();
    }
    w.close(); // r
    if op == Sweep::Conv {
        let names: Vec<String> = (0..taps.len())
            .map(|t| format!("w{t} = in1[c * {} + {t}]", taps.len()))
            .collect();
        w.line(format!("const float {};", names.join(", ")));
        let b = match epi.bias() {
            Some(k) => format!("in{k}[c]"),
            None => "0.0f".into(),
        };
        w.line(format!("const float b = {b};"));
    }
    // Each row is computed over whole vectors of 16 (the widest the C
    // compiler uses): the columns past the output read the next row of
    // the buffer (or its slack) and are dropped when the row is stored.
    let wv = wo.div_ceil(16) * 16;
    w.for_("oh", 0, ho);
    w.line(format!("const float *xr = xp + oh * {};", p.row));
    w.line(format!(
        "float *yr = out0 + ((n * {c} + c) * {ho} + oh) * {wo};"
    ));
    w.line(format!("float acc[{wv}];"));
    w.for_("ow", 0, wv);
    match op {
        Sweep::Conv => {
            w.line("float a = b;");
            for (t, &(kh, kw)) in taps.iter().enumerate() {
                w.line(format!("a = NNC_FMA(w{t}, xr[{} + ow], a);", p.tap(kh, kw)));
            }
        }
        Sweep::Max => {
            w.line("float a = (-INFINITY);");
            for &(kh, kw) in &taps {
                w.block();
                w.line(format!("const float v = xr[{} + ow];", p.tap(kh, kw)));
                w.line("a = (v > a || v != v) ? v : a;");
                w.close();
            }
        }
    }
    // A pointwise epilogue (bias, activation, clamp) runs on the whole
    // vectors too, not on the stored row's remainder: 1.2-1.4x on
    // EfficientNet's SiLU layers.
    let on_acc = op == Sweep::Conv && epi.is_pointwise();
    if on_acc {
        w.line(format!("acc[ow] = {};", epi.apply("a", "yr + ow")));
    } else {
        w.line("acc[ow] = a;");
    }
    w.close(); // ow
    w.for_("ow", 0, wo);
    let e = match op {
        Sweep::Conv if !on_acc => epi.apply("acc[ow]", "yr + ow"),
        _ => "acc[ow]".to_string(),
    };
    w.line(format!("yr[ow] = {e};"));
    w.close();
    w.close(); // oh
    w.close(); // c
    w.close(); // n
}

/// Buffers of the separable max pool, filled with minus infinity once: a
/// row standing for the padding rows, and the padded row of window-row
/// maxima (whose padding columns are never written).
fn separable_setup(w: &mut W, p: &Phases) {
    let wx = p.w;
    w.line(format!("float pad_row[{}];", wx.input));
    w.for_("i", 0, wx.input);
    w.line("pad_row[i] = (-INFINITY);");
    w.close();
    w.line(format!("float vr[{}];", wx.reach()));
    w.for_("i", 0, wx.reach());
    w.line("vr[i] = (-INFINITY);");
    w.close();
}

/// The separable path of one channel. It checks for NaN as it reads (only
/// the window rows needed to see every input row once); a channel with a
/// NaN is then computed again by the phase planes, which overwrite it.
fn separable_channel(w: &mut W, p: &Phases, c: usize) {
    let (hx, wx) = (p.h, p.w);
    let (ho, wo) = (hx.output, wx.output);
    // Window rows whose reads together cover every input row any window
    // reads, chosen greedily.
    let mut seen = vec![false; hx.input];
    let mut check = Vec::new();
    for kh in 0..hx.k {
        let mut new = false;
        for oh in (0..ho).filter(|&oh| hx.valid(oh, kh)) {
            let i = hx.pos(oh, kh) as usize;
            new |= !seen[i];
            seen[i] = true;
        }
        if new {
            check.push(kh);
        }
    }
    w.line("int has_nan = 0;");
    w.for_("oh", 0, ho);
    for kh in 0..hx.k {
        w.line(format!(
            "const long i{kh} = (long)(oh * {}) + {} - {};",
            hx.stride,
            kh * hx.dil,
            hx.pad
        ));
        w.line(format!(
            "const float *r{kh} = (i{kh} >= 0 && i{kh} < {}) ? xc + i{kh} * {} : pad_row;",
            hx.input, wx.input
        ));
    }
    w.for_("j", 0, wx.input);
    w.line("float a = r0[j];");
    for kh in 1..hx.k {
        w.line(format!("a = r{kh}[j] > a ? r{kh}[j] : a;"));
    }
    let nan: Vec<String> = check
        .iter()
        .map(|kh| format!("(r{kh}[j] != r{kh}[j])"))
        .collect();
    w.line(format!("has_nan |= {};", nan.join(" | ")));
    w.line(format!("vr[{} + j] = a;", wx.pad));
    w.close(); // j
    w.line(format!(
        "float *yr = out0 + ((n * {c} + c) * {ho} + oh) * {wo};"
    ));
    w.for_("ow", 0, wo);
    w.line(format!("const float *v = vr + ow * {};", wx.stride));
    w.line("float a = v[0];");
    for kw in 1..wx.k {
        let o = kw * wx.dil;
        w.line(format!("a = v[{o}] > a ? v[{o}] : a;"));
    }
    w.line("yr[ow] = a;");
    w.close(); // ow
    w.close(); // oh
    w.open("if (!has_nan)");
    w.line("continue;");
    w.close(); // if
}
