"""Made-up tfjs graph models for the per-channel tests, written as model.json node lists (the JSON
form of a GraphDef that tfjs reads, fused ops as tensorflowjs writes them), each reproducing one
failure of per-tensor uint8 seen on published models."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from qshard.tfjs import write_weights

F32 = {"type": "DT_FLOAT"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ints(values) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _shape(dims) -> dict:
    return {"dim": [{"size": str(d)} for d in dims]}


class GraphBuilder:
    """Nodes and weights of a graph model, written with write_weights (float32)."""

    def __init__(self):
        self.nodes: List[dict] = []
        self.weights: Dict[str, np.ndarray] = {}
        self.inputs: Dict[str, tuple] = {}

    def input(self, name: str, shape) -> str:
        self.inputs[name] = tuple(shape)
        self.nodes.append({"name": name, "op": "Placeholder", "attr": {"dtype": F32, "shape": {"shape": _shape(shape)}}})
        return name

    def const(self, name: str, value) -> str:
        value = np.asarray(value)
        value = value.astype(np.int32 if value.dtype.kind in "iu" else np.float32)
        dtype = "DT_INT32" if value.dtype == np.int32 else "DT_FLOAT"
        self.weights[name] = value
        self.nodes.append({"name": name, "op": "Const", "attr": {
            "value": {"tensor": {"dtype": dtype, "tensorShape": _shape(value.shape) if value.ndim else {}}},
            "dtype": {"type": dtype}}})
        return name

    def op(self, op: str, name: str, inputs: List[str], **attr) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": {"T": F32, **attr}})
        return name

    def _fused(self, fused_ops) -> dict:
        return {"fused_ops": {"list": {"s": [_b64(o) for o in fused_ops]}}, "num_args": {"i": "1"},
                "epsilon": {"f": 0}}

    def conv(self, name: str, x: str, w, bias=None, act: Optional[str] = None, stride: int = 1,
             padding: str = "SAME", depthwise: bool = False) -> str:
        """A (depthwise) conv: fused with its bias (and activation) as tensorflowjs writes it, or
        plain when there is no bias."""
        self.const(f"{name}/weights", w)
        attr = {"strides": _ints([1, stride, stride, 1]), "padding": {"s": _b64(padding)},
                "data_format": {"s": _b64("NHWC")}, "dilations": _ints([1, 1, 1, 1])}
        inputs = [x, f"{name}/weights"]
        if bias is None:
            return self.op("DepthwiseConv2dNative" if depthwise else "Conv2D", name, inputs, **attr)
        self.const(f"{name}/bias", bias)
        fused = ["BiasAdd"] + ([act] if act else [])
        return self.op("FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D", name,
                       inputs + [f"{name}/bias"], **attr, **self._fused(fused))

    def matmul(self, name: str, x: str, w, bias=None, act: Optional[str] = None, transpose_b: bool = False) -> str:
        self.const(f"{name}/weights", w)
        attr = {"transpose_a": {"b": False}, "transpose_b": {"b": transpose_b}}
        if bias is None:
            return self.op("MatMul", name, [x, f"{name}/weights"], **attr)
        self.const(f"{name}/bias", bias)
        return self.op("_FusedMatMul", name, [x, f"{name}/weights", f"{name}/bias"], **attr,
                       **self._fused(["BiasAdd"] + ([act] if act else [])))

    def pool(self, op: str, name: str, x: str, size: int = 2) -> str:
        return self.op(op, name, [x], ksize=_ints([1, size, size, 1]), strides=_ints([1, size, size, 1]),
                       padding={"s": _b64("VALID")}, data_format={"s": _b64("NHWC")})

    def mean(self, name: str, x: str, axes) -> str:
        self.const(f"{name}/axes", np.array(axes, np.int32))
        return self.op("Mean", name, [x, f"{name}/axes"], keep_dims={"b": False}, Tidx={"type": "DT_INT32"})

    def reshape(self, name: str, x: str, shape) -> str:
        self.const(f"{name}/shape", np.array(shape, np.int32))
        return self.op("Reshape", name, [x, f"{name}/shape"], Tshape={"type": "DT_INT32"})

    def write(self, folder, outputs: List[str], shard_size: int = 4 * 1024 * 1024) -> Path:
        """Write model.json (with a signature naming `outputs`) and float32 shards."""
        folder = Path(folder)
        folder.mkdir(parents=True)
        manifest = write_weights([list(self.weights.items())], folder, shard_size=shard_size, write_manifest=False)
        signature = {"inputs": {f"{n}:0": {"name": f"{n}:0", "dtype": "DT_FLOAT", "tensorShape": _shape(s)}
                                for n, s in self.inputs.items()},
                     "outputs": {f"{n}:0": {"name": f"{n}:0", "dtype": "DT_FLOAT"} for n in outputs}}
        doc = {"format": "graph-model", "generatedBy": "qshard tests", "convertedBy": "qshard tests",
               "signature": signature, "modelTopology": {"node": self.nodes, "library": {}, "versions": {"producer": 1482}},
               "weightsManifest": manifest}
        (folder / "model.json").write_text(json.dumps(doc))
        return folder


def _log_spread(rng, n: int, decades: float) -> np.ndarray:
    return 10.0 ** rng.uniform(-decades, 0, n)


def folded_batch_norm(folder, rng) -> Path:
    """Channels 1000x apart: conv1's output channels scaled by g (batch norm folded into it), a
    depthwise conv whose channels undo it (1/g) and two more convs. Per-tensor uint8 zeroes the
    small channels of both filters; the function needs every channel."""
    g = _log_spread(rng, 16, 3.0)
    b = GraphBuilder()
    x = b.input("image", [1, 12, 12, 3])
    w1 = rng.normal(0, 0.4, (3, 3, 3, 16)) * g
    h = b.conv("conv1", x, w1, bias=rng.normal(0, 0.05, 16) * g, act="Relu")
    h = b.op("Pad", "pad", [h, b.const("pad/paddings", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))],
             Tpaddings={"type": "DT_INT32"})
    h = b.conv("dw", h, rng.normal(0, 0.3, (3, 3, 16, 1)) / g[None, None, :, None], padding="VALID", depthwise=True)
    h = b.conv("pw", h, rng.normal(0, 0.3, (1, 1, 16, 24)) * _log_spread(rng, 24, 2.0), bias=rng.normal(0, 0.1, 24),
               act="Relu")
    h = b.pool("MaxPool", "pool", h)
    h = b.conv("head", h, rng.normal(0, 0.2, (3, 3, 24, 8)), bias=rng.normal(0, 0.1, 8))
    return b.write(folder, [h])


def mostly_zero(folder, rng) -> Path:
    """A 1x1 conv whose filter is 69% exact zeros; fed one-hot pixels, its output is the filter
    itself, so zeros that stay exact show as exact zeros in the output."""
    w = rng.normal(0.3, 1.0, (1, 1, 16, 12)) * (rng.random((1, 1, 16, 12)) >= 0.69)
    w[0, 0, 0, 0] = 0.0  # at least one zero in the first channel
    b = GraphBuilder()
    x = b.input("onehot", [1, 1, 16, 16])
    h = b.conv("sparse", x, w)
    return b.write(folder, [b.op("Identity", "out", [h])])


def depthwise_stack(folder, rng) -> Path:
    """Depthwise convs with a channel multiplier of 2, fused with Relu6 (which no scale passes),
    then plain, then a pointwise conv with Prelu."""
    b = GraphBuilder()
    x = b.input("x", [2, 10, 10, 4])
    h = b.conv("dw1", x, rng.normal(0, 1, (3, 3, 4, 2)) * _log_spread(rng, 8, 2).reshape(4, 2), bias=rng.normal(0, .1, 8),
               act="Relu6", depthwise=True)
    h = b.conv("dw2", h, rng.normal(0, 1, (3, 3, 8, 1)) * _log_spread(rng, 8, 2)[:, None], depthwise=True, stride=2)
    alpha = b.const("pw/alpha", rng.uniform(0.05, 0.3, 6))
    b.const("pw/weights", rng.normal(0, 0.5, (1, 1, 8, 6)))
    b.const("pw/bias", rng.normal(0, 0.1, 6))
    h = b.op("_FusedConv2D", "pw", [h, "pw/weights", "pw/bias", alpha], strides=_ints([1, 1, 1, 1]),
             padding={"s": _b64("SAME")}, data_format={"s": _b64("NHWC")}, dilations=_ints([1, 1, 1, 1]),
             fused_ops={"list": {"s": [_b64("BiasAdd"), _b64("Prelu")]}}, num_args={"i": "2"}, epsilon={"f": 0})
    return b.write(folder, [h])


def matmul_head(folder, rng) -> Path:
    """A conv, global average pooling (Mean over H, W), a fused matmul with Relu and a matmul with
    transpose_b, then Softmax: a classifier head."""
    b = GraphBuilder()
    x = b.input("x", [3, 8, 8, 5])
    h = b.conv("conv", x, rng.normal(0, 0.5, (3, 3, 5, 32)) * _log_spread(rng, 32, 2.5), bias=rng.normal(0, .1, 32),
               act="Relu")
    h = b.mean("gap", h, [1, 2])
    h = b.matmul("fc1", h, rng.normal(0, 0.3, (32, 20)) * _log_spread(rng, 20, 2), bias=rng.normal(0, .1, 20), act="Relu")
    h = b.matmul("fc2", h, rng.normal(0, 0.3, (10, 20)), transpose_b=True)
    return b.write(folder, [b.op("Softmax", "probs", [h])])


def detection_head(folder, rng) -> Path:
    """A backbone conv, a flatten into a matmul, and SSD-style heads: class logits and boxes per
    anchor (conv, reshape to [1, anchors, k]), concatenated, with sigmoid scores and their argmax."""
    b = GraphBuilder()
    x = b.input("x", [1, 8, 8, 3])
    h = b.conv("backbone", x, rng.normal(0, 0.5, (3, 3, 3, 12)) * _log_spread(rng, 12, 3), bias=rng.normal(0, .1, 12),
               act="Relu", stride=2)
    cls = b.conv("cls", h, rng.normal(0, 0.3, (1, 1, 12, 6)), bias=rng.normal(-1, .5, 6))
    box = b.conv("box", h, rng.normal(0, 0.3, (3, 3, 12, 8)), bias=rng.normal(0, .5, 8))
    cls = b.reshape("cls/flat", cls, [1, -1, 3])
    box = b.reshape("box/flat", box, [1, -1, 4])
    scores = b.op("Sigmoid", "scores", [cls])
    best = b.op("ArgMax", "best", [b.reshape("scores/flat", scores, [1, -1]), b.const("best/axis", np.array(1, np.int32))],
                output_type={"type": "DT_INT32"}, Tidx={"type": "DT_INT32"})
    flat = b.reshape("flat", h, [1, 192])
    pose = b.matmul("pose", flat, rng.normal(0, 0.1, (192, 5)), bias=rng.normal(0, .1, 5))
    pose = b.op("Mul", "pose/scaled", [pose, b.const("pose/scale", np.float32(0.5))])  # a 0-d weight
    return b.write(folder, [scores, box, best, pose])


def inputs_for(folder, rng) -> Dict[str, np.ndarray]:
    """Inputs for a model written here, by Placeholder name: standard normal, except that the
    'onehot' input holds pixel j = the one-hot vector e_j."""
    doc = json.loads((Path(folder) / "model.json").read_text())
    out = {}
    for n in doc["modelTopology"]["node"]:
        if n["op"] == "Placeholder":
            shape = [int(d["size"]) for d in n["attr"]["shape"]["shape"]["dim"]]
            if n["name"] == "onehot":
                out[n["name"]] = np.eye(shape[-1], dtype=np.float32).reshape(shape)
            else:
                out[n["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


MODELS = {"folded_batch_norm": folded_batch_norm, "mostly_zero": mostly_zero, "depthwise_stack": depthwise_stack,
          "matmul_head": matmul_head, "detection_head": detection_head}
