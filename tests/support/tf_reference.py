"""A reference executor for the graph models of the per-channel tests: walks a model.json's node
list and computes each node with TensorFlow's own kernels (eager, float32), taking every Const from
the weights as qshard decodes them (qshard.tfjs.read_weights). tfjs-only fused ops are spelled out
(FusedDepthwiseConv2dNative = depthwise conv + bias + activation)."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Dict, List

import numpy as np

from conftest import require
from qshard import tfjs


def tensorflow_or_skip(what: str):
    """TensorFlow, or a loud skip (a failure under QSHARD_REQUIRE_KERAS) naming `what` needs it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow
    except ImportError as error:
        require(f"TensorFlow is not installed ({error})", "QSHARD_REQUIRE_KERAS", what)
    return tensorflow


def _s(node, key, default=""):
    v = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(v).decode() if v else default


def _ints(node, key):
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _fused(node):
    return [base64.b64decode(s).decode() for s in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])]


def _activate(tf, x, name, extra):
    if name == "Relu":
        return tf.nn.relu(x)
    if name == "Relu6":
        return tf.nn.relu6(x)
    if name == "Prelu":
        return tf.maximum(x, 0.0) + extra * tf.minimum(x, 0.0)
    raise NotImplementedError(name)


def _conv(tf, node, args):
    x, w = args[0], args[1]
    if "Depthwise" in node["op"]:
        y = tf.nn.depthwise_conv2d(x, w, _ints(node, "strides"), _s(node, "padding"))
    else:
        y = tf.nn.conv2d(x, w, _ints(node, "strides"), _s(node, "padding"))
    return _epilogue(tf, node, y, args)


def _epilogue(tf, node, y, args):
    fused = _fused(node)
    if fused:
        y = tf.nn.bias_add(y, args[2])
        for op in fused[1:]:
            y = _activate(tf, y, op, args[3] if len(args) > 3 else None)
    return y


def _matmul(tf, node, args):
    b = node.get("attr", {}).get("transpose_b", {}).get("b", False)
    return _epilogue(tf, node, tf.matmul(args[0], args[1], transpose_b=b), args)


def _pool(tf, node, args):
    fn = tf.nn.max_pool2d if node["op"] == "MaxPool" else tf.nn.avg_pool2d
    return fn(args[0], _ints(node, "ksize")[1:3], _ints(node, "strides")[1:3], _s(node, "padding"))


def _ops(tf):
    return {
        "Identity": lambda n, a: a[0], "Relu": lambda n, a: tf.nn.relu(a[0]), "Relu6": lambda n, a: tf.nn.relu6(a[0]),
        "Sigmoid": lambda n, a: tf.sigmoid(a[0]), "Softmax": lambda n, a: tf.nn.softmax(a[0]),
        "Mul": lambda n, a: a[0] * a[1], "Sub": lambda n, a: a[0] - a[1], "AddV2": lambda n, a: a[0] + a[1],
        "Add": lambda n, a: a[0] + a[1], "BiasAdd": lambda n, a: tf.nn.bias_add(a[0], a[1]),
        "Conv2D": _conv_op(tf), "_FusedConv2D": _conv_op(tf), "DepthwiseConv2dNative": _conv_op(tf),
        "FusedDepthwiseConv2dNative": _conv_op(tf), "MatMul": lambda n, a: _matmul(tf, n, a),
        "_FusedMatMul": lambda n, a: _matmul(tf, n, a), "MaxPool": lambda n, a: _pool(tf, n, a),
        "AvgPool": lambda n, a: _pool(tf, n, a), "Pad": lambda n, a: tf.pad(a[0], a[1]),
        "Mean": lambda n, a: tf.reduce_mean(a[0], axis=list(np.atleast_1d(a[1].numpy()))),
        "Reshape": lambda n, a: tf.reshape(a[0], a[1]), "ArgMax": lambda n, a: tf.argmax(a[0], a[1], output_type=tf.int32),
        "ConcatV2": lambda n, a: tf.concat(a[:-1], int(a[-1].numpy())),
    }


def _conv_op(tf):
    return lambda n, a: _conv(tf, n, a)


def run_graph(folder, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """The signature's outputs of the graph model in `folder` for `inputs` (by Placeholder name)."""
    doc = json.loads((Path(folder) / "model.json").read_text())
    values = evaluate(folder, inputs)
    return [values[o.split(":")[0]] for o in doc["signature"]["outputs"]]


def evaluate(folder, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Every node's value (name -> array) of the graph model in `folder` for `inputs`."""
    import tensorflow as tf
    doc = json.loads((Path(folder) / "model.json").read_text())
    weights = tfjs.read_weights(folder)
    nodes = {n["name"]: n for n in doc["modelTopology"]["node"]}
    ops = _ops(tf)
    cache = {}

    def value(name):
        name = name.split(":")[0]
        if name not in cache:
            node = nodes[name]
            if node["op"] == "Const":
                cache[name] = tf.constant(weights[name])
            elif node["op"] == "Placeholder":
                cache[name] = tf.constant(inputs[name])
            else:
                cache[name] = ops[node["op"]](node, [value(i) for i in node.get("input", [])])
        return cache[name]

    for name in nodes:
        value(name)
    return {name: np.asarray(v) for name, v in cache.items()}
