"""Keras models and SavedModels -> tfjs graph models that stock tfjs 4.22 runs, without tensorflowjs.

    from qshard.graph import convert_to_graph_model
    report = convert_to_graph_model("model.keras", "web_model", uint8="*")

The steps, one module each: trace (load the source, get a concrete function with named inputs
and outputs; Keras recurrent layers unrolled), freeze (variables to constants, grappler's
constant folding, debug / no-op / identity nodes removed), ops (rewrite ops tfjs lacks into ops
it has, refuse any other before writing), fuse (fold batch norm and per-channel constants into
filters, fuse conv / depthwise / matmul + bias + activation where every stock backend has the
fused kernel), write (model.json + shards through qshard's own shard writer). TensorFlow is
imported only when a conversion runs.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from qshard.errors import GraphError
from qshard.formats.outputs import check_new_folder
from qshard.formats.writer import DEFAULT_SHARD_SIZE, check_shard_size
from qshard.graph.write import CONTROL_FLOW_OPS, DYNAMIC_SHAPE_OPS, GraphReport

STRUCTURED_OUTPUT_KEYS = "structuredOutputKeys"  # the userDefinedMetadata key tfjs's GraphModel reads


def convert_to_graph_model(src: Union[str, os.PathLike, Any], out_dir: Union[str, os.PathLike], *,
                           signature: Optional[str] = None, tags: Optional[Sequence[str]] = None,
                           uint8=None, uint16=None, float16=None, keep=None,
                           shard_size: int = DEFAULT_SHARD_SIZE, metadata: Optional[dict] = None,
                           structured_outputs: bool = False, force: bool = False,
                           threads: Optional[int] = None, progress=None, allow_unmatched: bool = False) -> GraphReport:
    """Convert a Keras model (object, .keras, .h5) or a SavedModel folder into a tfjs graph model
    in out_dir, weights quantized per the patterns (fnmatch over the weight names, which are the
    graph's Const node names; one that matches nothing is an error unless allow_unmatched).
    `structured_outputs` makes tfjs's predict return a dict keyed by the signature's output names
    (the function must return a dict)."""
    from qshard.graph import freeze, fuse, ops, trace, write
    check_shard_size(shard_size)
    out = Path(out_dir)
    sources = [src] if isinstance(src, (str, os.PathLike)) else []
    check_new_folder(out, force, sources)  # before the model is traced, which takes long
    if metadata is not None and not isinstance(metadata, dict):
        raise GraphError(f"metadata must be a JSON object (a dict), not {type(metadata).__name__}")
    traced = trace.trace(src, signature, tags)
    if structured_outputs and not traced.dict_outputs:
        raise GraphError(f"{traced.source}: structured output names need a function that returns a dict; "
                         f"this one returns {len(traced.output_keys)} unnamed output(s)")
    graph_def, inputs, outputs = freeze.freeze(traced)
    endpoints = {e.node for e in inputs} | {e.node for e in outputs}
    rewritten = ops.rewrite(graph_def)
    optimized = fuse.optimize(graph_def, endpoints)
    freeze.prune(graph_def, endpoints)
    ops.check(graph_def, traced.source)
    metadata = dict(metadata or {})
    if structured_outputs:
        metadata[STRUCTURED_OUTPUT_KEYS] = [e.key for e in outputs]
    op_counts = Counter(n.op for n in graph_def.node)
    report = write.write_graph_model(graph_def, inputs, outputs, out, generated_by=traced.generated_by,
                                     uint8=uint8, uint16=uint16, float16=float16, keep=keep,
                                     shard_size=shard_size, force=force, threads=threads,
                                     metadata=metadata or None, progress=progress, source=str(traced.source),
                                     allow_unmatched=allow_unmatched, sources=sources)
    report.ops = dict(op_counts)
    report.rewritten = rewritten
    report.optimized = optimized
    report.inputs = [e.key for e in inputs]
    report.outputs = [e.key for e in outputs]
    report.execute_async = bool(set(op_counts) & (CONTROL_FLOW_OPS | DYNAMIC_SHAPE_OPS))
    return report


__all__ = ["GraphReport", "convert_to_graph_model"]
