//! Hostile input: thousands of truncated, byte-mutated and structurally
//! mutated variants of the shared models go through the importer. Every one
//! must end in an error or a verified graph, never a panic; graphs that do
//! import are also run through the interpreter when they are small.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nnc::onnx::proto::{AttributeProto, ModelProto};
use nnc::onnx::{ImportOptions, SUPPORTED, import};
use nnc_ir::Tensor;
use nnc_tests::shared::{models_dir, require};
use prost::Message;

/// xorshift64*: deterministic, so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn int(&mut self) -> i64 {
        match self.below(6) {
            0 => 0,
            1 => -1,
            2 => self.below(8) as i64,
            3 => -(self.below(1 << 20) as i64),
            4 => i64::MAX - self.below(3) as i64,
            _ => (self.next() >> self.below(63)) as i64,
        }
    }
}

/// Imports and, when the graph is small, runs it on zeros. Returns whether
/// the import succeeded; panics propagate to the caller's catch_unwind.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(g) = import(bytes, &ImportOptions::default()) else {
        return false;
    };
    g.verify().expect("imported graphs verify");
    let stats = nnc_ir::stats::stats(&g);
    let small = stats.macs < 20_000_000 && stats.activation_bytes < 64 << 20;
    if small {
        let inputs: Vec<Tensor> = (0..g.inputs().len())
            .map(|i| Tensor::zeros(g.input_type(i)))
            .collect();
        // Errors are fine (e.g. gather indices out of range); panics are not.
        let _ = nnc_ir::interp::run(&g, &inputs);
    }
    let _ = nnc_ir::print(&g);
    true
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Outcomes of a batch of variants: imported, rejected, tried, and how
/// many of them were new (not the original model, not a repeat).
type Stats = [usize; 4];

fn attempt(what: &str, seed: u64, bytes: &[u8], stats: &mut Stats, seen: &mut HashSet<u64>) {
    match catch_unwind(AssertUnwindSafe(|| exercise(bytes))) {
        Ok(true) => stats[0] += 1,
        Ok(false) => stats[1] += 1,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("{what} (seed {seed}) panicked: {msg}");
        }
    }
    stats[2] += 1;
    if seen.insert(digest(bytes)) {
        stats[3] += 1;
    }
}

fn mutate_attr(a: &mut AttributeProto, r: &mut Rng) {
    match r.below(5) {
        0 => a.i = r.int(),
        1 => {
            if !a.ints.is_empty() {
                let k = r.below(a.ints.len());
                a.ints[k] = r.int();
            } else {
                a.ints = (0..r.below(5)).map(|_| r.int()).collect();
            }
        }
        2 => a.f = f32::from_bits(r.next() as u32),
        3 => a.ints.truncate(r.below(a.ints.len() + 1)),
        _ => a.r#type = r.below(15) as i32,
    }
}

/// One semantic mutation of a decoded model.
fn mutate_model(m: &mut ModelProto, r: &mut Rng) {
    let Some(g) = m.graph.as_mut() else { return };
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(g.initializer.iter().map(|t| t.name.clone()))
        .collect();
    let nn = g.node.len();
    match r.below(9) {
        0 if nn > 0 => {
            let k = r.below(nn);
            g.node[k].op_type = SUPPORTED[r.below(SUPPORTED.len())].to_string();
        }
        1 if nn > 0 => {
            let k = r.below(nn);
            let n = &mut g.node[k];
            if !n.attribute.is_empty() {
                let j = r.below(n.attribute.len());
                mutate_attr(&mut n.attribute[j], r);
            }
        }
        2 if nn > 0 && !names.is_empty() => {
            let k = r.below(nn);
            let n = &mut g.node[k];
            if !n.input.is_empty() {
                let j = r.below(n.input.len());
                n.input[j] = names[r.below(names.len())].clone();
            }
        }
        3 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            let t = &mut g.initializer[k];
            if !t.dims.is_empty() {
                let j = r.below(t.dims.len());
                t.dims[j] = r.int();
            } else {
                t.data_type = r.below(20) as i32;
            }
        }
        4 if !g.input.is_empty() => {
            let k = r.below(g.input.len());
            if let Some(s) = g.input[k]
                .r#type
                .as_mut()
                .and_then(|t| t.tensor_type.as_mut())
                .and_then(|t| t.shape.as_mut())
                && !s.dim.is_empty()
            {
                let j = r.below(s.dim.len());
                s.dim[j].dim_value = Some(r.int());
            }
        }
        5 if nn > 0 => {
            g.node.remove(r.below(nn));
        }
        6 if nn > 0 => {
            let k = r.below(nn);
            let n = &mut g.node[k];
            n.attribute.clear();
        }
        7 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = r.int();
            }
        }
        _ => {
            if !g.output.is_empty() {
                let k = r.below(g.output.len());
                g.output[k].name = names
                    .get(r.below(names.len().max(1)))
                    .cloned()
                    .unwrap_or_default();
            }
        }
    }
}

fn fuzz_model(rel: &str, truncations: usize, byte_mutations: usize, structural: usize) -> Stats {
    let path = models_dir().join(rel).join("model.onnx");
    require(&path);
    let orig = std::fs::read(&path).unwrap();
    let mut stats = [0usize; 4];
    // The original counts as seen: a variant equal to it tests nothing.
    let mut seen = HashSet::from([digest(&orig)]);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ orig.len() as u64);
    for i in 0..truncations {
        // Cut points concentrate near the start, where the graph structure lives.
        let len = if i % 2 == 0 {
            r.below(orig.len())
        } else {
            r.below(orig.len().min(8192))
        };
        attempt(
            &format!("{rel} truncated to {len}"),
            i as u64,
            &orig[..len],
            &mut stats,
            &mut seen,
        );
    }
    for i in 0..byte_mutations {
        let seed = r.next();
        let mut m = Rng(seed | 1);
        let mut b = orig.clone();
        for _ in 0..1 + m.below(8) {
            let pos = if m.below(2) == 0 {
                m.below(b.len())
            } else {
                m.below(b.len().min(16384))
            };
            b[pos] = match m.below(4) {
                0 => m.next() as u8,
                1 => b[pos] ^ (1 << m.below(8)),
                2 => 0xff,
                _ => 0,
            };
        }
        attempt(
            &format!("{rel} byte mutation {i}"),
            seed,
            &b,
            &mut stats,
            &mut seen,
        );
    }
    let decoded = ModelProto::decode(&orig[..]).unwrap();
    for i in 0..structural {
        let seed = r.next();
        let mut m = Rng(seed | 1);
        let mut model = decoded.clone();
        for _ in 0..1 + m.below(3) {
            mutate_model(&mut model, &mut m);
        }
        let b = model.encode_to_vec();
        attempt(
            &format!("{rel} structural mutation {i}"),
            seed,
            &b,
            &mut stats,
            &mut seen,
        );
    }
    stats
}

fn report(name: &str, s: Stats) {
    println!(
        "{name}: {} variants ({} new), {} imported, {} rejected with an error",
        s[2], s[3], s[0], s[1]
    );
}

/// The variants are variants: nearly all differ from the original and from
/// each other (a mutator that stopped mutating fails this), and both
/// outcomes occur.
fn check_variety(name: &str, s: Stats) {
    assert!(
        s[3] * 100 >= s[2] * 90,
        "{name}: only {} of {} variants are new: {s:?}",
        s[3],
        s[2]
    );
    assert!(s[0] > 0 && s[1] > 0, "{name}: one outcome only: {s:?}");
}

#[test]
fn mlperf_tiny_float_variants_never_panic() {
    let mut total = [0usize; 4];
    for m in nnc_tests::shared::MLPERF_TINY_FP32 {
        let s = fuzz_model(m, 150, 200, 250);
        report(m, s);
        check_variety(m, s);
        for k in 0..4 {
            total[k] += s[k];
        }
    }
    report("total", total);
    // The structural mutations must reach the converters, not only the decoder.
    assert!(total[0] > 100, "too few mutants imported: {total:?}");
}

#[test]
fn int8_and_large_model_variants_never_panic() {
    for m in [
        "mlperf_tiny/kws_dscnn_int8_qdq",
        "mlperf_tiny/ic_resnet8_int8_qdq",
        "onnx_light/light_squeezenet_randw",
        "torchvision/squeezenet1_1",
    ] {
        let s = fuzz_model(m, 40, 60, 60);
        report(m, s);
        check_variety(m, s);
    }
}
