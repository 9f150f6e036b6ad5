"""Fold per-channel constants into conv / depthwise / matmul weights and fuse bias + activation
into the single ops tfjs executes fast.

Three passes over a frozen GraphDef, in place:
1. An inference FusedBatchNorm(V3) with constant statistics becomes Mul + Add of two constants.
2. Mul / Add / Sub / BiasAdd by a per-output-channel constant right after a Conv2D,
   DepthwiseConv2dNative or MatMul with a constant filter is folded: a Mul scales the filter (and
   a bias already there), an Add becomes or joins the bias (a BiasAdd). This is where batch norm
   goes (Keras 3 writes it as x * s + t; grappler folds s into Conv2D filters itself, not into
   depthwise ones).
3. Contraction (+ BiasAdd) (+ activation) becomes _FusedConv2D / FusedDepthwiseConv2dNative /
   _FusedMatMul, for the activations that the fused kernels of every stock tfjs 4.22 backend
   implement. tfjs-core's fused Activation type lists linear, relu, prelu, elu, relu6, leakyrelu,
   sigmoid; the cpu backend (applyActivation in tfjs-backend-cpu/src/utils/fused_utils.ts), webgl
   (mapActivationToShaderProgram in kernel_utils/kernel_funcs_utils.ts) and wasm (FusableActivation
   in kernels/types.ts and cc/backend.h) each implement exactly those and throw on anything else,
   hardswish included. TensorFlow has no Prelu op to fuse (Keras' PReLU is several ops), so the
   activations fused here are Relu, Relu6, Elu, Sigmoid and LeakyRelu (with its alpha).

A node is only folded into the one before it when that one has no other consumer and is not a
signature endpoint; the fused node takes the name of the last node of the chain, so consumers and
the signature need no rewiring.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Set

import numpy as np

from qshard.graph.freeze import node_name

CONTRACTIONS = {"Conv2D": "_FusedConv2D", "DepthwiseConv2dNative": "FusedDepthwiseConv2dNative",
                "MatMul": "_FusedMatMul"}
FUSED_ACTIVATIONS = ("Relu", "Relu6", "Elu", "Sigmoid", "LeakyRelu")
BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
DT_FLOAT = 1


class Graph:
    """A GraphDef with name lookup, consumer counts and constant access, edited in place."""

    def __init__(self, graph_def, keep: Set[str]):
        self.graph_def = graph_def
        self.keep = set(keep)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the name map and consumer counts after structural edits."""
        self.nodes = {n.name: n for n in self.graph_def.node}
        self.consumers: Counter = Counter()
        self.users: Dict[str, List[str]] = {}
        for n in self.graph_def.node:
            for ref in n.input:
                self.consumers[node_name(ref)] += 1
                self.users.setdefault(node_name(ref), []).append(n.name)

    def sole_input(self, name: str) -> bool:
        """The node feeds exactly one input of one node and is not a signature endpoint."""
        return self.consumers[name] == 1 and name not in self.keep

    def const(self, ref: str) -> Optional[np.ndarray]:
        """The value of a Const node's (only) output, or None."""
        from tensorflow.python.framework import tensor_util
        node = self.nodes.get(node_name(ref))
        if node is None or node.op != "Const" or ref.startswith("^") or (":" in ref and not ref.endswith(":0")):
            return None
        return tensor_util.MakeNdarray(node.attr["value"].tensor)

    def unique(self, base: str) -> str:
        """A node name not yet used."""
        name, i = base, 0
        while name in self.nodes:
            i += 1
            name = f"{base}_{i}"
        return name

    def add_const(self, base: str, value: np.ndarray) -> str:
        """A new Const node holding value; returns its name."""
        from tensorflow.python.framework import tensor_util
        node = self.graph_def.node.add()
        node.name = self.unique(base)
        node.op = "Const"
        node.attr["dtype"].type = DT_FLOAT if value.dtype == np.float32 else _dtype_enum(value.dtype)
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, shape=value.shape))
        self.nodes[node.name] = node
        return node.name

    def set_input_const(self, node, index: int, value: np.ndarray, base: str) -> None:
        """Make input `index` of node a Const holding value: the old Const is overwritten when only
        this input uses it, else a new one is made."""
        from tensorflow.python.framework import tensor_util
        old = node_name(node.input[index])
        if self.consumers[old] == 1 and old not in self.keep:
            self.nodes[old].attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, shape=value.shape))
            return
        self.consumers[old] -= 1
        node.input[index] = self.add_const(base, value)
        self.consumers[node.input[index]] += 1

    def remove(self, names: Set[str]) -> None:
        """Delete nodes (their consumers must have been rewired)."""
        nodes = self.graph_def.node
        for i in reversed(range(len(nodes))):
            if nodes[i].name in names:
                del nodes[i]
        self.refresh()


def _dtype_enum(dtype) -> int:
    from tensorflow import as_dtype
    return as_dtype(dtype).as_datatype_enum


def _is_nhwc(node) -> bool:
    fmt = node.attr["data_format"].s if "data_format" in node.attr else b"NHWC"
    return fmt in (b"NHWC", b"")


def _contraction(graph: Graph, ref: str):
    """The Conv2D / DepthwiseConv2dNative / MatMul node at ref when its filter is a float32 Const
    and its output channels are last; else None."""
    node = graph.nodes.get(node_name(ref))
    if node is None or node.op not in CONTRACTIONS or (":" in ref and not ref.endswith(":0")):
        return None
    if node.op != "MatMul" and not _is_nhwc(node):
        return None
    if node.op == "MatMul" and node.attr["transpose_a"].b:
        return None
    weights = graph.const(node.input[1])
    if weights is None or weights.dtype != np.float32:
        return None
    return node


def _channels(node, weights: np.ndarray) -> int:
    if node.op == "Conv2D":
        return weights.shape[3]
    if node.op == "DepthwiseConv2dNative":
        return weights.shape[2] * weights.shape[3]
    return weights.shape[0] if node.attr["transpose_b"].b else weights.shape[1]


def _scale_weights(node, weights: np.ndarray, scale: np.ndarray) -> np.ndarray:
    if node.op == "DepthwiseConv2dNative":
        return (weights * scale.reshape(weights.shape[2], weights.shape[3])).astype(np.float32)
    if node.op == "MatMul" and node.attr["transpose_b"].b:
        return (weights * scale[:, None]).astype(np.float32)
    return (weights * scale).astype(np.float32)


def _per_channel(value: Optional[np.ndarray], channels: int, rank: int) -> Optional[np.ndarray]:
    """value as a [channels] float32 vector, if it broadcasts along the last axis only."""
    if value is None or value.dtype != np.float32 or value.ndim > rank:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(()), np.float32)
    if value.shape[-1] != channels or value.size != channels:
        return None
    return value.reshape(channels)


def _become(target, source) -> None:
    """Turn node target into a copy of source under target's name."""
    name = target.name
    target.CopyFrom(source)
    target.name = name


def _fold_one(graph: Graph, node) -> bool:
    """Fold node (Mul/Add/AddV2/Sub/BiasAdd by a constant) into the contraction before it."""
    if node.op not in ("Mul", "Add", "AddV2", "Sub", "BiasAdd") or len(node.input) != 2:
        return False
    if node.attr["T"].type != DT_FLOAT or (node.op == "BiasAdd" and not _is_nhwc(node)):
        return False
    orders = [(0, 1)] if node.op in ("Sub", "BiasAdd") else [(0, 1), (1, 0)]
    for x_index, c_index in orders:
        producer = graph.nodes.get(node_name(node.input[x_index]))
        if producer is None or not graph.sole_input(producer.name):
            continue
        bias_add = producer if producer.op == "BiasAdd" else None
        if node.op == "BiasAdd" and bias_add is None:
            return False  # already the form wanted
        contraction = _contraction(graph, producer.input[0] if bias_add else node.input[x_index])
        if contraction is None or (bias_add is not None and not graph.sole_input(contraction.name)):
            continue
        weights = graph.const(contraction.input[1])
        channels = _channels(contraction, weights)
        rank = 2 if contraction.op == "MatMul" else 4
        value = _per_channel(graph.const(node.input[c_index]), channels, rank)
        bias = _per_channel(graph.const(bias_add.input[1]), channels, 1) if bias_add is not None else None
        if value is None or (bias_add is not None and bias is None):
            continue
        if node.op == "Sub":
            value = -value
        if node.op == "Mul":
            graph.set_input_const(contraction, 1, _scale_weights(contraction, weights, value),
                                  f"{contraction.name}/folded_weights")
            if bias_add is None:
                _become(node, contraction)
                graph.remove({contraction.name})
                return True
            graph.set_input_const(bias_add, 1, (bias * value).astype(np.float32), f"{bias_add.name}/folded_bias")
            _become(node, bias_add)
            graph.remove({bias_add.name})
            return True
        # An addition: it becomes the bias, or joins the one there.
        if bias_add is not None:
            graph.set_input_const(bias_add, 1, (bias + value).astype(np.float32), f"{bias_add.name}/folded_bias")
            _become(node, bias_add)
            graph.remove({bias_add.name})
            return True
        t = node.attr["T"]
        bias_name = graph.add_const(f"{node.name}/bias", value)
        del node.input[:]
        node.input.extend([contraction.name, bias_name])
        node.op = "BiasAdd"
        node.attr.clear()
        node.attr["T"].CopyFrom(t)
        node.attr["data_format"].s = b"NHWC"
        graph.refresh()
        return True
    return False


def _decompose_batch_norm(graph: Graph, node) -> bool:
    """An inference FusedBatchNorm with constant parameters -> Mul(x, s) then AddV2(., t)."""
    if node.op not in BATCH_NORMS or node.attr["is_training"].b or not _is_nhwc(node):
        return False
    users = [ref for n in graph.graph_def.node for ref in n.input if node_name(ref) == node.name]
    if any(":" in ref and not ref.endswith(":0") for ref in users):
        return False  # the batch statistics outputs are used
    gamma, beta, mean, var = (graph.const(ref) for ref in node.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        return False
    scale = (gamma / np.sqrt(var.astype(np.float64) + node.attr["epsilon"].f)).astype(np.float32)
    offset = (beta - mean * scale).astype(np.float32)
    t = node.attr["T"]
    mul = graph.graph_def.node.add()
    mul.name = graph.unique(f"{node.name}/scale_mul")
    mul.op = "Mul"
    mul.input.extend([node.input[0], graph.add_const(f"{node.name}/scale", scale)])
    mul.attr["T"].CopyFrom(t)
    offset_name = graph.add_const(f"{node.name}/offset", offset)
    node.op = "AddV2"
    del node.input[:]
    node.input.extend([mul.name, offset_name])
    node.attr.clear()
    node.attr["T"].CopyFrom(t)
    graph.refresh()
    return True


def _fuse_one(graph: Graph, node) -> bool:
    """Fuse node (an activation or a BiasAdd) with the contraction (and BiasAdd) before it."""
    activation = node if node.op in FUSED_ACTIVATIONS else None
    if activation is None and node.op != "BiasAdd":
        return False
    bias_add = node if activation is None else None
    if bias_add is not None and not _is_nhwc(bias_add):
        return False
    if bias_add is not None and graph.sole_input(node.name):
        user = graph.nodes[graph.users[node.name][0]]
        if user.op in FUSED_ACTIVATIONS:
            return False  # fused with its activation, from there
    if activation is not None:
        before = graph.nodes.get(node_name(node.input[0]))
        if before is not None and before.op == "BiasAdd" and _is_nhwc(before) and graph.sole_input(before.name):
            bias_add = before
    first = bias_add.input[0] if bias_add is not None else node.input[0]
    contraction = graph.nodes.get(node_name(first))
    if contraction is None or contraction.op not in CONTRACTIONS or ":" in first and not first.endswith(":0"):
        return False
    if not graph.sole_input(contraction.name) or contraction.attr["T"].type != DT_FLOAT:
        return False
    if contraction.op != "MatMul" and not _is_nhwc(contraction):
        return False
    fused_ops = [b"BiasAdd" if bias_add is not None else b"NoOp"]
    if activation is not None:
        fused_ops.append(activation.op.encode())
    alpha = activation.attr["alpha"].f if activation is not None and activation.op == "LeakyRelu" else None
    inputs = list(contraction.input[:2]) + ([bias_add.input[1]] if bias_add is not None else [])
    fused_op = CONTRACTIONS[contraction.op]
    removed = {n.name for n in (contraction, bias_add) if n is not None and n is not node}
    _become(node, contraction)
    node.op = fused_op
    del node.input[:]
    node.input.extend(inputs)
    node.attr["fused_ops"].list.s.extend(fused_ops)
    node.attr["num_args"].i = 1 if bias_add is not None else 0
    node.attr["epsilon"].f = 0.0
    if alpha is not None:
        node.attr["leakyrelu_alpha"].f = alpha
    graph.remove(removed)
    return True


def optimize(graph_def, keep: Set[str]) -> Dict[str, int]:
    """Run the three passes in place; returns counts of what each did."""
    graph = Graph(graph_def, keep)
    counts: Counter = Counter()
    for name, step in (("batch norms decomposed", _decompose_batch_norm), ("constants folded", _fold_one),
                       ("ops fused", _fuse_one)):
        changed = True
        while changed:
            changed = False
            for node in list(graph.graph_def.node):
                if node.name in graph.nodes and graph.nodes[node.name] is node and step(graph, node):
                    counts[name] += 1
                    changed = True
                    break
    return dict(counts)
