//! The build cache: compiled harness objects and model executables, kept
//! between runs so tests, `run --backend c` and `bench` do not rebuild.
//!
//! What is reused here ends up executed, so the cache is private: it lives
//! in the user's own cache folder (`$NNC_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/nnc`, else `~/.cache/nnc`), is created with mode 0700,
//! and is refused when another user owns it or it is a symlink. Every
//! entry carries the SHA-256 of its file, checked before reuse (a damaged
//! or swapped entry is rebuilt). Scratch folders of processes that died
//! are removed, and the cache is kept under a size bound
//! (`$NNC_CACHE_MAX_MB`, default 1024) by evicting the least recently used
//! entries.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::driver::{DriverError, Result};

fn err(msg: String) -> DriverError {
    DriverError::Usage(msg)
}

/// Default size bound of the cache, in MiB.
pub const DEFAULT_MAX_MB: u64 = 1024;

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The cache folder, created if needed and checked: a directory (not a
/// symlink) owned by this user and closed to everyone else.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("NNC_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => default_dir()?,
    };
    open(&dir)?;
    Ok(dir)
}

fn default_dir() -> Result<PathBuf> {
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = abs(std::env::var_os("XDG_CACHE_HOME")) {
        return Ok(x.join("nnc"));
    }
    if let Some(h) = abs(std::env::var_os("HOME")) {
        return Ok(h.join(".cache").join("nnc"));
    }
    Err(err(
        "no cache folder for builds: set HOME, XDG_CACHE_HOME or NNC_CACHE_DIR".into(),
    ))
}

fn open(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| err(format!("cannot create `{}`: {e}", parent.display())))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(format!("cannot create `{}`: {e}", dir.display()))),
    }
    let m = fs::symlink_metadata(dir)
        .map_err(|e| err(format!("cannot read `{}`: {e}", dir.display())))?;
    if !m.is_dir() {
        return Err(err(format!(
            "build cache `{}` is not a directory (a symlink or file is refused); remove it or set NNC_CACHE_DIR",
            dir.display()
        )));
    }
    if m.uid() != uid() {
        return Err(err(format!(
            "build cache `{}` belongs to user {}, not to you ({}): nnc does not run code from a folder others control; remove it or set NNC_CACHE_DIR",
            dir.display(),
            m.uid(),
            uid()
        )));
    }
    if m.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot make `{}` private: {e}", dir.display())))?;
    }
    Ok(())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh scratch folder `.TAG-PID-N` in `base`, private to this process.
pub(crate) fn scratch_dir(base: &Path, tag: &str) -> Result<PathBuf> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let d = base.join(format!(".{tag}-{}-{n}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&d)
        .map_err(|e| err(format!("cannot create `{}`: {e}", d.display())))?;
    Ok(d)
}

/// Scratch folders left by processes that no longer run (killed during a
/// build), and any older than a day.
pub fn clean_scratch(base: &Path) {
    let Ok(rd) = fs::read_dir(base) else { return };
    let day = Duration::from_secs(24 * 3600);
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(_tag), Some(pid), Some(_n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let dead = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > day);
        if dead || old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The file `entry/file`, when it is there, ours, not a symlink, and its
/// content matches the hash recorded when it was published. A damaged
/// entry is removed. A hit refreshes the entry's time for eviction.
pub(crate) fn lookup(entry: &Path, file: &str) -> Option<PathBuf> {
    let f = entry.join(file);
    let ok = (|| {
        let me = uid();
        for p in [entry, f.as_path()] {
            let m = fs::symlink_metadata(p).ok()?;
            if m.file_type().is_symlink() || m.uid() != me {
                return None;
            }
        }
        let want = fs::read_to_string(entry.join(format!("{file}.sha256"))).ok()?;
        let got = hex(&sha256(&fs::read(&f).ok()?));
        (want.trim() == got).then_some(())
    })();
    if ok.is_some() {
        let _ = fs::File::open(entry).and_then(|d| d.set_modified(SystemTime::now()));
        Some(f)
    } else {
        if entry.exists() {
            log::warn!(
                "build cache entry `{}` failed verification; rebuilding",
                entry.display()
            );
            let _ = fs::remove_dir_all(entry);
        }
        None
    }
}

/// Publishes the scratch folder `tmp` (holding `file`) as `entry`:
/// records the file's hash, then renames the folder into place, so a
/// concurrent reader sees the whole entry or none. Another process may have
/// published the same entry first; then `tmp` is dropped.
pub(crate) fn publish(tmp: &Path, entry: &Path, file: &str) -> Result<PathBuf> {
    let bytes =
        fs::read(tmp.join(file)).map_err(|e| err(format!("build output `{file}` missing: {e}")))?;
    fs::write(tmp.join(format!("{file}.sha256")), hex(&sha256(&bytes)))
        .map_err(|e| err(format!("cannot write into `{}`: {e}", tmp.display())))?;
    if fs::rename(tmp, entry).is_err() {
        let _ = fs::remove_dir_all(tmp);
    }
    let base = entry.parent().unwrap_or(Path::new("."));
    evict(base, max_bytes(), Some(entry));
    lookup(entry, file).ok_or_else(|| {
        err(format!(
            "build cache entry `{}` is missing after publishing",
            entry.display()
        ))
    })
}

fn max_bytes() -> u64 {
    std::env::var("NNC_CACHE_MAX_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_MAX_MB)
        .saturating_mul(1 << 20)
}

fn tree_bytes(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes the least recently used entries until the cache holds at most
/// `max` bytes (down to 3/4 of it, so eviction does not run on every
/// build). `keep` is never removed.
pub fn evict(base: &Path, max: u64, keep: Option<&Path>) {
    let Ok(rd) = fs::read_dir(base) else { return };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let p = e.path();
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (t, tree_bytes(&p), p)
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    if total <= max {
        return;
    }
    entries.sort();
    for (_, bytes, p) in entries {
        if total <= max / 4 * 3 {
            break;
        }
        if Some(p.as_path()) == keep {
            continue;
        }
        let removed = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if removed.is_ok() {
            total = total.saturating_sub(bytes);
        }
    }
}

/// SHA-256 (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cache key: the SHA-256 of `parts`, each length-prefixed.
pub fn key(parts: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_le_bytes());
        all.extend_from_slice(p);
    }
    hex(&sha256(&all)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_test_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nnc-cache-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn entries_are_verified_before_reuse() {
        let base = tmp("verify");
        open(&base).unwrap();
        assert_eq!(
            fs::metadata(&base).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let s = scratch_dir(&base, "build").unwrap();
        fs::write(s.join("model"), b"good").unwrap();
        let entry = base.join("m-1");
        let got = publish(&s, &entry, "model").unwrap();
        assert_eq!(lookup(&entry, "model"), Some(got.clone()));
        // Swapped content: the entry is dropped, not reused.
        fs::write(&got, b"evil").unwrap();
        assert_eq!(lookup(&entry, "model"), None);
        assert!(!entry.exists());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn open_cache_folders_are_closed_and_symlinks_refused() {
        let base = tmp("mode");
        fs::create_dir_all(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
        open(&base).unwrap();
        assert_eq!(
            fs::metadata(&base).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let link = tmp("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let e = open(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let _ = fs::remove_file(&link);
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn leftovers_are_cleaned_and_size_is_bounded() {
        let base = tmp("evict");
        open(&base).unwrap();
        // A scratch folder of a process that is gone (pid 0 is never a user process).
        let dead = base.join(".link-999999999-0");
        fs::create_dir_all(&dead).unwrap();
        let mine = scratch_dir(&base, "link").unwrap();
        clean_scratch(&base);
        assert!(!dead.exists());
        assert!(mine.exists());
        for i in 0..4 {
            let e = base.join(format!("e{i}"));
            fs::create_dir_all(&e).unwrap();
            fs::write(e.join("model"), vec![0u8; 1000]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(100 - i);
            fs::File::open(&e).unwrap().set_modified(t).unwrap();
        }
        evict(&base, 2500, None);
        // Oldest first, down to 3/4 of the bound.
        assert!(!base.join("e0").exists() && !base.join("e1").exists());
        assert!(!base.join("e2").exists());
        assert!(base.join("e3").exists());
        let _ = fs::remove_dir_all(&base);
    }
}
