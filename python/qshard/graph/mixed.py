"""The smallest graph model that keeps a fidelity budget on sample inputs: per weight, a choice among
per-channel uint8 / uint16 (conv, depthwise and matmul filters), per-tensor uint8 / uint16 (other
float32 weights) and float32, judged by the worst-sample cosine to the float model's outputs
(qshard.accuracy.fidelity: raw float outputs; decoded detections only when there are no others) of
the model as stock tfjs runs it (qshard.accuracy.tfjs_runner, in Node).

1. Everything at its smallest (per-channel uint8 for filters, uint8 for the rest). Done if it holds.
2. Sensitivity, measured: for each weight, the float model with only that weight at its smallest;
   its damage is 1 - worst cosine (output error adds up roughly across weights, so the damage of
   one weight alone ranks it). Weights are ranked by damage per byte that widening them costs.
3. Widen a prefix of the ranking (uint16-class first, then float32), the shortest prefix that keeps
   the budget found by bisection (a longer prefix never hurts fidelity in practice; the result is
   checked, not assumed).
4. Give back: each widened weight, most bytes first, one level narrower again if the budget still
   holds (the ranking measured weights alone; together, some are not needed).
Every candidate is written as a real model and run in tfjs; the answer is one of them.
"""
from __future__ import annotations

import glob
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from qshard.accuracy import fidelity
from qshard.accuracy.graph_outputs import decoded_outputs
from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples
from qshard.formats.outputs import check_new_folder, temporary_folder
from qshard.graph.per_channel_model import GraphQuantizeReport, eligible_layers, open_graph, quantize_graph_model

# Levels per kind of weight: 0 is the smallest; the last is float32.
LADDER = {"filter": ("per-channel uint8", "per-channel uint16", "float32"),
          "other": ("uint8", "uint16", "float32")}
BYTES = {"per-channel uint8": 1, "uint8": 1, "per-channel uint16": 2, "uint16": 2, "float16": 2, "float32": 4}


@dataclass
class MixedResult:
    """What search_graph_model chose and what it cost to find."""

    choice: Dict[str, str]
    cosine: float
    bytes: int
    uint8_bytes: int
    evaluations: int
    seconds: float
    ranking: List[str] = field(default_factory=list)  # most damaging per byte first
    damage: Dict[str, float] = field(default_factory=dict)
    report: Optional[GraphQuantizeReport] = None
    met: bool = False


def _flags(choice: Dict[str, str]) -> dict:
    by = {}
    for name, level in choice.items():
        by.setdefault(level, []).append(glob.escape(name))
    # An empty list would be a bare flag (every weight): absent levels are None.
    return {"per_channel": by.get("per-channel uint8"), "per_channel_uint16": by.get("per-channel uint16"),
            "uint8": by.get("uint8"), "uint16": by.get("uint16"), "keep": by.get("float32")}


class _Search:
    def __init__(self, src: Path, samples: Samples, runner: TfjsRunner, work: Path, equalize: bool, say):
        self.src, self.samples, self.runner, self.work, self.equalize, self.say = src, samples, runner, work, equalize, say
        self.evaluations = 0
        model, _, view = open_graph(src)
        self.file_name = model.file.path.name  # model.json, or X.json as published
        specs = {s.name: s for s in model.specs}
        layers, _ = eligible_layers(view, specs)
        self.kinds = {n: ("filter" if n in layers else "other") for n, s in specs.items()
                      if s.dtype == "float32" and s.size > 1}
        self.sizes = {n: specs[n].size for n in self.kinds}
        info = runner.load(src)
        self.decoded = decoded_outputs(info.path, [o.key for o in info.outputs])
        self.reference = runner.run(src, samples.inputs).outputs
        runner.unload(src)

    def cosines(self, choices: List[Dict[str, str]], tag: str) -> List[float]:
        """Worst-sample cosine of each choice, each written, run in tfjs and removed in turn."""
        out = []
        for i, choice in enumerate(choices):
            self.say(f"{tag}: candidate {i + 1} of {len(choices)}")
            folder = self.work / f"{tag}{i}"
            quantize_graph_model(self.src, folder, equalize=self.equalize, **_flags(choice))
            outputs = self.runner.run(folder / self.file_name, self.samples.inputs).outputs
            self.runner.unload(folder / self.file_name)
            shutil.rmtree(folder, ignore_errors=True)
            self.evaluations += 1
            cos = fidelity.compare(self.reference, outputs, self.decoded).worst_cosine
            out.append(-1.0 if cos is None or cos != cos else cos)  # NaN (non-finite outputs): fails any budget
        return out

    def ladder(self, name: str) -> tuple:
        return LADDER[self.kinds[name]]

    def level(self, levels: Dict[str, int]) -> Dict[str, str]:
        return {n: self.ladder(n)[levels.get(n, 0)] for n in self.kinds}

    def bytes(self, choice: Dict[str, str]) -> int:
        return sum(self.sizes[n] * BYTES[c] for n, c in choice.items())


def search_graph_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], samples: Samples, *,
                       min_cosine: float = 0.999, runner: Optional[TfjsRunner] = None, backend: str = "cpu",
                       equalize: bool = False, force: bool = False,
                       progress: Optional[Callable[[str], None]] = None) -> MixedResult:
    """Write the smallest model found whose worst-sample cosine to the float model, run in stock
    tfjs on `samples`, is >= min_cosine; per weight: per-channel uint8 / uint16 for filters, uint8 /
    uint16 for other float32 weights, or float32. `src` is a graph model folder whose weights are
    the float reference (a model stored with quantized weights is compared with itself dequantized)."""
    start = time.perf_counter()
    src, out = Path(src), Path(out_dir)
    check_new_folder(out, force, [src])  # before the search, which takes long
    say = progress or (lambda _text: None)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    own = runner is None
    runner = runner or TfjsRunner(backend)
    try:
        with temporary_folder(f"{out.name}-search", parent) as tmp:  # locked, so that no other run removes it
            result = search(_Search(src, samples, runner, tmp, equalize, say), min_cosine)
    finally:
        if own:
            runner.close()
    result.report = quantize_graph_model(src, out, equalize=equalize, force=force, **_flags(result.choice))
    result.seconds = time.perf_counter() - start
    return result


def search(s, min_cosine: float) -> MixedResult:
    """Steps 1-4 over a search state `s` (kinds, sizes, ladder(name), level(levels), bytes(choice),
    cosines(choices, tag), evaluations): graph models use _Search, layers models their own."""
    base = s.level({})
    (cos,) = s.cosines([base], "smallest")
    result = MixedResult(base, cos, s.bytes(base), s.bytes({n: "uint8" for n in s.kinds}), 0, 0.0)
    if cos < min_cosine:
        alone = [{**{m: "float32" for m in s.kinds}, n: base[n]} for n in s.kinds]
        result.damage = dict(zip(s.kinds, (1.0 - c for c in s.cosines(alone, "sensitivity"))))
        cost = {n: s.sizes[n] * (BYTES[s.ladder(n)[1]] - BYTES[base[n]]) for n in s.kinds}
        result.ranking = sorted(s.kinds, key=lambda n: -result.damage[n] / max(cost[n], 1))
        result.choice, cos = widen(s, result.ranking, min_cosine)
        if cos >= min_cosine:
            result.choice, cos = give_back(s, result.choice, cos, min_cosine)
    result.cosine, result.bytes, result.met = cos, s.bytes(result.choice), cos >= min_cosine
    result.evaluations = s.evaluations
    return result


def widen(s, ranking: List[str], min_cosine: float) -> tuple:
    """(choice, cosine): the shortest prefix of the ranking that keeps the budget when widened one
    level (the rest at the smallest), else two levels (the rest one level wider), found by bisection;
    if even the whole ranking at float32 misses, that (the float model's own weights)."""
    for level in (1, 2):
        def choice(k: int, level=level) -> Dict[str, str]:
            return s.level({n: level if i < k else level - 1 for i, n in enumerate(ranking)})
        lo, hi = 0, len(ranking)
        (best,) = s.cosines([choice(hi)], f"l{level}-all")
        if best < min_cosine:
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            (c,) = s.cosines([choice(mid)], f"l{level}-{mid}")
            if c >= min_cosine:
                hi, best = mid, c
            else:
                lo = mid
        return choice(hi), best
    return choice(len(ranking)), best


def give_back(s, choice: Dict[str, str], cos: float, min_cosine: float) -> tuple:
    """(choice, cosine) after narrowing widened weights one level where the budget still holds, the
    largest saving first."""
    level = {n: s.ladder(n).index(c) for n, c in choice.items()}
    saving = {n: s.sizes[n] * (BYTES[choice[n]] - BYTES[s.ladder(n)[level[n] - 1]])
              for n in choice if level[n] > 0}
    for n in sorted(saving, key=lambda n: -saving[n]):
        trial = dict(choice, **{n: s.ladder(n)[level[n] - 1]})
        (c,) = s.cosines([trial], "give-back")
        if c >= min_cosine:
            choice, cos = trial, c
    return choice, cos
