"""Small tfjs layers models (dense, conv) with numpy forward passes."""
import json

import numpy as np

from qshard import tfjs
from qshard.example import dense_layer


def dense_topology():
    """tf_keras 2 style: Sequential whose first Dense carries batch_input_shape."""
    return {"class_name": "Sequential",
            "config": {"name": "sequential", "layers": [dense_layer("dense", 16, "relu", 8), dense_layer("dense_1", 3, "linear")]},
            "keras_version": "2.15.0", "backend": "tensorflow"}


def conv_topology():
    """tf_keras 2.15 style, as tensorflowjs writes it: under model_config, with an InputLayer."""
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 2], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "conv2d_input"}},
        {"class_name": "Conv2D", "config": {
            "name": "conv2d", "trainable": True, "dtype": "float32", "filters": 4, "kernel_size": [3, 3],
            "strides": [1, 1], "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1],
            "activation": "relu", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}},
        {"class_name": "Flatten", "config": {"name": "flatten", "trainable": True, "dtype": "float32",
                                             "data_format": "channels_last"}},
        dense_layer("dense", 3, "linear"),
    ]
    return {"keras_version": "2.15.0", "backend": "tensorflow",
            "model_config": {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}}


def dense_weights(seed):
    rng = np.random.default_rng(seed)
    return [[("dense/kernel", (rng.standard_normal((8, 16)) * 0.5).astype(np.float32)),
             ("dense/bias", (rng.standard_normal(16) * 0.1).astype(np.float32))],
            [("dense_1/kernel", (rng.standard_normal((16, 3)) * 0.5).astype(np.float32)),
             ("dense_1/bias", rng.standard_normal(3).astype(np.float32))]]


def conv_weights(seed):
    rng = np.random.default_rng(seed)
    return [[("conv2d/kernel", (rng.standard_normal((3, 3, 2, 4)) * 0.4).astype(np.float32)),
             ("conv2d/bias", (rng.standard_normal(4) * 0.1).astype(np.float32)),
             ("dense/kernel", (rng.standard_normal((6 * 6 * 4, 3)) * 0.1).astype(np.float32)),
             ("dense/bias", rng.standard_normal(3).astype(np.float32))]]


def dense_forward(w, x):
    x = x.astype(np.float64)
    h = np.maximum(x @ w["dense/kernel"].astype(np.float64) + w["dense/bias"], 0)
    return h @ w["dense_1/kernel"].astype(np.float64) + w["dense_1/bias"]


def conv_forward(w, x):
    x = x.astype(np.float64)
    k = w["conv2d/kernel"].astype(np.float64)          # (kh, kw, in, out)
    n, hgt, wid, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, hgt, wid, k.shape[3]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,co->nhwo", padded[:, i:i + hgt, j:j + wid, :], k[i, j])
    h = np.maximum(out + w["conv2d/bias"], 0).reshape(n, -1)
    return h @ w["dense/kernel"].astype(np.float64) + w["dense/bias"]


def write_layers_model(folder, topology, groups, **kwargs):
    folder.mkdir(parents=True)
    manifest = tfjs.write_weights(groups, folder, write_manifest=False, **kwargs)
    doc = {"format": "layers-model", "generatedBy": "keras v2.15.0", "convertedBy": "qshard tests",
           "modelTopology": topology, "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(doc))
