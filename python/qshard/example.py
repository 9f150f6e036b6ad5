"""`qshard example`: a small float32 tfjs model made on the spot (nothing downloaded), to try the
quantize / inspect / verify / bench commands on: a 64-256-128-10 MLP (digit-sized input), weights
drawn from a fixed seed with He-style scaling. As a layers model (the default) its topology is in the
Keras-2 form that tfjs-layers 4.22 reads; as a graph model it is a GraphDef of MatMul / BiasAdd /
Relu / Softmax nodes that tfjs-converter's loadGraphModel runs. `hidden` widens both hidden layers
(e.g. 1600 gives 10.7 MB of float32 weights, for timing downloads)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np

from qshard import __version__
from qshard.formats.webmodel import atomic_folder, write_weights

LAYERS = [(64, 256, "relu"), (256, 128, "relu"), (128, 10, "softmax")]
FORMATS = ("layers-model", "graph-model")


def layer_sizes(hidden: int = 0):
    """[(inputs, units, activation)] of the example MLP; hidden > 0 sets both hidden widths."""
    if hidden <= 0:
        return list(LAYERS)
    return [(64, hidden, "relu"), (hidden, hidden, "relu"), (hidden, 10, "softmax")]


def dense_layer(name: str, units: int, activation: str, input_dim: int = 0) -> dict:
    """A Keras-2-style Dense layer config, as tfjs-layers 4.22 reads it."""
    config = {"name": name, "trainable": True, "dtype": "float32", "units": units, "activation": activation,
              "use_bias": True,
              "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
              "bias_initializer": {"class_name": "Zeros", "config": {}},
              "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
              "kernel_constraint": None, "bias_constraint": None}
    if input_dim:
        config["batch_input_shape"] = [None, input_dim]
    return {"class_name": "Dense", "config": config}


def weights(seed: int = 0, hidden: int = 0):
    """[(name, array)] of the example model."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (n_in, n_out, _) in enumerate(layer_sizes(hidden)):
        name = "dense" if i == 0 else f"dense_{i}"
        out.append((f"{name}/kernel", (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)))
        out.append((f"{name}/bias", (rng.standard_normal(n_out) * 0.05).astype(np.float32)))
    return out


def _attr_shape(dims) -> dict:
    return {"dim": [{"size": str(d)} for d in dims]}


def graph_topology(hidden: int = 0) -> dict:
    """The MLP as a TensorFlow GraphDef in the JSON form tfjs graph models carry: a Placeholder
    `input` [-1, 64], one Const node per weight (named as the weight, so the manifest feeds it),
    MatMul -> BiasAdd -> Relu per hidden layer, Softmax at the end (the graph's output)."""
    f32 = {"type": "DT_FLOAT"}
    nodes = [{"name": "input", "op": "Placeholder",
              "attr": {"dtype": f32, "shape": {"shape": _attr_shape([-1, 64])}}}]
    previous = "input"
    for i, (n_in, n_out, act) in enumerate(layer_sizes(hidden)):
        name = "dense" if i == 0 else f"dense_{i}"
        for weight, dims in (("kernel", [n_in, n_out]), ("bias", [n_out])):
            nodes.append({"name": f"{name}/{weight}", "op": "Const",
                          "attr": {"dtype": f32, "value": {"tensor": {"dtype": "DT_FLOAT",
                                                                      "tensorShape": _attr_shape(dims)}}}})
        nodes.append({"name": f"{name}/MatMul", "op": "MatMul", "input": [previous, f"{name}/kernel"],
                      "attr": {"T": f32, "transpose_a": {"b": False}, "transpose_b": {"b": False}}})
        nodes.append({"name": f"{name}/BiasAdd", "op": "BiasAdd", "input": [f"{name}/MatMul", f"{name}/bias"],
                      "attr": {"T": f32, "data_format": {"s": "TkhXQw=="}}})  # base64 of "NHWC"
        op = "Relu" if act == "relu" else "Softmax"
        nodes.append({"name": f"{name}/{op}", "op": op, "input": [f"{name}/BiasAdd"], "attr": {"T": f32}})
        previous = f"{name}/{op}"
    return {"node": nodes, "library": {}, "versions": {"producer": 1482}}


def layers_topology(hidden: int = 0) -> dict:
    layers = [dense_layer("dense" if i == 0 else f"dense_{i}", n_out, act, n_in if i == 0 else 0)
              for i, (n_in, n_out, act) in enumerate(layer_sizes(hidden))]
    return {"class_name": "Sequential", "config": {"name": "example_mlp", "layers": layers},
            "keras_version": "2.15.0", "backend": "tensorflow"}


def write_example(out_dir: Union[str, os.PathLike], force: bool = False, *, format: str = "layers-model",
                  hidden: int = 0) -> Path:
    """Write the example model (model.json + shards) into out_dir, as a layers or a graph model."""
    if format not in FORMATS:
        raise ValueError(f"example format must be one of {', '.join(FORMATS)}, not {format!r}")
    if hidden < 0 or hidden > 16384:
        raise ValueError(f"example hidden width must be 1..16384 (or 0 for the default sizes), not {hidden}")
    topology = layers_topology(hidden) if format == "layers-model" else graph_topology(hidden)
    with atomic_folder(out_dir, force) as tmp:
        manifest = write_weights([weights(hidden=hidden)], tmp, write_manifest=False)
        doc = {"format": format, "generatedBy": "qshard example", "convertedBy": f"qshard {__version__}",
               "modelTopology": topology, "weightsManifest": manifest}
        (tmp / "model.json").write_text(json.dumps(doc))
    return Path(out_dir)


def forward(weights_by_name, x: np.ndarray) -> np.ndarray:
    """The example model's prediction in numpy (float64), for checking a loaded copy (either format,
    any width: the layer sizes are read off the weights)."""
    h = np.asarray(x, np.float64)
    for i, (_, _, act) in enumerate(LAYERS):
        name = "dense" if i == 0 else f"dense_{i}"
        h = h @ np.asarray(weights_by_name[f"{name}/kernel"], np.float64) + weights_by_name[f"{name}/bias"]
        if act == "relu":
            h = np.maximum(h, 0)
        else:
            e = np.exp(h - h.max(axis=-1, keepdims=True))
            h = e / e.sum(axis=-1, keepdims=True)
    return h
