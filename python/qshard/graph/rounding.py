"""Rounding per-channel codes to what the layer's output needs rather than to the nearest level: for
a 1x1 conv or a matmul, the output error of a weight error D (rows: output channels) over inputs X is
||X D^T||^2 = trace(D H D^T) with H = X^T X, the input's Gram matrix over channels, measured on the
samples (bias_correction.input_statistics). Rounding input channel after input channel, each
rounding error is fed forward to the channels not yet rounded through the inverse of H, so that
they compensate it (OBQ / GPTQ: Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", 2022; in the spirit of Nagel et al., "Up or Down? Adaptive
Rounding for Post-Training Quantization", 2020). The per-channel grid (scales, zero points) stays
as quantize_channels chose it: only the codes change, so the model's form and size do not.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np

from .channels import Layer
from .per_channel import QMAX, ChannelCodes

DAMPING = 0.01  # of the mean diagonal, added to H: keeps the inverse tame where inputs are correlated


def _as_rows(layer: Layer, w: np.ndarray) -> np.ndarray:
    """The weight as [output channel, input channel] (1x1 conv or matmul)."""
    if layer.kind == "matmul":
        return w if layer.transpose_b else w.T
    return w.reshape(w.shape[2], w.shape[3]).T


def _from_rows(layer: Layer, rows: np.ndarray, shape) -> np.ndarray:
    if layer.kind == "matmul":
        return rows if layer.transpose_b else rows.T
    return rows.T.reshape(shape)


def gptq_codes(layer: Layer, w: np.ndarray, codes: ChannelCodes, gram: np.ndarray) -> ChannelCodes:
    """Codes on the grid of `codes` (per-channel codes of w by quantize_channels) chosen column by
    column with error feedback through H = gram (input channels x input channels)."""
    rows = _as_rows(layer, np.asarray(w, np.float64)).copy()
    out, n = rows.shape
    scale = codes.scale.astype(np.float64).reshape(-1)
    offset = codes.offset + (0.0 if codes.zero_point is None else codes.zero_point.astype(np.float64).reshape(-1))
    offset = np.broadcast_to(offset, (out,))
    qmax = QMAX[codes.dtype]
    h = np.array(gram, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    rows[:, dead] = 0.0
    h += DAMPING * np.mean(np.diag(h)) * np.eye(n)
    order = np.argsort(-np.diag(h), kind="stable")  # largest inputs first ("act order")
    h = h[np.ix_(order, order)]
    rows = rows[:, order]
    try:
        upper = np.linalg.cholesky(np.linalg.inv(h)).T
    except np.linalg.LinAlgError:
        return codes
    q = np.empty((out, n))
    for j in range(n):
        col = rows[:, j]
        q[:, j] = np.clip(np.rint(col / scale) + offset, 0, qmax)
        err = (col - (q[:, j] - offset) * scale) / upper[j, j]
        rows[:, j + 1:] -= np.outer(err, upper[j, j + 1:])
    back = np.empty_like(q)
    back[:, order] = q
    stored = _from_rows(layer, back, codes.codes.shape)
    return replace(codes, codes=stored.astype(codes.codes.dtype))


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


class GramRounding:
    """gptq_codes for every layer with a measured Gram matrix, in the coordinates rewrite_layers has
    the layer in (its input divided by in_factor per channel); results are cached, since a search
    writes the same layer the same way many times."""

    def __init__(self, grams: Dict[str, np.ndarray]):
        self.grams = grams
        self._cache: Dict[Tuple[str, str, str, str], np.ndarray] = {}

    def __call__(self, layer: Layer, w: np.ndarray, codes: ChannelCodes,
                 in_factor: Optional[np.ndarray] = None) -> ChannelCodes:
        """Better-rounded codes of w, or `codes` when the layer has no Gram matrix."""
        gram = self.grams.get(layer.weight)
        if gram is None:
            return codes
        f = np.ones(gram.shape[0]) if in_factor is None else np.broadcast_to(np.asarray(in_factor, np.float64),
                                                                              (gram.shape[0],))
        key = (layer.weight, f"{codes.dtype}{codes.zero_point is None}", _digest(np.asarray(w, np.float32)), _digest(f))
        if key not in self._cache:
            self._cache[key] = gptq_codes(layer, w, codes, gram / np.outer(f, f)).codes
        return replace(codes, codes=self._cache[key])
