//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`
//! (`seed-*` files; crash reproducers the fuzzer found are kept there as
//! `crash-*`). Run by hand after changing what the seeds should cover:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-seeds`.

use std::path::{Path, PathBuf};

use nnc::onnx::build::{Attr, ModelBuilder};
use nnc::onnx::proto::TensorProto;
use nnc_ir::{ConstMode, DType, PrintOptions, Tensor};
use prost::Message;

fn f32s(dims: &[usize], scale: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let v = (0..n)
        .map(|i| ((i * 37 % 17) as f32 / 8.0 - 1.0) * scale)
        .collect();
    Tensor::from_f32(dims.to_vec(), v).unwrap()
}

/// Small models covering the op families and the storage forms.
fn models() -> Vec<(&'static str, Vec<u8>)> {
    use DType::*;
    let mut out = Vec::new();
    out.push((
        "conv-relu",
        ModelBuilder::new("conv", 13)
            .input("x", F32, &[1, 2, 5, 5])
            .init("w", &f32s(&[3, 2, 3, 3], 0.5))
            .init("b", &f32s(&[3], 0.1))
            .node(
                "Conv",
                "conv0",
                &["x", "w", "b"],
                &["c"],
                &[
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                    ("strides", Attr::Ints(vec![2, 2])),
                ],
            )
            .node("Relu", "relu0", &["c"], &["y"], &[])
            .output("y", F32, &[1, 3, 3, 3])
            .bytes(),
    ));
    out.push((
        "gemm-softmax",
        ModelBuilder::new("gemm", 13)
            .input("x", F32, &[2, 4])
            .init("w", &f32s(&[3, 4], 0.5))
            .init("b", &f32s(&[3], 0.5))
            .node(
                "Gemm",
                "fc",
                &["x", "w", "b"],
                &["h"],
                &[("transB", Attr::Int(1))],
            )
            .node("Softmax", "sm", &["h"], &["y"], &[("axis", Attr::Int(1))])
            .output("y", F32, &[2, 3])
            .bytes(),
    ));
    out.push((
        "pool-bn",
        ModelBuilder::new("pool", 11)
            .input("x", F32, &[1, 2, 4, 4])
            .init("s", &f32s(&[2], 1.0))
            .init("b", &f32s(&[2], 0.2))
            .init("m", &f32s(&[2], 0.1))
            .init("v", &Tensor::from_f32(vec![2], vec![1.0, 0.5]).unwrap())
            .node(
                "BatchNormalization",
                "bn",
                &["x", "s", "b", "m", "v"],
                &["n"],
                &[],
            )
            .node(
                "MaxPool",
                "mp",
                &["n"],
                &["p"],
                &[
                    ("kernel_shape", Attr::Ints(vec![2, 2])),
                    ("strides", Attr::Ints(vec![2, 2])),
                ],
            )
            .node("GlobalAveragePool", "gap", &["p"], &["y"], &[])
            .output("y", F32, &[1, 2, 1, 1])
            .bytes(),
    ));
    out.push((
        "shape-reshape-transpose",
        ModelBuilder::new("shape", 13)
            .input("x", F32, &[2, 3, 4])
            .node("Shape", "shape", &["x"], &["s"], &[])
            .init("idx", &Tensor::from_i64s(vec![2], vec![2, 1]).unwrap())
            .node(
                "Gather",
                "g",
                &["s", "idx"],
                &["d"],
                &[("axis", Attr::Int(0))],
            )
            .init("one", &Tensor::from_i64s(vec![1], vec![-1]).unwrap())
            .node(
                "Concat",
                "cat",
                &["one", "d"],
                &["shp"],
                &[("axis", Attr::Int(0))],
            )
            .node("Reshape", "r", &["x", "shp"], &["r0"], &[])
            .node(
                "Transpose",
                "t",
                &["r0"],
                &["y"],
                &[("perm", Attr::Ints(vec![0, 2, 1]))],
            )
            .output("y", F32, &[2, 3, 4])
            .bytes(),
    ));
    out.push((
        "binary-broadcast-cast",
        ModelBuilder::new("bin", 17)
            .input("a", F32, &[2, 3])
            .input("b", F32, &[3])
            .node("Add", "add", &["a", "b"], &["s"], &[])
            .node("Mul", "mul", &["s", "a"], &["m"], &[])
            .node("Max", "max", &["m", "b"], &["x"], &[])
            .node("Cast", "cast", &["x"], &["i"], &[("to", Attr::Int(7))])
            .node("Cast", "back", &["i"], &["y"], &[("to", Attr::Int(1))])
            .output("y", F32, &[2, 3])
            .bytes(),
    ));
    out.push((
        "slice-concat-pad",
        ModelBuilder::new("slice", 13)
            .input("x", F32, &[1, 4, 6])
            .init("st", &Tensor::from_i64s(vec![1], vec![1]).unwrap())
            .init("en", &Tensor::from_i64s(vec![1], vec![5]).unwrap())
            .init("ax", &Tensor::from_i64s(vec![1], vec![2]).unwrap())
            .node("Slice", "sl", &["x", "st", "en", "ax"], &["s"], &[])
            .init(
                "pads",
                &Tensor::from_i64s(vec![6], vec![0, 0, 1, 0, 0, 1]).unwrap(),
            )
            .node(
                "Pad",
                "pad",
                &["s", "pads"],
                &["p"],
                &[("mode", Attr::Str("reflect".into()))],
            )
            .node(
                "Concat",
                "cat",
                &["p", "x"],
                &["y"],
                &[("axis", Attr::Int(2))],
            )
            .output("y", F32, &[1, 4, 12])
            .bytes(),
    ));
    out.push((
        "gather-reduce-int8",
        ModelBuilder::new("gather", 13)
            .input("x", F32, &[4, 3])
            .init("i", &Tensor::from_i64s(vec![2], vec![3, 0]).unwrap())
            .node(
                "Gather",
                "g",
                &["x", "i"],
                &["g0"],
                &[("axis", Attr::Int(0))],
            )
            .node(
                "ReduceMean",
                "rm",
                &["g0"],
                &["r"],
                &[("axes", Attr::Ints(vec![1]))],
            )
            .init("sc", &Tensor::scalar_f32(0.05))
            .init(
                "zp",
                &Tensor::new(vec![], nnc_ir::Data::from_i64(I8, [3])).unwrap(),
            )
            .node("QuantizeLinear", "q", &["r", "sc", "zp"], &["q0"], &[])
            .node("DequantizeLinear", "dq", &["q0", "sc", "zp"], &["y"], &[])
            .output("y", F32, &[2, 1])
            .bytes(),
    ));
    let typed = TensorProto {
        name: "w".into(),
        dims: vec![2],
        data_type: 1,
        float_data: vec![0.5, -1.5],
        ..Default::default()
    };
    out.push((
        "typed-initializer-constant",
        ModelBuilder::new("typed", 9)
            .input("x", F32, &[2])
            .init_proto(typed)
            .node(
                "Constant",
                "k",
                &[],
                &["k0"],
                &[(
                    "value",
                    Attr::Tensor(Tensor::from_f32(vec![2], vec![2.0, 3.0]).unwrap()),
                )],
            )
            .node("Sub", "sub", &["x", "w"], &["d"], &[])
            .node("Div", "div", &["d", "k0"], &["y"], &[])
            .output("y", F32, &[2])
            .bytes(),
    ));
    out.push((
        "resize-convtranspose",
        ModelBuilder::new("resize", 13)
            .input("x", F32, &[1, 1, 2, 3])
            .init("roi", &Tensor::from_f32(vec![0], vec![]).unwrap())
            .init(
                "scales",
                &Tensor::from_f32(vec![4], vec![1.0, 1.0, 2.0, 2.0]).unwrap(),
            )
            .node(
                "Resize",
                "rs",
                &["x", "roi", "scales"],
                &["r"],
                &[("mode", Attr::Str("linear".into()))],
            )
            .init("w", &f32s(&[1, 2, 2, 2], 0.5))
            .node(
                "ConvTranspose",
                "ct",
                &["r", "w"],
                &["y"],
                &[("strides", Attr::Ints(vec![2, 2]))],
            )
            .output("y", F32, &[1, 2, 8, 12])
            .bytes(),
    ));
    out
}

fn tensors() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let samples = [
        Tensor::from_f32(vec![2, 3], vec![0.0, 1.0, -2.5, 3.0, f32::NAN, 1e-3]).unwrap(),
        Tensor::from_f32(vec![], vec![4.0]).unwrap(),
        Tensor::from_i64s(vec![3], vec![-1, 0, 1 << 40]).unwrap(),
        Tensor::new(
            vec![2, 2],
            nnc_ir::Data::from_i64(DType::U8, [1, 2, 3, 255]),
        )
        .unwrap(),
        Tensor::new(vec![1, 2], nnc_ir::Data::from_i64(DType::Bool, [0, 1])).unwrap(),
        Tensor::new(vec![2], nnc_ir::Data::from_i64(DType::I16, [-7, 7])).unwrap(),
        Tensor::new(vec![2, 1], nnc_ir::Data::F64(vec![0.25, -8.0])).unwrap(),
    ];
    for (i, t) in samples.iter().enumerate() {
        out.push((
            format!("npy-{i}"),
            nnc_runtime::npy::write(&nnc::io::to_npy(t)),
        ));
        out.push((
            format!("pb-raw-{i}"),
            nnc::onnx::tensor::to_proto(t, "x").encode_to_vec(),
        ));
    }
    let typed = [
        TensorProto {
            dims: vec![2, 3],
            data_type: 1,
            float_data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            ..Default::default()
        },
        TensorProto {
            dims: vec![3],
            data_type: 7,
            int64_data: vec![1, -2, 3],
            ..Default::default()
        },
        TensorProto {
            dims: vec![2, 2],
            data_type: 2,
            int32_data: vec![1, 2, 3, 4],
            ..Default::default()
        },
        TensorProto {
            dims: vec![2, 1],
            data_type: 11,
            double_data: vec![0.5, 1.5],
            ..Default::default()
        },
    ];
    for (i, t) in typed.iter().enumerate() {
        out.push((format!("pb-typed-{i}"), t.encode_to_vec()));
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, bytes) in models() {
        write(&root.join("onnx"), name, &bytes);
        let g = nnc::onnx::import(&bytes, &Default::default())
            .unwrap_or_else(|e| panic!("seed model {name}: {e}"));
        let text = nnc_ir::print_with(
            &g,
            &PrintOptions {
                consts: ConstMode::Inline,
            },
        )
        .0;
        write(&root.join("nnir"), name, text.as_bytes());
    }
    let filetests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/filetests");
    for e in std::fs::read_dir(filetests).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        write(&root.join("nnir"), &name, &std::fs::read(&p).unwrap());
    }
    // The C harness target reads one byte choosing the input slot (see
    // fuzz/c/harness_fuzz.c) and then the file.
    let slots = [
        (DType::F32, vec![2, 3]),
        (DType::F32, vec![]),
        (DType::I64, vec![3]),
        (DType::U8, vec![2, 2]),
        (DType::Bool, vec![1, 2]),
        (DType::I16, vec![2]),
        (DType::F64, vec![2, 1]),
    ];
    for (name, bytes) in tensors() {
        write(&root.join("tensor"), &name, &bytes);
        let Ok((_, t)) = nnc::io::tensor_from_bytes(&bytes) else {
            continue;
        };
        if let Some(slot) = slots
            .iter()
            .position(|(d, s)| *d == t.dtype() && s == t.dims())
        {
            let mut b = vec![slot as u8];
            b.extend_from_slice(&bytes);
            write(&root.join("harness"), &name, &b);
        }
    }
    // Pipeline seeds: byte strings that describe small graphs.
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..8 {
        let bytes: Vec<u8> = (0..96)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect();
        write(&root.join("pipeline"), &format!("graph-{i}"), &bytes);
    }
}
