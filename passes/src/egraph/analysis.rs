//! The e-class analysis: each class knows its tensor type(s), whether its
//! value is a known constant (folded with the reference interpreter), and
//! the source name of the value it came from. Rules read shapes and
//! constant-ness from here, never from op names.

use std::collections::HashMap;
use std::sync::Arc;

use egg::{Analysis, DidMerge, EGraph, Id, Symbol};
use nnc_ir::{Op, Tensor, TensorType};

use super::lang::{AttrKey, Leaf, OUT, TLang};

/// What a class holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Tensor,
    Attr,
    None,
}

/// Per-class facts.
#[derive(Clone, Debug, Default)]
pub struct ClassData {
    pub kind: Kind,
    /// Output types (one for plain values, several for a tuple).
    pub types: Vec<TensorType>,
    /// The value, when it is a compile-time constant.
    pub konst: Option<Vec<Arc<Tensor>>>,
    /// Source (ONNX) name of the value.
    pub name: Option<String>,
    /// No node of the class type-checks (a rule built something bad).
    pub invalid: bool,
    /// A channel slice the channel-split rules built (never split again).
    pub sliced: bool,
}

impl ClassData {
    /// The type of a single-tensor class.
    pub fn ty(&self) -> Option<&TensorType> {
        match (self.kind, self.types.as_slice()) {
            (Kind::Tensor, [t]) if !self.invalid => Some(t),
            _ => None,
        }
    }

    /// The constant value of a single-tensor class.
    pub fn value(&self) -> Option<&Arc<Tensor>> {
        match &self.konst {
            Some(v) if v.len() == 1 => v.first(),
            _ => None,
        }
    }
}

/// Graph-wide tables the analysis needs.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    /// Types of the graph inputs (`in:k`).
    pub inputs: Vec<TensorType>,
    /// Constant table (`c:k`): the graph's constants, then folded values.
    pub consts: Vec<Arc<Tensor>>,
    /// Largest constant folding may create.
    pub fold_limit: usize,
    /// Bytes folding may still add beyond what it consumes (see
    /// [`crate::basic::fold_budget`]); candidates past it stay unfolded.
    pub fold_budget: u64,
    /// Decoded ops by (name, attributes).
    ops: HashMap<(Symbol, AttrKey), Result<Op, String>>,
    /// Names for fused nodes: (class, op name) -> source names joined by `+`.
    pub fused_names: HashMap<(Id, Symbol), String>,
    /// Constants by type and content hash, so the same value always gets
    /// the same leaf (otherwise re-applied rules would grow the e-graph).
    const_index: HashMap<(TensorType, u64), Vec<u32>>,
    /// Which convolutions the Winograd rules may rewrite (and extraction
    /// must pick).
    pub winograd: super::rules::winograd::WinogradMode,
    /// The target's level-2 cache in bytes (0: none or unknown), which
    /// the Winograd cost weighs the transformed weights against.
    pub l2_bytes: usize,
    /// The sliced alternatives the channel-split rules added.
    pub splits: Vec<super::rules::chsplit::SplitAlt>,
}

impl TensorAnalysis {
    pub fn new(inputs: Vec<TensorType>, consts: Vec<Arc<Tensor>>) -> Self {
        TensorAnalysis {
            inputs,
            consts,
            fold_limit: crate::basic::FOLD_LIMIT,
            fold_budget: crate::basic::FOLD_BUDGET_BASE,
            ..Default::default()
        }
    }

    /// The leaf index of a constant, reusing an identical one.
    pub fn intern(&mut self, t: Arc<Tensor>) -> u32 {
        let key = (t.ty(), crate::basic::hash_bytes(&t.data().to_le_bytes()));
        let bucket = self.const_index.entry(key).or_default();
        if let Some(&k) = bucket.iter().find(|&&k| self.consts[k as usize].bit_eq(&t)) {
            return k;
        }
        self.consts.push(t);
        let k = self.consts.len() as u32 - 1;
        bucket.push(k);
        k
    }

    /// The IR op behind an op name and attribute key (cached).
    pub fn decode(&mut self, name: Symbol, attr: AttrKey) -> Result<Op, String> {
        self.ops
            .entry((name, attr))
            .or_insert_with(|| nnc_ir::parse::parse_op(name.as_str(), &attr.text()))
            .clone()
    }
}

/// The attribute key stored in an attribute class.
pub fn attr_of(eg: &EGraph<TLang, TensorAnalysis>, id: Id) -> Option<AttrKey> {
    eg[id].nodes.iter().find_map(|n| match n {
        TLang::Attr(k) => Some(*k),
        _ => None,
    })
}

fn invalid() -> ClassData {
    ClassData {
        invalid: true,
        ..Default::default()
    }
}

impl Analysis<TLang> for TensorAnalysis {
    type Data = ClassData;

    fn make(eg: &mut EGraph<TLang, Self>, enode: &TLang, _id: Id) -> ClassData {
        match enode {
            TLang::None => ClassData {
                kind: Kind::None,
                ..Default::default()
            },
            TLang::Attr(_) => ClassData {
                kind: Kind::Attr,
                ..Default::default()
            },
            TLang::Leaf(Leaf::Input(k)) => match eg.analysis.inputs.get(*k as usize) {
                Some(t) => ClassData {
                    types: vec![t.clone()],
                    ..Default::default()
                },
                None => invalid(),
            },
            TLang::Leaf(Leaf::Const(k)) => match eg.analysis.consts.get(*k as usize) {
                Some(t) => ClassData {
                    types: vec![t.ty()],
                    konst: Some(vec![t.clone()]),
                    ..Default::default()
                },
                None => invalid(),
            },
            TLang::Op(name, ch) => make_op(eg, *name, ch),
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut to_a = false;
        let mut to_b = false;
        if a.sliced != b.sliced {
            to_a |= b.sliced;
            to_b |= a.sliced;
            a.sliced = true;
        }
        if a.invalid && !b.invalid {
            a.kind = b.kind;
            a.types = b.types.clone();
            a.invalid = false;
            to_a = true;
        } else if b.invalid && !a.invalid {
            to_b = true;
        } else if !a.invalid && a.types != b.types {
            // Rules must preserve types; keep the first and say so.
            log::warn!(
                "e-graph merged values of types {:?} and {:?}",
                a.types,
                b.types
            );
        }
        match (&a.konst, &b.konst) {
            (None, Some(_)) => {
                a.konst = b.konst;
                to_a = true;
            }
            (Some(_), None) => to_b = true,
            _ => {}
        }
        match (&a.name, &b.name) {
            (None, Some(_)) => {
                a.name = b.name;
                to_a = true;
            }
            (Some(_), None) => to_b = true,
            _ => {}
        }
        DidMerge(to_a, to_b)
    }

    fn modify(eg: &mut EGraph<TLang, Self>, id: Id) {
        // A class with a known value gets a constant leaf, which costs
        // nothing to extract: this is constant folding.
        let d = &eg[id].data;
        let Some(t) = d.value().cloned() else { return };
        let has_leaf = eg[id]
            .nodes
            .iter()
            .any(|n| matches!(n, TLang::Leaf(Leaf::Const(_))));
        if has_leaf {
            return;
        }
        let k = eg.analysis.intern(t);
        let leaf = eg.add(TLang::Leaf(Leaf::Const(k)));
        eg.union(id, leaf);
    }
}

fn make_op(eg: &mut EGraph<TLang, TensorAnalysis>, name: Symbol, ch: &[Id]) -> ClassData {
    let Some((&attr_id, inputs)) = ch.split_first() else {
        return invalid();
    };
    let Some(attr) = attr_of(eg, attr_id) else {
        return invalid();
    };
    if name.as_str() == OUT {
        let idx: Option<usize> = attr
            .text()
            .strip_prefix("index=")
            .and_then(|s| s.parse().ok());
        let (Some(idx), [t]) = (idx, inputs) else {
            return invalid();
        };
        let d = &eg[*t].data;
        return match d.types.get(idx) {
            Some(ty) if !d.invalid => ClassData {
                types: vec![ty.clone()],
                konst: d.konst.as_ref().map(|v| vec![v[idx].clone()]),
                ..Default::default()
            },
            _ => invalid(),
        };
    }
    let Ok(op) = eg.analysis.decode(name, attr) else {
        return invalid();
    };
    let mut tys = Vec::with_capacity(inputs.len());
    let mut consts = Vec::with_capacity(inputs.len());
    let mut all_const = true;
    for &i in inputs {
        let d = &eg[i].data;
        if d.kind == Kind::None {
            continue;
        }
        let Some(t) = d.ty() else {
            return invalid();
        };
        tys.push(t.clone());
        match d.value() {
            Some(v) => consts.push(v.clone()),
            None => all_const = false,
        }
    }
    let refs: Vec<&TensorType> = tys.iter().collect();
    let Ok(types) = op.infer(&refs) else {
        return invalid();
    };
    let fold = all_const
        && !consts.is_empty()
        && !op.is_quantization()
        && types.iter().all(|t| t.len() <= eg.analysis.fold_limit)
        && crate::basic::cheap_to_fold(&op, &refs, &types);
    let r: Vec<&Tensor> = consts.iter().map(|t| t.as_ref()).collect();
    let growth = if fold {
        crate::basic::fold_growth(&r, &types)
    } else {
        0
    };
    let konst = if fold && growth <= eg.analysis.fold_budget {
        eg.analysis.fold_budget -= growth;
        op.eval(&r)
            .ok()
            .map(|v| v.into_iter().map(Arc::new).collect())
    } else {
        None
    };
    ClassData {
        types,
        konst,
        ..Default::default()
    }
}
