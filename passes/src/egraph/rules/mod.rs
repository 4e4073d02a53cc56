//! Rewrite rules, one file per topic. Rules are data: an egg pattern and
//! either a right-hand pattern or a [`Build`] applier, which reads shapes and
//! constants from the analysis and constructs the replacement. Every rule
//! file has tests of the form "this graph becomes that one".

pub mod batchnorm;
pub mod chsplit;
pub mod cleanup;
pub mod fusion;
pub mod layout;
pub mod pad;
pub mod qoperator;
pub mod quant;
pub mod winograd;

use std::sync::Arc;

use egg::{Applier, EGraph, Id, PatternAst, Rewrite, Subst, Symbol, Var};
use nnc_ir::{Op, Tensor, TensorType};

use super::analysis::{ClassData, Kind, TensorAnalysis};
use super::lang::{AttrKey, Leaf, TLang, padded_arity};

/// The e-graph type of the pass.
pub type EG = EGraph<TLang, TensorAnalysis>;
/// A rule.
pub type Rw = Rewrite<TLang, TensorAnalysis>;

/// Rule groups, selectable per pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Identity removal, reshape chains, arithmetic canonical forms.
    Cleanup,
    /// Transposes and reshapes: cancel, merge, push through elementwise ops.
    Layout,
    /// BatchNormalization folding.
    BatchNorm,
    /// Bias, activation and constant scale/shift fusion into conv and gemm.
    Fusion,
    /// Pad folded into conv and pooling.
    Pad,
    /// QDQ patterns and the QOperator form (ONNX integer products and
    /// float rescaling) to integer ops.
    Quant,
    /// Winograd alternatives for 3x3 convolutions (as `--winograd` allows).
    Winograd,
    /// Channel-split alternatives of conv chains (lowering with a memory
    /// goal only: not in [`Group::ALL`]).
    ChSplit,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Cleanup,
        Group::Layout,
        Group::BatchNorm,
        Group::Fusion,
        Group::Pad,
        Group::Quant,
        Group::Winograd,
    ];
}

/// The rules of the given groups.
pub fn rules(groups: &[Group]) -> Vec<Rw> {
    let mut v = Vec::new();
    for g in groups {
        v.extend(match g {
            Group::Cleanup => cleanup::rules(),
            Group::Layout => layout::rules(),
            Group::BatchNorm => batchnorm::rules(),
            Group::Fusion => fusion::rules(),
            Group::Pad => pad::rules(),
            Group::Winograd => winograd::rules(),
            Group::ChSplit => chsplit::rules(),
            Group::Quant => {
                let mut v = quant::rules();
                v.extend(qoperator::rules());
                v
            }
        });
    }
    v
}

/// A pattern variable.
pub fn var(s: &str) -> Var {
    s.parse().expect("valid pattern variable")
}

/// What an applier sees: the e-graph, with typed accessors and a node
/// constructor that type-checks before adding anything.
#[derive(Debug)]
pub struct B<'a> {
    pub eg: &'a mut EG,
    subst: &'a Subst,
}

impl B<'_> {
    /// The class bound to a pattern variable (`"?x"`).
    pub fn id(&self, v: &str) -> Id {
        self.eg.find(self.subst[var(v)])
    }

    pub fn data(&self, id: Id) -> &ClassData {
        &self.eg[id].data
    }

    /// The type of a single-tensor class.
    pub fn ty(&self, id: Id) -> Option<TensorType> {
        self.data(id).ty().cloned()
    }

    /// The constant value of a class, if known.
    pub fn value(&self, id: Id) -> Option<Arc<Tensor>> {
        self.data(id).value().cloned()
    }

    pub fn is_none(&self, id: Id) -> bool {
        self.data(id).kind == Kind::None
    }

    /// The op named `name` with the attributes of class `attr`.
    pub fn op(&mut self, name: &str, attr: Id) -> Option<Op> {
        let key = super::analysis::attr_of(self.eg, attr)?;
        self.eg.analysis.decode(Symbol::from(name), key).ok()
    }

    /// Shorthand: decode with the attribute class bound to `var`.
    pub fn op_at(&mut self, name: &str, var: &str) -> Option<Op> {
        let a = self.id(var);
        self.op(name, a)
    }

    /// Adds `op(inputs)` if it type-checks (`none` inputs are skipped).
    pub fn add(&mut self, op: &Op, inputs: &[Id]) -> Option<Id> {
        let mut tys = Vec::new();
        for &i in inputs {
            if !self.is_none(i) {
                tys.push(self.ty(i)?);
            }
        }
        let refs: Vec<&TensorType> = tys.iter().collect();
        op.infer(&refs).ok()?;
        let attr = self.eg.add(TLang::Attr(AttrKey::of(op)));
        let mut ch = vec![attr];
        ch.extend_from_slice(inputs);
        if let Some(a) = padded_arity(op) {
            let none = self.eg.add(TLang::None);
            while ch.len() < a + 1 {
                ch.push(none);
            }
        }
        Some(self.eg.add(TLang::Op(Symbol::from(op.name()), ch)))
    }

    /// Adds a constant.
    pub fn konst(&mut self, t: Tensor) -> Id {
        let k = self.eg.analysis.intern(Arc::new(t));
        self.eg.add(TLang::Leaf(Leaf::Const(k)))
    }

    /// The `none` placeholder.
    pub fn none(&mut self) -> Id {
        self.eg.add(TLang::None)
    }

    /// The operand class of `class`'s `outer` node (with attributes `attr_var`)
    /// that holds a `host` node: the kernel an outer op is being fused into.
    pub fn host_of(&self, class: Id, outer: &str, attr_var: &str, host: &str) -> Option<Id> {
        let a = self.id(attr_var);
        self.eg[class].nodes.iter().find_map(|n| match n {
            TLang::Op(s, ch) if s.as_str() == outer && self.eg.find(ch[0]) == a => {
                ch[1..].iter().map(|c| self.eg.find(*c)).find(|c| {
                    self.eg[*c]
                        .nodes
                        .iter()
                        .any(|m| matches!(m, TLang::Op(h, _) if h.as_str() == host))
                })
            }
            _ => None,
        })
    }

    /// Names the fused node `op` in `class` after the source nodes it replaces.
    pub fn fused_name(&mut self, class: Id, op: &Op, parts: &[Id]) {
        let sym = Symbol::from(op.name());
        let cls = self.eg.find(class);
        let exists = self
            .eg
            .analysis
            .fused_names
            .keys()
            .any(|(c, s)| *s == sym && self.eg.find(*c) == cls);
        if exists {
            return;
        }
        let names: Vec<String> = parts
            .iter()
            .filter_map(|p| {
                let p = self.eg.find(*p);
                // A part that is itself a fusion contributes its full name:
                // one of the same op, or an activation folded from several
                // nodes (SiLU from Sigmoid and Mul).
                let named = |same: bool| {
                    self.eg.analysis.fused_names.iter().find_map(|((c, s), n)| {
                        let fits = if same {
                            *s == sym
                        } else {
                            fusion::ACTS.contains(&s.as_str())
                        };
                        (fits && self.eg.find(*c) == p).then(|| n.clone())
                    })
                };
                named(true)
                    .or_else(|| named(false))
                    .or_else(|| self.data(p).name.clone())
            })
            .filter(|n| !n.is_empty())
            .collect();
        if names.len() > 1 {
            self.eg
                .analysis
                .fused_names
                .insert((class, sym), names.join("+"));
        }
    }
}

/// A rule right-hand side written in Rust: given the matched class, build
/// an equivalent node (or decline with `None`).
pub struct Build<F>(pub F);

impl<F> std::fmt::Debug for Build<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Build(..)")
    }
}

impl<F> Applier<TLang, TensorAnalysis> for Build<F>
where
    F: Fn(&mut B<'_>, Id) -> Option<Id> + Send + Sync,
{
    fn apply_one(
        &self,
        eg: &mut EG,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TLang>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let want = eg[eclass].data.types.clone();
        let mut b = B { eg, subst };
        let Some(new) = (self.0)(&mut b, eclass) else {
            return vec![];
        };
        // A rule must never change a value's type; refuse rather than merge.
        if eg[new].data.invalid || eg[new].data.types != want {
            log::debug!(
                "rule result {:?} does not match {:?}; skipped",
                eg[new].data.types,
                want
            );
            return vec![];
        }
        if eg.union(eclass, new) {
            vec![new]
        } else {
            vec![]
        }
    }
}

/// Values of a per-channel constant: `t` must hold one value per channel
/// (`[C]`, `[C,1,...]`, `[1,C,1,...]` aligned at `axis` of a rank-`rank`
/// tensor, or a scalar broadcast to all channels).
pub fn per_channel(t: &Tensor, channels: usize, axis: usize, rank: usize) -> Option<Vec<f64>> {
    let v = t.to_f64();
    if v.len() == 1 {
        return Some(vec![v[0]; channels]);
    }
    if v.len() != channels || t.rank() > rank {
        return None;
    }
    // Right-align t's dims against the output; the channel dim must land on `axis`.
    let off = rank - t.rank();
    let pos = t.dims().iter().position(|&d| d == channels)?;
    if pos + off != axis
        || t.dims()
            .iter()
            .enumerate()
            .any(|(i, &d)| i != pos && d != 1)
    {
        return None;
    }
    Some(v)
}

/// Builds a tensor of `dtype` from f64 values.
pub fn tensor(dtype: nnc_ir::DType, dims: Vec<usize>, v: Vec<f64>) -> Option<Tensor> {
    Tensor::from_f64(dtype, dims, v).ok()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for "this graph becomes that one" tests.

    use super::*;
    use crate::egraph::{EgraphPass, run_egraph};
    use crate::pass::PassCx;

    /// Runs the given rule groups on an IR text and returns the printed result,
    /// after checking that the interpreter computes the same before and after.
    pub fn rewrite(src: &str, groups: &[Group]) -> String {
        let g = nnc_ir::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let mut cx = PassCx::default();
        let mut pass = EgraphPass::with_groups("test", groups);
        let out = run_egraph(&mut pass, &g, &mut cx).unwrap();
        out.verify().unwrap();
        crate::check::assert_same_outputs(&g, &out, 3, 1e-4, 1e-5);
        nnc_ir::print_full(&out)
    }

    /// The e-graph of an IR text saturated with the given rule groups, and
    /// the classes of its outputs: for rules whose result extraction may
    /// not pick (both forms cost the same), tests look at the classes.
    pub fn saturate(src: &str, groups: &[Group]) -> (EG, Vec<Id>) {
        saturate_mode(src, groups, Default::default())
    }

    /// [`saturate`] with Winograd in `mode`.
    pub fn saturate_mode(
        src: &str,
        groups: &[Group],
        mode: winograd::WinogradMode,
    ) -> (EG, Vec<Id>) {
        let g = nnc_ir::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let mut built = crate::egraph::convert::to_egraph(&g).unwrap();
        built.egraph.analysis.winograd = mode;
        let runner = egg::Runner::default()
            .with_egraph(built.egraph)
            .with_iter_limit(30)
            .run(&rules(groups));
        let roots = built.roots.iter().map(|&r| runner.egraph.find(r)).collect();
        (runner.egraph, roots)
    }

    /// The operand classes of every `op` node in `class` (attributes left
    /// out).
    pub fn operands(eg: &EG, class: Id, op: &str) -> Vec<Vec<Id>> {
        eg[class]
            .nodes
            .iter()
            .filter_map(|n| match n {
                TLang::Op(s, ch) if s.as_str() == op => {
                    Some(ch[1..].iter().map(|&c| eg.find(c)).collect())
                }
                _ => None,
            })
            .collect()
    }

    /// The constant value of a class, as f64s.
    pub fn value(eg: &EG, class: Id) -> Option<Vec<f64>> {
        eg[class].data.value().map(|t| t.to_f64())
    }
}
