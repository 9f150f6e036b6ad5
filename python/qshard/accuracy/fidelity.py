"""How closely a shrunk model's outputs follow its float model's, over a set of samples.

Every output is compared sample by sample (float64 arithmetic) and falls in one of three kinds:
- "float": raw float outputs (logits, probabilities, embeddings, heatmaps, anchor scores). Measures:
  cosine per sample (worst and mean), the max relative error max|y - y0| / max|y0| over all
  samples, and, when a sample's output is a vector of several scores (a classifier's softmax or
  logits), top-1 agreement: the share of samples whose argmax is unchanged.
- "decoded": float outputs the graph computes through ArgMax / TopK / NonMaxSuppression / Where
  (decoded detections and keypoints). A small change can swap two detections or move a peak by a
  cell, which makes the cosine drop whatever the bit width, so these do not count in the headline
  cosine while a model has raw float outputs. Their measure is rows matched: the share of the float
  model's rows (detections, keypoints: the last axis is one row) that the variant reproduces in any
  order, every column within 1% of that column's largest magnitude in the float outputs.
- "integer": int32 and bool outputs (class ids, indices, counts, masks). Cosine means nothing for
  them; the measure is exact agreement, the share of samples whose output is identical.
A model's summary takes the worst over its outputs of each measure: cosine and relative error over
its raw float outputs (over its decoded ones when it has no raw ones), top-1 over its classifier
outputs, rows matched over decoded outputs, exact agreement over integer outputs.
Two all-zero vectors have cosine 1, a zero against a non-zero vector 0, and outputs whose shapes
differ for a sample (a different number of detections) cosine 0. Non-finite values give NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

FLOAT, DECODED, INTEGER = "float", "decoded", "integer"
ROW_TOLERANCE = 0.01
Samples = Union[np.ndarray, Sequence[np.ndarray]]  # the first axis (or the list) runs over the samples


@dataclass(frozen=True)
class OutputFidelity:
    """One output of a variant against the float model."""

    name: str
    kind: str
    worst_cosine: Optional[float] = None
    mean_cosine: Optional[float] = None
    max_rel_error: Optional[float] = None
    top1_agreement: Optional[float] = None
    rows_matched: Optional[float] = None
    exact_agreement: Optional[float] = None


@dataclass(frozen=True)
class Fidelity:
    """A variant against the float model: the worst of each measure over its outputs, and each output."""

    worst_cosine: Optional[float]
    max_rel_error: Optional[float]
    top1_agreement: Optional[float]
    rows_matched: Optional[float]
    exact_agreement: Optional[float]
    cosine_over: str  # "float" or "decoded": which outputs the cosine and the relative error cover
    outputs: tuple


def _f64(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def sample_cosines(reference: Samples, variant: Samples) -> np.ndarray:
    """Cosine similarity of each sample's flattened output with the reference's."""
    out = np.empty(len(reference))
    for i, (r, v) in enumerate(zip(reference, variant)):
        r, v = _f64(r), _f64(v)
        if r.shape != v.shape:
            out[i] = 0.0
            continue
        r, v = r.reshape(-1), v.reshape(-1)
        if not (np.isfinite(r).all() and np.isfinite(v).all()):
            out[i] = math.nan
            continue
        nr, nv = np.linalg.norm(r), np.linalg.norm(v)
        if np.array_equal(r, v):  # exactly 1, not 1 - 2e-16 from rounding in the norms
            out[i] = 1.0
        elif nr == 0 or nv == 0:
            out[i] = 1.0 if nr == nv else 0.0
        else:
            out[i] = float(np.clip(np.dot(r, v) / (nr * nv), -1.0, 1.0))
    return out


def max_relative_error(reference: Samples, variant: Samples) -> float:
    """max |y - y0| over all samples divided by max |y0| (inf when y0 is all zero and y is not)."""
    worst, scale = 0.0, 0.0
    for r, v in zip(reference, variant):
        r, v = _f64(r), _f64(v)
        if r.size:
            scale = max(scale, float(np.max(np.abs(r))))
        if r.shape != v.shape:
            return math.inf
        if r.size:
            worst = max(worst, float(np.max(np.abs(v - r))))
    if math.isnan(worst) or math.isnan(scale):
        return math.nan
    if scale == 0:
        return 0.0 if worst == 0 else math.inf
    return worst / scale


def is_classifier(reference: Samples) -> bool:
    """Whether each sample's output is one vector of several scores on its last axis (every other
    axis of size 1, as Keras and tfjs put classes): a column of per-anchor scores ([anchors, 1], a
    detector's) is not one."""
    first = np.asarray(reference[0])
    return first.dtype.kind == "f" and first.ndim >= 1 and first.shape[-1] > 1 and first.size == first.shape[-1]


def top1_agreement(reference: Samples, variant: Samples) -> float:
    """Share of samples whose highest-scoring class is the same in both."""
    same = [np.asarray(r).shape == np.asarray(v).shape and int(np.argmax(r)) == int(np.argmax(v))
            for r, v in zip(reference, variant)]
    return float(np.mean(same))


def exact_agreement(reference: Samples, variant: Samples) -> float:
    """Share of samples whose output is identical (for integer and bool outputs)."""
    return float(np.mean([np.array_equal(r, v) for r, v in zip(reference, variant)]))


def _rows(a) -> np.ndarray:
    a = _f64(a)
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 2 else a.reshape(-1, 1)


def rows_matched(reference: Samples, variant: Samples, tolerance: float = ROW_TOLERANCE) -> float:
    """Share of the reference's rows (last axis) that the variant has too, in any order, one to one,
    each column within tolerance x that column's largest magnitude over the reference samples."""
    ref_rows = [_rows(r) for r in reference]
    width = ref_rows[0].shape[1]
    scale = np.zeros(width)
    for r in ref_rows:
        if r.shape[1] != width:
            raise ValueError("reference samples have rows of different widths")
        if len(r):
            scale = np.maximum(scale, np.max(np.abs(np.where(np.isfinite(r), r, 0)), axis=0))
    tol = tolerance * scale
    found = total = 0
    for r, v in zip(ref_rows, variant):
        v = _rows(v)
        total += len(r)
        if v.shape[1] != width:
            continue
        free = np.ones(len(v), bool)
        for row in r:
            hit = np.flatnonzero(free & np.all(np.abs(v - row) <= tol, axis=1))
            if hit.size:
                free[hit[0]] = False
                found += 1
    return found / total if total else 1.0


def output_kind(reference: Samples, decoded: bool = False) -> str:
    """integer for int/bool outputs; decoded or float for float outputs."""
    if np.asarray(reference[0]).dtype.kind in "iub":
        return INTEGER
    return DECODED if decoded else FLOAT


def compare_output(name: str, reference: Samples, variant: Samples, kind: str) -> OutputFidelity:
    """The measures that fit one output's kind."""
    if len(reference) != len(variant):
        raise ValueError(f"output {name}: {len(reference)} reference samples, {len(variant)} variant samples")
    if kind == INTEGER:
        return OutputFidelity(name, kind, exact_agreement=exact_agreement(reference, variant))
    cos = sample_cosines(reference, variant)
    fields = dict(worst_cosine=float(np.min(cos)), mean_cosine=float(np.mean(cos)),
                  max_rel_error=max_relative_error(reference, variant))
    if kind == DECODED:
        fields["rows_matched"] = rows_matched(reference, variant)
    elif is_classifier(reference):
        fields["top1_agreement"] = top1_agreement(reference, variant)
    return OutputFidelity(name, kind, **fields)


def _worst(values: List[Optional[float]], pick) -> Optional[float]:
    values = [v for v in values if v is not None]
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return pick(values)


def compare(reference: Mapping[str, Samples], variant: Mapping[str, Samples],
            decoded: Sequence[str] = ()) -> Fidelity:
    """A variant's outputs against the float model's, {output name: samples} each; decoded names
    the float outputs computed through ArgMax / TopK / NonMaxSuppression (see the module notes)."""
    missing = [k for k in reference if k not in variant]
    if missing:
        raise ValueError(f"the variant has no output(s) {', '.join(missing)}")
    outputs = tuple(compare_output(k, reference[k], variant[k], output_kind(reference[k], k in decoded))
                    for k in reference)
    over = FLOAT if any(o.kind == FLOAT for o in outputs) else DECODED
    headline = [o for o in outputs if o.kind == over]
    return Fidelity(
        worst_cosine=_worst([o.worst_cosine for o in headline], min),
        max_rel_error=_worst([o.max_rel_error for o in headline], max),
        top1_agreement=_worst([o.top1_agreement for o in outputs], min),
        rows_matched=_worst([o.rows_matched for o in outputs], min),
        exact_agreement=_worst([o.exact_agreement for o in outputs], min),
        cosine_over=over, outputs=outputs)


def summary_dict(f: Fidelity) -> Dict[str, object]:
    """The figures as plain JSON values (NaN and inf as None)."""
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    out = {k: clean(getattr(f, k)) for k in ("worst_cosine", "max_rel_error", "top1_agreement", "rows_matched",
                                              "exact_agreement")}
    out["cosine_over"] = f.cosine_over
    out["outputs"] = [{k: clean(v) for k, v in vars(o).items() if v is not None} for o in f.outputs]
    return out
