#!/usr/bin/env python3
"""Side-by-side latency of nnc backends and ONNX Runtime (1 thread) on the
shared models: each model is measured by every contender in turn, rounds
alternate, and the table reports the median of the per-round medians with
ratios to ONNX Runtime.

    scripts/bench_compare.py [--backends c,native] [--rounds 3] [MODEL_DIR...]

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
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    nnc = os.path.join(ROOT, "target", "release", "nnc")
    if not os.path.exists(nnc):
        sys.exit("build nnc first: cargo build --release")
    models = a.models or [os.path.join(SHARED, "models", m) for m in DEFAULT]
    backends = [b for b in a.backends.split(",") if b]
    print("| model | " + " | ".join(f"nnc {b} ms" for b in backends) + " | ORT 1-thread ms | " + " | ".join(f"{b} / ORT" for b in backends) + " |")
    print("|---|" + "---:|" * (2 * len(backends) + 1))
    for d in models:
        model = os.path.join(d, "model.onnx")
        inp = os.path.join(d, "test_data_set_0", "input_0.pb")
        res = {b: [] for b in backends + ["ort"]}
        for _ in range(a.rounds):
            for b in backends:
                res[b].append(run_json([nnc, "bench", model, "--backend", b, "-i", inp, "--json"])["median_ms"])
            res["ort"].append(run_json([sys.executable, os.path.join(ROOT, "scripts", "bench_ort.py"), model, "--input", inp, "--json"])["median_ms"])
        med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
        name = os.path.relpath(d, os.path.join(SHARED, "models"))
        cells = [f"{med[b]:.4f}" for b in backends] + [f"{med['ort']:.4f}"] + [f"{med[b] / med['ort']:.2f}" for b in backends]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
