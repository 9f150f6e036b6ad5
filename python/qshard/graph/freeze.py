"""Concrete function -> inference GraphDef: variables frozen to constants, grappler's constant
folding and arithmetic simplification, then debug, no-op and identity nodes removed.

The graph's endpoints are kept by name: its input Placeholders and the output nodes the signature
points at (each output of a frozen function is an Identity node of its own, so removing the other
Identity nodes never renames an output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Set, Tuple

from qshard.errors import GraphError
from qshard.graph.trace import Traced, import_tensorflow

# Nodes that compute nothing at inference time: their output is their first input.
PASS_THROUGH = {"Identity", "Snapshot", "StopGradient", "PreventGradient", "CheckNumerics", "EnsureShape"}
# Nodes with no data output that inference does not need.
DROPPED = {"NoOp", "Assert", "Print", "PrintV2"}
# Lowered (v1) control flow: its frames rely on Identity pivots and control inputs, left untouched.
CONTROL_FLOW = {"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond"}
GRAPPLER_PASSES = ["debug_stripper", "pruning", "constfold", "arithmetic", "dependency",
                   "pruning", "constfold", "arithmetic", "dependency"]


@dataclass
class Endpoint:
    """One signature entry: its key, the tensor ("node:index") and its dtype / shape."""

    key: str
    tensor: str
    dtype: int  # a DataType enum value
    shape: List[int]  # -1 for unknown sizes; [] for a scalar
    unknown_rank: bool = False

    @property
    def node(self) -> str:
        return self.tensor.rsplit(":", 1)[0]


def _endpoints(keys: List[str], tensors) -> List[Endpoint]:
    out = []
    for key, t in zip(keys, tensors):
        rank = t.shape.rank
        dims = [] if rank is None else [-1 if d is None else int(d) for d in t.shape.as_list()]
        out.append(Endpoint(key, t.name, t.dtype.as_datatype_enum, dims, rank is None))
    return out


def node_name(ref: str) -> str:
    """The node a GraphDef input reference ("^n", "n", "n:1") points at."""
    ref = ref[1:] if ref.startswith("^") else ref
    return ref.rsplit(":", 1)[0] if ":" in ref else ref


def _grappler(graph_def, outputs: List[str]):
    import_tensorflow()
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer
    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
    meta.collection_def["train_op"].node_list.value.extend(outputs)  # what grappler must keep
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.optimizers[:] = GRAPPLER_PASSES
    return tf_optimizer.OptimizeGraph(config, meta)


def strip(graph_def, keep: Set[str]) -> Any:
    """Remove pass-through and dropped nodes (rewiring their consumers), control inputs, and
    nodes no kept node depends on. Graphs with lowered control flow keep their Identity nodes
    and control inputs."""
    nodes = list(graph_def.node)
    control_flow = any(n.op in CONTROL_FLOW for n in nodes)
    forward: Dict[str, str] = {}
    if not control_flow:
        for n in nodes:
            if n.op in PASS_THROUGH and n.name not in keep and n.input and not n.input[0].startswith("^"):
                forward[n.name] = n.input[0]

    def resolve(ref: str) -> str:
        seen = 0
        while node_name(ref) in forward and seen <= len(forward):
            target = forward[node_name(ref)]
            ref = target
            seen += 1
        return ref

    dropped = {n.name for n in nodes if n.op in DROPPED and n.name not in keep} | set(forward)
    for n in nodes:
        new_inputs = []
        for ref in n.input:
            if ref.startswith("^"):
                if control_flow and node_name(ref) not in dropped:
                    new_inputs.append(ref)
                continue
            new_inputs.append(resolve(ref))
        del n.input[:]
        n.input.extend(new_inputs)
    prune(graph_def, keep, drop=dropped)
    return graph_def


def prune(graph_def, keep: Set[str], drop: Set[str] = frozenset()) -> None:
    """Keep only the nodes that the `keep` nodes depend on (and the `keep` nodes), in place."""
    by_name = {n.name: n for n in graph_def.node}
    live: Set[str] = set()
    stack = [k for k in keep if k in by_name]
    while stack:
        name = stack.pop()
        if name in live or name in drop and name not in keep:
            continue
        live.add(name)
        stack.extend(node_name(ref) for ref in by_name[name].input if node_name(ref) in by_name)
    survivors = [n for n in graph_def.node if n.name in live]
    del graph_def.node[:]
    graph_def.node.extend(survivors)


def _frozen_graph_def(function):
    """The function's GraphDef with its variables as constants (functions inlined, control flow
    lowered), and its inputs and outputs. TensorFlow's public convert_variables_to_constants_v2
    also rebuilds a ConcreteFunction from that GraphDef, which takes longer than the freezing
    itself (7 of 8 s for ResNet50) and is not needed here: its internal first half is called when
    this TensorFlow has it, the public function otherwise."""
    from tensorflow.python.framework import convert_to_constants as c2c
    converter_data = getattr(c2c, "_FunctionConverterDataInEager", None)
    replace = getattr(c2c, "_replace_variables_by_constants", None)
    if converter_data is not None and replace is not None:
        data = converter_data(func=function, lower_control_flow=True, aggressive_inlining=True)
        graph_def, _ = replace(converter_data=data)
        return graph_def, function.inputs, function.outputs
    frozen = c2c.convert_variables_to_constants_v2(function, aggressive_inlining=True)
    return frozen.graph.as_graph_def(), frozen.inputs, frozen.outputs


def freeze(traced: Traced) -> Tuple[object, List[Endpoint], List[Endpoint]]:
    """(GraphDef, inputs, outputs) of the traced function, frozen and simplified for inference."""
    import_tensorflow()
    n_in = len(traced.input_keys)
    try:
        graph_def, input_tensors, output_tensors = _frozen_graph_def(traced.function)
    except Exception as error:
        raise GraphError(f"{traced.source}: freezing the variables failed: {type(error).__name__}: {error}") from None
    inputs = _endpoints(traced.input_keys, input_tensors[:n_in])
    outputs = _endpoints(traced.output_keys, output_tensors)
    if len(outputs) != len(traced.output_keys):
        raise GraphError(f"{traced.source}: the function has {len(output_tensors)} outputs, "
                         f"its signature names {len(traced.output_keys)}")
    keep = {e.node for e in inputs} | {e.node for e in outputs}
    present = {n.name for n in graph_def.node}
    missing = sorted(keep - present)
    if missing:
        raise GraphError(f"{traced.source}: the frozen graph has no node {', '.join(missing)} "
                         f"(an input or output of the function)")
    graph_def = _grappler(graph_def, sorted({e.node for e in outputs}))
    present = {n.name for n in graph_def.node}
    missing = [e.node for e in outputs if e.node not in present]
    if missing:
        raise GraphError(f"{traced.source}: the optimized graph lost its output node(s) {', '.join(missing)}")
    if graph_def.library.function:
        # Constants inside function bodies would need weights of their own; every graph met so far
        # is flat once frozen (functions inlined, control flow lowered).
        names = ", ".join(f.signature.name for f in graph_def.library.function[:3])
        raise GraphError(f"{traced.source}: the frozen graph still calls functions ({names}); "
                         f"qshard writes flat graphs only")
    inputs = [e for e in inputs if e.node in present]  # an input no output depends on is dropped
    strip(graph_def, keep & present)
    return graph_def, inputs, outputs
