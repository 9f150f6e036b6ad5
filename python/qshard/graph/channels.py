"""The channel structure of a tfjs graph model: which nodes multiply their input by a weight (conv,
depthwise conv, matmul and their fused forms), which axis of that weight is the output channel, and
where a positive per-channel factor on a layer's output can travel to.

The last fact is what makes per-channel scales free at predict time. For t > 0 per channel,
relu(t*y + b) = t*relu(y + b/t), and max-pooling, average-pooling, zero padding, bilinear resizing,
prelu and leaky relu commute with t the same way; a constant added on the way becomes b/t; and the
next conv or matmul can absorb t into the input-channel axis of its weight. So a layer's output
factor t can be divided out of its weight (and its bias) and multiplied into every layer that reads
the output, if every path from the layer reaches such a reader through such ops only (a `Move`).
Relu6, clipping, sigmoid, residual adds of two computed tensors, concatenation and graph outputs
stop it: relu6(t*y) is not t*relu6(y).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

CONV_OPS = {"Conv2D", "_FusedConv2D"}
DEPTHWISE_OPS = {"DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
MATMUL_OPS = {"MatMul", "_FusedMatMul"}
LAYER_OPS = CONV_OPS | DEPTHWISE_OPS | MATMUL_OPS
# Fused activations of the same homogeneous kind as relu: act(t*y) = t*act(y) for t > 0.
HOMOGENEOUS_FUSED = {"BiasAdd", "Relu", "Prelu", "LeakyRelu"}
# Ops whose first input can carry a positive per-channel factor through unchanged.
PASS_THROUGH = {"Identity", "Relu", "MaxPool", "AvgPool", "Pad", "MirrorPad", "ResizeBilinear",
                "ResizeNearestNeighbor", "LeakyRelu", "Prelu", "Squeeze"}
ADDITIVE = {"BiasAdd", "Add", "AddV2", "Sub"}


def decode_strings(attr: dict) -> List[str]:
    """The strings of a tfjs JSON attr list (base64 in the file)."""
    return [base64.b64decode(s).decode() for s in attr.get("list", {}).get("s", [])]


def attr_string(node: dict, key: str, default: str = "") -> str:
    """A string attribute of a node (stored base64)."""
    value = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(value).decode() if value else default


def attr_bool(node: dict, key: str) -> bool:
    """A boolean attribute of a node (absent: false)."""
    return bool(node.get("attr", {}).get(key, {}).get("b", False))


def source(input_name: str) -> Tuple[str, int]:
    """(node name, output index) of an input reference such as 'conv', 'split:1' or '^ctrl'."""
    name = input_name[1:] if input_name.startswith("^") else input_name
    head, sep, tail = name.rpartition(":")
    if sep and tail.isdigit():
        return head, int(tail)
    return name, 0


@dataclass(frozen=True)
class Layer:
    """A node that multiplies a data input by a weight (a Const) along channel axes."""

    node: str
    op: str
    weight: str            # the Const node name (and the weight's name in the manifest)
    data_index: int        # which input is the data
    transpose_b: bool = False
    fused: Tuple[str, ...] = ()
    bias: Optional[str] = None  # the fused BiasAdd's Const, if any

    @property
    def kind(self) -> str:
        """'conv', 'depthwise' or 'matmul'."""
        return "conv" if self.op in CONV_OPS else "depthwise" if self.op in DEPTHWISE_OPS else "matmul"

    def out_channels(self, shape: Sequence[int]) -> int:
        """Number of output channels of a weight of this shape."""
        if self.kind == "depthwise":
            return int(shape[2]) * int(shape[3])
        if self.kind == "matmul":
            return int(shape[0] if self.transpose_b else shape[1])
        return int(shape[3])

    def rows(self, w: np.ndarray) -> np.ndarray:
        """The weight as [output channel, everything else] (a copy or a view)."""
        if self.kind == "depthwise":
            return w.reshape(-1, w.shape[2] * w.shape[3]).T
        if self.kind == "matmul" and self.transpose_b:
            return w
        return w.reshape(-1, w.shape[-1]).T

    def out_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Shape of a per-output-channel vector that broadcasts against the weight. It is the
        weight's trailing axes wherever possible: tfjs's cpu backend multiplies such a pair in a
        flat loop (no per-element index arithmetic), ~20x faster than a [1, 1, 1, C] operand."""
        if self.kind == "depthwise":
            return (int(shape[2]), int(shape[3]))
        if self.kind == "matmul" and self.transpose_b:
            return (int(shape[0]), 1)
        return (int(shape[-1]),)

    def in_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Shape of a per-input-channel vector that broadcasts against the weight."""
        if self.kind == "matmul":
            return (1, int(shape[1])) if self.transpose_b else (int(shape[0]), 1)
        return (int(shape[2]), 1)

    def scale_out(self, w: np.ndarray, t: np.ndarray) -> np.ndarray:
        """w with output channel c multiplied by t[c]."""
        return w * t.reshape(self.out_shape(w.shape))

    def scale_in(self, w: np.ndarray, t: np.ndarray) -> np.ndarray:
        """w with input channel c multiplied by t[c]."""
        return w * t.reshape(self.in_shape(w.shape))

    def output_shift(self, delta_w: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
        """(W_q - W)·E[x] per output channel (delta_w = W_q - W; mean_in: the mean input per input channel)."""
        d = np.asarray(delta_w, np.float64)
        x = np.asarray(mean_in, np.float64).reshape(-1)
        if self.kind == "conv":
            return np.einsum("hwio,i->o", d, x)
        if self.kind == "depthwise":
            return (d.sum(axis=(0, 1)) * x[:, None]).reshape(-1)
        return d @ x if self.transpose_b else x @ d

    def in_rows(self, w: np.ndarray) -> np.ndarray:
        """The weight as [input channel, everything else]."""
        if self.kind == "matmul":
            return w.T if self.transpose_b else w
        return np.moveaxis(w, 2, 0).reshape(w.shape[2], -1)

    def in_channels(self, shape: Sequence[int]) -> int:
        """Number of input channels of a weight of this shape."""
        if self.kind == "matmul":
            return int(shape[1] if self.transpose_b else shape[0])
        return int(shape[2])


@dataclass
class Move:
    """Where a per-channel factor on a layer's output can go: constants added on the way (divided by
    the factor) and the layers reading it, with how many times the channel vector repeats along
    their input axis (a flatten before a matmul repeats it)."""

    layer: Layer
    addends: List[Tuple[str, int]] = field(default_factory=list)
    readers: List[Tuple[Layer, int]] = field(default_factory=list)


class GraphView:
    """A model.json's node list indexed by name, with each node's consumers."""

    def __init__(self, topology: dict, outputs: Iterable[str] = ()):
        nodes = topology.get("node", [])
        self.nodes: Dict[str, dict] = {n["name"]: n for n in nodes}
        self.order = [n["name"] for n in nodes]
        self.consumers: Dict[str, List[Tuple[str, int]]] = {name: [] for name in self.nodes}
        for n in nodes:
            for i, ref in enumerate(n.get("input", [])):
                name, _ = source(ref)
                if name in self.consumers:
                    self.consumers[name].append((n["name"], -1 if ref.startswith("^") else i))
        self.outputs: Set[str] = {source(o)[0] for o in outputs} | {
            name for name, users in self.consumers.items()
            if not users and self.nodes[name]["op"] not in ("Const", "NoOp")}

    def topological(self) -> List[str]:
        """Node names, each after every node it reads (the file's order need not be)."""
        order: List[str] = []
        state: Dict[str, int] = {}
        for root in self.order:
            stack = [(root, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name):
                    continue
                state[name] = 1
                stack.append((name, True))
                for ref in self.nodes[name].get("input", []):
                    parent = source(ref)[0]
                    if parent in self.nodes and not state.get(parent):
                        stack.append((parent, False))
        return order

    def is_const(self, ref: str) -> bool:
        name, _ = source(ref)
        return self.nodes.get(name, {}).get("op") == "Const"

    def single_use(self, name: str) -> bool:
        """The node feeds exactly one input of one node and is not a graph output."""
        return len(self.consumers.get(name, [])) == 1 and name not in self.outputs

    def layer(self, name: str) -> Optional[Layer]:
        """The node as a Layer, or None when it is not one qshard can scale per channel."""
        node = self.nodes[name]
        op = node["op"]
        inputs = node.get("input", [])
        if op not in LAYER_OPS or len(inputs) < 2 or not self.is_const(inputs[1]):
            return None
        if op not in MATMUL_OPS and attr_string(node, "data_format", "NHWC") != "NHWC":
            return None
        if op in MATMUL_OPS and attr_bool(node, "transpose_a"):
            return None
        fused = tuple(decode_strings(node.get("attr", {}).get("fused_ops", {})))
        if fused and fused[0] != "BiasAdd":
            return None
        bias = None
        if fused:
            if len(inputs) < 3 or not self.is_const(inputs[2]):
                return None
            bias = source(inputs[2])[0]
        return Layer(name, op, source(inputs[1])[0], 0, attr_bool(node, "transpose_b"), fused, bias)

    def layers(self) -> List[Layer]:
        """Every layer, in the order of the node list."""
        return [layer for layer in (self.layer(name) for name in self.order) if layer is not None]

    def const_input(self, node: dict, skip: int) -> Optional[str]:
        """The name of a node's other input when it is a Const (binary ops), else None."""
        inputs = [ref for ref in node.get("input", []) if not ref.startswith("^")]
        if len(inputs) != 2:
            return None
        other = inputs[1 - skip]
        return source(other)[0] if self.is_const(other) else None

    def move(self, layer: Layer, weights: Dict[str, np.ndarray]) -> Optional[Move]:
        """Where a per-channel factor on the layer's output can go, or None when some path from it
        reaches an op that does not commute with it (weights: name -> value, for shapes and the
        constant operands of reshapes and reductions)."""
        if not set(layer.fused) <= HOMOGENEOUS_FUSED:
            return None
        if layer.bias is not None and not self.single_use(layer.bias):
            return None
        channels = layer.out_channels(weights[layer.weight].shape)
        found = Move(layer)
        seen: Set[str] = set()
        # (node, width of its last axis, rank): the factor repeats every `channels` along that axis.
        pending = [(layer.node, channels, 2 if layer.kind == "matmul" else 4)]
        while pending:
            name, width, rank = pending.pop()
            if name in self.outputs:
                return None
            for user, index in self.consumers[name]:
                if user in seen:
                    continue
                seen.add(user)
                node = self.nodes[user]
                if index < 0:
                    return None
                if node["op"] in LAYER_OPS:
                    if not self._read(node, index, channels, width, weights, found):
                        return None
                    continue
                shape = self._pass(node, index, width, rank, weights, found, channels)
                if shape is None:
                    return None
                pending.append((user, *shape))
        return found if found.readers else None

    def _read(self, node: dict, index: int, channels: int, width: int, weights, found: Move) -> bool:
        """A layer reading the factor: it absorbs it on its input channels if the weight is its own."""
        reader = self.layer(node["name"])
        if reader is None or index != reader.data_index or not self.single_use(reader.weight):
            return False
        if reader.in_channels(weights[reader.weight].shape) != width:
            return False
        found.readers.append((reader, width // channels))
        return True

    def _pass(self, node: dict, index: int, width: int, rank: Optional[int], weights, found: Move,
              channels: int) -> Optional[Tuple[int, int]]:
        """(width, rank) of a node's output when the factor passes through it, else None."""
        op = node["op"]
        if op in PASS_THROUGH:
            if index != 0 or (op == "Squeeze" and width == 1):  # Squeeze drops only size-1 axes
                return None
            if op == "Prelu" and self.const_input(node, 0) is None:
                return None
            if op == "Squeeze":
                dims = node.get("attr", {}).get("squeeze_dims", {}).get("list", {}).get("i", [])
                return (width, rank - len(dims) if dims and rank else None)
            return (width, rank)
        const = self.const_input(node, index)
        value = weights.get(const) if const is not None else None
        if value is None:
            return None
        if op == "Mul":
            return (width, _broadcast_rank(rank, value)) if value.ndim == 0 or value.shape[-1] in (1, width) else None
        if op in ADDITIVE:
            if not self.single_use(const) or value.size != width or value.shape[-1] != width:
                return None
            found.addends.append((const, width // channels))
            return (width, _broadcast_rank(rank, value))
        if op == "Reshape" and index == 0:
            dims = [int(d) for d in value.reshape(-1)]
            # Row-major order is kept, so element j of the new last axis has channel j % channels.
            if not dims or dims[-1] <= 0 or dims[-1] % channels:
                return None
            return (dims[-1], len(dims))
        if op in ("Mean", "Max") and index == 0 and rank:
            axes = {int(a) % rank for a in value.reshape(-1)}
            if rank - 1 in axes:
                return None
            return (width, rank if attr_bool(node, "keep_dims") else rank - len(axes))
        return None


def _broadcast_rank(rank: Optional[int], value: np.ndarray) -> Optional[int]:
    return None if rank is None else max(rank, value.ndim)
