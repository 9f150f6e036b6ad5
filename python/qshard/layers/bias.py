"""Bias correction (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", 2019; the empirical form) for tfjs layers models: quantizing a kernel K to Kq shifts the
mean of the layer's output channel o by sum (Kq - K)[..., i, o] * E[x_i], where E[x_i] is the mean of
input channel i over the samples (all positions). The shift is taken out of the layer's bias, or, for
a layer without one that feeds one batch norm, added to the norm's moving_mean. The means come from
the float model run in stock tfjs on the samples: a probe copy of the model whose outputs also
include every corrected layer's input (the same layers and weights, so tfjs loads it strictly).
Zero padding at the borders makes the correction approximate for "same" convolutions.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..accuracy.tfjs_runner import TfjsRunner
from ..accuracy.weight_error import roundtrip
from ..accuracy.web_data import Samples
from ..tfjs import WebModel
from .equalize import FILTERS, Layer, is_filter, read_layers, readers_of


@dataclass
class Target:
    """A layer whose output mean is corrected: its kernel, where the shift goes and its source."""

    layer: Layer
    kernel: str
    shifted: str  # the bias, or the next batch norm's moving_mean
    sign: float   # -1: subtracted from a bias; +1: added to a moving mean
    source: list  # [layer, node index, tensor index] of its input


def find_targets(layers: List[Layer], outputs: set, values: Dict[str, np.ndarray]) -> List[Target]:
    """Every single-input, single-call conv / depthwise / dense layer with a bias, or feeding only one
    batch norm over the last axis, whose weights are float32 in `values`."""
    readers = readers_of(layers)
    targets = []
    for layer in layers:
        kernel = f"{layer.name}/{FILTERS.get(layer.cls)}"
        if not is_filter(layer) or len(layer.sources) != 1 or values.get(kernel) is None:
            continue
        after = readers.get(layer.name, [])
        if f"{layer.name}/bias" in values:
            targets.append(Target(layer, kernel, f"{layer.name}/bias", -1.0, layer.sources[0]))
        elif (len(after) == 1 and after[0].cls == "BatchNormalization" and layer.name not in outputs
              and after[0].config.get("axis", -1) in (-1, [-1]) and f"{after[0].name}/moving_mean" in values):
            targets.append(Target(layer, kernel, f"{after[0].name}/moving_mean", 1.0, layer.sources[0]))
    return targets


def _functional(topology: dict) -> dict:
    """The topology as a functional model config (a Sequential one is rebuilt as a chain)."""
    if topology.get("class_name") != "Sequential":
        return copy.deepcopy(topology)
    entries = topology["config"] if isinstance(topology["config"], list) else topology["config"]["layers"]
    entries = copy.deepcopy(entries)
    if entries[0].get("class_name") != "InputLayer":
        first = entries[0]["config"]
        entries.insert(0, {"class_name": "InputLayer", "config": {
            "name": f"{first['name']}_input", "batch_input_shape": first.get("batch_input_shape"),
            "dtype": first.get("dtype", "float32")}})
    for before, entry in zip(entries, entries[1:]):
        entry["inbound_nodes"] = [[[before["config"]["name"], 0, 0, {}]]]
    entries[0]["inbound_nodes"] = []
    for entry in entries:
        entry["name"] = entry["config"]["name"]
    name = entries[0]["config"]["name"]
    return {"class_name": "Model", "config": {"name": "probe", "layers": entries, "input_layers": [[name, 0, 0]],
                                              "output_layers": [[entries[-1]["config"]["name"], 0, 0]]}}


def _probe_source(layer: Layer, layers: Dict[str, Layer]) -> Optional[list]:
    """The output a layer reads, or None where that is a model input (the samples themselves)."""
    source = layer.sources[0] if layer.sources else None
    return None if source is None or layers[source[0]].cls == "InputLayer" else source


def input_means(src: Path, targets: List[Target], samples: Samples, runner: TfjsRunner,
                work: Path) -> Dict[str, np.ndarray]:
    """Per target layer, the mean of each input channel over the samples, from the float model in tfjs."""
    model = WebModel(src)
    document = model.file.document
    topology = document["modelTopology"]
    topology = topology.get("model_config", topology)
    layers, _ = read_layers(document, str(model.file.path))
    by_name = {layer.name: layer for layer in layers}
    probed = {t.layer.name: _probe_source(t.layer, by_name) for t in targets}
    config = _functional(topology)
    wanted = [config["config"]["output_layers"][:]]
    for source in probed.values():
        if source is not None and source not in wanted[0]:
            wanted[0].append(source)
    config["config"]["output_layers"] = wanted[0]
    folder = work / "probe"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for group in model.file.groups:
        for path in group.paths:
            os.link(model.file.path.parent / path, folder / path)
    (folder / "model.json").write_text(json.dumps(dict(document, modelTopology=config)))
    info = runner.load(folder)
    got = runner.run(folder, samples.inputs).outputs
    runner.unload(folder)
    shutil.rmtree(folder, ignore_errors=True)
    keys = {tuple(source): info.outputs[i].key for i, source in enumerate(wanted[0])}
    (only_input,) = samples.inputs.values() if len(samples.inputs) == 1 else (None,)
    means = {}
    for name, source in probed.items():
        if source is not None:
            x = got[keys[tuple(source)]]
        else:
            x = samples.inputs.get(by_name[name].inputs[0]) if by_name[name].inputs else only_input
        if x is not None and x.dtype.kind == "f":
            means[name] = np.asarray(x, np.float64).reshape(-1, x.shape[-1]).mean(axis=0)
    return means


def _shift(layer: Layer, error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per output channel: sum over the kernel of error x the mean of its input channel."""
    if layer.cls == "DepthwiseConv2D":  # [kh, kw, in, multiplier] -> channel in x multiplier
        return np.einsum("hwim,i->im", error, mean).reshape(-1)
    return np.tensordot(error, mean, axes=([error.ndim - 2], [0])).reshape(-1, error.shape[-1]).sum(axis=0)


def corrected(values: Dict[str, np.ndarray], targets: List[Target], means: Dict[str, np.ndarray],
              choice: Dict[str, str]) -> Dict[str, np.ndarray]:
    """`values` with each target's bias (or moving mean) corrected for its kernel stored as `choice` says."""
    out = dict(values)
    for t in targets:
        dtype = choice.get(t.kernel, "float32")
        mean = means.get(t.layer.name)
        if dtype == "float32" or mean is None or mean.size != values[t.kernel].shape[-2]:
            continue
        kernel = values[t.kernel]
        error = roundtrip(kernel, dtype).astype(np.float64) - kernel
        out[t.shifted] = (out[t.shifted] + t.sign * _shift(t.layer, error, mean)).astype(np.float32)
    return out
