//! Attribute syntax shared by every op in the text format: `{key=value ...}`
//! where a value is an integer, a float, an identifier, a quoted string or a
//! bracketed list. Each attribute struct writes and reads itself through
//! [`AttrWriter`] and [`AttrReader`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A parsed attribute value, before it is given its field's type.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Ident(String),
    Str(String),
    List(Vec<AttrValue>),
}

impl AttrValue {
    fn describe(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "an integer",
            AttrValue::Float(_) => "a float",
            AttrValue::Ident(_) => "an identifier",
            AttrValue::Str(_) => "a string",
            AttrValue::List(_) => "a list",
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Collects `key=value` pairs in the order an attribute struct writes them.
#[derive(Debug, Default)]
pub struct AttrWriter {
    items: Vec<(&'static str, String)>,
}

/// Formats an f64 so that it parses back to the same value.
pub fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x}")
    }
}

/// Formats an f32 so that it parses back to the same value.
pub fn fmt_f32(x: f32) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x}")
    }
}

impl AttrWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn int(&mut self, k: &'static str, v: i64) {
        self.items.push((k, v.to_string()));
    }

    pub fn usize(&mut self, k: &'static str, v: usize) {
        self.items.push((k, v.to_string()));
    }

    pub fn f32(&mut self, k: &'static str, v: f32) {
        self.items.push((k, fmt_f32(v)));
    }

    pub fn f64(&mut self, k: &'static str, v: f64) {
        self.items.push((k, fmt_f64(v)));
    }

    pub fn bool(&mut self, k: &'static str, v: bool) {
        self.items
            .push((k, if v { "true" } else { "false" }.into()));
    }

    pub fn ident(&mut self, k: &'static str, v: &str) {
        self.items.push((k, v.to_string()));
    }

    pub fn ints(&mut self, k: &'static str, v: &[i64]) {
        self.items.push((k, list(v.iter().map(|x| x.to_string()))));
    }

    pub fn usizes(&mut self, k: &'static str, v: &[usize]) {
        self.items.push((k, list(v.iter().map(|x| x.to_string()))));
    }

    pub fn f32s(&mut self, k: &'static str, v: &[f32]) {
        self.items.push((k, list(v.iter().map(|&x| fmt_f32(x)))));
    }

    /// A nested op (a fused activation), written as `name` or `name(k=v ...)`.
    pub fn nested(&mut self, k: &'static str, name: &str, inner: AttrWriter) {
        if inner.is_empty() {
            self.items.push((k, name.to_string()));
        } else {
            let mut s = format!("{name}(");
            s.push_str(&inner.join());
            s.push(')');
            self.items.push((k, s));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `k=v k=v`, without braces.
    pub fn join(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.items.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }
}

fn list(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.collect();
    format!("[{}]", v.join(","))
}

/// Typed access to parsed attributes; [`AttrReader::finish`] rejects keys
/// nobody asked for, so typos in hand-written IR are caught.
#[derive(Debug, Default)]
pub struct AttrReader {
    map: BTreeMap<String, AttrValue>,
    taken: Vec<String>,
}

/// An attribute value nested in a call-like form: `relu` or `leaky_relu(alpha=0.1)`.
#[derive(Clone, Debug, PartialEq)]
pub struct NestedOp {
    pub name: String,
    pub attrs: BTreeMap<String, AttrValue>,
}

type R<T> = Result<T, String>;

impl AttrReader {
    pub fn new(map: BTreeMap<String, AttrValue>) -> Self {
        AttrReader { map, taken: vec![] }
    }

    fn take(&mut self, k: &str) -> Option<AttrValue> {
        let v = self.map.remove(k);
        if v.is_some() {
            self.taken.push(k.to_string());
        }
        v
    }

    fn req(&mut self, k: &str) -> R<AttrValue> {
        self.take(k)
            .ok_or_else(|| format!("missing attribute `{k}`"))
    }

    fn bad<T>(k: &str, want: &str, got: &AttrValue) -> R<T> {
        Err(format!(
            "attribute `{k}` must be {want}, found {}",
            got.describe()
        ))
    }

    pub fn int(&mut self, k: &str) -> R<i64> {
        let v = self.req(k)?;
        v.as_i64()
            .map_or_else(|| Self::bad(k, "an integer", &v), Ok)
    }

    pub fn int_or(&mut self, k: &str, d: i64) -> R<i64> {
        if self.map.contains_key(k) {
            self.int(k)
        } else {
            Ok(d)
        }
    }

    pub fn usize(&mut self, k: &str) -> R<usize> {
        let i = self.int(k)?;
        usize::try_from(i).map_err(|_| format!("attribute `{k}` must not be negative"))
    }

    pub fn usize_or(&mut self, k: &str, d: usize) -> R<usize> {
        if self.map.contains_key(k) {
            self.usize(k)
        } else {
            Ok(d)
        }
    }

    pub fn f64(&mut self, k: &str) -> R<f64> {
        let v = self.req(k)?;
        v.as_f64().map_or_else(|| Self::bad(k, "a number", &v), Ok)
    }

    pub fn f64_or(&mut self, k: &str, d: f64) -> R<f64> {
        if self.map.contains_key(k) {
            self.f64(k)
        } else {
            Ok(d)
        }
    }

    pub fn f32(&mut self, k: &str) -> R<f32> {
        Ok(self.f64(k)? as f32)
    }

    pub fn f32_or(&mut self, k: &str, d: f32) -> R<f32> {
        Ok(self.f64_or(k, d as f64)? as f32)
    }

    pub fn bool_or(&mut self, k: &str, d: bool) -> R<bool> {
        match self.take(k) {
            None => Ok(d),
            Some(AttrValue::Ident(s)) if s == "true" => Ok(true),
            Some(AttrValue::Ident(s)) if s == "false" => Ok(false),
            Some(AttrValue::Int(i)) => Ok(i != 0),
            Some(v) => Self::bad(k, "true or false", &v),
        }
    }

    pub fn ident(&mut self, k: &str) -> R<String> {
        match self.req(k)? {
            AttrValue::Ident(s) | AttrValue::Str(s) => Ok(s),
            v => Self::bad(k, "a name", &v),
        }
    }

    pub fn ident_or(&mut self, k: &str, d: &str) -> R<String> {
        if self.map.contains_key(k) {
            self.ident(k)
        } else {
            Ok(d.to_string())
        }
    }

    pub fn ints(&mut self, k: &str) -> R<Vec<i64>> {
        match self.req(k)? {
            AttrValue::List(items) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| format!("attribute `{k}` must be a list of integers"))
                })
                .collect(),
            v => Self::bad(k, "a list of integers", &v),
        }
    }

    pub fn ints_or(&mut self, k: &str, d: Vec<i64>) -> R<Vec<i64>> {
        if self.map.contains_key(k) {
            self.ints(k)
        } else {
            Ok(d)
        }
    }

    pub fn usizes(&mut self, k: &str) -> R<Vec<usize>> {
        self.ints(k)?
            .into_iter()
            .map(|i| {
                usize::try_from(i).map_err(|_| format!("attribute `{k}` must not be negative"))
            })
            .collect()
    }

    pub fn usizes_or(&mut self, k: &str, d: Vec<usize>) -> R<Vec<usize>> {
        if self.map.contains_key(k) {
            self.usizes(k)
        } else {
            Ok(d)
        }
    }

    pub fn f32s(&mut self, k: &str) -> R<Vec<f32>> {
        match self.req(k)? {
            AttrValue::List(items) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|x| x as f32)
                        .ok_or_else(|| format!("attribute `{k}` must be a list of numbers"))
                })
                .collect(),
            v => Self::bad(k, "a list of numbers", &v),
        }
    }

    pub fn f32s_or(&mut self, k: &str, d: Vec<f32>) -> R<Vec<f32>> {
        if self.map.contains_key(k) {
            self.f32s(k)
        } else {
            Ok(d)
        }
    }

    /// A nested op such as a fused activation, if present.
    pub fn nested(&mut self, k: &str) -> R<Option<NestedOp>> {
        match self.take(k) {
            None => Ok(None),
            Some(AttrValue::Ident(name)) => Ok(Some(NestedOp {
                name,
                attrs: BTreeMap::new(),
            })),
            Some(AttrValue::List(mut items)) if !items.is_empty() => {
                // The parser encodes `name(k=v ...)` as [name, [k, v], ...].
                let head = items.remove(0);
                let AttrValue::Ident(name) = head else {
                    return Err(format!("attribute `{k}` must name an op"));
                };
                let mut attrs = BTreeMap::new();
                for it in items {
                    match it {
                        AttrValue::List(mut kv) if kv.len() == 2 => {
                            let v = kv.pop().expect("two items");
                            let AttrValue::Ident(key) = kv.pop().expect("two items") else {
                                return Err(format!("attribute `{k}`: bad nested attribute"));
                            };
                            attrs.insert(key, v);
                        }
                        _ => return Err(format!("attribute `{k}`: bad nested attribute")),
                    }
                }
                Ok(Some(NestedOp { name, attrs }))
            }
            Some(v) => Self::bad(k, "an op", &v),
        }
    }

    /// Fails if any attribute was not consumed.
    pub fn finish(self) -> R<()> {
        if let Some(k) = self.map.keys().next() {
            return Err(format!("unknown attribute `{k}`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_formats() {
        let mut w = AttrWriter::new();
        w.usizes("stride", &[2, 2]);
        w.f32("alpha", 0.1);
        w.f32("min", f32::NEG_INFINITY);
        w.bool("ceil", true);
        assert_eq!(w.join(), "stride=[2,2] alpha=0.1 min=-inf ceil=true");
    }

    #[test]
    fn reader_types_and_unknown_keys() {
        let mut m = BTreeMap::new();
        m.insert("a".into(), AttrValue::Int(3));
        m.insert("b".into(), AttrValue::List(vec![AttrValue::Int(1)]));
        m.insert("x".into(), AttrValue::Int(1));
        let mut r = AttrReader::new(m);
        assert_eq!(r.f64("a"), Ok(3.0));
        assert_eq!(r.usizes("b"), Ok(vec![1]));
        assert_eq!(r.int_or("c", 7), Ok(7));
        assert_eq!(r.finish(), Err("unknown attribute `x`".into()));
    }
}
