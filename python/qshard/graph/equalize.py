"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
Bias Correction", 2019) for tfjs graph models: for a layer whose output reaches only other layers
through ops that commute with a positive per-channel factor (channels.Move), divide output channel c
by t[c] = sqrt(r1[c] / r2[c]) and multiply the readers' input channel c by it, where r1 is the
layer's per-output-channel range and r2 the readers' per-input-channel range. Both ranges become
sqrt(r1 * r2): batch norm folded into a filter no longer leaves channels orders of magnitude apart,
the function the graph computes is unchanged, and no op is added."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import numpy as np

from .channels import GraphView, Layer, Move
from .per_channel import apply_move


def factors(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Per channel, t = sqrt(r1 / r2): dividing the producer's channel by t and multiplying the
    readers' by it leaves both with range sqrt(r1 * r2); 1 where either range is zero."""
    t = np.ones_like(r1)
    ok = (r1 > 0) & (r2 > 0)
    t[ok] = np.sqrt(r1[ok] / r2[ok])
    return t


def _ranges(move: Move, values: Dict[str, np.ndarray]):
    layer = move.layer
    r1 = np.abs(layer.rows(values[layer.weight])).max(axis=1).astype(np.float64)
    r2 = np.zeros_like(r1)
    for reader, times in move.readers:
        per_in = np.abs(reader.in_rows(values[reader.weight])).max(axis=1).astype(np.float64)
        r2 = np.maximum(r2, per_in.reshape(times, -1).max(axis=0))
    return r1, r2


def equalize(view: GraphView, values: Dict[str, np.ndarray], layers: Iterable[Layer], sweeps: int = 4,
             in_factors: Optional[Dict[str, np.ndarray]] = None) -> List[Move]:
    """Equalize every layer of `layers` that has a Move whose readers are all in `layers`; updates
    `values` (weights by name) in place (and in_factors, see per_channel.apply_move) and returns the moves used."""
    chosen = {layer.weight for layer in layers}
    moves = []
    for layer in layers:
        move = view.move(layer, values)
        if move is not None and all(reader.weight in chosen for reader, _ in move.readers):
            moves.append(move)
    for _ in range(sweeps):
        for move in moves:
            apply_move(move, values, factors(*_ranges(move, values)), in_factors=in_factors)
    return moves
