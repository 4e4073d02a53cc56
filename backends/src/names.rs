//! Names from a model made safe for generated code: C identifiers,
//! comments and string literals. Shared by the C source, the header both
//! backends write and the harness glue.

use std::fmt::Write as _;

/// A C identifier derived from `s`.
pub fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'm');
    }
    out
}

/// Makes any text (a model's names) safe inside a `/* */` comment on one
/// line, for `-Wall -Werror -pedantic`: no `*/` (ends the comment), no
/// `/*` (-Wcomment), no `??` (a trigraph), no control characters (line
/// breaks, NUL); other text is kept.
pub fn comment_safe(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if matches!((prev, c), ('*', '/') | ('/', '*') | ('?', '?')) {
            o.push(' ');
        }
        o.push(c);
        prev = c;
    }
    o
}

/// A C string literal.
pub fn cstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            // `??x` could form a trigraph (C99 has them).
            '?' => o.push_str("\\?"),
            c if c.is_ascii_graphic() || c == ' ' => o.push(c),
            c => {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(o, "\\{byte:03o}");
                }
            }
        }
    }
    o.push('"');
    o
}
