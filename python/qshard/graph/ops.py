"""Which TensorFlow ops stock tfjs 4.22 runs in a graph model, rewrites for some it lacks, and the
check that refuses a graph with any other op before anything is written.

The table (tfjs_ops.json, package data) lists the `tfOpName`s of tfjs-converter's op list at tag
tfjs-v4.22.0 (tfjs-converter/python/tensorflowjs/op_list/*.json, the same files the tensorflowjs
4.22.0 wheel ships), minus tfdf.json (its ops need @tensorflow/tfjs-tfdf, not stock tfjs).
Regenerate it with

    python -m qshard.graph.ops OP_LIST_DIR    # e.g. .../site-packages/tensorflowjs/op_list

Rewrites (each keeps the node's name, so its consumers and the signature are untouched):
    Erfc(x)            -> Sub(1, Erf(x))          (exact GELU: tf.nn.gelu(approximate=False))
    Softsign(x)        -> RealDiv(x, AddV2(Abs(x), 1))
    Rint(x)            -> Round(x)                (both round half to even)
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List

from qshard.errors import GraphError

TABLE = Path(__file__).with_name("tfjs_ops.json")
TFJS_VERSION = "4.22.0"
# tfjs-converter's op list files whose ops stock @tensorflow/tfjs does not register.
NOT_STOCK = ("tfdf.json",)


@lru_cache(maxsize=1)
def supported_ops() -> FrozenSet[str]:
    """The op names tfjs 4.22's graph executor implements."""
    return frozenset(json.loads(TABLE.read_text())["ops"])


def _new_node(graph_def, name: str, op: str, inputs: List[str], dtype_attr: Dict[str, object]):
    node = graph_def.node.add()
    node.name = name
    node.op = op
    node.input.extend(inputs)
    for key, value in dtype_attr.items():
        node.attr[key].CopyFrom(value)
    return node


def _scalar_const(graph_def, name: str, value: float, dtype_value) -> str:
    from tensorflow.python.framework import tensor_util
    from tensorflow import as_dtype
    node = graph_def.node.add()
    node.name = name
    node.op = "Const"
    node.attr["dtype"].CopyFrom(dtype_value)
    np_dtype = as_dtype(dtype_value.type).as_numpy_dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np_dtype(value), shape=[]))
    return name


def _erfc(graph_def, node) -> None:
    t = node.attr["T"]
    erf = _new_node(graph_def, f"{node.name}/qshard_erf", "Erf", [node.input[0]], {"T": t})
    one = _scalar_const(graph_def, f"{node.name}/qshard_one", 1.0, t)
    node.op = "Sub"
    del node.input[:]
    node.input.extend([one, erf.name])


def _softsign(graph_def, node) -> None:
    t = node.attr["T"]
    x = node.input[0]
    abs_node = _new_node(graph_def, f"{node.name}/qshard_abs", "Abs", [x], {"T": t})
    one = _scalar_const(graph_def, f"{node.name}/qshard_one", 1.0, t)
    denominator = _new_node(graph_def, f"{node.name}/qshard_denominator", "AddV2", [abs_node.name, one], {"T": t})
    node.op = "RealDiv"
    del node.input[:]
    node.input.extend([x, denominator.name])


def _rint(graph_def, node) -> None:
    node.op = "Round"


REWRITES: Dict[str, Callable] = {"Erfc": _erfc, "Softsign": _softsign, "Rint": _rint}


def rewrite(graph_def) -> Dict[str, int]:
    """Rewrite, in place, the ops tfjs lacks that have an equivalent in ops it has; returns the
    count per rewritten op."""
    done: Dict[str, int] = defaultdict(int)
    for node in list(graph_def.node):
        fix = REWRITES.get(node.op)
        if fix is not None and node.op not in supported_ops():
            done[node.op] += 1
            fix(graph_def, node)
    return dict(done)


def check(graph_def, source: str) -> None:
    """Refuse a graph that holds an op tfjs 4.22 does not implement, naming each such op and its nodes."""
    table = supported_ops()
    missing: Dict[str, List[str]] = defaultdict(list)
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        if node.op not in table:
            missing[node.op].append(node.name)
    if missing:
        parts = []
        for op, names in sorted(missing.items()):
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{op} (node {', '.join(repr(n) for n in names[:3])}{more})")
        raise GraphError(f"{source}: tfjs {TFJS_VERSION} does not implement "
                         f"{'this op' if len(parts) == 1 else 'these ops'} and qshard has no rewrite for "
                         f"{'it' if len(parts) == 1 else 'them'}: {'; '.join(parts)}")


def generate(op_list_dir: Path) -> dict:
    """The table's JSON document from a tfjs-converter op_list folder."""
    ops = set()
    files = sorted(p for p in Path(op_list_dir).glob("*.json") if p.name not in NOT_STOCK)
    if not files:
        raise SystemExit(f"{op_list_dir}: no op list .json files")
    for path in files:
        ops.update(entry["tfOpName"] for entry in json.loads(path.read_text()))
    return {"tfjs": TFJS_VERSION,
            "from": "tensorflow/tfjs tag tfjs-v4.22.0: tfjs-converter/python/tensorflowjs/op_list/*.json "
                    "without tfdf.json (regenerate: python -m qshard.graph.ops OP_LIST_DIR)",
            "ops": sorted(ops)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m qshard.graph.ops OP_LIST_DIR")
    TABLE.write_text(json.dumps(generate(Path(sys.argv[1])), indent=0) + "\n")
    print(f"wrote {TABLE} ({len(json.loads(TABLE.read_text())['ops'])} ops)")
