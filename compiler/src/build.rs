//! The build-script API: compile a model from a Cargo `build.rs` without
//! a shell step, into `OUT_DIR`, with Rust bindings.
//!
//! ```no_run
//! // build.rs
//! let out = nnc::build::Build::new("model.onnx")
//!     .backend(nnc::build::BuildBackend::C)
//!     .target("cortex-m4")
//!     .name("kws")
//!     .compile()
//!     .unwrap();
//! // C: compile `out.source` with the `cc` crate (`cc::Build::new().file(..)`);
//! // then in the crate: `include!(concat!(env!("OUT_DIR"), "/kws.rs"));`
//! println!("cargo:rerun-if-changed={}", out.model.display());
//! ```
//!
//! The bindings (`NAME.rs`) are `no_std`-compatible Rust: an `extern "C"`
//! declaration of `NAME_run`, an `Arena` type the caller owns (aligned,
//! `NAME_ARENA_BYTES` long), `Inputs` / `Outputs` structs of references
//! to fixed-size arrays, one field per tensor, and a safe
//! `run(&inputs, &mut outputs, &mut arena)`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nnc_backends::c::{COptions, WeightForm};
use nnc_ir::DType;
use nnc_ir::program::{ARENA_ALIGN, Program, TargetSpec};
use nnc_passes::OptLevel;
use nnc_passes::PipelineOptions;

use crate::driver::{self, DriverError, LoadOptions, Result};

/// The code generator of a [`Build`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildBackend {
    /// `NAME.c` and `NAME.h` (compile the source with the `cc` crate).
    #[default]
    C,
    /// A Cranelift object `NAME.o` in a static library `libNAME.a` (made
    /// with the system `ar`), linked with [`Artifacts::link`].
    Native,
}

/// A model to compile from a build script.
#[derive(Clone, Debug)]
pub struct Build {
    model: PathBuf,
    backend: BuildBackend,
    target: String,
    out_dir: Option<PathBuf>,
    name: Option<String>,
    opt: OptLevel,
    weights: WeightForm,
}

/// What [`Build::compile`] wrote.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The model file (for `cargo:rerun-if-changed`).
    pub model: PathBuf,
    /// The identifier: `NAME_run`, `NAME.h`, `NAME.rs`.
    pub name: String,
    pub header: PathBuf,
    /// `NAME.c` (C backend).
    pub source: Option<PathBuf>,
    /// `libNAME.a` holding `NAME.o` (native backend).
    pub library: Option<PathBuf>,
    /// The Rust bindings, for `include!`.
    pub bindings: PathBuf,
    pub arena_bytes: usize,
}

impl Artifacts {
    /// Prints the Cargo directives that link the native library (none for
    /// C: the `cc` crate prints its own) and rebuild when the model
    /// changes.
    pub fn link(&self) {
        println!("cargo:rerun-if-changed={}", self.model.display());
        if let Some(lib) = &self.library
            && let Some(dir) = lib.parent()
        {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static={}", self.name);
        }
    }
}

impl Build {
    /// A build of `model` (`.onnx` or `.nnir`): C for the host at -O2 by
    /// default, into `$OUT_DIR`.
    pub fn new(model: impl AsRef<Path>) -> Build {
        Build {
            model: model.as_ref().to_path_buf(),
            backend: BuildBackend::C,
            target: "host".into(),
            out_dir: None,
            name: None,
            opt: OptLevel::O2,
            weights: WeightForm::Auto,
        }
    }

    pub fn backend(mut self, b: BuildBackend) -> Build {
        self.backend = b;
        self
    }

    /// The target, in the grammar of `--target` (`host`, `x86_64[:CPU]`,
    /// `aarch64`, `cortex-m0|m4|m7`); checked by [`Build::compile`].
    pub fn target(mut self, t: &str) -> Build {
        self.target = t.to_string();
        self
    }

    /// Where to write (default: `$OUT_DIR`).
    pub fn out_dir(mut self, d: impl AsRef<Path>) -> Build {
        self.out_dir = Some(d.as_ref().to_path_buf());
        self
    }

    /// The identifier (default: the model's file stem, or its folder's
    /// name for a `model.onnx`).
    pub fn name(mut self, n: &str) -> Build {
        self.name = Some(n.to_string());
        self
    }

    pub fn opt_level(mut self, o: OptLevel) -> Build {
        self.opt = o;
        self
    }

    /// How the C backend writes weights (default: blobs above 1 MiB).
    pub fn weights(mut self, w: WeightForm) -> Build {
        self.weights = w;
        self
    }

    /// Compiles the model and writes the files.
    pub fn compile(&self) -> Result<Artifacts> {
        let usage = |m: String| DriverError::Usage(m);
        let spec: TargetSpec = self.target.parse().map_err(|e| usage(format!("{e}")))?;
        let target = match self.backend {
            BuildBackend::C => nnc_backends::c::target_for(&spec)?,
            BuildBackend::Native => nnc_backends::cranelift::target_for(&spec)?,
        };
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    usage("no out_dir given and OUT_DIR is not set (not in a build script?)".into())
                })?,
        };
        let name = nnc_backends::c::ident(&self.name.clone().unwrap_or_else(|| {
            let stem = self
                .model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            match self.model.parent().and_then(|d| d.file_name()) {
                Some(dir) if stem == "model" => dir.to_string_lossy().into_owned(),
                _ => stem,
            }
        }));
        let opts = LoadOptions {
            opt_level: self.opt,
            pipeline: PipelineOptions {
                target: target.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let g = driver::load(&self.model, &opts)?;
        let p = driver::Lowering::default().lower(&g, &name, &target)?;
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| usage(format!("cannot create `{}`: {e}", out_dir.display())))?;
        let header = out_dir.join(format!("{name}.h"));
        let bindings = out_dir.join(format!("{name}.rs"));
        let (source, library) = match self.backend {
            BuildBackend::C => {
                let src = nnc_backends::c::emit_with(
                    &p,
                    &name,
                    &COptions {
                        weights: self.weights,
                    },
                )?;
                let c = out_dir.join(format!("{name}.c"));
                crate::outfile::write_all(&[
                    (&header, src.header.as_bytes()),
                    (&c, src.source.as_bytes()),
                ])?;
                (Some(c), None)
            }
            BuildBackend::Native => {
                let obj = crate::native::object(&p, &name, &Default::default())?;
                let o = out_dir.join(format!("{name}.o"));
                crate::outfile::write_all(&[(&header, obj.header.as_bytes()), (&o, &obj.object)])?;
                let lib = out_dir.join(format!("lib{name}.a"));
                let _ = std::fs::remove_file(&lib);
                crate::cbuild::run_tool(
                    std::process::Command::new(std::env::var("AR").unwrap_or_else(|_| "ar".into()))
                        .arg("crs")
                        .arg(&lib)
                        .arg(&o),
                    "making the static library",
                )?;
                (None, Some(lib))
            }
        };
        crate::outfile::write(&bindings, rust_bindings(&p, &name).as_bytes())?;
        Ok(Artifacts {
            model: self.model.clone(),
            name,
            header,
            source,
            library,
            bindings,
            arena_bytes: p.arena_bytes,
        })
    }
}

/// The Rust element type of a tensor (booleans as their `uint8_t` bytes).
fn rust_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I8 => "i8",
        DType::U8 | DType::Bool => "u8",
        DType::I16 => "i16",
        DType::U16 => "u16",
        DType::I32 => "i32",
        DType::U32 => "u32",
        DType::I64 => "i64",
    }
}

/// A Rust field name for a tensor name: its C identifier, lowercased,
/// with `_` after a keyword and a number on a repeat.
fn field_names(names: &[&str]) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
        "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
        "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final",
        "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield", "gen",
        "arena", "inputs", "outputs",
    ];
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let mut f = nnc_backends::c::ident(n).to_ascii_lowercase();
        if KEYWORDS.contains(&f.as_str()) || f.starts_with("__") {
            f.push('_');
        }
        let base = f.clone();
        let mut k = 2;
        while out.contains(&f) {
            f = format!("{base}_{k}");
            k += 1;
        }
        out.push(f);
    }
    out
}

/// The `no_std`-compatible Rust bindings of a program.
pub fn rust_bindings(p: &Program, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// Generated by nnc {} for `{name}` ({}). Do not edit.\n\
         // Include with `include!(concat!(env!(\"OUT_DIR\"), \"/{name}.rs\"));`.\n",
        env!("CARGO_PKG_VERSION"),
        p.target.spec()
    );
    let _ = writeln!(s, "#[allow(dead_code, non_camel_case_types, clippy::all)]");
    let _ = writeln!(s, "pub mod {name} {{");
    let _ = writeln!(
        s,
        "    /// Bytes of the scratch memory an inference needs.\n    pub const ARENA_BYTES: usize = {};",
        p.arena_bytes
    );
    let arena_len = p.arena_bytes.max(1);
    let io = |list: &[(String, nnc_ir::TensorType)]| -> Vec<(String, String, usize)> {
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        field_names(&names)
            .into_iter()
            .zip(list)
            .map(|(f, (_, t))| (f, rust_type(t.dtype).to_string(), t.len()))
            .collect()
    };
    let ins = io(&p.inputs);
    let outs = io(&p.outputs);
    let _ = writeln!(
        s,
        "\n    /// The arena: owned by the caller (a `static`, the stack, a buffer),\n    \
         /// aligned as the generated code requires.\n    \
         #[repr(C, align({ARENA_ALIGN}))]\n    \
         pub struct Arena(pub [u8; {arena_len}]);\n\n    \
         impl Arena {{\n        pub const fn new() -> Arena {{\n            Arena([0; {arena_len}])\n        }}\n    }}\n\n    \
         impl Default for Arena {{\n        fn default() -> Arena {{\n            Arena::new()\n        }}\n    }}"
    );
    let _ = writeln!(s, "\n    /// The model's inputs, in order.");
    let _ = writeln!(s, "    pub struct Inputs<'a> {{");
    for ((f, t, n), (orig, ty)) in ins.iter().zip(&p.inputs) {
        let _ = writeln!(
            s,
            "        /// `{}`: {ty}\n        pub {f}: &'a [{t}; {n}],",
            orig.replace('`', "'")
        );
    }
    let _ = writeln!(s, "    }}\n\n    /// The model's outputs, in order.");
    let _ = writeln!(s, "    pub struct Outputs<'a> {{");
    for ((f, t, n), (orig, ty)) in outs.iter().zip(&p.outputs) {
        let _ = writeln!(
            s,
            "        /// `{}`: {ty}\n        pub {f}: &'a mut [{t}; {n}],",
            orig.replace('`', "'")
        );
    }
    let _ = writeln!(s, "    }}");
    let _ = writeln!(
        s,
        "\n    unsafe extern \"C\" {{\n        fn {name}_run(\n            inputs: *const *const core::ffi::c_void,\n            \
         outputs: *const *mut core::ffi::c_void,\n            arena: *mut core::ffi::c_void,\n        ) -> core::ffi::c_int;\n    }}"
    );
    let _ = writeln!(
        s,
        "\n    /// Runs one inference. The generated code reads only `inputs`, writes\n    \
         /// only `outputs` and `arena`, and keeps no state between calls.\n    \
         /// `Err(code)` passes on a non-zero status of `{name}_run`.\n    \
         pub fn run(inputs: &Inputs<'_>, outputs: &mut Outputs<'_>, arena: &mut Arena) -> Result<(), i32> {{"
    );
    let _ = write!(
        s,
        "        let ins: [*const core::ffi::c_void; {}] = [",
        ins.len().max(1)
    );
    if ins.is_empty() {
        s.push_str("core::ptr::null()");
    }
    for (f, _, _) in &ins {
        let _ = write!(s, "inputs.{f}.as_ptr().cast(), ");
    }
    let _ = writeln!(s, "];");
    let _ = write!(
        s,
        "        let outs: [*mut core::ffi::c_void; {}] = [",
        outs.len().max(1)
    );
    if outs.is_empty() {
        s.push_str("core::ptr::null_mut()");
    }
    for (f, _, _) in &outs {
        let _ = write!(s, "outputs.{f}.as_mut_ptr().cast(), ");
    }
    let _ = writeln!(s, "];");
    let _ = writeln!(
        s,
        "        // SAFETY: every pointer is valid for the length the model's\n        \
         // signature gives (the array types), outputs do not alias inputs\n        \
         // (shared vs mutable borrows), and the arena is ARENA_BYTES long\n        \
         // with the alignment the generated code assumes.\n        \
         let rc = unsafe {{ {name}_run(ins.as_ptr(), outs.as_ptr(), arena.0.as_mut_ptr().cast()) }};\n        \
         if rc == 0 {{ Ok(()) }} else {{ Err(rc) }}\n    }}\n}}"
    );
    s
}
