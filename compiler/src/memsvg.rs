//! The memory picture: a placed program's arena as SVG.
//!
//! x is the step, y the arena offset (0 at the top); every live piece of
//! storage ([`PlacedBuffer`]) is one rectangle spanning the steps it is
//! live at and the bytes it holds. Loop bodies are shaded and labelled with
//! their trip count, the peak step is a vertical line, an SRAM budget a
//! horizontal one, and the buffers live at the peak are outlined (the
//! bottleneck). Streamed chains show as many thin rectangles: the windows
//! and rows that replace a whole tensor. Every rectangle carries its exact
//! numbers as `data-` attributes (and a tooltip), so tools and tests can
//! read the plan back.

use std::fmt::Write;

use nnc_ir::program::{PlacedBuffer, Program};
use nnc_passes::lower::plan::human_bytes as human;

/// Pixels per step at most, and the plot's size.
const MAX_STEP_PX: f64 = 24.0;
const PLOT_W: f64 = 1000.0;
const PLOT_H: f64 = 480.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 50.0;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A colour per storage, stable across runs.
fn colour(storage: usize) -> String {
    let h = (storage as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    format!("hsl({}, 60%, 62%)", h % 360)
}

/// Renders the memory picture of a placed program; `budget` draws an SRAM
/// budget line.
pub fn render(p: &Program, budget: Option<usize>) -> String {
    let s = &p.stats;
    let steps = p.steps.len().max(1);
    let sx = (PLOT_W / steps as f64).min(MAX_STEP_PX);
    let width = LEFT + sx * steps as f64 + 40.0;
    let top_bytes = p.arena_bytes.max(budget.unwrap_or(0)).max(1);
    let sy = PLOT_H / top_bytes as f64;
    let height = TOP + PLOT_H + 70.0;
    let x = |step: usize| LEFT + step as f64 * sx;
    let y = |off: usize| TOP + off as f64 * sy;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r#"<title>{}: arena {} ({} B), {} steps</title>"#,
        esc(&p.name),
        human(p.arena_bytes),
        p.arena_bytes,
        p.steps.len()
    );
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="20" font-size="14">{} on {}: arena {} (greedy-by-size {}{}), peak at step {}</text>"#,
        esc(&p.name),
        esc(&p.target.spec()),
        human(p.arena_bytes),
        human(s.greedy_bytes),
        if s.chains.is_empty() {
            String::new()
        } else {
            format!(", {} streamed chains", s.chains.len())
        },
        s.peak_step
    );
    // The arena's frame.
    let _ = writeln!(
        o,
        r##"<rect class="arena" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="#f6f6f6" stroke="#999"/>"##,
        x(0),
        y(0),
        sx * steps as f64,
        p.arena_bytes as f64 * sy
    );
    let at_peak: Vec<&PlacedBuffer> = s.live_at(s.peak_step);
    for b in &s.buffers {
        let peak = at_peak.iter().any(|q| std::ptr::eq(*q, b));
        let _ = writeln!(
            o,
            r##"<rect class="buffer" data-storage="{}" data-offset="{}" data-bytes="{}" data-first="{}" data-last="{}" x="{:.3}" y="{:.3}" width="{:.3}" height="{:.3}" fill="{}" stroke="{}" stroke-width="{}"><title>{} B at +{}, steps {}-{}: {}</title></rect>"##,
            b.storage,
            b.offset,
            b.bytes,
            b.first,
            b.last,
            x(b.first),
            y(b.offset),
            sx * (b.last - b.first + 1) as f64,
            b.bytes as f64 * sy,
            colour(b.storage),
            if peak { "#c00" } else { "#333" },
            if peak { 1.5 } else { 0.3 },
            b.bytes,
            b.offset,
            b.first,
            b.last,
            esc(&b.name)
        );
    }
    // Loop bodies, over the buffers (their steps run `count` times).
    for l in &p.loops {
        let _ = writeln!(
            o,
            r##"<rect class="loop" data-first="{}" data-count="{}" x="{:.2}" y="{:.2}" width="{:.2}" height="{PLOT_H:.2}" fill="#3060ff" fill-opacity="0.12" stroke="#3060ff" stroke-dasharray="2 2"/>"##,
            l.first,
            l.count,
            x(l.first),
            TOP,
            sx * l.len as f64
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.2}" y="{:.2}">loop x{}</text>"#,
            x(l.first) + 2.0,
            TOP - 6.0,
            l.count
        );
    }
    // The peak and the budget.
    let px = x(s.peak_step) + sx / 2.0;
    let _ = writeln!(
        o,
        r##"<line class="peak" data-step="{}" x1="{px:.2}" y1="{:.2}" x2="{px:.2}" y2="{:.2}" stroke="#c00" stroke-dasharray="4 3"/>"##,
        s.peak_step,
        TOP,
        TOP + PLOT_H
    );
    let _ = writeln!(
        o,
        r##"<text x="{:.2}" y="{:.2}" fill="#c00">peak {} at step {}</text>"##,
        px + 3.0,
        TOP + PLOT_H + 16.0,
        human(s.live_bytes.get(s.peak_step).copied().unwrap_or(0)),
        s.peak_step
    );
    if let Some(bud) = budget {
        let by = y(bud);
        let _ = writeln!(
            o,
            r##"<line class="budget" data-bytes="{bud}" x1="{:.2}" y1="{by:.2}" x2="{:.2}" y2="{by:.2}" stroke="#e80" stroke-width="1.5"/>"##,
            x(0),
            x(steps)
        );
        let _ = writeln!(
            o,
            r##"<text x="{:.2}" y="{:.2}" fill="#e80">budget {}</text>"##,
            x(steps) - 120.0,
            by - 4.0,
            human(bud)
        );
    }
    // Axes.
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="{:.2}">step 0 .. {} (x) / arena offset (y)</text>"#,
        TOP + PLOT_H + 40.0,
        p.steps.len().saturating_sub(1)
    );
    for k in 0..=4 {
        let off = p.arena_bytes * k / 4;
        let _ = writeln!(
            o,
            r#"<text x="4" y="{:.2}">{}</text>"#,
            y(off) + 4.0,
            human(off)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Checks that no two pieces of storage overlap in both steps and bytes.
pub fn check_no_overlap(bufs: &[PlacedBuffer]) -> Result<(), String> {
    for (i, a) in bufs.iter().enumerate() {
        for b in &bufs[i + 1..] {
            let time = a.first <= b.last && b.first <= a.last;
            let space = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
            if time && space && a.bytes > 0 && b.bytes > 0 {
                return Err(format!(
                    "`{}` ({} B at +{}, steps {}-{}) overlaps `{}` ({} B at +{}, steps {}-{})",
                    a.name,
                    a.bytes,
                    a.offset,
                    a.first,
                    a.last,
                    b.name,
                    b.bytes,
                    b.offset,
                    b.first,
                    b.last
                ));
            }
        }
    }
    Ok(())
}
