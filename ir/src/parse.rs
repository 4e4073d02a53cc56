//! The text format parser: the inverse of [`crate::print`]. Statements are
//! one per line; the text after `;` is the node's source name. The parsed
//! graph is verified before it is returned, so hand-edited IR with a type
//! mistake is rejected with every problem listed.

use std::collections::{BTreeMap, HashMap};

use crate::dtype::{DType, TensorType, checked_numel};
use crate::error::{IrError, Result};
use crate::graph::{Graph, Value};
use crate::op::Op;
use crate::op::attr::{AttrReader, AttrValue};
use crate::tensor::{Data, Tensor};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    At,
    Arrow,
    Ellipsis,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Line {
    no: usize,
    toks: Vec<(usize, Tok)>,
    comment: Option<String>,
}

/// Deepest nesting of lists and calls in an attribute value.
pub const MAX_NESTING: usize = 32;

fn perr<T>(line: usize, col: usize, msg: impl Into<String>) -> Result<T> {
    Err(IrError::Parse {
        line,
        col,
        msg: msg.into(),
    })
}

fn lex_line(no: usize, s: &str) -> Result<Line> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut toks = Vec::new();
    let mut comment = None;
    while i < b.len() {
        let c = b[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == ';' {
            let rest: String = b[i + 1..].iter().collect::<String>().trim().to_string();
            // A name the printer had to quote (control characters, edge spaces).
            let r: Vec<char> = rest.chars().collect();
            let mut j = 0;
            comment = match r.first() {
                Some('"') => match lex_string(&r, &mut j, no, col) {
                    Ok(v) if j == r.len() => Some(v),
                    _ => Some(rest),
                },
                _ => Some(rest),
            };
            break;
        } else if c == '"' {
            let v = lex_string(&b, &mut i, no, col)?;
            toks.push((col, Tok::Str(v)));
        } else if c == '-' && b.get(i + 1) == Some(&'>') {
            toks.push((col, Tok::Arrow));
            i += 2;
        } else if c == '.' && b.get(i + 1) == Some(&'.') && b.get(i + 2) == Some(&'.') {
            toks.push((col, Tok::Ellipsis));
            i += 3;
        } else if c.is_ascii_digit() || c == '-' || c == '+' {
            let st = i;
            i += 1;
            while i < b.len() {
                let ch = b[i];
                let exp_sign = (ch == '-' || ch == '+') && matches!(b[i - 1], 'e' | 'E');
                if ch.is_ascii_alphanumeric() || ch == '.' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            toks.push((col, Tok::Num(b[st..i].iter().collect())));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            toks.push((col, Tok::Ident(b[st..i].iter().collect())));
        } else if c == '@' {
            toks.push((col, Tok::At));
            i += 1;
        } else if "()[]{},:=".contains(c) {
            toks.push((col, Tok::Punct(c)));
            i += 1;
        } else {
            return perr(no, col, format!("unexpected character `{c}`"));
        }
    }
    Ok(Line { no, toks, comment })
}

/// A quoted string starting at `b[*i]`; `*i` ends after the closing quote.
/// Escapes: `\"`, `\\`, `\n`, `\t` and `\u{HEX}`.
fn lex_string(b: &[char], i: &mut usize, no: usize, col: usize) -> Result<String> {
    let mut v = String::new();
    *i += 1;
    loop {
        match b.get(*i) {
            None => return perr(no, col, "unterminated string"),
            Some('"') => {
                *i += 1;
                return Ok(v);
            }
            Some('\\') => {
                match b.get(*i + 1) {
                    Some('n') => v.push('\n'),
                    Some('t') => v.push('\t'),
                    Some('u') if b.get(*i + 2) == Some(&'{') => {
                        let hex: String = b[*i + 3..].iter().take_while(|c| **c != '}').collect();
                        let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match (ch, b.get(*i + 3 + hex.chars().count())) {
                            (Some(ch), Some('}')) if hex.len() <= 6 => v.push(ch),
                            _ => return perr(no, col, "bad `\\u{...}` escape"),
                        }
                        *i += 2 + hex.chars().count();
                    }
                    Some(&e) => v.push(e),
                    None => return perr(no, col, "unterminated string"),
                }
                *i += 2;
            }
            Some(&ch) => {
                v.push(ch);
                *i += 1;
            }
        }
    }
}

/// Cursor over one line's tokens.
struct Cur<'a> {
    line: &'a Line,
    i: usize,
}

impl<'a> Cur<'a> {
    fn col(&self) -> usize {
        self.line
            .toks
            .get(self.i)
            .map(|t| t.0)
            .unwrap_or_else(|| self.line.toks.last().map_or(1, |t| t.0 + 1))
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T> {
        perr(self.line.no, self.col(), msg)
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.line.toks.get(self.i).map(|t| &t.1)
    }

    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.line.toks.get(self.i).map(|t| &t.1);
        self.i += 1;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err(format!("expected `{c}`"))
        }
    }

    fn ident(&mut self) -> Result<&'a str> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.err("expected a name"),
        }
    }

    fn string(&mut self) -> Result<&'a str> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.err("expected a quoted string"),
        }
    }

    fn usize(&mut self) -> Result<usize> {
        match self.peek() {
            Some(Tok::Num(s)) => match s.parse() {
                Ok(v) => {
                    self.i += 1;
                    Ok(v)
                }
                Err(_) => self.err(format!("`{s}` is not a non-negative integer")),
            },
            _ => self.err("expected an integer"),
        }
    }

    fn done(&self) -> Result<()> {
        if self.i < self.line.toks.len() {
            self.err("unexpected text at end of line")
        } else {
            Ok(())
        }
    }

    /// `f32[1,2,3]`
    fn ty(&mut self) -> Result<TensorType> {
        let d = self.ident()?;
        let Some(dtype) = DType::from_name(d) else {
            return self.err(format!("unknown element type `{d}`"));
        };
        self.expect('[')?;
        let mut dims = Vec::new();
        if !self.eat(']') {
            loop {
                dims.push(self.usize()?);
                if self.eat(']') {
                    break;
                }
                self.expect(',')?;
            }
        }
        if checked_numel(&dims).is_none() {
            return self.err("tensor type too large");
        }
        Ok(TensorType::new(dtype, dims))
    }

    fn value(&mut self) -> Result<AttrValue> {
        self.value_at(0)
    }

    /// A value nested `depth` lists deep; the depth is bounded so that
    /// hostile text cannot overflow the stack.
    fn value_at(&mut self, depth: usize) -> Result<AttrValue> {
        if depth >= MAX_NESTING {
            return self.err(format!(
                "attribute values nest more than {MAX_NESTING} deep"
            ));
        }
        match self.next() {
            Some(Tok::Num(s)) => Ok(num_value(s).ok_or(()).or_else(|_| {
                self.i -= 1;
                self.err(format!("bad number `{s}`"))
            })?),
            Some(Tok::Str(s)) => Ok(AttrValue::Str(s.clone())),
            Some(Tok::Ident(s)) if s == "inf" => Ok(AttrValue::Float(f64::INFINITY)),
            Some(Tok::Ident(s)) if s == "nan" => Ok(AttrValue::Float(f64::NAN)),
            Some(Tok::Ident(s)) => {
                if self.eat('(') {
                    let mut items = vec![AttrValue::Ident(s.clone())];
                    while !self.eat(')') {
                        let k = self.ident()?.to_string();
                        self.expect('=')?;
                        let v = self.value_at(depth + 1)?;
                        items.push(AttrValue::List(vec![AttrValue::Ident(k), v]));
                    }
                    Ok(AttrValue::List(items))
                } else {
                    Ok(AttrValue::Ident(s.clone()))
                }
            }
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                if !self.eat(']') {
                    loop {
                        items.push(self.value_at(depth + 1)?);
                        if self.eat(']') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                Ok(AttrValue::List(items))
            }
            _ => {
                self.i -= 1;
                self.err("expected a value")
            }
        }
    }
}

fn num_value(s: &str) -> Option<AttrValue> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(AttrValue::Int(i));
    }
    match s {
        "-inf" => return Some(AttrValue::Float(f64::NEG_INFINITY)),
        "+inf" => return Some(AttrValue::Float(f64::INFINITY)),
        _ => {}
    }
    s.parse::<f64>().ok().map(AttrValue::Float)
}

/// Parses one element literal of the given type.
fn parse_elem(s: &str, dt: DType) -> Option<Data> {
    let f = |s: &str| -> Option<f64> {
        match s {
            "inf" | "+inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => s.parse().ok(),
        }
    };
    Some(match dt {
        DType::F32 => Data::F32(vec![match s {
            "inf" | "+inf" => f32::INFINITY,
            "-inf" => f32::NEG_INFINITY,
            "nan" => f32::NAN,
            _ => s.parse().ok()?,
        }]),
        DType::F64 => Data::F64(vec![f(s)?]),
        DType::Bool => Data::Bool(vec![match s {
            "0" | "false" => false,
            "1" | "true" => true,
            _ => return None,
        }]),
        _ => {
            let v: i64 = s.parse().ok()?;
            let (lo, hi) = dt.int_range()?;
            if v < lo || v > hi {
                return None;
            }
            Data::from_i64(dt, [v])
        }
    })
}

/// Parses one op from its name and the text between the braces of its
/// attributes (`"conv"`, `"stride=[1,1] pad=[0,0,0,0] dilation=[1,1]"`).
pub fn parse_op(name: &str, attrs: &str) -> std::result::Result<Op, String> {
    let line = lex_line(1, &format!("{{{attrs}}}")).map_err(|e| e.to_string())?;
    let mut c = Cur { line: &line, i: 0 };
    let mut map = BTreeMap::new();
    c.expect('{').map_err(|e| e.to_string())?;
    while !c.eat('}') {
        let k = c.ident().map_err(|e| e.to_string())?.to_string();
        c.expect('=').map_err(|e| e.to_string())?;
        let v = c.value().map_err(|e| e.to_string())?;
        map.insert(k, v);
    }
    let mut r = AttrReader::new(map);
    let op = Op::parse(name, &mut r)?;
    r.finish()?;
    Ok(op)
}

/// The attribute text of an op (what goes between the braces).
pub fn op_attr_text(op: &Op) -> String {
    let mut w = crate::op::attr::AttrWriter::new();
    op.write_attrs(&mut w);
    w.join()
}

/// Reads the weights blob named by a `weights "file"` line.
pub type WeightsLoader<'a> = dyn Fn(&str) -> std::io::Result<Vec<u8>> + 'a;

/// The `graph @name(inputs) -> (outputs) {` line.
#[derive(Debug)]
struct Signature {
    name: String,
    /// (value, name, type)
    inputs: Vec<(String, String, TensorType)>,
    outputs: Vec<(String, TensorType)>,
}

fn signature(head: &Line) -> Result<Signature> {
    let mut c = Cur { line: head, i: 0 };
    if c.ident()? != "graph" {
        return perr(head.no, 1, "expected `graph`");
    }
    if c.next() != Some(&Tok::At) {
        return c.err("expected `@name`");
    }
    let name = match c.next() {
        Some(Tok::Ident(s)) | Some(Tok::Str(s)) => s.clone(),
        _ => return c.err("expected the graph name"),
    };
    let mut inputs: Vec<(String, String, TensorType)> = Vec::new();
    c.expect('(')?;
    if !c.eat(')') {
        loop {
            let v = c.ident()?.to_string();
            let name = c.string()?.to_string();
            c.expect(':')?;
            let ty = c.ty()?;
            if inputs.iter().any(|i| i.0 == v) {
                return c.err(format!("`{v}` defined twice"));
            }
            inputs.push((v, name, ty));
            if c.eat(')') {
                break;
            }
            c.expect(',')?;
        }
    }
    if c.next() != Some(&Tok::Arrow) {
        return c.err("expected `->`");
    }
    c.expect('(')?;
    let mut outputs: Vec<(String, TensorType)> = Vec::new();
    if !c.eat(')') {
        loop {
            let name = c.string()?.to_string();
            c.expect(':')?;
            outputs.push((name, c.ty()?));
            if c.eat(')') {
                break;
            }
            c.expect(',')?;
        }
    }
    c.expect('{')?;
    c.done()?;
    Ok(Signature {
        name,
        inputs,
        outputs,
    })
}

/// The input and output names of a graph in text form, read from its first
/// line only (for tools that need them before loading the graph).
pub fn signature_names(text: &str) -> Result<(Vec<String>, Vec<String>)> {
    for (i, l) in text.lines().enumerate() {
        let line = lex_line(i + 1, l)?;
        if !line.toks.is_empty() {
            let sig = signature(&line)?;
            return Ok((
                sig.inputs.into_iter().map(|i| i.1).collect(),
                sig.outputs.into_iter().map(|o| o.0).collect(),
            ));
        }
    }
    perr(1, 1, "empty input: expected `graph @name(...) -> (...) {`")
}

/// The files named by `weights "FILE"` lines.
pub fn weights_files(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| lex_line(i + 1, l).ok())
        .filter_map(|l| match l.toks.as_slice() {
            [(_, Tok::Ident(w)), (_, Tok::Str(f))] if w == "weights" => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Parses a self-contained graph (no external weights).
pub fn parse(text: &str) -> Result<Graph> {
    parse_with(text, &|f: &str| {
        Err(std::io::Error::other(format!(
            "no weights loader for `{f}`"
        )))
    })
}

/// Parses a graph whose large constants may live in an external weights file.
pub fn parse_with(text: &str, load: &WeightsLoader<'_>) -> Result<Graph> {
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = lex_line(i + 1, l)?;
        if !line.toks.is_empty() {
            lines.push(line);
        }
    }
    let Some(head) = lines.first() else {
        return perr(1, 1, "empty input: expected `graph @name(...) -> (...) {`");
    };
    let sig = signature(head)?;
    let mut g = Graph::new(sig.name);
    let mut env: HashMap<String, Value> = HashMap::new();
    for (v, name, ty) in sig.inputs {
        env.insert(v, g.add_input(name, ty));
    }
    let results = sig.outputs;

    let mut blob: Option<Vec<u8>> = None;
    let mut closed = false;
    let mut returned = false;
    for line in &lines[1..] {
        if closed {
            return perr(line.no, 1, "text after the closing `}`");
        }
        let mut c = Cur { line, i: 0 };
        if c.eat('}') {
            c.done()?;
            closed = true;
            continue;
        }
        if returned {
            return perr(line.no, 1, "statement after `return`");
        }
        let first = c.ident()?;
        if first == "weights" {
            let f = c.string()?;
            c.done()?;
            blob = Some(load(f).or_else(|e| c.err(format!("cannot read weights `{f}`: {e}")))?);
            continue;
        }
        if first == "return" {
            let mut outs = Vec::new();
            loop {
                let v = c.ident()?;
                let Some(val) = env.get(v) else {
                    return c.err(format!("unknown value `{v}`"));
                };
                outs.push(*val);
                if !c.eat(',') {
                    break;
                }
            }
            c.done()?;
            if outs.len() != results.len() {
                return perr(
                    line.no,
                    1,
                    format!(
                        "returns {} values, the signature declares {}",
                        outs.len(),
                        results.len()
                    ),
                );
            }
            for (v, (name, ty)) in outs.into_iter().zip(&results) {
                if g.value_type(v) != ty {
                    return perr(
                        line.no,
                        1,
                        format!(
                            "output `{name}` is declared {ty} but returns {}",
                            g.value_type(v)
                        ),
                    );
                }
                g.add_output(v, name.clone());
            }
            returned = true;
            continue;
        }
        let mut defs = vec![first.to_string()];
        while c.eat(',') {
            defs.push(c.ident()?.to_string());
        }
        for d in &defs {
            if env.contains_key(d) {
                return c.err(format!("`{d}` defined twice"));
            }
        }
        c.expect('=')?;
        let opname = c.ident()?;
        let node_name = line.comment.clone().unwrap_or_default();
        if opname == "const" {
            if defs.len() != 1 {
                return c.err("a constant defines one value");
            }
            let ty = c.ty()?;
            let t = match c.peek() {
                Some(Tok::Ellipsis) => {
                    return c.err(format!(
                        "the data of constant `{}` was elided (`...`); dump with inline or external weights to parse it back",
                        defs[0]
                    ));
                }
                Some(Tok::At) => {
                    c.next();
                    let off = c.usize()?;
                    let Some(b) = &blob else {
                        return c.err("`@offset` needs a `weights` line first");
                    };
                    let n = ty.bytes();
                    let Some(bytes) = off.checked_add(n).and_then(|e| b.get(off..e)) else {
                        return c.err(format!("weights file too short for {ty} at offset {off}"));
                    };
                    let data = Data::from_le_bytes(ty.dtype, bytes).expect("length checked");
                    Tensor::new(ty.dims.clone(), data)?
                }
                Some(Tok::Punct('[')) => {
                    c.next();
                    let mut parts = Vec::new();
                    if !c.eat(']') {
                        loop {
                            let s = match c.next() {
                                Some(Tok::Num(s)) | Some(Tok::Ident(s)) => s,
                                _ => {
                                    c.i -= 1;
                                    return c.err("expected a number");
                                }
                            };
                            let Some(d) = parse_elem(s, ty.dtype) else {
                                c.i -= 1;
                                return c.err(format!("`{s}` is not a valid {}", ty.dtype));
                            };
                            parts.push(d);
                            if c.eat(']') {
                                break;
                            }
                            c.expect(',')?;
                        }
                    }
                    let refs: Vec<&Data> = parts.iter().collect();
                    let data = if parts.is_empty() {
                        Data::zeros(ty.dtype, 0)
                    } else {
                        crate::op::elementwise::concat_data(&refs)
                    };
                    if data.len() != ty.len() {
                        return c.err(format!("{} elements given for {ty}", data.len()));
                    }
                    Tensor::new(ty.dims.clone(), data)?
                }
                _ => return c.err("expected constant data: `[...]`, `@offset` or `...`"),
            };
            c.done()?;
            let v = g.add_const(t, node_name);
            env.insert(defs.remove(0), v);
            continue;
        }
        // Operands.
        let mut ins = Vec::new();
        if let Some(Tok::Ident(_)) = c.peek() {
            loop {
                let v = c.ident()?;
                let Some(val) = env.get(v) else {
                    c.i -= 1;
                    return c.err(format!("unknown value `{v}`"));
                };
                ins.push(*val);
                if !c.eat(',') {
                    break;
                }
            }
        }
        let mut attrs = BTreeMap::new();
        if c.eat('{') {
            while !c.eat('}') {
                let k = c.ident()?.to_string();
                c.expect('=')?;
                let v = c.value()?;
                if attrs.insert(k.clone(), v).is_some() {
                    return c.err(format!("attribute `{k}` given twice"));
                }
            }
        }
        let op_col = c.col();
        let mut r = AttrReader::new(attrs);
        let op = Op::parse(opname, &mut r)
            .and_then(|op| r.finish().map(|_| op))
            .or_else(|m| perr(line.no, op_col, format!("`{opname}`: {m}")))?;
        if matches!(op, Op::Input | Op::Const(_)) {
            return c.err(format!("`{opname}` cannot be used here"));
        }
        c.expect(':')?;
        let mut tys = vec![c.ty()?];
        while c.eat(',') {
            tys.push(c.ty()?);
        }
        c.done()?;
        if tys.len() != defs.len() {
            return c.err(format!(
                "{} names for {} result types",
                defs.len(),
                tys.len()
            ));
        }
        let id = g.add_node_typed(op, &ins, tys, node_name);
        for (p, d) in defs.into_iter().enumerate() {
            env.insert(d, Value::new(id, p as u32));
        }
    }
    if !closed {
        return perr(lines.last().map_or(1, |l| l.no), 1, "missing closing `}`");
    }
    if !returned {
        return perr(lines.last().map_or(1, |l| l.no), 1, "missing `return`");
    }
    g.verify()?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::print::{print, print_full};

    const SRC: &str = r#"graph @t(v0 "x": f32[1,2,4,4]) -> ("y": f32[1,3,2,2], "s": f32[1,2]) {
    c0 = const f32[3,2,3,3] ...
    c1 = const f32[3] [0.5, -1, inf]
    v1 = conv v0, c0, c1 {stride=[2,2] pad=[1,1,1,1] dilation=[1,1] act=leaky_relu(alpha=0.1)} : f32[1,3,2,2]  ; Conv_0
    v2 = global_avg_pool v0 : f32[1,2,1,1]
    v3 = reshape v2 {shape=[1,2]} : f32[1,2]
    return v1, v3
}
"#;

    #[test]
    fn elided_constants_are_rejected() {
        let e = parse(SRC).unwrap_err().to_string();
        assert!(e.starts_with("2:"), "{e}");
        assert!(e.contains("elided"), "{e}");
    }

    #[test]
    fn round_trip() {
        let text = SRC.replace(
            "c0 = const f32[3,2,3,3] ...",
            &format!("c0 = const f32[3,2,3,3] [{}]", vec!["0.25"; 54].join(", ")),
        );
        let g = parse(&text).unwrap();
        let once = print_full(&g);
        let again = print_full(&parse(&once).unwrap());
        assert_eq!(once, again);
        assert!(print(&g).contains("c0 = const f32[3,2,3,3] ..."));
        assert!(once.contains("act=leaky_relu(alpha=0.1)"));
        assert!(once.contains("; Conv_0"));
    }

    #[test]
    fn type_errors_are_all_reported() {
        let text = r#"graph @t(v0 "x": f32[2]) -> ("y": f32[2]) {
    v1 = relu v0 : f32[3]
    v2 = neg v0 : f32[4]
    return v0
}"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("2 error(s)"), "{e}");
    }

    #[test]
    fn any_name_round_trips() {
        let mut g = Graph::new("g\u{1}\"x");
        let x = g.add_input("in\n\u{7f}", TensorType::new(DType::F32, vec![2]));
        for name in [
            "ad\u{7f}",
            " lead",
            "trail ",
            "\"quoted\"",
            "a\nb",
            "*/ \\u{41}",
            "",
        ] {
            let v = g.add1(Op::Identity, &[x], name).unwrap();
            g.add_output(v, format!("out {name}"));
        }
        let text = print_full(&g);
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(print_full(&back), text);
        assert_eq!(back.name, g.name);
        assert_eq!(back.input_name(0), g.input_name(0));
        for (a, b) in back.node_ids().iter().zip(g.node_ids()) {
            assert_eq!(back.node(*a).name, g.node(b).name);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "graph @t(v0 \"x\": f32[1]) -> (\"y\": f32[1]) {{\n  v1 = relu v0 {{a={}1{}}} : f32[1]\n  return v1\n}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let e = parse(&deep).unwrap_err().to_string();
        assert!(e.contains("nest more than"), "{e}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (src, want) in [
            ("", "1:1: empty input"),
            (
                "graph @t() -> () {\n  v1 = frob v0 : f32[1]\n}",
                "2:13: unknown value `v0`",
            ),
            (
                "graph @t(v0 \"x\": f32[1]) -> (\"y\": f32[1]) {\n  v1 = frob v0 : f32[1]\n  return v1\n}",
                "`frob`: unknown op `frob`",
            ),
            (
                "graph @t(v0 \"x\": q8[1]) -> () {",
                "unknown element type `q8`",
            ),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }
}
