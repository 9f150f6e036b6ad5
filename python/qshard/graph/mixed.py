"""The smallest graph model that keeps a fidelity budget on sample inputs: per weight, a choice among
per-channel uint8 / uint16 (conv, depthwise and matmul filters), per-tensor uint8 / uint16 (other
float32 weights) and float32, judged by the worst-sample cosine to the float model's outputs
(qshard.accuracy.fidelity: raw float outputs; decoded detections only when there are no others) of
the model as stock tfjs runs it (qshard.accuracy.tfjs_runner, in Node).

1. Everything at its smallest (per-channel uint8 for filters, uint8 for the rest) but the smallest
   other weights (biases, slopes: together at most SMALL_SHARE of the all-uint8 bytes), which start
   at uint16: a byte each buys a lot and saves measuring each. Per-channel layers' biases corrected
   for the mean output shift their quantization causes (bias_correction), if that does better on
   the samples than without (one more evaluation). Done if it holds.
2. Sensitivity, measured: for each weight not in that group, the float model with only that weight at its smallest;
   its damage is 1 - worst cosine (output error adds up roughly across weights, so the damage of
   one weight alone ranks it). Weights are ranked by damage per byte that widening them costs.
3. Widen a prefix of the ranking (uint16-class first, then float32), the shortest prefix that keeps
   the budget found by bisection (a longer prefix never hurts fidelity in practice; the result is
   checked, not assumed).
4. Give back: each widened weight that saves at least GIVE_BACK_SHARE of the all-uint8 bytes, most
   bytes first, one level narrower again if the budget still holds (the ranking measured weights
   alone; together, some are not needed); then the small weights together to uint8.
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
from qshard.accuracy.tfjs_runner import TfjsRunner, require_finite
from qshard.accuracy.web_data import Samples
from qshard.errors import QshardError
from qshard.formats.outputs import check_new_folder, temporary_folder
from qshard.graph.bias_correction import input_statistics
from qshard.graph.per_channel_model import GraphQuantizeReport, eligible_layers, open_graph, quantize_graph_model
from qshard.graph.rounding import GramRounding

# Levels per kind of weight: 0 is the smallest; the last is float32.
LADDER = {"filter": ("per-channel uint8", "per-channel uint16", "float32"),
          "other": ("uint8", "uint16", "float32")}
BYTES = {"per-channel uint8": 1, "uint8": 1, "per-channel uint16": 2, "uint16": 2, "float16": 2, "float32": 4}
ROUNDINGS = ("nearest", "gram")
SMALL_SHARE = 0.01
GIVE_BACK_SHARE = 0.002


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
    bias_corrected: bool = False


def _flags(choice: Dict[str, str]) -> dict:
    by = {}
    for name, level in choice.items():
        by.setdefault(level, []).append(glob.escape(name))
    # An empty list would be a bare flag (every weight): absent levels are None.
    return {"per_channel": by.get("per-channel uint8"), "per_channel_uint16": by.get("per-channel uint16"),
            "uint8": by.get("uint8"), "uint16": by.get("uint16"), "keep": by.get("float32")}


class Candidates:
    """What the graph and layers searches share: each candidate choice written as a real model, run in
    tfjs on the samples and measured against the float model's outputs. A subclass sets samples,
    runner, work, say, reference, decoded (output keys measured as decoded), sizes and evaluations,
    and writes a candidate with candidate(choice, folder), which returns the path tfjs loads."""

    def candidate(self, choice: Dict[str, str], folder: Path) -> Path:
        raise NotImplementedError

    def cosines(self, choices: List[Dict[str, str]], tag: str) -> List[float]:
        """Worst-sample cosine of each choice, each written, run in tfjs and removed in turn."""
        out = []
        for i, choice in enumerate(choices):
            self.say(f"{tag}: candidate {i + 1} of {len(choices)}")
            folder = self.work / f"{tag}{i}"
            model = self.candidate(choice, folder)
            outputs = self.runner.run(model, self.samples.inputs).outputs
            self.runner.unload(model)
            shutil.rmtree(folder, ignore_errors=True)
            self.evaluations += 1
            cos = fidelity.compare(self.reference, outputs, self.decoded).worst_cosine
            out.append(-1.0 if cos is None or cos != cos else cos)  # NaN (non-finite outputs): fails any budget
        return out

    def bytes(self, choice: Dict[str, str]) -> int:
        return sum(self.sizes[n] * BYTES[c] for n, c in choice.items())


class _Search(Candidates):
    def __init__(self, src: Path, samples: Samples, runner: TfjsRunner, work: Path, equalize: bool, say,
                 bias_correct: bool = True, rounding: str = "nearest"):
        self.src, self.samples, self.runner, self.work, self.equalize, self.say = src, samples, runner, work, equalize, say
        self.evaluations = 0
        self.means, self.rounding = None, None
        self.give_back_share = GIVE_BACK_SHARE
        model, _, view = open_graph(src)
        self.file_name = model.file.path.name  # model.json, or X.json as published
        specs = {s.name: s for s in model.specs}
        layers, _ = eligible_layers(view, specs)
        self.kinds = {n: ("filter" if n in layers else "other") for n, s in specs.items()
                      if s.dtype == "float32" and s.size > 1}
        self.sizes = {n: specs[n].size for n in self.kinds}
        self.small = set()
        room = SMALL_SHARE * sum(self.sizes.values())
        for n in sorted((n for n in self.kinds if self.kinds[n] == "other"), key=lambda n: (self.sizes[n], n)):
            if self.sizes[n] > room:
                break
            self.small.add(n)
            room -= self.sizes[n]
        info = runner.load(src)
        self.decoded = decoded_outputs(info.path, [o.key for o in info.outputs])
        self.reference = runner.run(src, samples.inputs).outputs
        runner.unload(src)
        require_finite(self.reference, info.path)
        if bias_correct or rounding == "gram":
            say("measuring each layer's input statistics")
            means, grams = input_statistics(src, samples, runner, work, gram=rounding == "gram")
            self.means = means if bias_correct else None
            self.rounding = GramRounding(grams) if rounding == "gram" else None
            self.evaluations += 1

    def candidate(self, choice: Dict[str, str], folder: Path) -> Path:
        quantize_graph_model(self.src, folder, equalize=self.equalize, input_means=self.means,
                             rounding=self.rounding, **_flags(choice))
        return folder / self.file_name

    def keep_bias_correction_if_it_helps(self, base: Dict[str, str], cos: float) -> float:
        """The smallest choice without bias correction too; the correction stays only if it did better
        (on models whose activations are far from linear, the mean shift is not the one that counts)."""
        if self.means is None:
            return cos
        means, self.means = self.means, None
        (plain,) = self.cosines([base], "smallest-uncorrected")
        if plain >= cos:
            return plain
        self.means = means
        return cos

    def ladder(self, name: str) -> tuple:
        return LADDER[self.kinds[name]]

    def level(self, levels: Dict[str, int]) -> Dict[str, str]:
        """The choice with these levels (absent: the smallest, uint16 for the small weights)."""
        return {n: self.ladder(n)[levels.get(n, int(n in self.small))] for n in self.kinds}


def search_graph_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], samples: Samples, *,
                       min_cosine: float = 0.999, runner: Optional[TfjsRunner] = None, backend: str = "cpu",
                       equalize: bool = False, bias_correct: bool = True, rounding: str = "nearest",
                       force: bool = False,
                       progress: Optional[Callable[[str], None]] = None) -> MixedResult:
    """Write the smallest model found whose worst-sample cosine to the float model, run in stock
    tfjs on `samples`, is >= min_cosine; per weight: per-channel uint8 / uint16 for filters, uint8 /
    uint16 for other float32 weights, or float32. `src` is a graph model folder whose weights are
    the float reference (a model stored with quantized weights is compared with itself dequantized).
    `bias_correct` corrects per-channel layers' biases for the mean shift quantization causes, from
    each layer's mean input on the samples (bias_correction.input_statistics: one more tfjs run);
    rounding "gram" rounds 1x1 convs' and matmuls' codes with error feedback through their inputs'
    Gram matrices on the samples (rounding.GramRounding) instead of to nearest."""
    start = time.perf_counter()
    if rounding not in ROUNDINGS:
        raise QshardError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    src, out = Path(src), Path(out_dir)
    check_new_folder(out, force, [src])  # before the search, which takes long
    say = progress or (lambda _text: None)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    own = runner is None
    runner = runner or TfjsRunner(backend)
    try:
        with temporary_folder(f"{out.name}-search", parent) as tmp:  # locked, so that no other run removes it
            s = _Search(src, samples, runner, tmp, equalize, say, bias_correct, rounding)
            result = search(s, min_cosine)
            result.bias_corrected = s.means is not None
    finally:
        if own:
            runner.close()
    result.report = quantize_graph_model(src, out, equalize=equalize, input_means=s.means, rounding=s.rounding,
                                         force=force, **_flags(result.choice))
    result.seconds = time.perf_counter() - start
    return result


def search(s, min_cosine: float) -> MixedResult:
    """Steps 1-4 over a search state `s` (a Candidates with kinds, ladder(name) and level(levels);
    optionally small, give_back_share and keep_bias_correction_if_it_helps(base, cos)): graph models
    use _Search, layers models their own."""
    small = getattr(s, "small", set())
    base = s.level({})
    (cos,) = s.cosines([base], "smallest")
    keep = getattr(s, "keep_bias_correction_if_it_helps", None)
    cos = keep(base, cos) if keep else cos
    result = MixedResult(base, cos, s.bytes(base), s.bytes({n: "uint8" for n in s.kinds}), 0, 0.0)
    if cos < min_cosine:
        measured = [n for n in s.kinds if n not in small]
        alone = [{**{m: "float32" for m in s.kinds}, n: base[n]} for n in measured]
        result.damage = dict(zip(measured, (1.0 - c for c in s.cosines(alone, "sensitivity"))))
        cost = {n: s.sizes[n] * (BYTES[s.ladder(n)[1]] - BYTES[base[n]]) for n in measured}
        result.ranking = sorted(measured, key=lambda n: -result.damage[n] / max(cost[n], 1))
        result.choice, cos = widen(s, result.ranking, min_cosine)
        if cos >= min_cosine:
            min_saving = getattr(s, "give_back_share", 0.0) * result.uint8_bytes
            result.choice, cos = give_back(s, result.choice, cos, min_cosine, min_saving)
    for level in ("uint8", "uint16"):  # the small group as narrow as the budget allows
        if cos < min_cosine or not small or any(result.choice[n] == level for n in small):
            break
        narrow = dict(result.choice, **{n: level for n in small})
        (c,) = s.cosines([narrow], f"small-{level}")
        if c >= min_cosine:
            result.choice, cos = narrow, c
            break
    result.cosine, result.bytes, result.met = cos, s.bytes(result.choice), cos >= min_cosine
    result.evaluations = s.evaluations
    return result


def widen(s, ranking: List[str], min_cosine: float) -> tuple:
    """(choice, cosine): the shortest prefix of the ranking that keeps the budget when widened one
    level (the rest at the smallest), else two levels (the rest one level wider, the small group
    float32 too: outputs such as decoded detections may need every weight exact), found by
    bisection; if even the whole ranking at float32 misses, that (the float model's own weights)."""
    small = getattr(s, "small", set())
    for level in (1, 2):
        def choice(k: int, level=level) -> Dict[str, str]:
            wide = {n: 2 for n in small} if level == 2 else {}
            return s.level({**wide, **{n: level if i < k else level - 1 for i, n in enumerate(ranking)}})
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


def give_back(s, choice: Dict[str, str], cos: float, min_cosine: float, min_saving: float = 0.0) -> tuple:
    """(choice, cosine) after narrowing widened weights one level where the budget still holds, the
    largest saving first (savings under min_saving bytes are not worth an evaluation; the small
    group, which starts one level up, is left to search)."""
    small = getattr(s, "small", set())
    level = {n: s.ladder(n).index(c) for n, c in choice.items()}
    saving = {n: s.sizes[n] * (BYTES[choice[n]] - BYTES[s.ladder(n)[level[n] - 1]])
              for n in choice if level[n] > int(n in small)}
    saving = {n: v for n, v in saving.items() if v >= min_saving}
    for n in sorted(saving, key=lambda n: -saving[n]):
        trial = dict(choice, **{n: s.ladder(n)[level[n] - 1]})
        (c,) = s.cosines([trial], "give-back")
        if c >= min_cosine:
            choice, cos = trial, c
    return choice, cos
