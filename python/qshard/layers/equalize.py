"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
Bias Correction", 2019) for tfjs layers models, on their plain weights: the topology is not changed.

A pair is a Conv1D / Conv2D / DepthwiseConv2D / Dense layer (the producer; activation linear or relu)
whose output reaches exactly one Conv1D / Conv2D / DepthwiseConv2D / Dense layer (the reader) through
a chain of single-consumer layers that commute with a positive per-channel factor: ReLU (no max or
threshold), LeakyReLU, PReLU, linear / relu Activation, pooling, global pooling, zero padding,
cropping, nearest upsampling, dropout and noise layers (identities at predict time), Flatten right
before a Dense reader, and BatchNormalization over the last axis. Output channel c of the producer
(its kernel column and bias) is divided by t[c] = sqrt(r1[c] / r2[c]) and the reader's input channel
c multiplied by it (r1, r2: the channel's range in the producer and in the reader); a batch norm on
the way computes BN(x / t) = BN(x) / t once its moving_mean and beta are divided by t. The function
is unchanged, and a producer whose channels lie orders of magnitude apart (batch norm folded into
it) no longer needs one per-tensor grid to hold them all. Layers called more than once, other data
formats, nested models and everything else end a chain: those layers are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelInputError
from ..graph.equalize import factors

FILTERS = {"Conv1D": "kernel", "Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel", "Dense": "kernel"}
PASS = {"ReLU", "LeakyReLU", "PReLU", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
        "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling2D", "Dropout",
        "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
HOMOGENEOUS = ("linear", "relu", None)  # activations f with f(x / t) = f(x) / t for t > 0


@dataclass
class Layer:
    """One layer of the topology: its class, config and the layers feeding its (only) call."""

    name: str
    cls: str
    config: dict
    inputs: List[str] = field(default_factory=list)
    calls: int = 1
    sources: List[list] = field(default_factory=list)  # [layer, node index, tensor index] per input


@dataclass
class Pair:
    """A producer, its reader, the batch norms between them, and how many reader rows a channel has
    (Flatten: one per position)."""

    producer: Layer
    reader: Layer
    norms: List[Layer]
    flattened: bool = False


def _node_inputs(node, where: str) -> List[list]:
    """[layer, node index, tensor index] per input of one Keras 2 inbound node ([[name, node_index,
    tensor_index, kwargs], ...])."""
    try:
        return [[str(entry[0]), int(entry[1]), int(entry[2])] for entry in node]
    except (TypeError, ValueError, IndexError, KeyError) as error:
        raise ModelInputError(f"{where}: an inbound node is not in the Keras 2 form tfjs-layers reads") from error


def read_layers(document: dict, where: str) -> Tuple[List[Layer], set]:
    """The layers of a layers model's topology (Sequential or functional, Keras 2 form, as tfjs-layers
    reads it) and the names of the layers whose output is a model output."""
    topology = document.get("modelTopology")
    if isinstance(topology, dict) and "model_config" in topology:  # as tensorflowjs writes Keras .h5 models
        topology = topology["model_config"]
    if not isinstance(topology, dict) or not isinstance(topology.get("config"), (dict, list)):
        raise ModelInputError(f"{where}: no layers model topology (modelTopology.config)")
    config = topology["config"]
    entries = config if isinstance(config, list) else config.get("layers")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ModelInputError(f"{where}: modelTopology has no list of layers")
    layers = []
    for i, entry in enumerate(entries):
        conf = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        layer = Layer(str(conf.get("name", entry.get("name"))), str(entry.get("class_name")), conf)
        if topology.get("class_name") == "Sequential":
            layer.sources = [[layers[-1].name, 0, 0]] if layers else []
        else:
            nodes = entry.get("inbound_nodes") or []
            layer.calls = len(nodes)
            layer.sources = _node_inputs(nodes[0], where) if nodes else []
        layer.inputs = [source[0] for source in layer.sources]
        layers.append(layer)
    if topology.get("class_name") == "Sequential":
        outputs = {layers[-1].name} if layers else set()
    else:
        outputs = {str(o[0]) for o in config.get("output_layers", []) if isinstance(o, list) and o}
        _check_graph(entries, layers, outputs, where)
    return layers, outputs


def _check_graph(entries: List[dict], layers: List[Layer], outputs: set, where: str) -> None:
    """Refuse what tfjs-layers would choke or hang on: inbound nodes naming a layer or call that is not
    there, outputs that are not layers, and a cycle among the calls (tfjs loops on one forever)."""
    calls = {layer.name: len(entry.get("inbound_nodes") or []) for entry, layer in zip(entries, layers)}
    missing = sorted(set(outputs) - set(calls))
    if missing:
        raise ModelInputError(f"{where}: output layer {missing[0]!r} is not in the model's layers")
    needs = {}
    for entry, layer in zip(entries, layers):
        for k, node in enumerate(entry.get("inbound_nodes") or []):
            needs[layer.name, k] = [(s, n) for s, n, _ in _node_inputs(node, where)]
            for source, n in needs[layer.name, k]:
                if source not in calls or (calls[source] and n >= calls[source]):
                    raise ModelInputError(f"{where}: layer {layer.name!r} reads {source!r} (call {n}), which is "
                                          f"not in the model")
    state: Dict[tuple, int] = {}  # 1: on the path being walked, 2: done
    for start in needs:
        stack = [(start, iter(needs[start]))]
        state[start] = state.get(start) or 1
        while stack and state[start] == 1:
            node, rest = stack[-1]
            nxt = next(rest, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise ModelInputError(f"{where}: the inbound nodes form a cycle through layer {nxt[0]!r}")
            elif nxt in needs and not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(needs[nxt])))


def _passes(layer: Layer) -> bool:
    c = layer.config
    if layer.cls == "ReLU":
        return c.get("max_value") is None and not c.get("threshold")
    if layer.cls == "Activation":
        return c.get("activation") in HOMOGENEOUS
    if layer.cls == "UpSampling2D":
        return c.get("interpolation", "nearest") == "nearest"
    if layer.cls == "BatchNormalization":
        return c.get("axis", -1) in (-1, [-1])
    return layer.cls in PASS and c.get("data_format", "channels_last") == "channels_last"


def is_filter(layer: Layer) -> bool:
    """A conv / depthwise / dense layer called once, channels last, not grouped."""
    c = layer.config
    return (layer.cls in FILTERS and layer.calls == 1 and c.get("data_format", "channels_last") == "channels_last"
            and c.get("groups", 1) == 1)


def readers_of(layers: List[Layer]) -> Dict[str, List[Layer]]:
    """Layer name -> the layers that read its output."""
    readers: Dict[str, List[Layer]] = {}
    for layer in layers:
        for name in set(layer.inputs):
            readers.setdefault(name, []).append(layer)
    return readers


def find_pairs(layers: List[Layer], outputs: set) -> List[Pair]:
    """Every producer -> reader pair the module docstring describes."""
    readers = readers_of(layers)
    pairs = []
    for producer in layers:
        if not is_filter(producer) or producer.config.get("activation") not in HOMOGENEOUS:
            continue
        at, norms, flattened = producer, [], False
        while True:
            after = readers.get(at.name, [])
            if at.name in outputs or len(after) != 1 or after[0].calls != 1 or len(after[0].inputs) != 1:
                break
            nxt = after[0]
            if is_filter(nxt) and (not flattened or nxt.cls == "Dense"):
                pairs.append(Pair(producer, nxt, norms, flattened))
                break
            if flattened or not (_passes(nxt) or nxt.cls == "Flatten"):
                break
            norms += [nxt] if nxt.cls == "BatchNormalization" else []
            flattened = nxt.cls == "Flatten"
            at = nxt
    return pairs


def _out_channels(layer: Layer, kernel: np.ndarray) -> np.ndarray:
    """A producer's kernel as [output channel, everything else] (depthwise: channel = in x multiplier)."""
    if layer.cls == "DepthwiseConv2D":
        return kernel.reshape(kernel.shape[0] * kernel.shape[1], -1).T
    return kernel.reshape(-1, kernel.shape[-1]).T


def _in_axis(layer: Layer, kernel: np.ndarray) -> int:
    return 0 if layer.cls == "Dense" else kernel.ndim - 2


def _in_rows(layer: Layer, kernel: np.ndarray, channels: int) -> np.ndarray:
    """The reader's kernel as [input channel, everything else]; a Dense after Flatten has one row per
    (position, channel), channel innermost."""
    rows = np.moveaxis(kernel, _in_axis(layer, kernel), 0)
    rows = rows.reshape(rows.shape[0], -1)
    return rows.reshape(-1, channels, rows.shape[1]).transpose(1, 0, 2).reshape(channels, -1)


def _scale_in(layer: Layer, kernel: np.ndarray, t: np.ndarray) -> np.ndarray:
    axis = _in_axis(layer, kernel)
    n = kernel.shape[axis]
    factor = np.tile(t, n // t.size).astype(np.float64)  # Flatten: channel innermost
    shape = [1] * kernel.ndim
    shape[axis] = n
    return (kernel * factor.reshape(shape)).astype(np.float32)


def _weight(values: Dict[str, np.ndarray], layer: Layer, kind: str) -> Optional[str]:
    name = f"{layer.name}/{kind}"
    return name if name in values else None


def equalize(pairs: List[Pair], values: Dict[str, np.ndarray], sweeps: int = 4) -> List[Pair]:
    """Equalize every pair whose weights are all in `values` (float32 arrays by tfjs weight name,
    updated in place); the pairs used."""
    used = []
    for p in pairs:
        kernels = (_weight(values, p.producer, FILTERS[p.producer.cls]), _weight(values, p.reader, FILTERS[p.reader.cls]))
        if None in kernels or not all(np.isfinite(values[k]).all() for k in kernels):
            continue  # (NaN / Inf would spread through the factors to every channel)
        channels = _out_channels(p.producer, values[kernels[0]]).shape[0]
        if values[kernels[1]].shape[_in_axis(p.reader, values[kernels[1]])] % channels:
            continue
        if all(_weight(values, n, "moving_mean") for n in p.norms):
            used.append((p, kernels, channels))
    for _ in range(sweeps):
        for p, (k1, k2), channels in used:
            r1 = np.abs(_out_channels(p.producer, values[k1])).max(axis=1).astype(np.float64)
            r2 = np.abs(_in_rows(p.reader, values[k2], channels)).max(axis=1).astype(np.float64)
            t = factors(r1, r2)
            shape = values[k1].shape
            values[k1] = (_out_channels(p.producer, values[k1]) / t[:, None]).T.reshape(shape).astype(np.float32)
            divided = [_weight(values, p.producer, "bias")]
            divided += [_weight(values, n, k) for n in p.norms for k in ("moving_mean", "beta")]
            for name in filter(None, divided):
                values[name] = (values[name] / t).astype(np.float32)
            values[k2] = _scale_in(p.reader, values[k2], t)
    return [p for p, _, _ in used]
