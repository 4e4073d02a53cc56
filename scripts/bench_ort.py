#!/usr/bin/env python3
"""Times ONNX Runtime on a model, single-threaded, the way `nnc bench` times
nnc: median and 90th percentile over many runs after a warm-up.

    scripts/bench_ort.py MODEL.onnx [--runs N] [--input FILE.pb] [--json]

Installs onnxruntime with pip when it is missing.
"""
import argparse
import json
import subprocess
import sys
import time


def ensure(pkg, module):
    try:
        return __import__(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", pkg])
        return __import__(module)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=0, help="timed runs (default: about two seconds' worth)")
    ap.add_argument("--input", action="append", default=[], help="TensorProto .pb input (default: random)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    np = ensure("numpy", "numpy")
    ort = ensure("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(1)
    for i, inp in enumerate(sess.get_inputs()):
        if i < len(a.input):
            onnx = ensure("onnx", "onnx")
            from onnx import numpy_helper
            feeds[inp.name] = numpy_helper.to_array(onnx.load_tensor(a.input[i]))
            continue
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        t = inp.type
        if "float" in t:
            feeds[inp.name] = rng.uniform(-1, 1, shape).astype(np.float32 if "float)" in t else np.float64)
        elif "int8" in t:
            feeds[inp.name] = rng.integers(-128, 127, shape).astype(np.uint8 if "uint8" in t else np.int8)
        else:
            feeds[inp.name] = rng.integers(0, 4, shape).astype(np.int64)
    for _ in range(5):
        sess.run(None, feeds)
    runs = a.runs
    if runs <= 0:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        one = (time.perf_counter() - t0) * 1e3
        runs = int(min(10000, max(10, 2000 / max(one, 1e-3))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    med, p90 = times[len(times) // 2], times[min(len(times) - 1, len(times) * 9 // 10)]
    if a.json:
        print(json.dumps({"median_ms": med, "p90_ms": p90, "runs": runs, "onnxruntime": ort.__version__}))
    else:
        print(f"median {med:.4f} ms, p90 {p90:.4f} ms over {runs} runs (onnxruntime {ort.__version__}, 1 thread)")


if __name__ == "__main__":
    main()
