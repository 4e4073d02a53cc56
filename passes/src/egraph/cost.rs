//! Extraction costs: an estimate of latency in multiply-accumulate
//! equivalents (arithmetic, memory traffic, a fixed cost per kernel), plus,
//! for microcontrollers, the bytes each intermediate occupies. Constants and
//! inputs cost nothing, so folded values always win.

use std::collections::HashMap;

use egg::{CostFunction, EGraph, Id, Language, Symbol};
use nnc_ir::stats::op_macs;
use nnc_ir::{Op, TensorType};

use super::analysis::{Kind, TensorAnalysis, attr_of};
use super::lang::{AttrKey, OUT, TLang};

/// Cost of one kernel launch / loop nest, in MAC equivalents.
pub const KERNEL_OVERHEAD: f64 = 64.0;
/// Cost of moving one byte, in MAC equivalents.
pub const BYTE_COST: f64 = 0.25;
/// Extra cost per byte of a materialized intermediate on an MCU.
pub const MEMORY_COST: f64 = 1.0;

/// The cost function used for extraction.
#[derive(Debug)]
pub struct CostModel<'a> {
    eg: &'a EGraph<TLang, TensorAnalysis>,
    /// Count the bytes of materialized intermediates too.
    memory: bool,
    ops: HashMap<(Symbol, AttrKey), Option<Op>>,
}

impl<'a> CostModel<'a> {
    pub fn new(eg: &'a EGraph<TLang, TensorAnalysis>, memory: bool) -> Self {
        CostModel {
            eg,
            memory,
            ops: HashMap::new(),
        }
    }

    /// Cost of one e-node by itself.
    pub fn node_cost(&mut self, enode: &TLang) -> f64 {
        let TLang::Op(name, ch) = enode else {
            return 0.0;
        };
        if name.as_str() == OUT {
            return 0.0;
        }
        let Some(attr) = ch.first().and_then(|&a| attr_of(self.eg, a)) else {
            return f64::INFINITY;
        };
        let op = self
            .ops
            .entry((*name, attr))
            .or_insert_with(|| nnc_ir::parse::parse_op(name.as_str(), &attr.text()).ok())
            .clone();
        let Some(op) = op else {
            return f64::INFINITY;
        };
        let mut ins: Vec<&TensorType> = Vec::new();
        for &c in &ch[1..] {
            let d = &self.eg[c].data;
            if d.kind == Kind::None {
                continue;
            }
            match d.ty() {
                Some(t) => ins.push(t),
                None => return f64::INFINITY,
            }
        }
        let Ok(outs) = op.infer(&ins) else {
            return f64::INFINITY;
        };
        if op.is_view() {
            return 1.0;
        }
        let in_bytes: usize = ins.iter().map(|t| t.bytes()).sum();
        let out_bytes: usize = outs.iter().map(|t| t.bytes()).sum();
        let macs = op_macs(&op, &ins, &outs) as f64;
        let mut c = macs + BYTE_COST * (in_bytes + out_bytes) as f64 + KERNEL_OVERHEAD;
        if self.memory {
            c += MEMORY_COST * out_bytes as f64;
        }
        if let Op::Winograd(a) = &op {
            let memory = self.memory.then_some(MEMORY_COST);
            let mode = self.eg.analysis.winograd;
            let l2 = self.eg.analysis.l2_bytes;
            c = super::rules::winograd::node_cost(a, &ins, c, mode, BYTE_COST, memory, l2);
        }
        c
    }
}

impl CostFunction<TLang> for CostModel<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &TLang, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = self.node_cost(enode);
        enode.fold(own, |s, id| s + costs(id))
    }
}
