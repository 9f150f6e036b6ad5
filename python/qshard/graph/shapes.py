"""Static output shapes of the nodes of a tfjs graph model, as far as the common ops of image models
tell them (NHWC convolutions and pools, padding, resizing, elementwise ops, reshapes, reductions,
matmuls): enough to weigh an op on a layer's output against one on its weight. Unknown dimensions
are None; a batch of -1 counts as 1."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .channels import GraphView, attr_bool, attr_string, source

Shape = Optional[Tuple[Optional[int], ...]]
UNARY = {"Identity", "Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu", "Softmax", "Neg", "Abs",
         "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Floor", "Round", "Cast", "Softplus", "Swish", "HardSwish"}
BINARY = {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "BiasAdd", "Prelu",
          "SquaredDifference", "Pow", "FloorDiv"}
WINDOWED = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MaxPool", "AvgPool"}


def _ints(node: dict, key: str):
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _broadcast(a: Shape, b: Shape) -> Shape:
    if a is None or b is None:
        return None
    a, b = (1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b
    return tuple(y if x == 1 else x if y == 1 else (x if x is not None else y) for x, y in zip(a, b))


def _window(node: dict, x: Shape, kernel: Sequence[int]) -> Shape:
    if x is None or len(x) != 4 or attr_string(node, "data_format", "NHWC") != "NHWC":
        return None
    strides = _ints(node, "strides") or [1, 1, 1, 1]
    dilations = _ints(node, "dilations") or [1, 1, 1, 1]
    padding = attr_string(node, "padding", "VALID")
    explicit = _ints(node, "explicit_paddings")
    out = []
    for axis, k in ((1, kernel[0]), (2, kernel[1])):
        size = x[axis]
        if size is None:
            out.append(None)
            continue
        if padding == "SAME":
            out.append(math.ceil(size / strides[axis]))
            continue
        if padding == "EXPLICIT" and len(explicit) == 8:
            size += explicit[2 * axis] + explicit[2 * axis + 1]
        out.append(max(0, math.ceil((size - (k - 1) * dilations[axis]) / strides[axis])))
    return (x[0], out[0], out[1])


class ShapeInference:
    """Output shapes of every node of a graph, from its Placeholder shapes and weight shapes."""

    def __init__(self, view: GraphView, weights: Dict[str, np.ndarray]):
        self.view, self.weights = view, weights
        self.shapes: Dict[str, Shape] = {}
        for name in view.topological():
            try:
                self.shapes[name] = self._infer(view.nodes[name])
            except (ValueError, TypeError, IndexError, KeyError, AttributeError, ZeroDivisionError):  # an op it cannot follow
                self.shapes[name] = None

    def elements(self, name: str) -> Optional[int]:
        """Elements of a node's output, or None when a dimension is unknown."""
        shape = self.shapes.get(name)
        if shape is None or any(d is None for d in shape):
            return None
        return int(np.prod(shape, dtype=np.int64))

    def _input(self, node: dict, i: int) -> Shape:
        name, _ = source(node["input"][i])
        if self.view.nodes.get(name, {}).get("op") == "Const" and name in self.weights:
            return tuple(self.weights[name].shape)
        return self.shapes.get(name)

    def _value(self, node: dict, i: int):
        name, _ = source(node["input"][i])
        return self.weights.get(name)

    def _infer(self, node: dict) -> Shape:
        op = node["op"]
        if op == "Placeholder":
            dims = node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim")
            if dims is None:
                return None
            shape = [int(d.get("size", -1)) for d in dims]
            return tuple(1 if i == 0 and d < 0 else (d if d >= 0 else None) for i, d in enumerate(shape))
        if op == "Const":
            value = self.weights.get(node["name"])
            return None if value is None else tuple(value.shape)
        if op in UNARY:
            return self._input(node, 0)
        if op in BINARY:
            return _broadcast(self._input(node, 0), self._input(node, 1))
        if op in WINDOWED:
            x = self._input(node, 0)
            if op in ("MaxPool", "AvgPool"):
                kernel = _ints(node, "ksize")[1:3]
                channels = None if x is None else x[3]
            else:
                w = self._input(node, 1)
                kernel = w[:2]
                channels = w[2] * w[3] if "Depthwise" in op else w[3]
            hw = _window(node, x, kernel)
            return None if hw is None else hw + (channels,)
        return self._infer_more(node, op)

    def _infer_more(self, node: dict, op: str) -> Shape:
        if op in ("MatMul", "_FusedMatMul"):
            a, b = self._input(node, 0), self._input(node, 1)
            rows = a[1] if attr_bool(node, "transpose_a") else a[0]
            return (rows, b[0] if attr_bool(node, "transpose_b") else b[1])
        if op in ("Pad", "MirrorPad", "PadV2"):
            x, pads = self._input(node, 0), self._value(node, 1)
            return tuple(None if d is None else d + int(p[0]) + int(p[1]) for d, p in zip(x, pads))
        if op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            x, size = self._input(node, 0), self._value(node, 1)
            return (x[0], int(size[0]), int(size[1]), x[3])
        if op == "Reshape":
            x, target = self._input(node, 0), [int(d) for d in self._value(node, 1).reshape(-1)]
            if -1 in target:
                known = int(np.prod([d for d in target if d != -1]))
                total = None if x is None or None in x else int(np.prod(x))
                target = [(total // known if total is not None and known else None) if d == -1 else d for d in target]
            return tuple(target)
        if op in ("Mean", "Max", "Sum", "Min"):
            x, axes = self._input(node, 0), {int(a) % len(self._input(node, 0)) for a in self._value(node, 1).reshape(-1)}
            keep = attr_bool(node, "keep_dims")
            return tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)
        if op == "ConcatV2":
            parts = [self._input(node, i) for i in range(len(node["input"]) - 1)]
            axis = int(self._value(node, len(node["input"]) - 1)) % len(parts[0])
            sizes = [p[axis] for p in parts]
            return parts[0][:axis] + (None if None in sizes else sum(sizes),) + parts[0][axis + 1:]
        if op in ("DepthToSpace", "SpaceToDepth"):
            x, block = self._input(node, 0), int(node["attr"]["block_size"]["i"])
            up = op == "DepthToSpace"
            scale = (lambda d, f: None if d is None else (d * f if up else d // f))  # noqa: E731
            return (x[0], scale(x[1], block), scale(x[2], block), None if x[3] is None else
                    (x[3] // (block * block) if up else x[3] * block * block))
        if op == "Squeeze":
            x = self._input(node, 0)
            dims = {d % len(x) for d in _ints(node, "squeeze_dims")}
            return tuple(d for i, d in enumerate(x) if not (d == 1 and (not dims or i in dims)))
        return None
