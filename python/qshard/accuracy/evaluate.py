"""Does the model still work? Accuracy (or MAE) of a Keras model in float32 and in every way qshard
and TFLite can shrink it, and a search for the smallest per-weight dtype assignment that stays
within an accuracy budget.

- tfjs variants (uint16, uint8, float16, or a per-weight mix): the weights are quantized and
  dequantized exactly as qshard writes them and tfjs reads them, put back into the Keras model,
  and the model is run by Keras; the artifact sizes are those of the web model qshard writes.
- TFLite variants: converted with qshard.tflite and run by the TFLite interpreter.

Metrics: "accuracy" (percent; argmax over the last axis, or > 0.5 for one sigmoid output) or "mae"
(mean absolute error). Data: an .npz with arrays x and y.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from qshard import dtypes
from qshard.accuracy.weight_error import roundtrip, tensor_error
from qshard.errors import EvalError
from qshard.formats.outputs import temporary_folder
from qshard.formats.summary import gzipped_size

TFJS_VARIANTS = ("float32", "uint16", "uint8", "float16")
BYTES = dtypes.STORED_ITEMSIZE
METRICS = ("accuracy", "mae")




# --------------------------------------------------------------------------------------------------
# Data and metrics.

@dataclass
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray
    metric: str = "accuracy"
    calibration: Optional[np.ndarray] = None  # inputs for TFLite's calibrated modes (default: x)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise EvalError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if len(self.x) != len(self.y) or len(self.x) == 0:
            raise EvalError(f"{self.name}: x has {len(self.x)} samples and y {len(self.y)}; need the same, > 0")


def load_dataset(path: Union[str, os.PathLike], metric: str = "accuracy") -> Dataset:
    """A labelled data set from an .npz with arrays x and y (and optionally calibration), checked:
    finite values, class labels for accuracy, as many labels as samples."""
    from qshard.accuracy.data import labelled
    x, y, calibration = labelled(path, metric)
    return Dataset(Path(path).name, x, y, metric, calibration)


def score(pred: np.ndarray, y: np.ndarray, metric: str) -> float:
    """accuracy in percent, or mean absolute error."""
    pred = np.asarray(pred, np.float64)
    y = np.asarray(y)
    if metric == "mae":
        return float(np.mean(np.abs(pred.reshape(len(y), -1) - y.reshape(len(y), -1).astype(np.float64))))
    if pred.ndim == 2 and pred.shape[1] == 1 or pred.ndim == 1:
        labels = (pred.reshape(-1) > 0.5).astype(np.int64)
    else:
        labels = pred.reshape(len(pred), -1).argmax(axis=1)
    truth = y.reshape(len(y), -1).argmax(axis=1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
    return float(100.0 * np.mean(labels == truth.astype(np.int64)))


def worse_by(metric: str, base: float, value: float) -> float:
    """How much worse value is than base: accuracy points lost, or MAE gained."""
    return base - value if metric == "accuracy" else value - base


# --------------------------------------------------------------------------------------------------
# A Keras model whose weights can be swapped for quantized ones.

def _stateful_layers(model, variables) -> Dict[int, list]:
    """id(variable) -> the layers that hold a constant copy of it (Keras' adapted Normalization)."""
    import keras
    ids = {id(v) for v in variables}
    out: Dict[int, list] = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Normalization):
            for v in layer.weights:
                if id(v) in ids:
                    out.setdefault(id(v), []).append(layer)
    return out


class Evaluator:
    """Runs a Keras 3 model on a data set with any per-weight dtype assignment; counts the runs."""

    def __init__(self, model, data: Dataset, batch: int = 256):
        from qshard.keras.load import keras_variables
        from qshard.accuracy.data import check_fits
        check_fits(model, data.x, data.y, data.metric, data.name)
        self.model = model
        self.data = data
        self.batch = batch
        self.variables = keras_variables(model)
        self.original = {name: np.array(v.numpy()) for name, v in self.variables}
        # Only float32 weights are quantized (as the writer does).
        self.names = [n for n, a in self.original.items() if a.dtype == np.float32 and a.size > 0]
        self.evaluations = 0
        self._cache: Dict[Tuple[str, str], np.ndarray] = {}
        # Layers that copy their variables into constants when built (Keras' adapted Normalization):
        # a new value reaches predict only through finalize_state() and a re-traced predict function.
        self._restate = _stateful_layers(model, [v for _, v in self.variables])

    def weights(self, assignment: Dict[str, str]) -> Dict[str, np.ndarray]:
        out = dict(self.original)
        for name, dtype in assignment.items():
            if dtype != "float32":
                key = (name, dtype)
                if key not in self._cache:
                    self._cache[key] = roundtrip(self.original[name], dtype)
                out[name] = self._cache[key]
        return out

    def predict(self, assignment: Dict[str, str]) -> np.ndarray:
        """The model's outputs with the assigned weights quantized; only those are swapped in, and
        put back after (the model holds its original weights between calls)."""
        values = self.weights(assignment)
        swapped = [(name, variable) for name, variable in self.variables if values[name] is not self.original[name]]
        restate = {id(layer): layer for _, v in swapped for layer in self._restate.get(id(v), ())}
        try:
            for name, variable in swapped:
                variable.assign(values[name])
            self._refresh(restate.values())
            return np.asarray(self.model.predict(self.data.x, batch_size=self.batch, verbose=0))
        finally:
            for name, variable in swapped:
                variable.assign(self.original[name])
            self._refresh(restate.values())

    def _refresh(self, layers) -> None:
        layers = list(layers)
        for layer in layers:
            layer.finalize_state()
        if layers:
            self.model.predict_function = None  # its trace holds the old constants

    def score(self, assignment: Dict[str, str]) -> float:
        self.evaluations += 1
        return score(self.predict(assignment), self.data.y, self.data.metric)

    def nbytes(self, assignment: Dict[str, str]) -> int:
        return sum(self.original[n].size * BYTES[assignment.get(n, "float32")] for n in self.names)


def _artifact_sizes(files: Sequence[Path]) -> Tuple[int, int]:
    raw = sum(f.stat().st_size for f in files)
    return raw, sum(gzipped_size(f) for f in files)


def web_model_sizes(model, assignment: Dict[str, str]) -> Tuple[int, int]:
    """(bytes, gzip bytes) of the tfjs web model qshard writes for this assignment."""
    from qshard.keras.convert import save_web_model
    with temporary_folder("qshard-eval") as tmp:
        out = tmp / "m"
        save_web_model(model, out, targets=assignment)
        return _artifact_sizes(sorted(out.iterdir()))


# --------------------------------------------------------------------------------------------------
# The table.

@dataclass
class Cell:
    variant: str
    value: float
    bytes: int
    gzip_bytes: int


@dataclass
class Row:
    model: str
    data: str
    metric: str
    cells: List[Cell] = field(default_factory=list)


def evaluate(model, data: Dataset, name: str = "model", tflite_modes: Sequence[str] = (),
             progress: Optional[Callable[[str], None]] = None) -> Row:
    """One row of the table: float32, uint16, uint8 and float16 through the tfjs path, then each
    TFLite mode through the interpreter."""
    ev = Evaluator(model, data)
    row = Row(name, data.name, data.metric)
    for variant in TFJS_VARIANTS:
        if progress:
            progress(f"{name}: tfjs {variant}")
        assignment = {n: variant for n in ev.names}
        raw, gz = web_model_sizes(model, assignment)
        row.cells.append(Cell(variant, ev.score(assignment), raw, gz))
    if tflite_modes:
        from qshard import tflite
        calibration = data.calibration if data.calibration is not None else data.x
        for mode in tflite_modes:
            if progress:
                progress(f"{name}: TFLite {mode}")
            flatbuffer = tflite.convert(model, mode, calibration)
            pred = tflite.run(flatbuffer, data.x)
            row.cells.append(Cell(f"tflite:{mode}", score(pred, data.y, data.metric), len(flatbuffer),
                                  len(gzip.compress(flatbuffer, 6))))
    return row


def _fmt_value(metric: str, v: float) -> str:
    return f"{v:.2f}%" if metric == "accuracy" else f"{v:.4g}"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}K" if n < 1024 * 1024 else f"{n / (1024 * 1024):.2f}M"


def format_table(rows: List[Row]) -> str:
    variants = []
    for r in rows:
        for c in r.cells:
            if c.variant not in variants:
                variants.append(c.variant)
    width = max(12, *(len(v) + 1 for v in variants))
    label = max([len("model / data (metric)")] + [len(f"{r.model} / {r.data} ({r.metric})") for r in rows])
    head = f"{'model / data (metric)':<{label}}" + "".join(f"{v:>{width}}" for v in variants)
    lines = [head, "-" * len(head)]
    for r in rows:
        by = {c.variant: c for c in r.cells}
        lines.append(f"{r.model + ' / ' + r.data + ' (' + r.metric + ')':<{label}}"
                     + "".join(f"{_fmt_value(r.metric, by[v].value) if v in by else '-':>{width}}" for v in variants))
        lines.append(f"{'  size':<{label}}" + "".join(f"{_kb(by[v].bytes) if v in by else '-':>{width}}"
                                                      for v in variants))
        lines.append(f"{'  gzip':<{label}}" + "".join(f"{_kb(by[v].gzip_bytes) if v in by else '-':>{width}}"
                                                      for v in variants))
    return "\n".join(lines)


def to_json(rows: List[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)


# --------------------------------------------------------------------------------------------------
# Culprits and mixed precision.

@dataclass
class Decision:
    name: str
    dtype: str
    size: int
    alone_uint8: Optional[float]      # how much worse the model gets with only this weight at uint8
    sqnr_uint8: Optional[float]
    reason: str


@dataclass
class SearchResult:
    metric: str
    budget: float
    float32: float
    all_uint8: float
    result: float
    assignment: Dict[str, str]
    decisions: List[Decision]
    evaluations: int
    bytes_float32: int
    bytes_all_uint8: int
    bytes_result: int
    met: bool


FLAG_DB = 20.0  # the cheap first cut: a weight whose worst uint8 channel (or whole tensor) is below this


def _suspect_db(e) -> float:
    """The uint8 SQNR that decides suspicion: the worst channel's for 2+-D tensors, else the tensor's."""
    channel = e.channel_sqnr("uint8")
    return min(e.sqnr("uint8"), channel) if channel is not None else e.sqnr("uint8")


def search(model, data: Dataset, budget: float, progress: Optional[Callable[[str], None]] = None,
           first_cut: bool = True) -> SearchResult:
    """The smallest per-weight dtype assignment found whose metric is at most `budget` worse than
    float32's (accuracy points, or MAE). Weights start at uint8.

    1. Cheap first cut (first_cut=True): widen every weight whose uint8 error flags it (worst-channel
       SQNR below FLAG_DB) in one evaluation; if that meets the budget, skip step 2.
    2. Otherwise measure each weight's sensitivity (how much worse the model gets with only that
       weight at uint8), and widen the most sensitive in turn (ties: lower SQNR first) until the
       budget holds; float32 if 2 bytes are not enough.
    Widening picks uint16 or float16, whichever keeps more SQNR for that weight. Finally each
    widened weight is tried at uint8 again, least suspicious first, and left there if the budget
    still holds."""
    if budget < 0 or not math.isfinite(budget):
        raise EvalError(f"budget must be a finite number >= 0, not {budget}")
    ev = Evaluator(model, data)
    metric = data.metric
    say = progress or (lambda text: None)
    base = ev.score({})
    errors = {n: tensor_error(n, ev.original[n]) for n in ev.names}
    all8 = {n: "uint8" for n in ev.names}
    v8 = ev.score(all8)
    wide = {n: ("uint16" if errors[n].sqnr("uint16") >= errors[n].sqnr("float16") else "float16") for n in ev.names}

    def ok(value: float) -> bool:
        return worse_by(metric, base, value) <= budget + 1e-9

    alone: Dict[str, float] = {}
    assignment, result = dict(all8), v8
    widened: List[str] = []
    flagged = sorted((n for n in ev.names if _suspect_db(errors[n]) < FLAG_DB), key=lambda n: _suspect_db(errors[n]))
    if not ok(v8) and first_cut and flagged:
        trial = dict(all8, **{n: wide[n] for n in flagged})
        value = ev.score(trial)
        say(f"widened the {len(flagged)} flagged weight(s): {_fmt_value(metric, value)}")
        if ok(value):
            assignment, result, widened = trial, value, list(flagged)
    if not ok(result):
        assignment, result, widened = dict(all8), v8, []
        for i, n in enumerate(ev.names):
            say(f"sensitivity {i + 1}/{len(ev.names)}: {n}")
            alone[n] = worse_by(metric, base, ev.score({n: "uint8"}))
        order = sorted(ev.names, key=lambda n: (-alone[n], errors[n].sqnr("uint8")))
        for n in order:
            assignment[n] = wide[n]
            widened.append(n)
            result = ev.score(assignment)
            say(f"widened {n} to {wide[n]}: {_fmt_value(metric, result)}")
            if ok(result):
                break
        if not ok(result):
            for n in order:
                assignment[n] = "float32"
                result = ev.score(assignment)
                if ok(result):
                    break
    # Prune: give back what is not needed, least sensitive (or least suspicious) first.
    for n in sorted(widened, key=lambda n: (alone.get(n, 0.0), -_suspect_db(errors[n]))):
        if assignment[n] == "uint8" or len(widened) == 1:
            continue  # (giving back the only widened weight is all-uint8, which failed)
        trial = dict(assignment, **{n: "uint8"})
        value = ev.score(trial)
        if ok(value):
            assignment, result = trial, value
            say(f"{n} back to uint8: {_fmt_value(metric, value)}")
    unit = "pt accuracy" if metric == "accuracy" else "MAE"
    decisions = []
    for n in ev.names:
        dtype = assignment[n]
        a, s, channel = alone.get(n), errors[n].sqnr("uint8"), errors[n].channel_sqnr("uint8")
        figures = f"SQNR {s:.1f} dB" + (f", worst channel {channel:.1f} dB" if channel is not None else "")
        if dtype == "uint8":
            reason = "uint8 is within the budget"
        elif a is None:
            reason = f"its uint8 error flags it ({figures}); kept as {dtype} to meet the budget"
        else:
            reason = f"alone at uint8 it costs {a:.3g} {unit} ({figures}); kept as {dtype} to meet the budget"
        decisions.append(Decision(n, dtype, int(ev.original[n].size), a, s, reason))
    return SearchResult(metric, budget, base, v8, result, assignment, decisions, ev.evaluations,
                        ev.nbytes({}), ev.nbytes(all8), ev.nbytes(assignment), ok(result))


def format_search(r: SearchResult) -> str:
    unit = "accuracy points" if r.metric == "accuracy" else "MAE"
    lines = [f"float32: {_fmt_value(r.metric, r.float32)}   all uint8: {_fmt_value(r.metric, r.all_uint8)}   "
             f"mixed: {_fmt_value(r.metric, r.result)}   (budget: at most {r.budget:g} {unit} worse; "
             f"{'met' if r.met else 'NOT met'})",
             f"weights: {_kb(r.bytes_float32)} float32, {_kb(r.bytes_all_uint8)} all uint8, "
             f"{_kb(r.bytes_result)} mixed; {r.evaluations} model evaluations"]
    wider = [d for d in r.decisions if d.dtype != "uint8"]
    if wider:
        lines.append("kept wider than uint8:")
        for d in wider:
            lines.append(f"  {d.name}: {d.dtype} ({d.reason})")
    else:
        lines.append("every weight is uint8")
    return "\n".join(lines)
