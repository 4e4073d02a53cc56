#!/usr/bin/env python3
"""Builds the wider benchmark set: public architectures written directly
with onnx.helper (no torch download), weights drawn from a fixed seed, each
with one input and ONNX Runtime's output on it (1 thread, all graph
optimizations) as the reference.

    scripts/make_bench_models.py OUT_DIR [--only NAME,...]

Writes OUT_DIR/NAME/model.onnx and OUT_DIR/NAME/test_data_set_0/
{input_0,output_0}.pb (the layout of ../shared/models), and prints the path
of OUT_DIR/manifest.json (a list of model folders) as its last line. A
model is rebuilt only when this script changed since it was written, so
repeated runs are cheap. Nothing here belongs in the repository: the
default OUT_DIR of callers is under target/.

The set covers op families the shared models do not stress:

- resnet18_224: ResNet-18's stem and first two stages at 224x224 (7x7
  stride-2 stem, 3x3 max pool, basic blocks with residual Add + Relu, a
  strided block with a 1x1 projection shortcut), BatchNorm folded by nnc.
- mbv3_se_224: MobileNetV3-style inverted residuals (hard-swish, 5x5
  depthwise, squeeze-excitation: global pool, two 1x1 convolutions, hard
  sigmoid, broadcast multiply).
- shufflenet_v2_224: ShuffleNetV2 units (channel split, branch of
  1x1 / depthwise 3x3 / 1x1, concat, channel shuffle as
  Reshape-Transpose-Reshape) plus a grouped 1x1 convolution.
- unet_decoder_128: a small encoder-decoder (strided convolutions down,
  ConvTranspose 2x2 stride 2, Resize nearest and linear up, skip concats).
- audio_m5_16k: the M5 raw-audio network (1-D convolutions over a
  16000-sample sequence, 1-D max pooling, global pooling, Gemm).
- effnet_b0_stage_112: EfficientNet-B0-style MBConv blocks with 5x5
  depthwise, swish (x * sigmoid(x)) and squeeze-excitation.
"""
import argparse
import fcntl
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class B:
    """A graph under construction: nodes, initializers, fresh names."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.n = 0

    def fresh(self, what):
        self.n += 1
        return f"{what}_{self.n}"

    def const(self, arr, what="c"):
        name = self.fresh(what)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, kind, ins, n_out=1, **attrs):
        outs = [self.fresh(kind.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(kind, ins, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    # -- layers ---------------------------------------------------------
    def conv(self, x, cin, cout, k, stride=1, pad=None, group=1, bias=True, bn=False):
        ks = k if isinstance(k, tuple) else (k, k)
        rank = len(ks)
        pad = [kk // 2 for kk in ks] if pad is None else pad
        pads = list(pad) * 2 if len(pad) == rank else list(pad)
        fan_in = cin // group * int(np.prod(ks))
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group) + ks).astype(np.float32)
        ins = [x, self.const(w, "w")]
        if bias and not bn:
            ins.append(self.const(self.rng.normal(0, 0.05, cout).astype(np.float32), "b"))
        st = [stride] * rank if isinstance(stride, int) else list(stride)
        y = self.op("Conv", ins, kernel_shape=list(ks), strides=st, pads=pads, group=group)
        if bn:
            y = self.bn(y, cout)
        return y

    def bn(self, x, c):
        r = self.rng
        scale = r.uniform(0.7, 1.3, c).astype(np.float32)
        bias = r.normal(0, 0.1, c).astype(np.float32)
        mean = r.normal(0, 0.1, c).astype(np.float32)
        var = r.uniform(0.5, 1.5, c).astype(np.float32)
        return self.op("BatchNormalization", [x] + [self.const(v, "bn") for v in (scale, bias, mean, var)], epsilon=1e-5)

    def relu(self, x):
        return self.op("Relu", [x])

    def hswish(self, x):
        return self.op("HardSwish", [x])

    def swish(self, x):
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def se(self, x, c, squeeze, gate="hsig"):
        """Squeeze-excitation: global pool, 1x1 down + relu, 1x1 up, gate, multiply."""
        p = self.op("GlobalAveragePool", [x])
        s = self.relu(self.conv(p, c, squeeze, 1, pad=[0, 0]))
        e = self.conv(s, squeeze, c, 1, pad=[0, 0])
        g = self.op("HardSigmoid", [e], alpha=1.0 / 6, beta=0.5) if gate == "hsig" else self.op("Sigmoid", [e])
        return self.op("Mul", [x, g])

    def gemm(self, x, k, n):
        w = self.rng.normal(0, np.sqrt(1.0 / k), (n, k)).astype(np.float32)
        b = self.rng.normal(0, 0.05, n).astype(np.float32)
        return self.op("Gemm", [x, self.const(w, "fc"), self.const(b, "fcb")], transB=1)

    def head(self, x, c, n):
        p = self.op("GlobalAveragePool", [x])
        f = self.op("Flatten", [p], axis=1)
        return self.gemm(f, c, n)

    def model(self, x_shape, y):
        g = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
            [],
            self.inits,
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nnc make_bench_models")
        m.ir_version = 8
        # The output's type as shape inference finds it.
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        vi = [v for v in inferred.graph.value_info if v.name == y]
        if not vi:
            sys.exit(f"{self.name}: shape inference found no type for {y}")
        m.graph.output.append(vi[0])
        onnx.checker.check_model(m)
        return m


def resnet18_224():
    b = B("resnet18_224", 18)
    x = b.conv("input", 3, 64, 7, stride=2, pad=[3, 3], bn=True)
    x = b.relu(x)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def block(x, cin, cout, stride):
        y = b.relu(b.conv(x, cin, cout, 3, stride=stride, bn=True))
        y = b.conv(y, cout, cout, 3, bn=True)
        sc = x if stride == 1 and cin == cout else b.conv(x, cin, cout, 1, stride=stride, pad=[0, 0], bn=True)
        return b.relu(b.op("Add", [y, sc]))

    x = block(x, 64, 64, 1)
    x = block(x, 64, 64, 1)
    x = block(x, 64, 128, 2)
    x = block(x, 128, 128, 1)
    return b.model([1, 3, 224, 224], b.head(x, 128, 1000))


def mbv3_se_224():
    b = B("mbv3_se_224", 3)
    x = b.hswish(b.conv("input", 3, 16, 3, stride=2, bn=True))

    def ir(x, cin, exp, cout, k, stride, se, act):
        y = act(b.conv(x, cin, exp, 1, pad=[0, 0], bn=True))
        y = act(b.conv(y, exp, exp, k, stride=stride, group=exp, bn=True))
        if se:
            y = b.se(y, exp, max(8, exp // 4))
        y = b.conv(y, exp, cout, 1, pad=[0, 0], bn=True)
        return b.op("Add", [y, x]) if stride == 1 and cin == cout else y

    x = ir(x, 16, 16, 16, 3, 1, False, b.relu)
    x = ir(x, 16, 64, 24, 3, 2, False, b.relu)
    x = ir(x, 24, 72, 24, 3, 1, False, b.relu)
    x = ir(x, 24, 72, 40, 5, 2, True, b.relu)
    x = ir(x, 40, 120, 40, 5, 1, True, b.relu)
    x = ir(x, 40, 240, 80, 3, 2, False, b.hswish)
    x = ir(x, 80, 200, 80, 3, 1, False, b.hswish)
    x = ir(x, 80, 480, 112, 3, 1, True, b.hswish)
    x = ir(x, 112, 672, 160, 5, 2, True, b.hswish)
    x = b.hswish(b.conv(x, 160, 960, 1, pad=[0, 0], bn=True))
    return b.model([1, 3, 224, 224], b.head(x, 960, 1000))


def shufflenet_v2_224():
    b = B("shufflenet_v2_224", 2)
    x = b.relu(b.conv("input", 3, 24, 3, stride=2, bn=True))
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    hw = 56

    def shuffle(x, c, hw):
        s1 = b.const(np.array([1, 2, c // 2, hw, hw], dtype=np.int64), "shape")
        s2 = b.const(np.array([1, c, hw, hw], dtype=np.int64), "shape")
        y = b.op("Reshape", [x, s1])
        y = b.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return b.op("Reshape", [y, s2])

    def branch(x, cin, c, stride):
        y = b.relu(b.conv(x, cin, c, 1, pad=[0, 0], bn=True))
        y = b.conv(y, c, c, 3, stride=stride, group=c, bn=True)
        return b.relu(b.conv(y, c, c, 1, pad=[0, 0], bn=True))

    def unit(x, c, hw):
        split = b.const(np.array([c // 2, c // 2], dtype=np.int64), "split")
        a, r = b.op("Split", [x, split], n_out=2, axis=1)
        return shuffle(b.op("Concat", [a, branch(r, c // 2, c // 2, 1)], axis=1), c, hw)

    def down(x, cin, c, hw):
        left = b.conv(x, cin, cin, 3, stride=2, group=cin, bn=True)
        left = b.relu(b.conv(left, cin, c // 2, 1, pad=[0, 0], bn=True))
        right = branch(x, cin, c // 2, 2)
        return shuffle(b.op("Concat", [left, right], axis=1), c, hw // 2)

    x = down(x, 24, 116, hw)
    hw //= 2
    for _ in range(3):
        x = unit(x, 116, hw)
    x = down(x, 116, 232, hw)
    hw //= 2
    for _ in range(3):
        x = unit(x, 232, hw)
    # A grouped pointwise convolution (ShuffleNet v1's), then the head.
    x = b.relu(b.conv(x, 232, 464, 1, pad=[0, 0], group=4, bn=True))
    return b.model([1, 3, 224, 224], b.head(x, 464, 1000))


def unet_decoder_128():
    b = B("unet_decoder_128", 5)
    e1 = b.relu(b.conv("input", 3, 32, 3, bn=True))  # 128
    e2 = b.relu(b.conv(e1, 32, 64, 3, stride=2, bn=True))  # 64
    e3 = b.relu(b.conv(e2, 64, 128, 3, stride=2, bn=True))  # 32
    z = b.relu(b.conv(e3, 128, 128, 3, stride=2, bn=True))  # 16
    # Up by a transposed convolution (2x2 stride 2).
    w = b.rng.normal(0, np.sqrt(2.0 / (128 * 4)), (128, 128, 2, 2)).astype(np.float32)
    u3 = b.op("ConvTranspose", [z, b.const(w, "wt"), b.const(np.zeros(128, np.float32), "bt")], kernel_shape=[2, 2], strides=[2, 2])
    d3 = b.relu(b.conv(b.op("Concat", [u3, e3], axis=1), 256, 64, 3, bn=True))  # 32
    # Up by nearest-neighbour Resize.
    scales = b.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    u2 = b.op("Resize", [d3, "", scales], mode="nearest")
    d2 = b.relu(b.conv(b.op("Concat", [u2, e2], axis=1), 128, 32, 3, bn=True))  # 64
    # Up by bilinear Resize.
    u1 = b.op("Resize", [d2, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")
    d1 = b.relu(b.conv(b.op("Concat", [u1, e1], axis=1), 64, 16, 3, bn=True))  # 128
    y = b.op("Sigmoid", [b.conv(d1, 16, 2, 1, pad=[0, 0])])
    return b.model([1, 3, 128, 128], y)


def audio_m5_16k():
    b = B("audio_m5_16k", 7)
    x = b.relu(b.conv("input", 1, 64, (80,), stride=4, pad=[38], bn=True))  # 4000
    x = b.op("MaxPool", [x], kernel_shape=[4], strides=[4])  # 1000
    x = b.relu(b.conv(x, 64, 64, (3,), pad=[1], bn=True))
    x = b.op("MaxPool", [x], kernel_shape=[4], strides=[4])  # 250
    x = b.relu(b.conv(x, 64, 128, (3,), pad=[1], bn=True))
    x = b.op("MaxPool", [x], kernel_shape=[4], strides=[4])  # 62
    x = b.relu(b.conv(x, 128, 256, (3,), pad=[1], bn=True))
    x = b.op("MaxPool", [x], kernel_shape=[4], strides=[4])  # 15
    p = b.op("GlobalAveragePool", [x])
    f = b.op("Flatten", [p], axis=1)
    y = b.op("LogSoftmax", [b.gemm(f, 256, 35)], axis=1)
    return b.model([1, 1, 16000], y)


def effnet_b0_stage_112():
    b = B("effnet_b0_stage_112", 11)
    x = b.swish(b.conv("input", 3, 32, 3, stride=2, bn=True))  # 56

    def mbconv(x, cin, cout, k, stride, expand):
        c = cin * expand
        y = b.swish(b.conv(x, cin, c, 1, pad=[0, 0], bn=True)) if expand > 1 else x
        y = b.swish(b.conv(y, c, c, k, stride=stride, group=c, bn=True))
        y = b.se(y, c, max(4, cin // 4), gate="sigmoid")
        y = b.conv(y, c, cout, 1, pad=[0, 0], bn=True)
        return b.op("Add", [y, x]) if stride == 1 and cin == cout else y

    x = mbconv(x, 32, 16, 3, 1, 1)
    x = mbconv(x, 16, 24, 3, 2, 6)  # 28
    x = mbconv(x, 24, 24, 3, 1, 6)
    x = mbconv(x, 24, 40, 5, 2, 6)  # 14
    x = mbconv(x, 40, 40, 5, 1, 6)
    x = mbconv(x, 40, 80, 3, 2, 6)  # 7
    x = mbconv(x, 80, 112, 5, 1, 6)
    x = b.swish(b.conv(x, 112, 640, 1, pad=[0, 0], bn=True))
    return b.model([1, 3, 112, 112], b.head(x, 640, 100))


MODELS = {
    "resnet18_224": resnet18_224,
    "mbv3_se_224": mbv3_se_224,
    "shufflenet_v2_224": shufflenet_v2_224,
    "unet_decoder_128": unet_decoder_128,
    "audio_m5_16k": audio_m5_16k,
    "effnet_b0_stage_112": effnet_b0_stage_112,
}


def write(out, name, build, stamp):
    d = os.path.join(out, name)
    data = os.path.join(d, "test_data_set_0")
    stamp_file = os.path.join(d, "stamp")
    if os.path.exists(stamp_file) and open(stamp_file).read() == stamp:
        return d
    os.makedirs(data, exist_ok=True)
    m = build()
    path = os.path.join(d, "model.onnx")
    save_atomically(path, m.SerializeToString())
    shape = [dim.dim_value for dim in m.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1234).uniform(-1, 1, shape).astype(np.float32)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": x})[0]
    if not np.all(np.isfinite(y)):
        sys.exit(f"{name}: ONNX Runtime's output is not finite")
    save_atomically(os.path.join(data, "input_0.pb"), numpy_helper.from_array(x, "input").SerializeToString())
    save_atomically(
        os.path.join(data, "output_0.pb"),
        numpy_helper.from_array(y, m.graph.output[0].name).SerializeToString(),
    )
    # The stamp goes last: a folder with a current stamp is complete.
    save_atomically(stamp_file, stamp.encode())
    return d


def save_atomically(path, data):
    """Writes `data` next to `path` and renames it into place, so a reader
    never sees a partly written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--only", help="comma-separated model names")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    with open(os.path.abspath(__file__), "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest() + f" onnx {onnx.__version__}"
    os.makedirs(a.out, exist_ok=True)
    # Concurrent runs (test threads, parallel test binaries) take turns: the
    # first one writes the models, the rest find them stamped and current.
    with open(os.path.join(a.out, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dirs = [os.path.abspath(write(a.out, n, MODELS[n], stamp)) for n in names]
        manifest = os.path.join(os.path.abspath(a.out), "manifest.json")
        save_atomically(manifest, json.dumps(dirs, indent=1).encode())
    print(manifest)


if __name__ == "__main__":
    main()
