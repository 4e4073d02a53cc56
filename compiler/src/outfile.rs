//! Writing outputs safely. Every file nnc writes goes to a temporary file
//! in the same folder first and is renamed into place, so a kill or a full
//! disk never leaves a truncated file where a good one was. Pairs that
//! belong together (`NAME.h` + `NAME.c`, an object + its header) are both
//! written in full before either is renamed, header first and the other
//! file last: once the new `.c` (or object) is visible, its header is too.
//! And like gcc, nnc refuses to write over one of the command's own inputs.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::io::IoError;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary path next to `path` (same folder, so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.nnc-tmp-{}-{n}", std::process::id()))
}

fn werr(path: &Path, source: std::io::Error) -> IoError {
    IoError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to a temporary file next to `path`, flushed to disk.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, IoError> {
    let tmp = temp_path(path);
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match r {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(werr(path, e))
        }
    }
}

/// Renames a finished temporary file into place.
pub fn commit(tmp: &Path, path: &Path) -> Result<(), IoError> {
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        werr(path, e)
    })
}

/// Where a write to `path` really goes: a symlink to a file is followed
/// (the link stays a link); `None` for what must be written in place and
/// never replaced (`/dev/stdout`, a FIFO, a device).
fn target(path: &Path) -> Option<PathBuf> {
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => None,
        Ok(_) => Some(path.canonicalize().unwrap_or_else(|_| path.to_path_buf())),
        Err(_) => Some(path.to_path_buf()),
    }
}

/// Writes `path` atomically (in place when it is not a regular file).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_all(&[(path, bytes)])
}

/// Writes several files that belong together: all temporaries first, then
/// the renames in order (put the file readers look for last).
pub fn write_all(files: &[(&Path, &[u8])]) -> Result<(), IoError> {
    let mut tmps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let clean = |tmps: &[(PathBuf, PathBuf)]| {
        for (t, _) in tmps {
            let _ = fs::remove_file(t);
        }
    };
    for (p, b) in files {
        let Some(real) = target(p) else {
            fs::write(p, b).map_err(|e| werr(p, e))?;
            continue;
        };
        match write_temp(&real, b) {
            Ok(t) => tmps.push((t, real)),
            Err(e) => {
                clean(&tmps);
                return Err(e);
            }
        }
    }
    for (i, (t, real)) in tmps.iter().enumerate() {
        if let Err(e) = commit(t, real) {
            clean(&tmps[i + 1..]);
            return Err(e);
        }
    }
    Ok(())
}

/// The file identity of an existing path (device, inode).
fn identity(p: &Path) -> Option<(u64, u64)> {
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Fails when writing `out` would replace one of `inputs` (the same file,
/// through any path or link).
pub fn check_not_input(out: &Path, inputs: &[PathBuf]) -> Result<(), String> {
    let Some(id) = identity(out) else {
        return Ok(());
    };
    if let Some(i) = inputs.iter().find(|i| identity(i) == Some(id)) {
        return Err(format!(
            "refusing to write `{}`: it is `{}`, an input of this command",
            out.display(),
            i.display()
        ));
    }
    Ok(())
}

/// True for the object formats linkers read (ELF, Mach-O, COFF, ar).
pub fn is_object_file(p: &Path) -> bool {
    let mut head = [0u8; 8];
    let n = fs::File::open(p)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let h = &head[..n];
    h.starts_with(b"\x7fELF")
        || h.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        || h.starts_with(&[0xce, 0xfa, 0xed, 0xfe])
        || h.starts_with(&[0x64, 0x86])
        || h.starts_with(&[0x64, 0xaa])
        || h.starts_with(b"!<arch>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_inputs_are_kept() {
        let d = std::env::temp_dir().join(format!("nnc-outfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let a = d.join("a.h");
        let b = d.join("a.c");
        fs::write(&a, "old").unwrap();
        write_all(&[(&a, b"new h"), (&b, b"new c")]).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new h");
        assert_eq!(fs::read(&b).unwrap(), b"new c");
        // Nothing is left behind.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
        // A write that cannot finish leaves the old file alone.
        let e = write(&d.join("missing/x"), b"x").unwrap_err();
        assert!(e.to_string().contains("missing/x"));
        let link = d.join("link.h");
        fs::hard_link(&a, &link).unwrap();
        assert!(check_not_input(&link, std::slice::from_ref(&a)).is_err());
        assert!(check_not_input(&b, std::slice::from_ref(&a)).is_ok());
        assert!(check_not_input(&d.join("new"), std::slice::from_ref(&a)).is_ok());
        // A symlink stays a symlink; a device is written, not replaced.
        let sym = d.join("sym.h");
        std::os::unix::fs::symlink(&a, &sym).unwrap();
        write(&sym, b"via link").unwrap();
        assert!(fs::symlink_metadata(&sym).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&a).unwrap(), b"via link");
        write(Path::new("/dev/null"), b"x").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
        let _ = fs::remove_dir_all(&d);
    }
}
