//! The e-graph language for tensor graphs.
//!
//! Every IR op becomes `(name attrs input...)`: the op's text-format name,
//! then a leaf holding its attributes, then its inputs. Keeping attributes
//! in a leaf (as Tensat does) lets rules written as patterns ignore or bind
//! them (`(relu ?a (conv ?ca ?x ?w ?b))`) while appliers read and rebuild
//! them. Optional inputs of conv, conv_transpose, gemm, quantize and
//! dequantize are always present, as `none` when absent, so one pattern
//! covers both forms.
//! Multi-output ops produce a tuple that `(out {index=k} tuple)` projects.

use std::fmt;
use std::str::FromStr;

use egg::{Id, Symbol, define_language};
use nnc_ir::Op;
use nnc_ir::parse::op_attr_text;

/// Attribute leaf: the op's canonical attribute text between braces, with
/// spaces and parentheses escaped so that it is a single s-expression atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrKey(pub Symbol);

impl AttrKey {
    /// The key of an op's attributes.
    pub fn of(op: &Op) -> AttrKey {
        AttrKey::from_text(&op_attr_text(op))
    }

    /// The key for attribute text in the text-format syntax.
    pub fn from_text(text: &str) -> AttrKey {
        let enc: String = text
            .chars()
            .map(|c| match c {
                ' ' => ';',
                '(' => '<',
                ')' => '>',
                c => c,
            })
            .collect();
        AttrKey(Symbol::from(format!("{{{enc}}}")))
    }

    /// The attribute text in text-format syntax.
    pub fn text(&self) -> String {
        let s = self.0.as_str();
        s[1..s.len() - 1]
            .chars()
            .map(|c| match c {
                ';' => ' ',
                '<' => '(',
                '>' => ')',
                c => c,
            })
            .collect()
    }
}

impl fmt::Display for AttrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for AttrKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() >= 2 && s.starts_with('{') && s.ends_with('}') {
            Ok(AttrKey(Symbol::from(s)))
        } else {
            Err(format!("`{s}` is not an attribute leaf"))
        }
    }
}

/// A leaf value: graph input `k` or constant `k` of the analysis' table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Leaf {
    Input(u32),
    Const(u32),
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Input(k) => write!(f, "in:{k}"),
            Leaf::Const(k) => write!(f, "c:{k}"),
        }
    }
}

impl FromStr for Leaf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a leaf");
        if let Some(k) = s.strip_prefix("in:") {
            k.parse().map(Leaf::Input).map_err(|_| bad())
        } else if let Some(k) = s.strip_prefix("c:") {
            k.parse().map(Leaf::Const).map_err(|_| bad())
        } else {
            Err(bad())
        }
    }
}

define_language! {
    /// Tensor expressions.
    pub enum TLang {
        "none" = None,
        Attr(AttrKey),
        Leaf(Leaf),
        Op(Symbol, Vec<Id>),
    }
}

/// Name of the tuple projection op.
pub const OUT: &str = "out";

/// Ops whose optional trailing input is kept as an explicit `none`.
pub fn padded_arity(op: &Op) -> Option<usize> {
    match op {
        Op::Conv(_) | Op::Winograd(_) | Op::ConvTranspose(_) | Op::Gemm(_) => Some(3),
        Op::Quantize(_) | Op::Dequantize(_) => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_ir::op::{ConvAttrs, UnaryOp};

    #[test]
    fn attr_keys_round_trip() {
        let mut a = ConvAttrs::new(2);
        a.act = Some(UnaryOp::LeakyRelu { alpha: 0.1 });
        let op = Op::Conv(a);
        let k = AttrKey::of(&op);
        assert!(!k.to_string().contains(' ') && !k.to_string().contains('('));
        let back = nnc_ir::parse::parse_op("conv", &k.text()).unwrap();
        assert_eq!(back, op);
        let src = "(relu {} (conv {stride=[1,1]} in:0 c:1 none))";
        let e: egg::RecExpr<TLang> = src.parse().unwrap();
        let again: egg::RecExpr<TLang> = e.to_string().parse().unwrap();
        assert_eq!(e, again);
        assert_eq!(e.len(), 7);
    }
}
