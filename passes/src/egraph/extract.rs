//! Cheapest-node extraction in time linear in the e-graph (times a log).
//!
//! egg's `Extractor` recomputes every class until nothing changes; the
//! classes come in hash order, so a chain of n ops can take n sweeps of n
//! classes (a 20,000-node chain spent two minutes there). Costs here are
//! monotone (a node costs its own non-negative cost plus its children's),
//! so Knuth's generalization of Dijkstra's algorithm applies: a class is
//! final when it is the cheapest unfinished one, and every node is costed
//! once, when its last child becomes final. The result is the same least
//! fixpoint egg computes: the cost of a node is its own cost plus the sum
//! of its children's (shared children counted per use), and each class
//! picks its first node of least cost.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use egg::{EGraph, Id, Language};

use super::analysis::TensorAnalysis;
use super::cost::CostModel;
use super::lang::TLang;

/// A total order on costs for the heap.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cost(f64);

impl Eq for Cost {}

impl PartialOrd for Cost {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Cost {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// The cheapest node of every class that has a finite-or-infinite cost.
#[derive(Debug)]
pub struct Extracted<'a> {
    eg: &'a EGraph<TLang, TensorAnalysis>,
    best: HashMap<Id, (f64, TLang)>,
}

impl<'a> Extracted<'a> {
    /// Costs every class of `eg` with `model`.
    pub fn new(eg: &'a EGraph<TLang, TensorAnalysis>, mut model: CostModel<'a>) -> Self {
        // Every node once: its class, own cost, children (canonical).
        let mut nodes: Vec<(Id, &TLang, f64, Vec<Id>)> = Vec::new();
        for class in eg.classes() {
            for n in class.iter() {
                let ch: Vec<Id> = n.children().iter().map(|c| eg.find(*c)).collect();
                nodes.push((class.id, n, model.node_cost(n), ch));
            }
        }
        let mut users: HashMap<Id, Vec<usize>> = HashMap::new();
        let mut pending: Vec<usize> = Vec::with_capacity(nodes.len());
        let mut heap = BinaryHeap::new();
        for (i, (class, _, own, ch)) in nodes.iter().enumerate() {
            pending.push(ch.len());
            for c in ch {
                users.entry(*c).or_default().push(i);
            }
            if ch.is_empty() {
                heap.push(Reverse((Cost(*own), *class, i)));
            }
        }
        let mut cost: HashMap<Id, f64> = HashMap::new();
        while let Some(Reverse((Cost(c), class, _))) = heap.pop() {
            if cost.contains_key(&class) {
                continue;
            }
            cost.insert(class, c);
            for &u in users.get(&class).map(Vec::as_slice).unwrap_or(&[]) {
                pending[u] -= 1;
                if pending[u] == 0 {
                    let (uc, _, own, ch) = &nodes[u];
                    if !cost.contains_key(uc) {
                        let total = ch.iter().fold(*own, |s, k| s + cost[k]);
                        heap.push(Reverse((Cost(total), *uc, u)));
                    }
                }
            }
        }
        // The choice per class, as egg makes it: the first node of least
        // total cost in the class's order.
        let mut best: HashMap<Id, (f64, TLang)> = HashMap::new();
        for (class, n, own, ch) in &nodes {
            let Some(total) = ch.iter().try_fold(*own, |s, k| cost.get(k).map(|c| s + c)) else {
                continue;
            };
            match best.get(class) {
                Some((b, _)) if total.total_cmp(b) != Ordering::Less => {}
                _ => {
                    best.insert(*class, (total, (*n).clone()));
                }
            }
        }
        Extracted { eg, best }
    }

    /// The cost of a class (infinite when it has no valid form).
    pub fn cost(&self, id: Id) -> f64 {
        self.best
            .get(&self.eg.find(id))
            .map_or(f64::INFINITY, |b| b.0)
    }

    /// Makes `node` the choice of `class` (memory-aware extraction); the
    /// class's cost stays what the cost model gave.
    pub fn choose(&mut self, class: Id, node: TLang) {
        let c = self.eg.find(class);
        let cost = self.cost(c);
        self.best.insert(c, (cost, node));
    }

    /// The cheapest node of a class, if it has one.
    pub fn node(&self, id: Id) -> Option<&TLang> {
        self.best.get(&self.eg.find(id)).map(|b| &b.1)
    }
}
