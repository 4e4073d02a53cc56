#!/usr/bin/env python3
"""What partial execution costs in time, side by side with the unpartitioned
plan of the same model, measured in one run:

- Cortex-M4 (`--target cortex-m4`, C at -O2 under QEMU -icount): guest
  instructions per inference, exact and repeatable;
- host C and native code (`--memory off` against `--memory min`): wall
  time, rounds alternating, median of the per-round medians.

    scripts/memory_cost.py [--rounds 3] [--no-host] [--no-mcu] [MODEL_DIR...]

Uses target/release/nnc (build it with `cargo build --release`).
"""
import argparse
import json
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNC_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
NNC = os.path.join(ROOT, "target", "release", "nnc")
DEFAULT = [
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/sww_dscnn_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
    "mlperf_tiny/ad_fc_autoencoder_int8_qdq",
    "mlperf_tiny/ic_resnet8_int8_qdq",
    "mlperf_tiny/kws_dscnn_int8_qdq",
    "mlperf_tiny/sww_dscnn_int8_qdq",
    "mlperf_tiny/vww_mbv1_025_96_int8_qdq",
]


def bench(model, args):
    d = os.path.join(SHARED, "models", model)
    cmd = [NNC, "bench", os.path.join(d, "model.onnx"), "--json",
           "-i", os.path.join(d, "test_data_set_0", "input_0.pb")] + args
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-host", action="store_true")
    ap.add_argument("--no-mcu", action="store_true")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    models = a.models or DEFAULT
    if not a.no_mcu:
        print("Cortex-M4 (guest instructions per inference, C -O2):")
        print(f"{'model':<42} {'arena off':>10} {'arena auto':>10} {'instr off':>12} "
              f"{'instr auto':>12} {'ratio':>6}")
        for m in models:
            off = bench(m, ["--backend", "c", "--target", "cortex-m4", "--memory", "off"])
            on = bench(m, ["--backend", "c", "--target", "cortex-m4", "--memory", "auto"])
            r = on["median_instructions"] / off["median_instructions"]
            print(f"{m:<42} {off['arena_bytes']:>10} {on['arena_bytes']:>10} "
                  f"{off['median_instructions']:>12} {on['median_instructions']:>12} {r:>6.3f}")
    if not a.no_host:
        print("\nHost (median ms; --memory off vs min, rounds alternating):")
        print(f"{'model':<42} {'backend':>7} {'off':>9} {'min':>9} {'ratio':>6}")
        for m in models:
            for b in ["c", "native"]:
                t = {"off": [], "min": []}
                for _ in range(a.rounds):
                    for mem in ["off", "min"]:
                        r = bench(m, ["--backend", b, "--memory", mem, "--runs", "50"])
                        t[mem].append(r["median_ms"])
                off = statistics.median(t["off"])
                mn = statistics.median(t["min"])
                print(f"{m:<42} {b:>7} {off:>9.4f} {mn:>9.4f} {mn / off:>6.3f}")


if __name__ == "__main__":
    main()
