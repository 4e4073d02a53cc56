//! Pruning: removing channels (lossless `prune-dead`; structured
//! `l1-filter` and `slimming`) and zeroing weights (`magnitude`).
//!
//! These are graph passes, not e-graph rules: a channel is not a local
//! thing. Removing one output channel of a convolution changes every op
//! its channel reaches (activations, depthwise convolutions, BatchNorm, the
//! other branch of a residual add, concat offsets, the rows of a Gemm after
//! a flatten) up to the layers that read it, so the unit of rewriting is
//! the channel class of `channels.rs`, found by a union-find over the whole
//! graph. They run on the graph as imported (float or QDQ), before the
//! e-graph folds BatchNorm and turns QDQ patterns into integer ops.

pub mod channels;
pub mod edit;
pub mod fit;
pub mod rank;
pub mod reconstruct;

use std::collections::BTreeSet;
use std::fmt;

use nnc_ir::Graph;

use crate::pass::{Pass, PassCx, Result};
use channels::Channels;

/// How channels or weights are chosen for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Filters with the smallest L1 norm (Li et al.).
    L1Filter,
    /// Channels with the smallest BatchNorm scale (network slimming).
    Slimming,
    /// Individual weights of the smallest magnitude (unstructured).
    Magnitude,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::L1Filter => "l1-filter",
            Method::Slimming => "slimming",
            Method::Magnitude => "magnitude",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "l1-filter" => Method::L1Filter,
            "slimming" => Method::Slimming,
            "magnitude" => Method::Magnitude,
            _ => return None,
        })
    }
}

/// What `--prune METHOD:RATIO[:global]` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneSpec {
    pub method: Method,
    /// Fraction of channels (or weights) to remove, in `[0, 1)`.
    pub ratio: f64,
    /// Rank all layers together (`global`) instead of each layer on its own.
    pub global: bool,
    /// Refit the layers that read pruned channels from calibration inputs.
    pub reconstruct: bool,
    /// Calibration inputs for reconstruction (in signature order per set).
    pub calib: Vec<Vec<nnc_ir::Tensor>>,
}

impl PruneSpec {
    /// Parses `METHOD:RATIO` or `METHOD:RATIO:global` / `:layer`.
    pub fn parse(s: &str) -> std::result::Result<PruneSpec, String> {
        let usage = "use METHOD:RATIO[:global], METHOD one of l1-filter, slimming, magnitude, \
                     RATIO in [0, 1), e.g. l1-filter:0.25";
        let mut it = s.split(':');
        let m = it.next().unwrap_or_default();
        let method = Method::parse(m).ok_or_else(|| format!("unknown method `{m}`: {usage}"))?;
        let r = it
            .next()
            .ok_or_else(|| format!("`{s}` has no ratio: {usage}"))?;
        let ratio: f64 = r
            .parse()
            .map_err(|_| format!("`{r}` is not a ratio: {usage}"))?;
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!("ratio {ratio} is outside [0, 1): {usage}"));
        }
        let global = match it.next() {
            None | Some("layer") => false,
            Some("global") => true,
            Some(o) => return Err(format!("`{o}`: the scope is `global` or `layer`")),
        };
        if it.next().is_some() {
            return Err(format!("`{s}`: {usage}"));
        }
        Ok(PruneSpec {
            method,
            ratio,
            global,
            reconstruct: false,
            calib: vec![],
        })
    }
}

/// What one layer lost.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPrune {
    /// The layer (producer of the channels, or the weights' consumer).
    pub layer: String,
    /// Channels (or weights) before and after.
    pub before: usize,
    pub after: usize,
}

/// The report of one pruning pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    pub pass: String,
    pub layers: Vec<LayerPrune>,
    /// Channels removed, all layers.
    pub channels_removed: usize,
    /// Weights zeroed (magnitude).
    pub weights_zeroed: usize,
    pub notes: Vec<String>,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layers.is_empty() {
            writeln!(f, "{}: nothing removed", self.pass)?;
        } else if self.weights_zeroed > 0 {
            writeln!(f, "{}: {} weights zeroed", self.pass, self.weights_zeroed)?;
        } else {
            writeln!(
                f,
                "{}: {} channels removed",
                self.pass, self.channels_removed
            )?;
        }
        let unit = if self.weights_zeroed > 0 {
            "weights"
        } else {
            "channels"
        };
        for l in &self.layers {
            writeln!(
                f,
                "  {}: {unit} {} -> {} (-{})",
                l.layer,
                l.before,
                l.after,
                l.before - l.after
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// Per-producer summary of a removal, for the report.
fn layer_rows(g: &Graph, ch: &Channels, classes: &BTreeSet<usize>) -> Vec<LayerPrune> {
    let mut rows: Vec<LayerPrune> = vec![];
    let mut per: std::collections::BTreeMap<nnc_ir::NodeId, (usize, usize)> = Default::default();
    for slots in ch.classes().values() {
        let gone = classes.contains(&ch.find(slots[0]));
        for s in ch.sources(slots) {
            let e = per.entry(s.node).or_default();
            e.0 += 1;
            if gone {
                e.1 += 1;
            }
        }
    }
    for (id, (n, k)) in per {
        if k > 0 {
            rows.push(LayerPrune {
                layer: edit::producer_name(g, id),
                before: n,
                after: n - k,
            });
        }
    }
    rows
}

/// Removes `classes` (root slots of `ch`, the classes of `g`) and reports
/// it as `pass`.
pub fn remove(
    g: &mut Graph,
    ch: &Channels,
    classes: &BTreeSet<usize>,
    pass: &str,
) -> Result<(PruneReport, edit::Removal)> {
    let layers = layer_rows(g, ch, classes);
    let r = edit::removal(ch, classes);
    edit::apply(g, ch, &r)?;
    Ok((
        PruneReport {
            pass: pass.to_string(),
            layers,
            channels_removed: classes.len(),
            ..Default::default()
        },
        r,
    ))
}

/// Lossless removal of channels that cannot change an output: channels
/// every layer reads as exactly zero (all-zero filters and bias, a zero
/// BatchNorm scale and shift, through activations that keep zero) and
/// channels no layer reads (sliced away). Part of `-O2`.
#[derive(Debug, Default)]
pub struct PruneDead;

impl Pass for PruneDead {
    fn name(&self) -> &'static str {
        "prune-dead"
    }

    fn run(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
        let ch = Channels::analyze(g)?;
        let classes = ch.classes();
        let mut dead: BTreeSet<usize> = classes
            .iter()
            .filter(|(_, s)| ch.is_dead(s))
            .map(|(r, _)| *r)
            .collect();
        // A value never loses all its channels: that would remove a layer
        // (and leave an empty tensor); keep its first dead channel.
        for (v, cv) in ch.values() {
            let all = (0..cv.n).all(|c| dead.contains(&ch.find(cv.base + c)));
            if all && cv.n > 0 {
                let keep = ch.find(cv.base);
                log::info!("prune-dead: keeping one channel of {:?}", v);
                dead.remove(&keep);
            }
        }
        let mut rep = if dead.is_empty() {
            PruneReport {
                pass: self.name().to_string(),
                ..Default::default()
            }
        } else {
            remove(g, &ch, &dead, self.name())?.0
        };
        if dead.is_empty() {
            rep.notes.push(
                "no dead channels (no all-zero filters, zero BatchNorm scales or unread channels)"
                    .into(),
            );
        }
        cx.prune_reports.push(rep);
        Ok(!dead.is_empty())
    }
}

/// Structured pruning: `l1-filter` or `slimming`, ratio and scope from the
/// pipeline's prune spec (default 0.25 per layer).
#[derive(Debug)]
pub struct Structured(pub Method);

impl Pass for Structured {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn run(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
        let spec = match &cx.prune {
            Some(s) if s.method == self.0 => s.clone(),
            _ => PruneSpec::parse(&format!("{}:0.25", self.0.name())).expect("valid"),
        };
        let original = spec.reconstruct.then(|| g.clone());
        let ch = Channels::analyze(g)?;
        let (chosen, notes) = rank::choose(g, &ch, &spec);
        let (mut rep, removal) = remove(g, &ch, &chosen, self.name())?;
        rep.notes.extend(notes);
        if let Some(orig) = original {
            let fitted = reconstruct::refit(&orig, g, &spec.calib, &removal)?;
            let (n, what) = match spec.calib.len() {
                0 => (reconstruct::DEFAULT_CALIB as usize, " seeded random"),
                n => (n, ""),
            };
            rep.notes.push(format!(
                "reconstruction: refitted {fitted} layer(s) by least squares on {n}{what} \
                 calibration input(s)"
            ));
        }
        cx.prune_reports.push(rep);
        Ok(!chosen.is_empty())
    }
}

/// Unstructured magnitude pruning: zeroes the smallest weights of every
/// convolution and matrix product. The weights stay dense.
#[derive(Debug, Default)]
pub struct Magnitude;

impl Pass for Magnitude {
    fn name(&self) -> &'static str {
        "magnitude"
    }

    fn run(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
        let spec = match &cx.prune {
            Some(s) if s.method == Method::Magnitude => s.clone(),
            _ => PruneSpec::parse("magnitude:0.25").expect("valid"),
        };
        let rep = rank::magnitude(g, &spec)?;
        let changed = rep.weights_zeroed > 0;
        cx.prune_reports.push(rep);
        Ok(changed)
    }
}
