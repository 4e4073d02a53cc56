//! Files a model names (ONNX external data, `.nnir` weights): read only
//! from inside the model's folder, only when they are regular files, and
//! only as many bytes as the tensor needs. A model is data from anyone; it
//! must not make nnc read `/etc/passwd` through `../` or a symlink and put
//! it in a dump or generated C, nor hang on a FIFO or read `/dev/zero`
//! until memory runs out.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The real path of `rel` inside `base`, or why it is refused.
pub fn resolve(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "`{rel}` must be a plain relative path inside the model's folder"
        ));
    }
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let base = base
        .canonicalize()
        .map_err(|e| format!("the model's folder `{}`: {e}", base.display()))?;
    let full = base.join(p);
    let real = full
        .canonicalize()
        .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
    if !real.starts_with(&base) {
        return Err(format!(
            "`{rel}` resolves to `{}`, outside the model's folder `{}`",
            real.display(),
            base.display()
        ));
    }
    Ok(real)
}

/// Opens a resolved path without following a symlink swapped in since and
/// without blocking on a FIFO, and checks that it is a regular file.
fn open_regular(real: &Path, rel: &str) -> Result<(File, u64), String> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(real)
        .map_err(|e| format!("cannot read `{}`: {e}", real.display()))?;
    let m = f
        .metadata()
        .map_err(|e| format!("cannot read `{}`: {e}", real.display()))?;
    if !m.is_file() {
        return Err(format!(
            "`{rel}` is not a regular file (devices, FIFOs and folders are refused)"
        ));
    }
    Ok((f, m.len()))
}

/// Reads `length` bytes at `offset` of the file `rel` inside `base`
/// (`length` `None`: to the end), checking the range against the file and
/// against `expected` (the bytes the tensor needs) before reading.
pub fn read_range(
    base: &Path,
    rel: &str,
    offset: u64,
    length: Option<u64>,
    expected: Option<u64>,
) -> Result<Vec<u8>, String> {
    let real = resolve(base, rel)?;
    let (mut f, size) = open_regular(&real, rel)?;
    let len = match length {
        Some(l) => l,
        None => size
            .checked_sub(offset)
            .ok_or_else(|| format!("offset {offset} is past the end of `{rel}` ({size} bytes)"))?,
    };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(format!(
            "range {offset}..{} is outside `{rel}` ({size} bytes)",
            offset.saturating_add(len)
        ));
    }
    if let Some(want) = expected
        && want != len
    {
        return Err(format!(
            "`{rel}` gives {len} bytes at offset {offset}, the tensor needs {want}"
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    let mut buf = Vec::with_capacity(usize::try_from(len).map_err(|_| "range too large")?);
    f.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    if buf.len() as u64 != len {
        return Err(format!("`{rel}` changed while it was read"));
    }
    Ok(buf)
}

/// Reads the whole file `rel` inside `base`.
pub fn read(base: &Path, rel: &str) -> Result<Vec<u8>, String> {
    read_range(base, rel, 0, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_the_folder() {
        let d = std::env::temp_dir().join(format!("nnc-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("w.bin"), [1u8, 2, 3, 4]).unwrap();
        std::os::unix::fs::symlink(d.join("w.bin"), d.join("sub/inside")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        assert_eq!(read(&d, "w.bin").unwrap(), [1, 2, 3, 4]);
        assert_eq!(read(&d, "sub/inside").unwrap(), [1, 2, 3, 4]);
        assert_eq!(
            read_range(&d, "w.bin", 1, Some(2), Some(2)).unwrap(),
            [2, 3]
        );
        for (rel, want) in [
            ("passwd", "outside the model's folder"),
            ("zero", "outside the model's folder"),
            ("../etc/passwd", "plain relative path"),
            ("/etc/passwd", "plain relative path"),
            ("sub", "not a regular file"),
            ("missing", "cannot read"),
        ] {
            let e = read(&d, rel).unwrap_err();
            assert!(e.contains(want), "{rel}: {e}");
        }
        let e = read_range(&d, "w.bin", 2, Some(4), None).unwrap_err();
        assert!(e.contains("outside `w.bin`"), "{e}");
        let e = read_range(&d, "w.bin", 0, None, Some(8)).unwrap_err();
        assert!(e.contains("the tensor needs 8"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
