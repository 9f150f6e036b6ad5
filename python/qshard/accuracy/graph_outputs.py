"""Which outputs of a graph model are decoded: computed through an op that picks elements of the
model's data by rank or by a threshold (ArgMax, TopK, NonMaxSuppression, Where, Unique). Such outputs
(detections, keypoints taken from a heatmap's peak) jump when a small change swaps two candidates,
so fidelity measures them by matching rows rather than by cosine (qshard.accuracy.fidelity). Such an
op counts only when it depends on a model input: on weights alone it picks the same every time."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Union

DECODING_OPS = frozenset({
    "ArgMax", "ArgMin", "TopKV2", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4",
    "NonMaxSuppressionV5", "Where", "Unique",
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
    reads_input = _reaching(by_name, lambda node: node.get("op") == "Placeholder")
    decodes = _reaching(by_name, lambda node: node.get("op") in DECODING_OPS and reads_input(node.get("name")))
    decoded = []
    for key in outputs:
        entry = signature.get(key)
        if decodes(_node_name(entry["name"] if isinstance(entry, dict) and "name" in entry else key)):
            decoded.append(key)
    return decoded


def _reaching(by_name: Dict[str, dict], hit) -> Callable[[str], bool]:
    """name -> whether that node, or any node it reads from (data inputs, transitively), is a hit."""
    memo: Dict[str, bool] = {}

    def reaches(start: str) -> bool:
        stack, seen, order = [start], set(), []  # iterative: real graphs are thousands of nodes deep
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
            if hit(node):
                memo[start] = True
                return True
            order.append(name)
            stack.extend(_node_name(i) for i in node.get("input", []) if not i.startswith("^"))
        for name in order:  # nothing reachable from start is a hit, so nothing reachable from these is
            memo[name] = False
        return False
    return reaches

