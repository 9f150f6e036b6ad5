"""`qshard example`: a small float32 tfjs layers model made on the spot (nothing downloaded), to try
the quantize / inspect / verify commands on: a 64-256-128-10 MLP (digit-sized input), weights drawn
from a fixed seed with He-style scaling, topology in the Keras-2 form that tfjs-layers 4.22 reads."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np

from . import __version__
from .tfjs import atomic_folder, write_weights

LAYERS = [(64, 256, "relu"), (256, 128, "relu"), (128, 10, "softmax")]


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


def weights(seed: int = 0):
    """[(name, array)] of the example model."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (n_in, n_out, _) in enumerate(LAYERS):
        name = "dense" if i == 0 else f"dense_{i}"
        out.append((f"{name}/kernel", (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)))
        out.append((f"{name}/bias", (rng.standard_normal(n_out) * 0.05).astype(np.float32)))
    return out


def write_example(out_dir: Union[str, os.PathLike], force: bool = False) -> Path:
    """Write the example layers model (model.json + one shard) into out_dir."""
    layers = [dense_layer("dense" if i == 0 else f"dense_{i}", n_out, act, n_in if i == 0 else 0)
              for i, (n_in, n_out, act) in enumerate(LAYERS)]
    topology = {"class_name": "Sequential", "config": {"name": "example_mlp", "layers": layers},
                "keras_version": "2.15.0", "backend": "tensorflow"}
    with atomic_folder(out_dir, force) as tmp:
        manifest = write_weights([weights()], tmp, write_manifest=False)
        doc = {"format": "layers-model", "generatedBy": "qshard example", "convertedBy": f"qshard {__version__}",
               "modelTopology": topology, "weightsManifest": manifest}
        (tmp / "model.json").write_text(json.dumps(doc))
    return Path(out_dir)


def forward(weights_by_name, x: np.ndarray) -> np.ndarray:
    """The example model's prediction in numpy (float64), for checking a loaded copy."""
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
