#!/usr/bin/env python3
"""Quantizes shared float models with onnxruntime.quantization and records
what ONNX Runtime computes on them, for the comparison test
(tests/tests/ort_quant.rs) that runs nnc on the same models.

    scripts/ort_quant.py OUT_DIR [--models-dir DIR] [--print]

For every case (a model, a format and an activation type) it writes, under
OUT_DIR/KEY/ (KEY hashes this script and the onnx / onnxruntime versions,
so a cached run is reused until one of them changes):

  CASE/model.onnx            the quantized model (static quantization,
                             per-channel int8 weights, calibrated on a few
                             deterministic inputs)
  CASE/input_K.pb            the evaluation inputs
  CASE/ref_K.pb              ONNX Runtime with ORT_DISABLE_ALL: the QDQ
                             graph computed as written (float arithmetic
                             between the quantize and dequantize nodes)
  CASE/ort_K.pb              ONNX Runtime with ORT_ENABLE_ALL: QDQ fused
                             into its integer QLinear* kernels
  CASE/exact_K.pb            the same graph evaluated here with numpy in
                             double precision (see `Exact`)
  CASE/ort_optimized.onnx    the graph ONNX Runtime runs with ORT_ENABLE_ALL
                             (the manifest lists its float compute ops:
                             those it did not fuse into integer kernels;
                             on x86 ORT does not fuse QDQ with int8
                             activations by default)
  CASE/ort_int_K.pb,         the same with session.qdqisint8allowed=1: ORT's
  CASE/ort_integer.onnx      integer kernels for int8 activations too
  manifest.json              the cases, with the output quantization
                             (scale, zero point) that distances are
                             measured in

and prints the manifest's path on the last line. With --print it also
prints the distances between those three. Installs
numpy, onnx and onnxruntime with pip when they are missing.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

# The cases. Formats: "qdq" (QuantizeLinear/DequantizeLinear around float
# ops) and "qop" (QLinearConv, QGemm, ...: the QOperator format).
MODELS = [
    "mlperf_tiny/kws_dscnn_fp32",
    "mlperf_tiny/ic_resnet8_fp32",
    "mlperf_tiny/ad_fc_autoencoder_fp32",
    "mlperf_tiny/vww_mbv1_025_96_fp32",
]
CASES = [(m, "qdq", act) for m in MODELS for act in ("u8", "s8")] + [
    ("mlperf_tiny/kws_dscnn_fp32", "qop", "u8"),
    ("mlperf_tiny/ic_resnet8_fp32", "qop", "s8"),
    ("torchvision/mobilenet_v2", "qdq", "u8"),
    ("synthetic/contrib_ops", "qop", "u8"),
]
CALIBRATION_INPUTS = 16
# Evaluation inputs per case (fewer for the large model, to keep CI short).
EVAL_INPUTS = {"torchvision/mobilenet_v2": 2}
DEFAULT_EVAL_INPUTS = 8


def ensure(pkg, module):
    try:
        return __import__(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", pkg])
        return __import__(module)


def case_name(model, fmt, act):
    return f"{model.replace('/', '_')}_{fmt}_{act}"


def sampler(np, stored, shape, seed):
    """Deterministic inputs like the model's stored test input: its values
    resampled (so the distribution matches), or uniform in [0, 1] when the
    stored input is constant."""
    rng = np.random.default_rng(seed)
    flat = stored.reshape(-1)

    def draw():
        if flat.min() == flat.max():
            return rng.uniform(0.0, 1.0, shape).astype(np.float32)
        return rng.choice(flat, size=shape).astype(np.float32)

    return draw


def output_quant(onnx, numpy_helper, model):
    """Scale and zero point of the graph output: the parameters of the
    DequantizeLinear that produces it (1 and 0 for an integer output)."""
    g = model.graph
    out = g.output[0].name
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if out in n.output and n.op_type == "DequantizeLinear":
            scale = float(inits[n.input[1]].reshape(-1)[0])
            zp = int(inits[n.input[2]].reshape(-1)[0]) if len(n.input) > 2 and n.input[2] else 0
            return scale, zp
    return 1.0, 0


class Exact:
    """The quantized model evaluated in double precision with numpy: every
    float op between a dequantize and a quantize, and every QLinear /
    integer op's requantization, computed as real arithmetic (to about
    1e-16), rounded half to even only where the model quantizes. ONNX
    Runtime's reference computes the same graph in float32, whose rounding
    error moves values within ~1e-6 of a rounding boundary to either side;
    this is the reference such near-ties are judged against."""

    def __init__(self, np, numpy_helper, model):
        self.np = np
        self.g = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}

    def attrs(self, n):
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}

    def run(self, feed):
        np = self.np
        env = dict(self.init)
        env.update(feed)
        for n in self.g.node:
            ins = [env[i] if i else None for i in n.input]
            env[n.output[0]] = getattr(self, n.op_type)(ins, self.attrs(n))
        return env[self.g.output[0].name]

    # helpers
    def f(self, x):
        return self.np.asarray(x, dtype=self.np.float64)

    def along(self, p, axis, rank):
        p = self.f(p)
        if p.size == 1:
            return p.reshape(())
        shape = [1] * rank
        shape[axis] = p.size
        return p.reshape(shape)

    def quantize(self, v, scale, zp, dtype, axis=1):
        np = self.np
        rank = np.ndim(v)
        q = np.rint(self.f(v) / self.along(scale, axis, rank)) + self.along(zp, axis, rank)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize(self, x, scale, zp, axis=1):
        rank = self.np.ndim(x)
        zp = 0 if zp is None else zp
        return (self.f(x) - self.along(zp, axis, rank)) * self.along(scale, axis, rank)

    def conv(self, x, w, a):
        np = self.np
        n = x.ndim - 2
        k = w.shape[2:]
        pads = a.get("pads", [0] * 2 * n)
        strides = a.get("strides", [1] * n)
        dil = a.get("dilations", [1] * n)
        group = a.get("group", 1)
        assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), "auto_pad"
        x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[n + i]) for i in range(n)])
        out = [(x.shape[2 + i] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
        N, C = x.shape[:2]
        M = w.shape[0]
        xg = x.reshape((N, group, C // group) + x.shape[2:])
        wg = w.reshape((group, M // group) + w.shape[1:])
        y = np.zeros((N, group, M // group) + tuple(out))
        for tap in np.ndindex(*k):
            sl = tuple(
                slice(tap[i] * dil[i], tap[i] * dil[i] + strides[i] * (out[i] - 1) + 1, strides[i])
                for i in range(n)
            )
            patch = xg[(slice(None), slice(None), slice(None)) + sl]
            y += np.einsum("gmc,ngc...->ngm...", wg[(slice(None), slice(None), slice(None)) + tap], patch)
        return y.reshape((N, M) + tuple(out))

    def pool(self, x, a):
        np = self.np
        n = x.ndim - 2
        k = a["kernel_shape"]
        pads = a.get("pads", [0] * 2 * n)
        strides = a.get("strides", [1] * n)
        assert not a.get("ceil_mode", 0), "ceil_mode"
        xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[n + i]) for i in range(n)])
        ones = np.pad(np.ones(x.shape[2:]), [(pads[i], pads[n + i]) for i in range(n)])
        out = [(xp.shape[2 + i] - k[i]) // strides[i] + 1 for i in range(n)]
        y = np.zeros(x.shape[:2] + tuple(out))
        cnt = np.zeros(tuple(out))
        for tap in np.ndindex(*k):
            sl = tuple(slice(tap[i], tap[i] + strides[i] * (out[i] - 1) + 1, strides[i]) for i in range(n))
            y += xp[(slice(None), slice(None)) + sl]
            cnt += ones[sl]
        if a.get("count_include_pad", 0):
            cnt = np.full(cnt.shape, float(np.prod(k)))
        return y / cnt

    def softmax(self, x, axis):
        np = self.np
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    # float and layout ops (f64 in, f64 out; layout ops keep integers)
    def QuantizeLinear(self, i, a):
        return self.quantize(i[0], i[1], i[2], i[2].dtype, a.get("axis", 1))

    def DequantizeLinear(self, i, a):
        return self.dequantize(i[0], i[1], i[2] if len(i) > 2 else None, a.get("axis", 1))

    def Conv(self, i, a):
        y = self.conv(self.f(i[0]), self.f(i[1]), a)
        if len(i) > 2 and i[2] is not None:
            y = y + self.along(i[2], 1, y.ndim)
        return y

    def Gemm(self, i, a):
        A = self.f(i[0]).T if a.get("transA", 0) else self.f(i[0])
        B = self.f(i[1]).T if a.get("transB", 0) else self.f(i[1])
        y = a.get("alpha", 1.0) * (A @ B)
        if len(i) > 2 and i[2] is not None:
            y = y + a.get("beta", 1.0) * self.f(i[2])
        return y

    def MatMul(self, i, a):
        return self.f(i[0]) @ self.f(i[1])

    def Add(self, i, a):
        return self.f(i[0]) + self.f(i[1])

    def Mul(self, i, a):
        return self.f(i[0]) * self.f(i[1])

    def Relu(self, i, a):
        return self.np.maximum(self.f(i[0]), 0.0)

    def AveragePool(self, i, a):
        return self.pool(self.f(i[0]), a)

    def GlobalAveragePool(self, i, a):
        x = self.f(i[0])
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)

    def Softmax(self, i, a):
        return self.softmax(self.f(i[0]), a.get("axis", -1))

    def Reshape(self, i, a):
        shape = [int(d) for d in i[1]]
        shape = [i[0].shape[k] if d == 0 else d for k, d in enumerate(shape)]
        return i[0].reshape(shape)

    def Transpose(self, i, a):
        return i[0].transpose(a["perm"])

    def Flatten(self, i, a):
        ax = a.get("axis", 1)
        return i[0].reshape((int(self.np.prod(i[0].shape[:ax])), -1))

    # the QOperator form, requantized as real arithmetic
    def QLinearConv(self, i, a):
        x, xs, xz, w, ws, wz, ys, yz = i[:8]
        acc = self.conv(self.f(x) - self.f(xz), self.f(w) - self.along(wz, 0, w.ndim), a)
        if len(i) > 8 and i[8] is not None:
            acc = acc + self.along(i[8], 1, acc.ndim)
        return self.quantize(acc * self.along(self.f(xs) * self.f(ws), 1, acc.ndim), ys, yz, yz.dtype)

    def QLinearMatMul(self, i, a):
        x, xs, xz, w, ws, wz, ys, yz = i
        acc = (self.f(x) - self.f(xz)) @ (self.f(w) - self.f(wz))
        return self.quantize(acc * self.f(xs) * self.f(ws), ys, yz, yz.dtype, -1)

    def QGemm(self, i, a):
        A, As, Az, B, Bs, Bz = i[:6]
        A = self.f(A) - self.f(Az)
        B = self.f(B) - self.f(Bz)
        A = A.T if a.get("transA", 0) else A
        B = B.T if a.get("transB", 0) else B
        acc = A @ B
        if len(i) > 6 and i[6] is not None:
            acc = acc + self.f(i[6])
        y = a.get("alpha", 1.0) * acc * self.f(As) * self.f(Bs)
        if len(i) > 7 and i[7] is not None:
            return self.quantize(y, i[7], i[8], i[8].dtype, -1)
        return y

    def QLinearAdd(self, i, a):
        y = self.dequantize(i[0], i[1], i[2]) + self.dequantize(i[3], i[4], i[5])
        return self.quantize(y, i[6], i[7], i[7].dtype)

    def QLinearMul(self, i, a):
        y = self.dequantize(i[0], i[1], i[2]) * self.dequantize(i[3], i[4], i[5])
        return self.quantize(y, i[6], i[7], i[7].dtype)

    def QLinearAveragePool(self, i, a):
        assert not a.get("channels_last", 0), "channels_last"
        y = self.pool(self.dequantize(i[0], i[1], i[2]), a)
        return self.quantize(y, i[3], i[4], i[4].dtype)

    def QLinearGlobalAveragePool(self, i, a):
        return self.quantize(self.GlobalAveragePool([self.dequantize(i[0], i[1], i[2])], a), i[3], i[4], i[4].dtype)

    def QLinearSigmoid(self, i, a):
        y = 1.0 / (1.0 + self.np.exp(-self.dequantize(i[0], i[1], i[2])))
        return self.quantize(y, i[3], i[4], i[4].dtype)

    def QLinearLeakyRelu(self, i, a):
        x = self.dequantize(i[0], i[1], i[2])
        y = self.np.where(x >= 0, x, a.get("alpha", 0.01) * x)
        return self.quantize(y, i[3], i[4], i[4].dtype)

    def QLinearConcat(self, i, a):
        parts = [self.dequantize(i[k], i[k + 1], i[k + 2]) for k in range(2, len(i), 3)]
        y = self.np.concatenate(parts, axis=a["axis"])
        return self.quantize(y, i[0], i[1], i[1].dtype)

    def QLinearSoftmax(self, i, a):
        y = self.softmax(self.dequantize(i[0], i[1], i[2]), a.get("axis", -1))
        return self.quantize(y, i[3], i[4], i[4].dtype)


def run_ort(ort, path, level, feeds, optimized=None, int8=False):
    """ONNX Runtime's outputs on `feeds`; with `optimized`, the graph it
    runs is written there; with `int8`, its QDQ fusion may use int8
    activations (`session.qdqisint8allowed`, off by default on x86)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = level
    opts.log_severity_level = 3
    if int8:
        opts.add_session_config_entry("session.qdqisint8allowed", "1")
    if optimized:
        opts.optimized_model_filepath = optimized
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


# Ops of an optimized ORT graph that compute on integers or only move data;
# any other op (Conv, Add, ... left between a DequantizeLinear and a
# QuantizeLinear because ORT did not fuse them) computes in float32.
INTEGER_OR_MOVEMENT = {
    "QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger", "QGemm",
    "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity",
}


def float_ops(onnx, path):
    """The float compute ops (op type: count) ONNX Runtime's optimized graph
    at `path` runs."""
    counts = {}
    for n in onnx.load(path).graph.node:
        if n.op_type in INTEGER_OR_MOVEMENT or n.op_type.startswith("QLinear"):
            continue
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def lsb(np, a, b, scale):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64)) / scale
    d = np.rint(d)
    return int(d.max()), int((d > 0).sum()), int(d.size)


def contrib_model(onnx, np):
    """A small QOperator graph of the com.microsoft ops the MLPerf models do
    not use (QLinearSigmoid, QLinearLeakyRelu, QLinearMul,
    QLinearGlobalAveragePool, QLinearConcat), uint8, with different
    quantization parameters on every tensor."""
    from onnx import TensorProto as T
    from onnx import helper as h

    ms = "com.microsoft"
    inits = []

    def qp(name, scale, zp):
        inits.append(h.make_tensor(name + "_s", T.FLOAT, [], [scale]))
        inits.append(h.make_tensor(name + "_z", T.UINT8, [], [zp]))
        return [name + "_s", name + "_z"]

    x, a, b, c, d, e, f = (qp(n, s, z) for n, s, z in [
        ("x", 0.031, 128), ("a", 1.0 / 256, 0), ("b", 0.0041, 3), ("c", 0.0037, 1),
        ("d", 0.0029, 2), ("e", 0.0052, 0), ("f", 0.0061, 5)])
    nodes = [
        h.make_node("QuantizeLinear", ["x"] + x, ["xq"]),
        h.make_node("QLinearSigmoid", ["xq"] + x + a, ["aq"], domain=ms),
        h.make_node("QLinearLeakyRelu", ["xq"] + x + b, ["bq"], domain=ms, alpha=0.2),
        h.make_node("QLinearMul", ["aq"] + a + ["bq"] + b + c, ["cq"], domain=ms),
        h.make_node("QLinearGlobalAveragePool", ["cq"] + c + d, ["dq"], domain=ms),
        h.make_node("QLinearAdd", ["dq"] + d + ["aq"] + a + e, ["eq"], domain=ms),
        h.make_node("QLinearConcat", f + ["eq"] + e + ["cq"] + c, ["fq"], domain=ms, axis=1),
        h.make_node("DequantizeLinear", ["fq"] + f, ["y"]),
    ]
    g = h.make_graph(
        nodes, "contrib",
        [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 6, 6])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 6, 6])],
        inits,
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13), h.make_opsetid(ms, 1)])
    m.ir_version = 8
    return m


def build_case(np, onnx, numpy_helper, ort, q, models_dir, model, fmt, act, dest):
    if model == "synthetic/contrib_ops":
        return build_contrib(np, onnx, numpy_helper, ort, dest)
    src = os.path.join(models_dir, model, "model.onnx")
    stored = numpy_helper.to_array(
        onnx.load_tensor(os.path.join(models_dir, model, "test_data_set_0", "input_0.pb"))
    )
    m = onnx.load(src)
    inp = m.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    calib = sampler(np, stored, shape, 1)
    evals = sampler(np, stored, shape, 2)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{inp.name: calib()} for _ in range(CALIBRATION_INPUTS)])

        def get_next(self):
            return next(self.it, None)

    os.makedirs(dest, exist_ok=True)
    out = os.path.join(dest, "model.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        q.shape_inference.quant_pre_process(src, pre)
        q.quantize_static(
            pre,
            out,
            Reader(),
            quant_format=q.QuantFormat.QDQ if fmt == "qdq" else q.QuantFormat.QOperator,
            activation_type=q.QuantType.QUInt8 if act == "u8" else q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
    qm = onnx.load(out)
    feeds = [{inp.name: evals()} for _ in range(EVAL_INPUTS.get(model, DEFAULT_EVAL_INPUTS))]
    return record(np, onnx, numpy_helper, ort, qm, out, feeds, dest, (model, fmt, act))


def build_contrib(np, onnx, numpy_helper, ort, dest):
    os.makedirs(dest, exist_ok=True)
    out = os.path.join(dest, "model.onnx")
    qm = contrib_model(onnx, np)
    onnx.save(qm, out)
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.uniform(-4, 4, (1, 4, 6, 6)).astype(np.float32)} for _ in range(DEFAULT_EVAL_INPUTS)]
    return record(np, onnx, numpy_helper, ort, qm, out, feeds, dest, ("synthetic/contrib_ops", "qop", "u8"))


def record(np, onnx, numpy_helper, ort, qm, out, feeds, dest, what):
    """Runs ONNX Runtime (both levels) and the exact evaluation on `feeds`
    and writes the tensors; the manifest entry."""
    model, fmt, act = what
    inp = qm.graph.input[0]
    scale, zp = output_quant(onnx, numpy_helper, qm)
    ref = run_ort(ort, out, ort.GraphOptimizationLevel.ORT_DISABLE_ALL, feeds)
    optimized = os.path.join(dest, "ort_optimized.onnx")
    opt = run_ort(ort, out, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, feeds, optimized)
    int_graph = os.path.join(dest, "ort_integer.onnx")
    oint = run_ort(ort, out, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, feeds, int_graph, int8=True)
    ex = Exact(np, numpy_helper, qm)
    exact = [ex.run(f).astype(np.float32) for f in feeds]
    files = {"inputs": [], "ref": [], "ort": [], "ort_int": [], "exact": []}
    for k, f in enumerate(feeds):
        for kind, arr, name in [
            ("inputs", f[inp.name], inp.name),
            ("ref", ref[k], qm.graph.output[0].name),
            ("ort", opt[k], qm.graph.output[0].name),
            ("ort_int", oint[k], qm.graph.output[0].name),
            ("exact", exact[k], qm.graph.output[0].name),
        ]:
            p = os.path.join(dest, f"{kind}_{k}.pb")
            with open(p, "wb") as fh:
                fh.write(numpy_helper.from_array(arr, name).SerializeToString())
            files[kind].append(p)
    return {
        "name": case_name(model, fmt, act),
        "source": model,
        "format": fmt,
        "activations": act,
        "model": out,
        "output_scale": scale,
        "output_zero_point": zp,
        "ort_float_ops": float_ops(onnx, optimized),
        "ort_int_float_ops": float_ops(onnx, int_graph),
        **files,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models"))
    ap.add_argument("--print", action="store_true", help="print ORT's optimized path against its reference")
    a = ap.parse_args()
    np = ensure("numpy", "numpy")
    onnx = ensure("onnx", "onnx")
    ort = ensure("onnxruntime", "onnxruntime")
    from onnx import numpy_helper
    import onnxruntime.quantization as q
    import onnxruntime.quantization.shape_inference  # noqa: F401 (quant_pre_process)

    with open(__file__, "rb") as fh:
        h = hashlib.sha256(fh.read())
    h.update(f"onnx {onnx.__version__} onnxruntime {ort.__version__} numpy {np.__version__}".encode())
    key = h.hexdigest()[:16]
    root = os.path.join(a.out_dir, key)
    manifest = os.path.join(root, "manifest.json")
    if not os.path.exists(manifest):
        cases = []
        for model, fmt, act in CASES:
            dest = os.path.join(root, case_name(model, fmt, act))
            cases.append(build_case(np, onnx, numpy_helper, ort, q, a.models_dir, model, fmt, act, dest))
        doc = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "cases": cases}
        tmp = manifest + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, manifest)
    if a.print:
        doc = json.load(open(manifest))
        for c in doc["cases"]:
            line = f"{c['name']:44}"
            for what, a_key, b_key in [
                ("ORT optimized vs ORT reference", "ort", "ref"),
                ("ORT reference vs exact", "ref", "exact"),
                ("ORT optimized vs exact", "ort", "exact"),
            ]:
                worst, count, total = 0, 0, 0
                for x, y in zip(c[a_key], c[b_key]):
                    xa = numpy_helper.to_array(onnx.load_tensor(x))
                    ya = numpy_helper.to_array(onnx.load_tensor(y))
                    w, n, t = lsb(np, xa, ya, c["output_scale"])
                    worst, count, total = max(worst, w), count + n, total + t
                line += f"  {what}: {worst} ({count}/{total})"
            print(line)
    print(manifest)


if __name__ == "__main__":
    main()
