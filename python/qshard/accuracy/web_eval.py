"""`qshard eval WEB_MODEL`: a tfjs graph or layers model and every variant qshard writes of it, run
in stock tfjs (Node) on the same samples; per variant its fidelity to the float model's outputs
(qshard.accuracy.fidelity), weight and gzip bytes, and the task metric when labels are given.

The float model is the given one with every weight as float32 (a model published with float16 or
uint8 weights is dequantized, exactly as tfjs does when it loads it). A variant is a function that
writes a model folder from that float32 folder: add one to VARIANTS (or pass your own mapping) to
get a column in the table.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import ModelInputError
from ..formats.outputs import temporary_folder
from ..formats.summary import gzipped_size
from ..tfjs import WebModel, atomic_folder, quantize_model, read_weights, write_weights
from . import fidelity
from .evaluate import score
from .graph_outputs import decoded_outputs
from .tfjs_runner import TfjsRunner
from .web_data import Samples, load_samples, synthesize

PathLike = Union[str, os.PathLike]
Variant = Callable[[Path, Path], None]  # (float32 model folder, output folder that must not exist)
METRICS = ("accuracy", "mae")


def write_float32(src: Path, out: Path, values: Optional[Dict[str, object]] = None) -> None:
    """Every weight of src as float32 (quantized ones dequantized as tfjs does), or as `values` gives
    it (by name), into out."""
    model = WebModel(src)
    values = values if values is not None else read_weights(src)
    groups = [[(w.name, values[w.name]) for w in g.weights] for g in model.file.groups]
    with atomic_folder(out, False) as tmp:
        manifest = write_weights(groups, tmp, write_manifest=False)
        doc = dict(model.file.document)
        doc["weightsManifest"] = manifest
        (tmp / "model.json").write_text(json.dumps(doc))


VARIANTS: Dict[str, Variant] = {
    "float32": write_float32,
    "float16": lambda src, out: quantize_model(src, out, float16=True),
    "uint16": lambda src, out: quantize_model(src, out, uint16=True),
    "uint8": lambda src, out: quantize_model(src, out, uint8=True),
}
DEFAULT_VARIANTS = tuple(VARIANTS)


def _per_channel(**how) -> Variant:
    def write(src: Path, out: Path) -> None:
        from ..graph.per_channel_model import quantize_graph_model  # graph.mixed imports this module
        quantize_graph_model(src, out, **how)
    return write


# Graph models only (not in the default list): filters per channel, every other weight per tensor.
VARIANTS.update({"per-channel-uint8": _per_channel(per_channel=True, uint8=True),
                 "per-channel-uint16": _per_channel(per_channel_uint16=True, uint16=True)})


def _equalized_uint8(src: Path, out: Path) -> None:
    from ..layers.mixed import is_layers_model, quantize_equalized
    if is_layers_model(src):
        quantize_equalized(src, out, uint8=True)
    else:
        _per_channel(equalize=True, uint8=True)(src, out)


# Graph or layers models (not in the default list): cross-layer equalization, then per-tensor uint8.
VARIANTS["equalized-uint8"] = _equalized_uint8


@dataclass
class VariantResult:
    """One row of the table."""

    name: str
    weight_bytes: int
    gzip_bytes: int
    fidelity: fidelity.Fidelity
    metric: Optional[float] = None
    seconds: Optional[float] = None  # median of the timed predicts (one sample)


@dataclass
class WebEval:
    """The whole evaluation: the model, the samples used, one row per variant."""

    model: str
    format: str
    backend: str
    tfjs: str
    samples: str
    sample_count: int
    synthetic: bool
    metric: Optional[str]
    output: Optional[str]
    decoded: List[str]
    given_bytes: int
    given_dtypes: Dict[str, int]
    rows: List[VariantResult] = field(default_factory=list)


def model_bytes(folder: PathLike) -> tuple:
    """(bytes, gzip bytes) of a web model's shard files."""
    model = WebModel(folder)
    paths = [model.file.path.parent / p for g in model.file.groups for p in g.paths]
    return sum(p.stat().st_size for p in paths), sum(gzipped_size(p) for p in paths)


def _stored_dtypes(folder: PathLike) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for spec in WebModel(folder).specs:
        key = spec.quantization.dtype if spec.quantization else spec.dtype
        counts[key] = counts.get(key, 0) + 1
    return counts


def _pick_output(outputs: Sequence[str], wanted: Optional[str], model: str) -> str:
    if wanted is not None:
        if wanted not in outputs:
            raise ModelInputError(f"{model}: no output '{wanted}' (outputs: {', '.join(outputs)})")
        return wanted
    if len(outputs) != 1:
        raise ModelInputError(f"{model}: the labels 'y' need one output to score, and the model has "
                              f"{len(outputs)} ({', '.join(outputs)}): choose one with --output")
    return outputs[0]


def time_predicts(runner: TfjsRunner, models: Sequence[PathLike], samples: Samples, repeats: int) -> List[float]:
    """Median seconds of one predict (the first sample) per model; the models take turns, round after
    round, so drifts in machine speed hit all alike; one warm-up round first, untimed."""
    first = {k: v[:1] for k, v in samples.inputs.items()}
    seconds: List[List[float]] = [[] for _ in models]
    for round_ in range(repeats + 1):
        for i, model in enumerate(models):
            took = runner.run(model, first, batch=False).seconds
            if round_:
                seconds[i].extend(took)
    return [statistics.median(s) for s in seconds]


def evaluate_web_model(model_dir: PathLike, data: Optional[PathLike] = None,
                       variants: Union[Sequence[str], Mapping[str, Variant]] = DEFAULT_VARIANTS,
                       backend: str = "cpu", *, metric: str = "accuracy", output: Optional[str] = None,
                       synthetic_count: int = 8, repeats: int = 0, runner: Optional[TfjsRunner] = None,
                       samples: Optional[Samples] = None, progress: Optional[Callable[[str], None]] = None) -> WebEval:
    """Run the float model and each variant in stock tfjs on the samples; the table of figures."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if not isinstance(variants, Mapping):
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
        variants = {v: VARIANTS[v] for v in variants}
    say = progress or (lambda _text: None)
    given = WebModel(model_dir).file.path
    own = runner is None
    runner = runner or TfjsRunner(backend)
    try:
        with temporary_folder("qshard-eval") as work:
            stored = _stored_dtypes(given)
            as_float = set(stored) <= {"float32", "int32", "bool", "string"} and given.name == "model.json"
            reference = given.parent if as_float else None
            if reference is None:  # variants are written from (and compared with) a model.json folder
                say("writing the float32 model")
                reference = work / "float32"
                write_float32(given, reference)
            info = runner.load(reference)
            if samples is None:
                samples = load_samples(data, info) if data is not None else synthesize(info, synthetic_count)
            keys = [o.key for o in info.outputs]
            scored = _pick_output(keys, output, str(given)) if samples.labels is not None else None
            table = WebEval(str(given), info.format, runner.backend, runner.tfjs_version, samples.source,
                            samples.count, samples.synthetic, metric if scored else None, scored,
                            decoded_outputs(info.path, keys), model_bytes(given)[0], stored)
            say("running the float32 model")
            base = runner.run(reference, samples.inputs).outputs
            folders = {}
            for name, write in variants.items():
                folder = reference if name == "float32" and as_float else work / name
                if not folder.exists():
                    say(f"writing {name}")
                    write(reference, folder)
                say(f"running {name}")
                outputs = base if folder == reference else runner.run(folder, samples.inputs).outputs
                size, gz = model_bytes(folder)
                table.rows.append(VariantResult(
                    name, size, gz, fidelity.compare(base, outputs, table.decoded),
                    score(outputs[scored], samples.labels, metric) if scored else None))
                folders[name] = folder
            if repeats:
                say("timing")
                for row, seconds in zip(table.rows, time_predicts(runner, list(folders.values()), samples, repeats)):
                    row.seconds = seconds
            for folder in {reference, *folders.values()}:
                runner.unload(folder)
    finally:
        if own:
            runner.close()
    return table


# --------------------------------------------------------------------------------------------------
# Output.

def _num(v: Optional[float], digits: int = 6) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def format_web_eval(t: WebEval) -> str:
    """The table as text, with what the figures were measured on."""
    lines = [f"{t.model} ({t.format}), tfjs {t.tfjs} {t.backend} backend, {t.sample_count} samples",
             f"samples: {t.samples}"]
    if t.synthetic:
        lines.append("note: no --data given; fidelity on made-up inputs is a guess (give real samples)")
    dtypes = ", ".join(f"{n} {d}" for d, n in sorted(t.given_dtypes.items()))
    lines.append(f"as given: {_size(t.given_bytes)} of weights ({dtypes})")
    if t.decoded:
        lines.append(f"decoded outputs (rows matched, not in the cosine): {', '.join(t.decoded)}")
    rows = [r.fidelity for r in t.rows]
    cols = [("variant", lambda r: r.name), ("weights", lambda r: _size(r.weight_bytes)),
            ("gzip", lambda r: _size(r.gzip_bytes)),
            ("worst cos", lambda r: _num(r.fidelity.worst_cosine)),
            ("max rel err", lambda r: _num(r.fidelity.max_rel_error, 5))]
    for label, attr in (("top-1", "top1_agreement"), ("rows", "rows_matched"), ("exact", "exact_agreement")):
        if any(getattr(f, attr) is not None for f in rows):
            cols.append((label, lambda r, a=attr: _num(getattr(r.fidelity, a), 3)))
    if t.metric:
        cols.append((f"{t.metric} ({t.output})", lambda r: _num(r.metric, 2 if t.metric == "accuracy" else 5)))
    if any(r.seconds is not None for r in t.rows):
        cols.append(("ms/predict", lambda r: _num(None if r.seconds is None else r.seconds * 1e3, 1)))
    cells = [[label for label, _ in cols]] + [[get(r) for _, get in cols] for r in t.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    worst = {}
    for r in t.rows:
        for o in r.fidelity.outputs:
            if o.worst_cosine is not None and (o.name not in worst or o.worst_cosine < worst[o.name][1]):
                worst[o.name] = (r.name, o.worst_cosine)
    if len(worst) > 1:
        lines.append("worst cosine per output: " + ", ".join(f"{k} {_num(v[1], 4)} ({v[0]})"
                                                             for k, v in worst.items()))
    return "\n".join(lines)


def web_eval_json(t: WebEval) -> dict:
    """The table as plain JSON values."""
    out = {k: v for k, v in asdict(t).items() if k != "rows"}
    out["rows"] = [dict(name=r.name, weight_bytes=r.weight_bytes, gzip_bytes=r.gzip_bytes, metric=r.metric,
                        seconds=r.seconds, **fidelity.summary_dict(r.fidelity)) for r in t.rows]
    return out
