//! C text helpers: an indenting writer, C types, and literals that parse
//! back to exactly the same value.

use nnc_ir::DType;

/// Accumulates indented C source.
#[derive(Debug, Default)]
pub struct W {
    pub s: String,
    indent: usize,
}

impl W {
    pub fn new() -> Self {
        Self::default()
    }

    /// One line at the current indentation.
    pub fn line(&mut self, l: impl AsRef<str>) {
        for _ in 0..self.indent {
            self.s.push_str("    ");
        }
        self.s.push_str(l.as_ref());
        self.s.push('\n');
    }

    /// `head {` and indent.
    pub fn open(&mut self, head: impl AsRef<str>) {
        self.line(format!("{} {{", head.as_ref()));
        self.indent += 1;
    }

    /// A bare `{` block and indent.
    pub fn block(&mut self) {
        self.line("{");
        self.indent += 1;
    }

    /// `}` and dedent.
    pub fn close(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.line("}");
    }

    /// `for (size_t v = lo; v < hi; ++v) {`
    pub fn for_(&mut self, v: &str, lo: impl std::fmt::Display, hi: impl std::fmt::Display) {
        self.open(format!("for (size_t {v} = {lo}; {v} < {hi}; ++{v})"));
    }
}

/// The C element type of a dtype (bool is one byte holding 0 or 1).
pub fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I8 => "int8_t",
        DType::U8 | DType::Bool => "uint8_t",
        DType::I16 => "int16_t",
        DType::U16 => "uint16_t",
        DType::I32 => "int32_t",
        DType::U32 => "uint32_t",
        DType::I64 => "int64_t",
    }
}

/// A float literal of type `d` (`1.5f`, `INFINITY`, `NAN`).
pub fn flit(x: f64, d: DType) -> String {
    if x.is_nan() {
        return "NAN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "INFINITY".into()
        } else {
            "(-INFINITY)".into()
        };
    }
    match d {
        DType::F64 => format!("{x:?}"),
        _ => {
            let v = x as f32;
            if v.is_infinite() {
                return if v > 0.0 {
                    "INFINITY".into()
                } else {
                    "(-INFINITY)".into()
                };
            }
            format!("{v:?}f")
        }
    }
}

/// An integer literal that is valid for any value of an `int64_t`.
pub fn ilit(x: i64) -> String {
    if x == i64::MIN {
        "(-9223372036854775807LL - 1)".into()
    } else if x < i32::MIN as i64 || x > i32::MAX as i64 {
        format!("{x}LL")
    } else if x < 0 {
        format!("({x})")
    } else {
        x.to_string()
    }
}

/// A literal of type `d` for the value `x`.
pub fn lit(x: f64, d: DType) -> String {
    if d.is_float() {
        flit(x, d)
    } else {
        ilit(x as i64)
    }
}

/// Suffix of the C math function family for a float type (`expf` vs `exp`).
pub fn fsuf(d: DType) -> &'static str {
    if d == DType::F64 { "" } else { "f" }
}

pub use crate::names::{comment_safe, cstr, ident};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(flit(1.0, DType::F32), "1.0f");
        assert_eq!(flit(1e-5, DType::F32), "1e-5f");
        assert_eq!(flit(f64::NEG_INFINITY, DType::F32), "(-INFINITY)");
        assert_eq!(flit(0.1, DType::F64), "0.1");
        assert_eq!(ilit(-5), "(-5)");
        assert_eq!(ilit(i64::MIN), "(-9223372036854775807LL - 1)");
        assert_eq!(ilit(1 << 40), "1099511627776LL");
        assert_eq!(ident("kws-dscnn.v2"), "kws_dscnn_v2");
        assert_eq!(ident("9lives"), "m9lives");
        assert_eq!(cstr("a\"b\u{e9}"), "\"a\\\"b\\303\\251\"");
    }
}
