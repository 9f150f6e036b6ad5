"""Per-tensor quantization error: what storing each float32 weight as uint8, uint16 or float16 does
to it (SQNR in dB and max abs error), computed with qshard's own kernels exactly as the writer would
quantize and tfjs would dequantize. Used by `qshard inspect --error` and `qshard report`."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from qshard import dtypes
from qshard.kernels import QuantParams, affine_params, dequantize, minmax, quantize

DTYPES = dtypes.QUANT_DTYPES


@dataclass
class TensorError:
    """Error of one tensor at each dtype: {dtype: (max_abs_error, sqnr_db)}; `note` says why a
    tensor has no figures (not float32, empty, non-finite values)."""

    name: str
    shape: tuple
    size: int
    errors: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    value_range: Optional[Tuple[float, float]] = None
    note: str = ""
    # The lowest SQNR of any output channel (last axis) at each dtype, for tensors of 2+ dimensions:
    # one channel with a far wider range than the rest hides behind a good per-tensor figure.
    worst_channel: Dict[str, float] = field(default_factory=dict)

    def channel_sqnr(self, dtype: str) -> Optional[float]:
        return self.worst_channel.get(dtype)

    def sqnr(self, dtype: str) -> Optional[float]:
        e = self.errors.get(dtype)
        return None if e is None else e[1]

    def max_abs(self, dtype: str) -> Optional[float]:
        e = self.errors.get(dtype)
        return None if e is None else e[0]


def error_of(values: np.ndarray, original: np.ndarray) -> Tuple[float, float]:
    """(max abs error, SQNR in dB) of `values` against `original`: 10 log10(sum x^2 / sum (x - y)^2);
    inf when they are equal, -inf when the original is all zeros and they differ."""
    a = np.asarray(values, np.float64).reshape(-1)
    b = np.asarray(original, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0, math.inf
    diff = a - b
    noise = float(np.dot(diff, diff))
    signal = float(np.dot(b, b))
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return float(np.max(np.abs(diff))), sqnr


def worst_channel_sqnr(values: np.ndarray, original: np.ndarray) -> float:
    """min over the last axis's channels of 10 log10(sum x^2 / sum (x - y)^2)."""
    b = np.asarray(original, np.float64).reshape(-1, original.shape[-1])
    d = np.asarray(values, np.float64).reshape(b.shape) - b
    noise = np.einsum("ij,ij->j", d, d)
    signal = np.einsum("ij,ij->j", b, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqnr = np.where(noise == 0, np.inf, np.where(signal > 0, 10 * np.log10(signal / noise), -np.inf))
    return float(sqnr.min())


def roundtrip(x: np.ndarray, dtype: str) -> np.ndarray:
    """x stored as dtype and read back as tfjs reads it (float32)."""
    x = np.ascontiguousarray(x, np.float32)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    codes, params = quantize(x, dtype)
    return dequantize(codes, params)


def grid(x: np.ndarray, dtype: str = "uint8") -> Tuple[float, float, int]:
    """(min, scale, levels) of the affine grid a tensor gets at uint8/uint16."""
    lo, hi = minmax(np.ascontiguousarray(x, np.float32))
    p: QuantParams = affine_params(lo, hi, dtype)
    return p.min, p.scale, 256 if dtype == "uint8" else 65536


def tensor_error(name: str, x: np.ndarray, dtypes=DTYPES) -> TensorError:
    x = np.asarray(x)
    row = TensorError(name, tuple(x.shape), int(x.size))
    if x.dtype != np.float32:
        row.note = f"{x.dtype} (only float32 weights are quantized)"
        return row
    if x.size == 0:
        row.note = "empty"
        return row
    if not np.all(np.isfinite(x)):
        row.note = "holds NaN/Inf (kept as float32)"
        return row
    row.value_range = (float(x.min()), float(x.max()))
    for dtype in dtypes:
        back = roundtrip(x, dtype)
        row.errors[dtype] = error_of(back, x)
        if x.ndim >= 2 and x.shape[-1] > 1:
            row.worst_channel[dtype] = worst_channel_sqnr(back, x)
    return row


def model_errors(path: Union[str, os.PathLike], dtypes=DTYPES) -> List[TensorError]:
    """The error every float32 weight of a web model would get at each dtype (weights already
    stored quantized are measured from their dequantized values)."""
    from qshard.formats.webmodel import WebModel
    model = WebModel(path)
    out = []
    for spec in model.specs:
        if spec.dtype != "float32":
            out.append(TensorError(spec.name, tuple(spec.shape), spec.size, note=f"{spec.dtype} (not quantized)"))
            continue
        out.append(tensor_error(spec.name, model.values(spec.name), dtypes))
    return out


def format_errors(rows: List[TensorError], dtypes=DTYPES) -> str:
    """A table: one row per tensor, SQNR and max abs error per dtype, worst uint8 SQNR first."""
    def key(r: TensorError):
        s = r.sqnr(dtypes[0])
        return (s is None, s if s is not None else 0.0)
    def db(v: Optional[float]) -> str:
        return "-" if v is None else ("inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:.1f}"))
    width = max([len("weight")] + [len(r.name) for r in rows])  # full names: graph models share long prefixes
    head = (f"{'weight':<{width}} {'size':>10}" + "".join(f" {d + ' dB':>11} {d + ' max|e|':>15}" for d in dtypes)
            + f" {'uint8 worst channel dB':>23}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=key):
        cells = ""
        for d in dtypes:
            if d in r.errors:
                e, s = r.errors[d]
                cells += f" {db(s):>11} {e:>15.3g}"
            else:
                cells += f" {'-':>11} {'-':>15}"
        cells += f" {db(r.channel_sqnr('uint8')):>23}"
        lines.append(f"{r.name:<{width}} {r.size:>10}{cells}" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)
