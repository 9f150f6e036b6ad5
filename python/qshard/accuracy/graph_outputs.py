"""Which outputs of a graph model are decoded: computed through an op that picks elements by rank or
by a threshold (ArgMax, TopK, NonMaxSuppression, Where, Unique). Such outputs (detections, keypoints
taken from a heatmap's peak) jump when a small change swaps two candidates, so fidelity measures
them by matching rows rather than by cosine (qshard.accuracy.fidelity)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Union

DECODING_OPS = frozenset({
    "ArgMax", "ArgMin", "TopKV2", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4",
    "NonMaxSuppressionV5", "Where", "Unique", "SparseToDense", "DenseBincount", "Bincount",
})


def _node_name(reference: str) -> str:
    """'^name' (a control input) and 'name:1' (an output index) -> 'name'."""
    return reference.lstrip("^").split(":")[0]


def decoded_outputs(model_json: Union[str, os.PathLike], outputs: Iterable[str]) -> List[str]:
    """The outputs (keys as tfjs names them) whose value depends on a decoding op; [] for layers models."""
    doc = json.loads(Path(model_json).read_text(encoding="utf-8"))
    topology = doc.get("modelTopology") or {}
    nodes = topology.get("node") if isinstance(topology, dict) else None
    if not isinstance(nodes, list):
        return []
    by_name: Dict[str, dict] = {n.get("name"): n for n in nodes if isinstance(n, dict)}
    signature = ((doc.get("signature") or {}).get("outputs") or {})
    decoded, memo = [], {}
    for key in outputs:
        entry = signature.get(key)
        start = _node_name(entry["name"] if isinstance(entry, dict) and "name" in entry else key)
        if _depends_on_decoding(start, by_name, memo):
            decoded.append(key)
    return decoded


def _depends_on_decoding(start: str, by_name: Dict[str, dict], memo: Dict[str, bool]) -> bool:
    """Whether start or any node it reads from (data inputs, transitively) is a decoding op."""
    stack, seen = [start], set()  # iterative: real graphs are thousands of nodes deep
    order: List[str] = []
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        if name in memo:
            if memo[name]:
                memo[start] = True
                return True
            continue
        node = by_name[name]
        if node.get("op") in DECODING_OPS:
            memo[start] = True
            return True
        order.append(name)
        stack.extend(_node_name(i) for i in node.get("input", []) if not i.startswith("^"))
    for name in order:  # nothing reachable from start decodes, so nothing reachable from these does
        memo[name] = False
    return False

