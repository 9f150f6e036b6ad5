"""The smallest tfjs layers model that keeps a fidelity budget on sample inputs, run in stock tfjs.

The layers format stores one per-tensor grid per weight and tfjs-layers builds the layers itself, so
per weight the choice is uint8, then uint16 or float16 (whichever keeps more SQNR for that weight:
float16 for values spread over orders of magnitude, such as batch-norm variances), then float32.
The search is graph models' (qshard.graph.mixed.search: everything at uint8, each weight alone to rank
them by damage per byte, the shortest prefix of the ranking widened found by bisection, then give
back), every candidate written as a layers model and run in tfjs. With equalize=True the weights are
first equalized across layer pairs (qshard.layers.equalize), which keeps the function and topology;
with bias_correction=True each candidate's biases take out the mean shift its quantized kernels cause
on the samples (qshard.layers.bias), so the search sees, and writes, the corrected model.
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from ..accuracy.tfjs_runner import TfjsRunner, require_finite
from ..accuracy.weight_error import tensor_error
from ..accuracy.web_data import Samples
from ..accuracy.web_eval import write_float32
from ..errors import ModelInputError
from ..formats.outputs import check_new_folder, temporary_folder
from ..formats.webmodel import QuantizeReport, write_model
from ..graph.mixed import Candidates, MixedResult, search
from ..tfjs import WebModel, quantize_model, read_weights
from .bias import corrected, find_targets, input_means
from .equalize import equalize as equalize_pairs
from .equalize import find_pairs, read_layers

Say = Callable[[str], None]


def is_layers_model(path: Union[str, os.PathLike]) -> bool:
    """Whether the model JSON at path (or in the folder) is a tfjs layers model."""
    document = WebModel(path, check=False).file.document or {}  # (a weights manifest has none)
    topology = document.get("modelTopology")
    fmt = document.get("format")
    return fmt == "layers-model" or (fmt is None and isinstance(topology, dict) and "node" not in topology)


def _layers_model(src: Union[str, os.PathLike]) -> WebModel:
    """The web model at src, which must be a layers model."""
    given = WebModel(src)
    if not is_layers_model(given.file.path):
        raise ModelInputError(f"{given.file.path}: not a tfjs layers model (format {given.file.document.get('format')})")
    return given


def quantize_equalized(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], **patterns) -> tuple:
    """Equalize a layers model's weights across layer pairs, then quantize them per the patterns
    (quantize_model's keywords) into out_dir; (QuantizeReport, 'producer -> reader' per pair)."""
    given = _layers_model(src)
    out = Path(out_dir)
    check_new_folder(out, patterns.get("force", False), given.files())
    folder = out.parent if str(out.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    with temporary_folder(f"{out.name}-equalize", folder) as tmp:
        pairs = write_equalized(given.file.path, Path(tmp) / "model")
        return quantize_model(Path(tmp) / "model", out, **patterns), pairs


def write_equalized(src: Path, out: Path) -> List[str]:
    """src's weights as float32, equalized across layer pairs, into out; 'producer -> reader' per pair."""
    model = WebModel(src)
    values = read_weights(src)
    layers, outputs = read_layers(model.file.document, str(model.file.path))
    pairs = equalize_pairs(find_pairs(layers, outputs), values)
    write_float32(src, out, values)
    return [f"{p.producer.name} -> {p.reader.name}" for p in pairs]


class LayersSearch(Candidates):
    """The search state qshard.graph.mixed.search works on, for a layers model: candidates are
    written from the float32 (possibly equalized) weights, biases corrected for each candidate's
    kernels when bias_correction is given (targets and input means, qshard.layers.bias)."""

    def __init__(self, reference: Path, floats: Path, samples: Samples, runner: TfjsRunner, work: Path, say: Say,
                 bias_correction: Optional[tuple] = None, source: Optional[Path] = None):
        self.samples, self.runner, self.work, self.say = samples, runner, work, say
        self.evaluations = 0
        self.decoded = []  # decoded outputs are found among graph nodes; a layers model has none
        self.bias_correction = bias_correction
        self.reference = runner.run(reference, samples.inputs).outputs
        runner.unload(reference)
        require_finite(self.reference, source or reference)
        model = WebModel(floats)
        self.values = read_weights(floats)
        self.document = {k: v for k, v in model.file.document.items() if k != "weightsManifest"}
        self.names = [s.name for s in model.specs]
        specs = [s for s in model.specs if s.dtype == "float32" and s.size > 1]
        errors = {s.name: tensor_error(s.name, self.values[s.name]) for s in specs}
        # The 2-byte level: uint16 unless float16 keeps more SQNR (NaN/Inf tensors stay float32 anyway).
        self.kinds = {n: "float16" if (e.sqnr("float16") or 0) > (e.sqnr("uint16") or 0) else "uint16"
                      for n, e in errors.items()}
        self.sizes = {s.name: s.size for s in specs}

    def ladder(self, name: str) -> tuple:
        return ("uint8", self.kinds[name], "float32")

    def level(self, levels: Dict[str, int]) -> Dict[str, str]:
        return {n: self.ladder(n)[levels.get(n, 0)] for n in self.kinds}

    def write(self, choice: Dict[str, str], folder: Path, force: bool = False, inputs=()) -> QuantizeReport:
        """The candidate `choice` as a layers model in folder; the QuantizeReport."""
        values = corrected(self.values, *self.bias_correction, choice) if self.bias_correction else self.values
        report, _ = QuantizeReport.plan(self.names, folder, None, None, None, None)
        targets = {n: d for n, d in choice.items() if d != "float32"}
        return write_model(self.document, [(n, values[n]) for n in self.names], folder, report, targets,
                           force=force, inputs=inputs)

    def candidate(self, choice: Dict[str, str], folder: Path) -> Path:
        self.write(choice, folder)
        return folder


@dataclass
class LayersMixedResult(MixedResult):
    """What search_layers_model chose, with the weight-side transforms done first."""

    equalized: List[str] = field(default_factory=list)  # 'producer -> reader' per pair
    bias_corrected: List[str] = field(default_factory=list)  # the layers whose bias (or batch norm) takes a shift


def search_layers_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], samples: Samples, *,
                        min_cosine: float = 0.999, runner: Optional[TfjsRunner] = None, backend: str = "cpu",
                        equalize: bool = False, bias_correction: bool = False, force: bool = False,
                        progress: Optional[Say] = None) -> LayersMixedResult:
    """Write the smallest layers model found whose worst-sample cosine to the float model, run in stock
    tfjs on `samples`, is >= min_cosine; per weight uint8, uint16 or float16, or float32; optionally
    after cross-layer equalization, and with every candidate's biases corrected for its kernels'
    quantization error from the samples' means."""
    start = time.perf_counter()
    src, out = Path(src), Path(out_dir)
    given = _layers_model(src)
    check_new_folder(out, force, given.files())  # before the search, which takes long
    say = progress or (lambda _text: None)
    folder = out.parent if str(out.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        runner = runner or stack.enter_context(TfjsRunner(backend))
        tmp = Path(stack.enter_context(temporary_folder(f"{out.name}-search", folder)))  # locked against other runs
        say("writing the float32 model")
        reference, floats = tmp / "float32", tmp / "start"
        write_float32(given.file.path, reference)
        pairs = write_equalized(reference, floats) if equalize else []
        start_from = floats if equalize else reference
        correction = None
        if bias_correction:
            say("measuring the layers' input means")
            model = WebModel(start_from)
            targets = find_targets(*read_layers(model.file.document, str(model.file.path)), read_weights(start_from))
            correction = (targets, input_means(start_from, targets, samples, runner, tmp))
        s = LayersSearch(reference, start_from, samples, runner, tmp, say, correction, source=given.file.path)
        found = search(s, min_cosine)
        found.report = s.write(found.choice, out, force=force, inputs=given.files())
    result = LayersMixedResult(**{f.name: getattr(found, f.name) for f in fields(MixedResult)})
    result.equalized = pairs
    result.bias_corrected = sorted(correction[1]) if correction else []
    result.seconds = time.perf_counter() - start
    return result


def _listed(items: List[str], shown: int = 6) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def describe(result: LayersMixedResult) -> List[str]:
    """Lines on the weight-side transforms done, for the command's output."""
    lines = []
    if result.equalized:
        lines.append(f"equalized {len(result.equalized)} layer pair(s): {_listed(result.equalized)}")
    if result.bias_corrected:
        lines.append(f"bias-corrected {len(result.bias_corrected)} layer(s): {_listed(result.bias_corrected)}")
    return lines

