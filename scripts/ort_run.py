#!/usr/bin/env python3
"""Runs a model with ONNX Runtime (CPU, graph optimizations off, so QDQ
graphs are computed exactly as written) and writes every output as .npy.

    scripts/ort_run.py MODEL.onnx OUT_DIR INPUT.(npy|pb) ...

Inputs are given in the model's input order. Output i goes to
OUT_DIR/output_i.npy. Installs onnxruntime with pip when it is missing.
"""
import os
import subprocess
import sys


def ensure(pkg, module):
    try:
        return __import__(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", pkg])
        return __import__(module)


def load(np, onnx_pb, path):
    if path.endswith(".npy"):
        return np.load(path)
    t = onnx_pb.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    from onnx import numpy_helper
    return numpy_helper.to_array(t)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model, out_dir, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
    np = ensure("numpy", "numpy")
    ort = ensure("onnxruntime", "onnxruntime")
    onnx_pb = None
    if any(p.endswith(".pb") for p in inputs):
        onnx_pb = ensure("onnx", "onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        sys.exit(f"the model takes {len(names)} inputs, {len(inputs)} given")
    feeds = {n: load(np, onnx_pb, p) for n, p in zip(names, inputs)}
    outs = sess.run(None, feeds)
    os.makedirs(out_dir, exist_ok=True)
    for i, o in enumerate(outs):
        np.save(os.path.join(out_dir, f"output_{i}.npy"), o)


if __name__ == "__main__":
    main()
