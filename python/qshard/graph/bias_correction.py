"""Bias correction from sample statistics (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", 2019, section 4.2, the empirical form): quantizing a layer's weight
W to W_q shifts its output by (W_q - W)·x, whose mean over the samples is (W_q - W)·E[x]; subtracting
that from the layer's bias removes the shift the next layers would otherwise see add up.

E[x], per input channel of every layer, is measured once on the float model as stock tfjs runs it:
a probe copy of the model (its shards untouched) whose graph also outputs, for each layer, the mean
of its data input over the spatial axes (a Mean node; the samples are averaged here), and on request
for 1x1 convs and matmuls the input's Gram matrix X^T X over channels (for rounding.gptq_codes). The per-layer
correction itself happens where the weight is quantized (per_channel.rewrite_layers), in whatever
coordinates equalization and moved scales left the layer in (`in_factors`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples

from qshard.formats.webmodel import read_weights

from .channels import Layer, source
from .per_channel_model import eligible_layers, open_graph
from .shapes import ShapeInference

PROBE = "qshard_probe"
AXES = f"{PROBE}/spatial_axes"
MAX_GRAM_CHANNELS = 1024
ROWS_PER_CHANNEL = 4  # a Gram matrix from fewer input rows than this many per channel is not kept: rank-poor, it overfits
F32 = {"type": "DT_FLOAT"}


def _int_const(name: str, values) -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}, "value": {"tensor": {
        "dtype": "DT_INT32", "tensorShape": {"dim": [{"size": str(len(values))}]}}}}}


def gram_eligible(layer: Layer, shape) -> bool:
    """A layer whose input's channel Gram matrix is its exact Hessian: a 1x1 conv or a matmul."""
    pointwise = layer.kind == "matmul" or (layer.kind == "conv" and tuple(shape[:2]) == (1, 1))
    return pointwise and layer.in_channels(shape) <= MAX_GRAM_CHANNELS


class _Probe:
    """The probe's nodes and int32 constants (name -> values)."""

    def __init__(self):
        self.nodes, self.consts, self.outputs = [], {AXES: [1, 2]}, {}

    def node(self, name: str, op: str, inputs, **attr) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": {"T": F32, **attr}})
        return name

    def add(self, i: int, weight: str, layer: Layer, data: str, shape, gram: bool, elements) -> None:
        if layer.kind == "matmul":  # [samples, channels] already
            mean, rows = self.node(f"{PROBE}/mean_{i}", "Identity", [data]), data
        else:
            mean = self.node(f"{PROBE}/mean_{i}", "Mean", [data, AXES], Tidx={"type": "DT_INT32"},
                             keep_dims={"b": False})
            channels = layer.in_channels(shape)
            flat = f"{PROBE}/shape_{channels}"
            self.consts[flat] = [-1, channels]
            rows = f"{PROBE}/rows_{i}"
        self.outputs[weight] = {"mean": mean}
        rows_per_sample = elements // layer.in_channels(shape) if elements else None
        if gram and gram_eligible(layer, shape) and rows_per_sample:
            self.outputs[weight]["rows"] = rows_per_sample
            if rows != data:
                self.node(rows, "Reshape", [data, flat], Tshape={"type": "DT_INT32"})
            self.outputs[weight]["gram"] = self.node(f"{PROBE}/gram_{i}", "MatMul", [rows, rows],
                                                     transpose_a={"b": True}, transpose_b={"b": False})


def write_probe(src: Union[str, os.PathLike], out: Path, gram: bool = False) -> Dict[str, Dict[str, str]]:
    """A copy of the graph model in `out` that also outputs each eligible layer's mean input per
    channel (and with `gram`, X^T X of 1x1 convs' and matmuls' inputs); returns weight name ->
    {"mean": node name, "gram": node name}."""
    model, doc, view = open_graph(src)
    specs = {s.name: s for s in model.specs}
    layers, _ = eligible_layers(view, specs)
    probe = _Probe()
    shapes = ShapeInference(view, read_weights(src)) if gram else None
    for i, (weight, layer) in enumerate(sorted(layers.items())):
        data = view.nodes[layer.node]["input"][layer.data_index]
        elements = shapes.elements(source(data)[0]) if shapes else None
        probe.add(i, weight, layer, data, specs[weight].shape, gram, elements)
    out.mkdir(parents=True, exist_ok=True)
    for path in model.files():
        if path != model.file.path:
            target = out / path.relative_to(model.file.path.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    consts = [_int_const(name, values) for name, values in probe.consts.items()]
    document = dict(doc)
    document["modelTopology"] = dict(doc["modelTopology"], node=list(doc["modelTopology"]["node"]) + consts
                                     + probe.nodes)
    (out / f"{PROBE}.bin").write_bytes(b"".join(np.array(v, "<i4").tobytes() for v in probe.consts.values()))
    document["weightsManifest"] = list(doc["weightsManifest"]) + [{"paths": [f"{PROBE}.bin"], "weights": [
        {"name": name, "shape": [len(values)], "dtype": "int32"} for name, values in probe.consts.items()]}]
    names = [n for o in probe.outputs.values() for k, n in o.items() if k != "rows"]
    for holder in (document, document.get("userDefinedMetadata") or {}):
        signature = holder.get("signature")
        if isinstance(signature, dict) and isinstance(signature.get("outputs"), dict):
            outputs = dict(signature["outputs"])
            outputs.update({f"{n}:0": {"name": f"{n}:0", "dtype": "DT_FLOAT"} for n in names})
            holder["signature"] = dict(signature, outputs=outputs)
            if holder is not document:
                document["userDefinedMetadata"] = dict(holder)
    (out / model.file.path.name).write_text(json.dumps(document))
    return probe.outputs


def input_statistics(src: Union[str, os.PathLike], samples: Samples, runner: TfjsRunner, work: Path,
                     gram: bool = False) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(mean data input per channel of every eligible layer, X^T X summed over the samples of every
    1x1 conv and matmul when `gram` and the samples give it ROWS_PER_CHANNEL input rows per channel),
    weight name -> array, as stock tfjs computes the float model
    (a probe copy of it is written in `work` and removed; with `gram` the samples run one by one)."""
    src = Path(src)
    folder = work / PROBE
    try:
        names = write_probe(src, folder, gram)
        probe = folder / (src.name if src.is_file() else open_graph(src)[0].file.path.name)
        outputs = runner.run(probe, samples.inputs, batch=not gram).outputs
        runner.unload(probe)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    by_node = {key.split(":")[0]: value for key, value in outputs.items()}
    means, grams = {}, {}
    for weight, nodes in names.items():
        value = by_node.get(nodes["mean"])
        if value is not None and not isinstance(value, list):
            a = np.asarray(value, np.float64)
            means[weight] = a.reshape(-1, a.shape[-1]).mean(axis=0)
        value = by_node.get(nodes.get("gram", ""))
        c = means[weight].size if weight in means else 0
        if value is not None and not isinstance(value, list) and nodes["rows"] * samples.count >= ROWS_PER_CHANNEL * c:
            grams[weight] = np.asarray(value, np.float64).reshape(-1, c, c).sum(axis=0)
    return means, grams


def input_means(src: Union[str, os.PathLike], samples: Samples, runner: TfjsRunner,
                work: Path) -> Dict[str, np.ndarray]:
    """Mean data input per channel of every eligible layer (weight name -> vector): input_statistics' first half."""
    return input_statistics(src, samples, runner, work)[0]
