//! Pruning to fit an SRAM budget (`--prune-to-fit`): one step of the loop
//! that lowers, plans and prunes until the arena fits. Given the buffers
//! live at the memory bottleneck of the lowered plan, [`choose`] maps them
//! back to the channel classes of the graph as imported (by the source
//! names the lowering gives its buffers), and picks the classes with the
//! least importance per byte they hold at the bottleneck, enough to cover
//! the bytes missing. A layer never loses its last channel.

use std::collections::{BTreeSet, HashMap};

use nnc_ir::{Graph, NodeId, Value};

use super::Method;
use super::channels::Channels;
use super::rank;

/// A buffer live at the bottleneck step: its name (the source name of the
/// step that starts it, as the memory plan records it) and its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    pub name: String,
    pub bytes: usize,
}

/// What a buffer name says: the node names it comes from, whether it holds
/// an input of that step rather than its output, and the channel range it
/// holds (a channel-split piece), if any.
#[derive(Clone, Debug, PartialEq)]
struct BufferName<'a> {
    parts: Vec<&'a str>,
    input_of: bool,
    channels: Option<(usize, usize)>,
}

/// Strips the prefixes partial execution puts on buffer names
/// (`row R of `, `window row R of `, `shift window of `, `row R of an
/// input of `, `channels [LO, HI) of `); fused steps join their source
/// names with `+`.
fn parse_name(mut s: &str) -> BufferName<'_> {
    let mut input_of = false;
    let mut channels = None;
    loop {
        if let Some(r) = s.strip_prefix("channels [")
            && let Some((range, rest)) = r.split_once(") of ")
            && let Some((lo, hi)) = range.split_once(", ")
            && let (Ok(lo), Ok(hi)) = (lo.trim().parse(), hi.trim().parse())
        {
            channels = Some((lo, hi));
            s = rest;
            continue;
        }
        if let Some(r) = s.strip_prefix("shift window of ") {
            s = r;
            continue;
        }
        let row = s
            .strip_prefix("window row ")
            .or_else(|| s.strip_prefix("row "));
        if let Some(r) = row
            && let Some((n, rest)) = r.split_once(" of ")
            && n.parse::<i64>().is_ok()
        {
            s = match rest.strip_prefix("an input of ") {
                Some(x) => {
                    input_of = true;
                    x
                }
                None => rest,
            };
            continue;
        }
        break;
    }
    BufferName {
        parts: s.split('+').collect(),
        input_of,
        channels,
    }
}

/// The value of `g` a buffer holds (all its channels or a range of them),
/// when its name leads to one with channels.
fn buffer_value(
    g: &Graph,
    ch: &Channels,
    by_name: &HashMap<&str, Vec<NodeId>>,
    name: &str,
) -> Option<(Value, Option<(usize, usize)>)> {
    let b = parse_name(name);
    let with_channels = |v: Value| ch.val(v).map(|_| v);
    let found = if b.input_of {
        // The first op of a fused step reads the input.
        by_name.get(b.parts[0]).and_then(|ids| {
            ids.iter()
                .find_map(|&id| g.node_inputs(id).first().copied().and_then(with_channels))
        })
    } else {
        // The last op of a fused step writes its output.
        b.parts.iter().rev().find_map(|p| {
            by_name.get(p).and_then(|ids| {
                ids.iter()
                    .rev()
                    .find_map(|&id| with_channels(Value::new(id, 0)))
            })
        })
    };
    found.map(|v| (v, b.channels))
}

/// Bytes each class (root slot) holds in the buffers live at the
/// bottleneck, and the buffers that lead to no value with channels.
pub fn bytes_at(g: &Graph, ch: &Channels, live: &[Live]) -> (HashMap<usize, f64>, Vec<String>) {
    let mut by_name: HashMap<&str, Vec<NodeId>> = HashMap::new();
    for id in g.node_ids() {
        let n = &g.node(id).name;
        if !n.is_empty() {
            by_name.entry(n.as_str()).or_default().push(id);
        }
    }
    let mut at: HashMap<usize, f64> = HashMap::new();
    let mut unmatched = vec![];
    for l in live {
        let Some((v, range)) = buffer_value(g, ch, &by_name, &l.name) else {
            unmatched.push(l.name.clone());
            continue;
        };
        let cv = ch.val(v).expect("has channels");
        let (lo, hi) = match range {
            Some((lo, hi)) if lo < hi && hi <= cv.n => (lo, hi),
            _ => (0, cv.n),
        };
        let per = l.bytes as f64 / (hi - lo) as f64;
        for c in lo..hi {
            *at.entry(ch.find(cv.base + c)).or_default() += per;
        }
    }
    (at, unmatched)
}

/// The classes chosen by one step of the loop, and what they are
/// estimated to save at the bottleneck.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pick {
    pub classes: BTreeSet<usize>,
    pub bytes: usize,
}

/// Chooses the classes to remove so that the bottleneck, where `live` are
/// the live buffers, loses about `missing` bytes: the classes with the
/// least importance (by `method`, relative to the other channels of their
/// layer) per byte they hold there. Per step a layer loses at most half
/// its channels, and never its last one, nor does any value. Fails with
/// the reason when no class at the bottleneck can shrink.
pub fn choose(
    g: &Graph,
    ch: &Channels,
    method: Method,
    live: &[Live],
    missing: usize,
) -> Result<Pick, String> {
    let (at, unmatched) = bytes_at(g, ch, live);
    let (groups, _) = rank::rank(g, ch, method);
    // Channels left in each value, and the values of each class.
    let mut left: HashMap<Value, usize> = HashMap::new();
    let mut vals_of: HashMap<usize, Vec<Value>> = HashMap::new();
    for (v, cv) in ch.values() {
        left.insert(*v, cv.n);
        for c in 0..cv.n {
            vals_of.entry(ch.find(cv.base + c)).or_default().push(*v);
        }
    }
    // (score, root, group index, bytes)
    let mut cands: Vec<(f64, usize, usize, f64)> = vec![];
    let mut group_left: Vec<usize> = vec![];
    let mut group_cap: Vec<usize> = vec![];
    for (gi, members) in groups.values().enumerate() {
        group_left.push(members.len());
        group_cap.push(members.len() / 2);
        let mean = members.iter().map(|m| m.2).sum::<f64>() / members.len() as f64;
        for &(root, _, norm) in members {
            if let Some(&b) = at.get(&root).filter(|b| **b > 0.0) {
                let rel = if mean > 0.0 { norm / mean } else { 0.0 };
                cands.push((rel / b, root, gi, b));
            }
        }
    }
    cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut pick = Pick::default();
    let mut saved = 0.0;
    for (_, root, gi, b) in &cands {
        if saved >= missing as f64 {
            break;
        }
        if group_left[*gi] <= 1 || group_cap[*gi] == 0 {
            continue;
        }
        let vals = &vals_of[root];
        let fits = vals
            .iter()
            .all(|v| left[v] > vals.iter().filter(|w| *w == v).count());
        if !fits {
            continue;
        }
        for v in vals {
            *left.get_mut(v).expect("value") -= 1;
        }
        group_left[*gi] -= 1;
        group_cap[*gi] -= 1;
        pick.classes.insert(*root);
        saved += b;
    }
    pick.bytes = saved.round() as usize;
    if !pick.classes.is_empty() {
        return Ok(pick);
    }
    // Why nothing can go.
    let mut why = vec![];
    if !cands.is_empty() {
        why.push(format!(
            "the {} prunable channel(s) live there are each the last of their layer (or of \
             a tensor)",
            cands.len()
        ));
    }
    let classes = ch.classes();
    let mut pinned: BTreeSet<String> = BTreeSet::new();
    for root in at.keys() {
        if let Some(r) = classes.get(root).and_then(|s| ch.pin_reason(s)) {
            pinned.insert(r.to_string());
        }
    }
    if !pinned.is_empty() {
        let list: Vec<String> = pinned.into_iter().take(4).collect();
        why.push(format!(
            "channels there cannot be pruned ({})",
            list.join("; ")
        ));
    }
    if !unmatched.is_empty() {
        why.push(format!(
            "{} live buffer(s) hold no prunable channels",
            unmatched.len()
        ));
    }
    if why.is_empty() {
        why.push("no prunable channel is live there".into());
    }
    Err(format!(
        "no channel at the bottleneck can be removed without removing a whole layer: {}",
        why.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_names_lose_their_partial_execution_prefixes() {
        let b = parse_name("row 3 of a+b");
        assert_eq!(b.parts, ["a", "b"]);
        assert!(!b.input_of && b.channels.is_none());
        let b = parse_name("window row -1 of x;y");
        assert_eq!(b.parts, ["x;y"]);
        let b = parse_name("row 0 of an input of conv");
        assert_eq!(b.parts, ["conv"]);
        assert!(b.input_of);
        let b = parse_name("channels [0, 12) of c+r");
        assert_eq!(b.parts, ["c", "r"]);
        assert_eq!(b.channels, Some((0, 12)));
        let b = parse_name("shift window of row 2 of q");
        assert_eq!(b.parts, ["q"]);
        // A name that only looks like a prefix stays whole.
        assert_eq!(parse_name("row of x").parts, ["row of x"]);
    }
}
