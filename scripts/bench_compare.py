#!/usr/bin/env python3
"""Side-by-side latency of nnc backends and ONNX Runtime (1 thread) on the
shared models: each model is measured by every contender in turn, rounds
alternate, and the table reports the median of the per-round medians with
ratios to ONNX Runtime.

    scripts/bench_compare.py [--backends c,native] [--rounds 3] [--baseline NNC]
                             [--set shared|wider|all] [MODEL_DIR...]

`--set wider` measures the wider benchmark set instead (public
architectures with seeded weights, built by scripts/make_bench_models.py
into target/bench-models on first use), `--set all` both.

With `--baseline NNC` (another build of nnc, e.g. from an older commit) its
backends run in the same rounds, and the table adds new / baseline ratios.

Uses target/release/nnc (build it with `cargo build --release`).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNC_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
DEFAULT = [
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/sww_dscnn_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
    "torchvision/mobilenet_v2",
    "torchvision/squeezenet1_1",
    "onnx_light/light_squeezenet_randw",
]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="c")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="another nnc binary measured in the same rounds")
    ap.add_argument("--set", default="shared", choices=["shared", "wider", "all"])
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    nnc = os.path.join(ROOT, "target", "release", "nnc")
    if not os.path.exists(nnc):
        sys.exit("build nnc first: cargo build --release")
    models = list(a.models)
    if not a.models and a.set in ("shared", "all"):
        models += [os.path.join(SHARED, "models", m) for m in DEFAULT]
    if not a.models and a.set in ("wider", "all"):
        out = os.path.join(ROOT, "target", "bench-models")
        script = os.path.join(ROOT, "scripts", "make_bench_models.py")
        manifest = subprocess.run([sys.executable, script, out], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with open(manifest) as f:
            models += json.load(f)
    backends = [b for b in a.backends.split(",") if b]
    base = [f"base {b}" for b in backends] if a.baseline else []
    head = [f"nnc {b} ms" for b in backends] + [f"{b} ms" for b in base] + ["ORT 1-thread ms"]
    head += [f"{b} / ORT" for b in backends]
    if base:
        head += [f"{b} / base" for b in backends]
    print("| model | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for d in models:
        model = os.path.join(d, "model.onnx")
        inp = os.path.join(d, "test_data_set_0", "input_0.pb")
        res = {b: [] for b in backends + base + ["ort"]}
        for _ in range(a.rounds):
            for b in backends:
                res[b].append(run_json([nnc, "bench", model, "--backend", b, "-i", inp, "--json"])["median_ms"])
                if a.baseline:
                    res[f"base {b}"].append(run_json([a.baseline, "bench", model, "--backend", b, "-i", inp, "--json"])["median_ms"])
            res["ort"].append(run_json([sys.executable, os.path.join(ROOT, "scripts", "bench_ort.py"), model, "--input", inp, "--json"])["median_ms"])
        med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
        name = os.path.relpath(d, os.path.join(SHARED, "models"))
        if name.startswith(".."):
            name = os.path.basename(os.path.normpath(d))
        cells = [f"{med[b]:.4f}" for b in backends + base] + [f"{med['ort']:.4f}"]
        cells += [f"{med[b] / med['ort']:.2f}" for b in backends]
        if base:
            cells += [f"{med[b] / med['base ' + b]:.2f}" for b in backends]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
