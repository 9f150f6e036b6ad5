"""GraphDef + signature -> a tfjs graph model folder (model.json + shards).

model.json holds `format: "graph-model"`, `generatedBy`, `convertedBy`, `modelTopology` (the
GraphDef as protobuf's JSON mapping, as tfjs reads it), `signature` (inputs and outputs keyed by
name, each with its tensor, dtype and shape), `weightsManifest` and, when given,
`userDefinedMetadata`. Every Const node becomes a weight of the same name: its value moves to the
shards (written by qshard.tfjs.write_weights with the dtype patterns) and the node keeps only its
dtype and shape, which is how tfjs binds weights to a graph.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from qshard import __version__
from qshard.formats.webmodel import write_model
from qshard.formats.writer import DEFAULT_SHARD_SIZE, QuantizeReport
from qshard.graph.freeze import Endpoint

# TensorProto fields that carry values (cleared from Const nodes once the value is in the shards).
VALUE_FIELDS = ("tensor_content", "half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val",
                "int64_val", "bool_val", "resource_handle_val", "variant_val", "uint32_val", "uint64_val",
                "dcomplex_val")
CONTROL_FLOW_OPS = {"Switch", "Merge", "Enter", "Exit", "NextIteration", "StatelessIf", "StatelessWhile", "If",
                    "While"}
DYNAMIC_SHAPE_OPS = {"NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV5", "Where"}


@dataclass
class GraphReport(QuantizeReport):
    """What convert_to_graph_model did: the QuantizeReport fields plus what happened to the graph."""

    ops: Dict[str, int] = field(default_factory=dict)  # op -> node count in the written graph
    rewritten: Dict[str, int] = field(default_factory=dict)  # op tfjs lacks -> nodes rewritten
    optimized: Dict[str, int] = field(default_factory=dict)  # fold / fuse pass -> count
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    execute_async: bool = False  # control flow or dynamic shapes: tfjs needs executeAsync, not predict


def extract_weights(graph_def) -> List[Tuple[str, np.ndarray]]:
    """Move every Const node's value out of the graph (in place); returns [(node name, value)]."""
    from tensorflow.python.framework import tensor_util
    weights = []
    for node in graph_def.node:
        if node.op != "Const":
            continue
        tensor = node.attr["value"].tensor
        weights.append((node.name, tensor_util.MakeNdarray(tensor)))
        for name in VALUE_FIELDS:
            tensor.ClearField(name)
    return weights


def _signature(inputs: List[Endpoint], outputs: List[Endpoint]) -> dict:
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import meta_graph_pb2
    signature = meta_graph_pb2.SignatureDef()
    for entries, endpoints in ((signature.inputs, inputs), (signature.outputs, outputs)):
        for e in endpoints:
            info = entries[e.key]
            info.name = e.tensor
            info.dtype = e.dtype
            if e.unknown_rank:
                info.tensor_shape.unknown_rank = True
            else:
                for d in e.shape:
                    info.tensor_shape.dim.add().size = d
    document = MessageToDict(signature)
    # protobuf's map order is arbitrary; tfjs takes inputs and outputs in the order of these keys.
    for part, endpoints in (("inputs", inputs), ("outputs", outputs)):
        got = document.get(part, {})
        document[part] = {e.key: got[e.key] for e in endpoints}
    return document


def write_graph_model(graph_def, inputs: List[Endpoint], outputs: List[Endpoint], out_dir: Union[str, os.PathLike],
                      *, generated_by: str, uint8=None, uint16=None, float16=None, keep=None,
                      shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                      metadata: Optional[dict] = None, progress=None, source: str = "the model",
                      allow_unmatched: bool = False, sources: Iterable = ()) -> GraphReport:
    """Write the graph (its Const values become the weights) as a tfjs graph model into out_dir;
    returns a GraphReport with the weight fields filled in. A pattern that matches no weight of
    `source` is an error unless allow_unmatched. out_dir must not be or hold any of `sources` (the
    model's own files)."""
    from google.protobuf.json_format import MessageToDict
    weights = extract_weights(graph_def)
    report, targets = GraphReport.plan([n for n, _ in weights], out_dir, uint8, uint16, float16, keep, source,
                                       allow_unmatched)
    topology = MessageToDict(graph_def)
    # protobuf's maps have no order: sort node attributes so one graph always gives the same bytes.
    for node in topology.get("node", []) + [n for f in topology.get("library", {}).get("function", [])
                                            for n in f.get("nodeDef", [])]:
        if "attr" in node:
            node["attr"] = dict(sorted(node["attr"].items()))
    document = {"format": "graph-model", "generatedBy": generated_by, "convertedBy": f"qshard {__version__}",
                "modelTopology": topology, "signature": _signature(inputs, outputs)}
    if metadata:
        document["userDefinedMetadata"] = metadata
    return write_model(document, weights, out_dir, report, targets, shard_size=shard_size, force=force,
                       threads=threads, progress=progress, inputs=sources)
