"""quantize_graph_model: per-channel and per-tensor quantization of a tfjs graph model in one pass,
written atomically as a model stock tfjs 4.22 loads.

Everything goes through qshard's write pipeline (formats.writer.write_groups), in the source's
groups: weights left alone keep their stored bytes, per-tensor targets get the bytes `qshard
quantize` writes, and per-channel codes are stored as they are with a per-tensor min and scale that
tfjs decodes to the exact integers. The constants the rewrite adds (scales, zero points) follow the
weight they belong to.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from qshard.errors import PatternError, QshardError
from qshard.formats import manifest as mf
from qshard.formats import patterns
from qshard.formats.webmodel import WebModel, read_weights
from qshard.formats.writer import DEFAULT_SHARD_SIZE, Item, Kept, atomic_folder, check_shard_size, whole, write_groups
from qshard.graph.channels import GraphView, Layer
from qshard.graph.equalize import equalize as equalize_layers
from qshard.graph.per_channel import (ChannelCodes, Choice, LayerRewrite, RewrittenGraph, rewrite_layers,
                                     rewrite_nodes)
from qshard.graph.shapes import ShapeInference

NOT_GRAPH = "per-channel quantization needs a graph model (model.json with format graph-model)"
LAYERS_HINT = ("; for a layers model, `qshard mixed MODEL OUT --data SAMPLES --equalize` keeps a budget with "
               "per-tensor dtypes after cross-layer equalization, and `qshard convert KERAS_FILE OUT --to graph` "
               "makes a graph model of its Keras source")


@dataclass
class GraphQuantizeReport:
    """What quantize_graph_model did."""

    out_dir: Path
    per_channel: List[LayerRewrite] = field(default_factory=list)
    per_tensor: Dict[str, str] = field(default_factory=dict)        # name -> uint8/uint16/float16
    not_per_channel: List[Tuple[str, str]] = field(default_factory=list)  # (name, why)
    kept: List[Kept] = field(default_factory=list)
    equalized: int = 0                                              # layer pairs equalized
    widened: List[Tuple[str, str, str]] = field(default_factory=list)  # (bias, asked dtype, written dtype)
    unmatched_patterns: List[str] = field(default_factory=list)     # allowed by allow_unmatched
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def ops_added(self) -> int:
        """Ops tfjs now runs on every predict that the source model did not."""
        return sum(r.ops_added for r in self.per_channel)

    @property
    def elements_recomputed(self) -> int:
        """Elements those ops compute on every predict (their cost in tfjs)."""
        return sum(r.elements for r in self.per_channel)


def graph_outputs(document: dict) -> List[str]:
    """The output names a graph model's signature declares (empty when it has none)."""
    for signature in (document.get("signature"), (document.get("userDefinedMetadata") or {}).get("signature")):
        if isinstance(signature, dict) and isinstance(signature.get("outputs"), dict):
            return [v.get("name", k) if isinstance(v, dict) else k for k, v in signature["outputs"].items()]
    return []


def open_graph(src: Union[str, os.PathLike]) -> Tuple[WebModel, dict, GraphView]:
    """The model, its model.json document and a view of its graph; refuses other kinds of model."""
    model = WebModel(src)
    doc = model.file.document
    if doc is None or doc.get("format") != "graph-model":
        kind = "a weights manifest" if doc is None else f"a {doc.get('format') or 'model without a format'}"
        hint = LAYERS_HINT if doc is not None and doc.get("format") == "layers-model" else ""
        raise QshardError(f"{model.file.path}: {NOT_GRAPH}; this is {kind}{hint}")
    topology = doc.get("modelTopology")
    if not isinstance(topology, dict) or not isinstance(topology.get("node"), list):
        raise QshardError(f"{model.file.path}: modelTopology has no node list")
    return model, doc, GraphView(topology, graph_outputs(doc))


def eligible_layers(view: GraphView, specs: Dict[str, mf.WeightSpec]) -> Tuple[Dict[str, Layer], Dict[str, str]]:
    """Weights that can be quantized per channel (name -> layer) and why the others cannot."""
    layers: Dict[str, Layer] = {}
    for layer in view.layers():
        spec = specs.get(layer.weight)
        if spec is not None and spec.dtype == "float32" and len(spec.shape) == (2 if layer.kind == "matmul" else 4):
            layers[layer.weight] = layer
    why: Dict[str, str] = {}  # for float32 weights only: no other kind is a candidate
    for name, spec in specs.items():
        if spec.dtype != "float32":
            continue
        if name in layers and not view.single_use(name):
            why[name] = f"is read by {len(view.consumers.get(name, []))} nodes"
            del layers[name]
        elif name not in layers:
            users = sorted({view.nodes[u]["op"] for u, _ in view.consumers.get(name, [])})
            why[name] = f"is not the filter of a conv, depthwise conv or matmul (read by {', '.join(users) or 'nothing'})"
    return layers, why


def _bare(pats: patterns.Patterns) -> bool:
    """A flag given without patterns: it takes every candidate no other pattern matched."""
    return pats is True or (pats is not None and pats is not False and not isinstance(pats, str) and len(pats) == 0)


def _matched(names, pats: patterns.Patterns) -> Set[str]:
    if pats is None or pats is False or _bare(pats):
        return set()
    return {n for p in ([pats] if isinstance(pats, str) else pats) for n in fnmatch.filter(names, p)}


def plan_choices(names: List[str], layers: Dict[str, Layer], why: Dict[str, str], per_channel, per_channel_uint16,
                 asymmetric, uint8, uint16, float16, keep) -> Tuple[Dict[str, Choice], Dict[str, str], List[Tuple[str, str]]]:
    """(per-channel choices, per-tensor targets, weights a per-channel pattern matched that cannot be
    per-channel and why). A weight matched by a per-channel and a per-tensor pattern is an error; a
    per-channel flag without patterns takes every filter no other pattern (or --keep) matched."""
    if _bare(per_channel) and _bare(per_channel_uint16):
        raise PatternError("only one of per-channel uint8 and uint16 may be given without patterns "
                           "(it takes every filter no pattern matched)")
    wide, narrow = _matched(names, per_channel_uint16), _matched(names, per_channel)
    both = sorted(wide & narrow)
    if both:
        raise PatternError(f"weight {both[0]!r} matches both per-channel uint8 and uint16; give it one")
    explicit = patterns.explicitly_matched(names, uint8, uint16, float16)
    clash = sorted((wide | narrow) & explicit & set(layers))
    if clash:
        raise PatternError(f"weight {clash[0]!r} matches a per-channel and a per-tensor pattern; give it one")
    kept = set(patterns.explicitly_matched(names, keep))
    rest = set(layers) - wide - narrow - explicit - kept
    wide |= rest if _bare(per_channel_uint16) else set()
    narrow |= rest if _bare(per_channel) else set()
    asym = set(layers) if _bare(asymmetric) else _matched(names, asymmetric)
    choices = {n: Choice("uint16" if n in wide else "uint8", n in asym)
               for n in sorted(wide | narrow) if n in layers and n not in kept}
    targets = {n: d for n, d in patterns.resolve(names, uint8, uint16, float16, keep).items() if n not in choices}
    refused = [(n, why[n]) for n in sorted(wide | narrow) if n in why]
    return choices, targets, refused


def _code_item(name: str, codes: ChannelCodes) -> Item:
    """Codes stored as they are; min -offset and scale 1: tfjs decodes each to code - offset exactly."""
    data = np.ascontiguousarray(codes.codes)
    return Item(name, tuple(data.shape), "float32", quantization=mf.Quantization(codes.dtype, -float(codes.offset), 1.0,
                                                                                   "float32"),
                load=lambda _: data.reshape(-1).view(np.uint8), stored_nbytes=data.nbytes)


def _stored_item(model: WebModel, spec: mf.WeightSpec) -> Item:
    """A weight written with the bytes it is stored with."""
    item = Item(spec.name, spec.shape, spec.dtype, quantization=spec.quantization,
                stored_nbytes=model.shards.where[spec.name].nbytes)
    item.load = lambda _: model.shards.raw_bytes(spec.name)
    return item


def _value_item(name: str, value: np.ndarray, target: Optional[str]) -> Item:
    """A float32 weight from its values, quantized to target (uint8/uint16/float16) or not (None)."""
    a = np.ascontiguousarray(value, np.float32).reshape(np.shape(value))  # (keeps 0-d scalars 0-d)
    item = Item(name, tuple(a.shape), "float32", load=lambda _: a, stored_nbytes=a.nbytes, fallback=lambda _: a)
    if target is not None:
        item.target, item.chunks = target, whole(a)
    return item


def quantize_graph_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                         per_channel: patterns.Patterns = None, per_channel_uint16: patterns.Patterns = None,
                         asymmetric: patterns.Patterns = None, uint8: patterns.Patterns = None,
                         uint16: patterns.Patterns = None, float16: patterns.Patterns = None,
                         keep: patterns.Patterns = None, equalize: bool = False, absorb: bool = True,
                         max_growth: float = 2.0, input_means: Optional[Dict[str, np.ndarray]] = None,
                         rounding: Optional[Callable[..., ChannelCodes]] = None, shard_size: int = DEFAULT_SHARD_SIZE,
                         force: bool = False, allow_unmatched: bool = False) -> GraphQuantizeReport:
    """Quantize a tfjs graph model: conv / depthwise / matmul filters matched by `per_channel`
    (uint8) or `per_channel_uint16` per output channel (one integer zero point for the tensor, or
    one per channel where `asymmetric` matches), other weights per tensor as in quantize_model;
    `equalize` applies cross-layer equalization first, `absorb` moves per-channel scales into the
    layers that read them where the graph allows (no op added) and the readers' quantization error
    grows at most `max_growth` times (inf: wherever the graph allows), or onto a smaller output.
    `input_means` (weight -> mean input per channel on sample data, bias_correction.input_means)
    turns on bias correction of the per-channel layers; `rounding` (rounding.GramRounding) chooses
    their codes instead of rounding to nearest.
    A pattern that matches no weight is a PatternError (nothing written) unless allow_unmatched."""
    check_shard_size(shard_size)
    model, doc, view = open_graph(src)
    specs = {s.name: s for s in model.specs}
    names = list(specs)
    unmatched = patterns.check_matched(names, str(model.file.path), allow_unmatched, **{
        "per-channel": per_channel, "per-channel-uint16": per_channel_uint16, "asymmetric": asymmetric,
        "uint8": uint8, "uint16": uint16, "float16": float16, "keep": keep})
    layers, why = eligible_layers(view, specs)
    choices, targets, refused = plan_choices(names, layers, why, per_channel, per_channel_uint16, asymmetric,
                                             uint8, uint16, float16, keep)
    report = GraphQuantizeReport(Path(out_dir), not_per_channel=refused, unmatched_patterns=unmatched)
    report.bytes_in = sum(loc.nbytes for loc in model.shards.where.values())
    original = read_weights(src)
    values = dict(original)

    def reader_choice(name: str):  # what a reader's weight becomes, for rewrite_layers
        if name in choices:
            return choices[name]
        return "float" if targets.get(name, specs[name].stored_dtype) == "float32" else None

    in_factors: Dict[str, np.ndarray] = {}
    if equalize:
        report.equalized = len(equalize_layers(view, values, list(layers.values()), in_factors=in_factors))
    shapes = ShapeInference(view, values)
    report.per_channel = rewrite_layers(view, values, choices, reader_choice, absorb, report.not_per_channel,
                                        max_growth=max_growth, output_elements=shapes.elements,
                                        means=input_means, in_factors=in_factors, rounding=rounding)
    for rewrite in report.per_channel:
        for name in rewrite.divided:  # b / scale spans the scales' range: no per-tensor grid holds it
            asked = targets.get(name, specs[name].stored_dtype)
            wider = _float_dtype(values[name])
            if asked != "float32" and (asked != "float16" or wider == "float32"):
                targets[name] = wider
                report.widened.append((name, asked, wider))
    graph = rewrite_nodes(view_nodes(doc), report.per_channel)
    per_channel_names = {r.layer.weight for r in report.per_channel}
    for name in sorted(set(choices) - per_channel_names - {n for n, _ in report.not_per_channel}):
        report.not_per_channel.append((name, why.get(name) or "is read by more than one node"))
    groups = []
    for group in model.file.groups:
        row = []
        for spec in group.weights:
            row.extend(_items(model, spec, values, original, targets, graph))
        groups.append(row)
    with atomic_folder(out_dir, force, inputs=model.files()) as tmp:
        result, kept = write_groups(tmp, groups, shard_size, 0, None)
        document = dict(doc)
        document["modelTopology"] = dict(doc["modelTopology"], node=graph.nodes)
        document["weightsManifest"] = mf.dump_manifest(result)
        (tmp / model.file.path.name).write_bytes(mf.dumps(document).encode())
    report.kept = kept
    kept_names = {k.name for k in kept}
    report.per_tensor = {i.name: i.target for row in groups for i in row if i.target and i.name not in kept_names}
    report.bytes_out = sum(i.nbytes for row in groups for i in row)
    return report


def _items(model: WebModel, spec: mf.WeightSpec, values, original, targets, graph: RewrittenGraph) -> List[Item]:
    """The Items that write one source weight: itself (as codes, as stored, or from its new values),
    unless its Const became a node, and the constants and codes its rewrite added."""
    name = spec.name
    added = [_code_item(n, c) for n, c in graph.codes.get(name, {}).items()]
    added += [_value_item(n, v, None) for n, v in graph.consts.get(name, {}).items()]
    if name in graph.codes:  # rewritten: its codes (under its own name while its Const stays) and constants
        return added
    target = targets.get(name)
    unchanged = values[name] is original[name]
    if target is None and unchanged or spec.dtype != "float32":
        return [_stored_item(model, spec)]
    if target is None:  # changed (equalized, divided by a scale): stored as it was asked before
        target = spec.quantization.dtype if spec.quantization else None
    return [_value_item(name, values[name], None if target == "float32" else target)]


def _float_dtype(value: np.ndarray) -> str:
    """float16 when it holds the values to its usual relative precision, else float32."""
    magnitude = np.abs(value[np.isfinite(value) & (value != 0)])
    if magnitude.size and (magnitude.max() > 65504 or magnitude.min() < 6.2e-5):
        return "float32"
    return "float16"


def view_nodes(document: dict) -> List[dict]:
    """The node list of a graph model's document."""
    return document["modelTopology"]["node"]
