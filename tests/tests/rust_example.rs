//! The Rust example crate (`examples/rust`, its own workspace): `cargo
//! build` alone compiles the shipped KWS model through nnc's build API
//! (`nnc::build::Build`, C built by the `cc` crate) and the generated
//! bindings; the program runs it and checks the reference output.
//!
//! It builds in `target/example-rust` (cargo holds the workspace target
//! folder's lock while the tests run), so the first run compiles nnc once
//! more; later runs are incremental.

use std::path::Path;
use std::process::Command;

#[test]
fn example_crate_builds_and_runs_the_model() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = repo.join("examples/rust");
    let target = repo.join("target/example-rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(&cargo)
        .current_dir(&dir)
        .args(["build", "--locked", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo build of examples/rust: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let exe = target.join("debug/nnc-example-kws");
    let o = Command::new(&exe).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The reference output's class, within tolerance (checked in main).
    assert!(out.starts_with("kws: class 5, max abs err"), "{out}");
    // The bindings are no_std-compatible: only `core` paths.
    let rs = std::fs::read_dir(target.join("debug/build"))
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path().join("out/kws.rs");
            p.exists().then_some(p)
        })
        .next()
        .expect("the generated bindings");
    let text = std::fs::read_to_string(rs).unwrap();
    assert!(text.contains("unsafe extern \"C\"") && text.contains("pub fn run("));
    assert!(!text.contains("std::"), "{text}");
}
