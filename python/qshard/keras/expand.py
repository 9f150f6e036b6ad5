"""Keras layers that tfjs-layers 4.22 has no class or option for, rewritten as short chains of
layers it has that compute the same thing (to float32 rounding):

- Keras 3's hard_sigmoid, relu6(x + 3) / 6, is ReLU(max_value=1)(Rescaling(1/6, 0.5)(x)) (tfjs's
  hardSigmoid is Keras 2's 0.2 x + 0.5); hard_silu / hard_swish multiplies that by x; leaky_relu is
  a LeakyReLU layer. As a layer's `activation` option, the layer runs with `linear` and the chain
  follows it.
- A ReLU with a negative slope (and no maximum or threshold) is a LeakyReLU.
- Global pooling with keepdims=True is the pooling and a Reshape to (1, 1, channels).
- Subtract(a, b) is Add(a, Rescaling(-1)(b)): a + (-b) is exactly a - b.
- Normalization with adapted statistics is a BatchNormalization without gamma and beta, epsilon 0
  (its mean / variance become moving_mean / moving_variance; load.py checks every variance reaches
  Keras's floor); with a fixed mean and variance, a per-channel Rescaling.
- Keras 3 operation layers of a tensor and a number (`x + 3.0`, `x * (1 / 6)`, `x - c`, `c - x`,
  `x / c`) are Rescaling layers; of two tensors of one rank, Add, Multiply or the Subtract above.

The first piece keeps the layer's name (and so its weights' names); the others are named
'<layer>/<what>', which no Keras layer name can be, and the layer's output is the last piece's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from qshard.keras.rules import GRAPH_HINT, refuse

ALL = ("all",)  # a piece's input: every tensor argument of the call


@dataclass(frozen=True)
class Arg:
    """One argument of a layer call: a tensor [layer, node, tensor] or a constant."""
    ref: Optional[Tuple[str, int, int]]
    value: Any = None
    shape: Optional[Tuple] = None
    dtype: Optional[str] = None


@dataclass(frozen=True)
class Piece:
    """One tfjs layer: its class, Keras-form config (with its name) and inputs (ALL, ("arg", i) or
    ("piece", k))."""
    cls: str
    config: Dict[str, Any]
    inputs: Tuple = field(default=(ALL,))


# Keras 3 activations that are chains of tfjs layers: [(class, config, suffix)]; each takes the
# previous output, and "multiply_by_input" multiplies the chain's output by its input.
_HARD_SIGMOID = [("Rescaling", {"scale": 1.0 / 6.0, "offset": 0.5}, "hard_sigmoid_affine"),
                 ("ReLU", {"max_value": 1.0}, "hard_sigmoid")]
_SPLIT = {"hard_sigmoid": (_HARD_SIGMOID, False), "hard_silu": (_HARD_SIGMOID, True),
          "hard_swish": (_HARD_SIGMOID, True),
          "leaky_relu": ([("LeakyReLU", {"negative_slope": 0.2}, "leaky_relu")], False)}
# Layers whose `activation` applies to their output (in a recurrent layer it acts inside the cell).
_ACTIVATION_LAST = {"Activation", "Dense", "Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D",
                    "SeparableConv2D"}
_GLOBAL_POOLS = {"GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"}
_OPS = {"Add", "Multiply", "Subtract", "Divide", "TrueDivide"}
KERAS_EPSILON = 1e-7  # keras.config.epsilon(): Normalization divides by max(sqrt(variance), this)


def _activation_name(value) -> Optional[str]:
    name = value.get("class_name") if isinstance(value, dict) else value
    return name.lower() if isinstance(name, str) else None


def _chain(name: str, activation: str, source: Tuple, first: int) -> List[Piece]:
    """The pieces of a split activation applied to `source`; `first` is the index of the first."""
    steps, multiply = _SPLIT[activation]
    pieces, prev = [], source
    for k, (cls, config, suffix) in enumerate(steps):
        piece_name = name if first + k == 0 else f"{name}/{suffix}"
        pieces.append(Piece(cls, dict(config, name=piece_name), (prev,)))
        prev = ("piece", first + k)
    if multiply:
        pieces.append(Piece("Multiply", {"name": f"{name}/multiply"}, (source, prev)))
    return pieces


def _split_activation(cls: str, config: Dict[str, Any], keras2: bool) -> Optional[List[Piece]]:
    act = _activation_name(config.get("activation"))
    if act not in _SPLIT or (keras2 and act == "hard_sigmoid"):  # Keras 2's is tfjs's hardSigmoid
        return None
    name = config["name"]
    if cls == "Activation":
        return _chain(name, act, ALL, 0)
    return [Piece(cls, dict(config, activation="linear"))] + _chain(name, act, ("piece", 0), 1)


def _keepdims(cls: str, config: Dict[str, Any], input_shape: Optional[Tuple]) -> List[Piece]:
    # The channel count is spelled out: tfjs-layers' Reshape infers a -1 only once the batch size is
    # known, and so leaves it unknown while building the model.
    name = config["name"]
    first = config.get("data_format", "channels_last") == "channels_first"
    channels = None if not input_shape else input_shape[1 if first else -1]
    if not isinstance(channels, int):
        raise refuse(name, cls, "option keepdims=True with an unknown channel count is not converted", GRAPH_HINT)
    target = [channels] + [1] * (1 if cls.endswith("1D") else 2)
    if not first:
        target.reverse()
    return [Piece(cls, dict(config, keepdims=False)),
            Piece("Reshape", {"name": f"{name}/keepdims", "target_shape": target}, (("piece", 0),))]


def _subtract(name: str, a: Tuple, b: Tuple) -> List[Piece]:
    return [Piece("Rescaling", {"name": name, "scale": -1.0, "offset": 0.0}, (b,)),
            Piece("Add", {"name": f"{name}/add"}, (a, ("piece", 0)))]


def _normalization(config: Dict[str, Any]) -> List[Piece]:
    name = config["name"]
    if config.get("invert"):
        raise refuse(name, "Normalization", "option invert=True is not converted", GRAPH_HINT)
    axis = config.get("axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis or [])
    if config.get("mean") is None:
        if len(axes) != 1:
            raise refuse(name, "Normalization", f"option axis={axis!r}: tfjs-layers normalizes over one axis only",
                         GRAPH_HINT)
        return [Piece("BatchNormalization", {"name": name, "dtype": config.get("dtype"), "axis": axes[0],
                                             "epsilon": 0.0, "center": False, "scale": False, "momentum": 0.99})]
    if axes != [-1]:
        raise refuse(name, "Normalization", f"option axis={axis!r} with a fixed mean: only axis=-1 converts",
                     GRAPH_HINT)
    mean, variance = config["mean"], config["variance"]
    per_channel = isinstance(mean, (list, tuple)) or isinstance(variance, (list, tuple))
    means = mean if isinstance(mean, (list, tuple)) else None
    variances = variance if isinstance(variance, (list, tuple)) else None
    n = len(means or variances or [0])
    means = [float(m) for m in (means or [mean] * n)]
    variances = [float(v) for v in (variances or [variance] * n)]
    scales = [1.0 / max(math.sqrt(v), KERAS_EPSILON) for v in variances]
    offsets = [-m * s for m, s in zip(means, scales)]
    scale, offset = (scales, offsets) if per_channel else (scales[0], offsets[0])
    return [Piece("Rescaling", {"name": name, "dtype": config.get("dtype"), "scale": scale, "offset": offset})]


def _rescaling(config: Dict[str, Any], keras2: bool) -> List[Piece]:
    """Rescaling as is, its numpy scale / offset ({'class_name': '__numpy__', ...}) as plain lists.
    tfjs broadcasts a list over the last axis, as Keras does unless images are channels_first."""
    out = dict(config)
    for key in ("scale", "offset"):
        value = out.get(key)
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":
            out[key] = value["config"]["value"]
    if any(isinstance(out.get(key), (list, tuple)) for key in ("scale", "offset")) and not keras2:
        import keras  # a Keras 3 config: Keras is loaded
        if keras.config.image_data_format() == "channels_first":
            raise refuse(config["name"], "Rescaling", "per-channel scale or offset with channels_first images "
                                                      "is not converted", GRAPH_HINT)
    return [Piece("Rescaling", out)]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _operation(cls: str, name: str, nodes: List[List[Arg]]) -> List[Piece]:
    """A Keras 3 operation layer (keras.src.ops.*) of a tensor and a number, or of two tensors."""
    if cls not in _OPS:
        raise refuse(name, f"operation {cls}", "this Keras operation is not converted to tfjs-layers", GRAPH_HINT)
    if len(nodes) != 1 or len(nodes[0]) != 2:
        raise refuse(name, f"operation {cls}", "only one call on two arguments converts", GRAPH_HINT)
    a, b = nodes[0]
    for arg in (a, b):
        if arg.ref is not None and arg.dtype not in (None, "float32"):
            raise refuse(name, f"operation {cls}", f"a {arg.dtype} operand: only float32 converts", GRAPH_HINT)
    if a.ref is not None and b.ref is not None:
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            raise refuse(name, f"operation {cls}", "operands of different ranks (tfjs-layers broadcasts them "
                                                  "differently)", GRAPH_HINT)
        if cls == "Subtract":
            return _subtract(name, ("arg", 0), ("arg", 1))
        if cls in ("Add", "Multiply"):
            return [Piece(cls, {"name": name})]
        raise refuse(name, f"operation {cls}", "dividing two tensors is not in tfjs-layers", GRAPH_HINT)
    tensor_first = a.ref is not None
    tensor, const = (a, b) if tensor_first else (b, a)
    if tensor.ref is None or not _is_number(const.value):
        raise refuse(name, f"operation {cls}", f"operands {a.value if a.ref is None else 'tensor'!r}, "
                                               f"{b.value if b.ref is None else 'tensor'!r}: only a tensor and a "
                                               f"number convert", GRAPH_HINT)
    c = float(const.value)
    if cls == "Add":
        scale, offset = 1.0, c
    elif cls == "Multiply":
        scale, offset = c, 0.0
    elif cls == "Subtract":
        scale, offset = (1.0, -c) if tensor_first else (-1.0, c)
    elif tensor_first and c != 0:  # x / c, within a rounding of Keras's division
        scale, offset = 1.0 / c, 0.0
    else:
        raise refuse(name, f"operation {cls}", "only a division by a non-zero number converts", GRAPH_HINT)
    return [Piece("Rescaling", {"name": name, "scale": scale, "offset": offset},
                  (("arg", 0 if tensor_first else 1),))]


def expand_layer(cls: str, module: str, config: Dict[str, Any], nodes: List[List[Arg]],
                 keras2: bool = False, input_shape: Optional[Tuple] = None) -> List[Piece]:
    """A Keras layer -> the tfjs layers that compute it (usually itself alone); input_shape: its
    input's shape where the config tells it."""
    name = config.get("name", "?")
    if module.startswith("keras.src.ops"):
        return _operation(cls, name, nodes)
    if cls == "Subtract":
        return _subtract(name, ("arg", 0), ("arg", 1))
    if cls == "Rescaling":
        return _rescaling(config, keras2)
    if cls == "Normalization":
        return _normalization(config)
    if cls in _GLOBAL_POOLS and config.get("keepdims"):
        return _keepdims(cls, config, input_shape)
    if cls == "ReLU" and config.get("negative_slope") and config.get("max_value") is None \
            and not config.get("threshold"):  # relu with a negative slope alone is tfjs's LeakyReLU
        return [Piece("LeakyReLU", {"name": name, "dtype": config.get("dtype"),
                                    "negative_slope": config["negative_slope"]})]
    if cls in _ACTIVATION_LAST:
        pieces = _split_activation(cls, config, keras2)
        if pieces is not None:
            return pieces
    return [Piece(cls, config)]


def check_weight(cls: str, name: str, value) -> None:
    """Refuse a weight whose layer tfjs would compute otherwise: a Normalization variance below
    Keras's floor (Keras divides by max(sqrt(variance), 1e-7); the BatchNormalization by
    sqrt(variance))."""
    if cls == "Normalization" and name.endswith("/moving_variance") and value.size and \
            float(value.min()) < KERAS_EPSILON ** 2:
        raise refuse(name.split("/")[0], cls, f"a variance of {float(value.min()):.3g}, below the {KERAS_EPSILON ** 2:g} "
                                             f"under which Keras divides by {KERAS_EPSILON:g} instead", GRAPH_HINT)
