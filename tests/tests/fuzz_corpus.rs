//! The fuzz corpora (`fuzz/corpus/<target>/`: seeds, and every input that
//! once crashed a target) replayed through the same target bodies the AFL
//! binaries run (`nnc_tests::fuzz`), and the C harness's tensor readers
//! under AddressSanitizer on the harness corpus plus hand-made hostile
//! files.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let mut failed = Vec::new();
    let files = corpus(target);
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", f.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn onnx_corpus() {
    replay("onnx", nnc_tests::fuzz::onnx);
}

#[test]
fn nnir_corpus() {
    replay("nnir", nnc_tests::fuzz::nnir);
}

#[test]
fn tensor_corpus() {
    replay("tensor", nnc_tests::fuzz::tensor);
}

#[test]
fn pipeline_corpus() {
    replay("pipeline", nnc_tests::fuzz::pipeline);
}

/// The fuzz driver of the C harness readers, built with ASan and UBSan.
fn asan_harness() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("nnc-harness-asan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("harness_fuzz");
    let st = Command::new(nnc::cbuild::cc())
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .arg("-I")
        .arg(root.join("runtime/c"))
        .arg(root.join("fuzz/c/harness_fuzz.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run cc");
    assert!(st.success(), "building the ASan harness driver failed");
    exe
}

/// A .npy file with the given header dict.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn c_harness_readers_under_asan() {
    let exe = asan_harness();
    let mut inputs: Vec<(String, Vec<u8>)> = corpus("harness")
        .into_iter()
        .map(|f| (f.display().to_string(), std::fs::read(&f).unwrap()))
        .collect();
    // The reproducer of the stack overflow: 31 long dims overran the
    // 128-byte message buffer; 40 dims overran the dims array.
    let long = vec!["1234567890123456"; 31].join(", ");
    let forty = vec!["1"; 40].join(", ");
    for (name, shape) in [("31 long dims", long), ("40 dims", forty)] {
        let mut b = vec![0u8];
        b.extend(npy(
            &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}"),
            &[0; 24],
        ));
        inputs.push((name.into(), b));
    }
    // A .pb with 40 dims, then one with a huge float_data run.
    let mut pb = vec![0u8];
    for _ in 0..40 {
        pb.extend([0x08, 0x01]);
    }
    pb.extend([0x10, 0x01]);
    inputs.push(("pb 40 dims".into(), pb));
    let mut pb = vec![0u8, 0x08, 0x02, 0x08, 0x03, 0x10, 0x01, 0x22, 0x80, 0x01];
    pb.extend([0u8; 128]);
    inputs.push(("pb long float_data".into(), pb));
    let dir = exe.parent().unwrap().to_path_buf();
    for (i, (name, bytes)) in inputs.iter().enumerate() {
        let f = dir.join(format!("in{i}"));
        std::fs::write(&f, bytes).unwrap();
        let o = Command::new(&exe).arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{name}: {:?}\n{err}",
            o.status
        );
        assert!(!err.contains("Sanitizer"), "{name}:\n{err}");
        if o.status.code() == Some(1) {
            assert!(err.starts_with("error: "), "{name}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
