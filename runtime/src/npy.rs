//! Reading and writing numpy `.npy` files (format versions 1.0 to 3.0,
//! little-endian, C order), the tensor file format of the CLI and of the
//! executables nnc builds.

use std::fmt;

/// Element types `.npy` files may carry here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    Bool,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
            Elem::I16 | Elem::U16 => 2,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F64 | Elem::I64 => 8,
        }
    }

    /// The numpy `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            Elem::F32 => "<f4",
            Elem::F64 => "<f8",
            Elem::I8 => "|i1",
            Elem::U8 => "|u1",
            Elem::I16 => "<i2",
            Elem::U16 => "<u2",
            Elem::I32 => "<i4",
            Elem::U32 => "<u4",
            Elem::I64 => "<i8",
            Elem::Bool => "|b1",
        }
    }

    fn from_descr(d: &str) -> Option<Elem> {
        Some(match d {
            "<f4" => Elem::F32,
            "<f8" => Elem::F64,
            "|i1" | "<i1" | "i1" => Elem::I8,
            "|u1" | "<u1" | "u1" => Elem::U8,
            "<i2" => Elem::I16,
            "<u2" => Elem::U16,
            "<i4" => Elem::I32,
            "<u4" => Elem::U32,
            "<i8" => Elem::I64,
            "|b1" | "<b1" | "b1" => Elem::Bool,
            _ => return None,
        })
    }
}

/// A `.npy` array: element type, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Why a `.npy` file could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyError(pub String);

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NpyError {}

fn err<T>(m: impl Into<String>) -> Result<T, NpyError> {
    Err(NpyError(m.into()))
}

/// Extracts the value of `'key':` from the header dict text.
fn dict_value<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let start = h.find(&pat)? + pat.len();
    let rest = h[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(r) = rest.strip_prefix('\'') {
        r.find('\'')? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Parses a `.npy` file.
pub fn read(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return err("not a .npy file (bad magic)");
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return err("truncated .npy header");
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return err(format!("unsupported .npy version {v}")),
    };
    let Some(h) = bytes.get(start..start.saturating_add(hlen)) else {
        return err("truncated .npy header");
    };
    let Ok(h) = std::str::from_utf8(h) else {
        return err(".npy header is not text");
    };
    let descr = dict_value(h, "descr").ok_or_else(|| NpyError("no descr in .npy header".into()))?;
    let descr = descr.trim_matches('\'');
    let Some(elem) = Elem::from_descr(descr) else {
        return err(format!("unsupported .npy element type `{descr}`"));
    };
    if dict_value(h, "fortran_order") == Some("True") {
        return err("Fortran-ordered .npy files are not supported");
    }
    let shape_s =
        dict_value(h, "shape").ok_or_else(|| NpyError("no shape in .npy header".into()))?;
    let inner = shape_s.trim_start_matches('(').trim_end_matches(')');
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(d) => shape.push(d),
            Err(_) => return err(format!("bad .npy shape `{shape_s}`")),
        }
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(elem.size()));
    let data = &bytes[start + hlen..];
    match n {
        Some(n) if n == data.len() => Ok(NpyArray {
            elem,
            shape,
            data: data.to_vec(),
        }),
        Some(n) => err(format!(
            ".npy data has {} bytes, shape {shape:?} of {} needs {n}",
            data.len(),
            elem.descr()
        )),
        None => err("bad .npy shape"),
    }
}

/// Serializes an array as `.npy` version 1.0.
pub fn write(a: &NpyArray) -> Vec<u8> {
    let shape = match a.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.elem.descr()
    );
    // Pad so that the data starts on a 64-byte boundary, header ends in '\n'.
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat((64 - total % 64) % 64));
    h.push('\n');
    let mut out = Vec::with_capacity(10 + h.len() + a.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&a.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for shape in [vec![], vec![3], vec![2, 3]] {
            let n: usize = shape.iter().product();
            let a = NpyArray {
                elem: Elem::F32,
                shape: shape.clone(),
                data: (0..n * 4).map(|i| i as u8).collect(),
            };
            let b = write(&a);
            assert_eq!(b.len() % 64, (n * 4) % 64);
            assert_eq!(read(&b).unwrap(), a);
        }
    }

    #[test]
    fn rejects_bad_files() {
        assert!(read(b"hello").is_err());
        let a = NpyArray {
            elem: Elem::I64,
            shape: vec![4],
            data: vec![0; 32],
        };
        let b = write(&a);
        assert!(read(&b[..b.len() - 1]).unwrap_err().0.contains("needs 32"));
        assert!(read(&b[..20]).is_err());
    }
}
