"""Samples for a model run in tfjs: inputs matched to a model's inputs by name, checked against its
dtypes and shapes, cut into batches or single samples; per-sample outputs put back together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ModelInputError

INT32 = np.iinfo(np.int32)


@dataclass
class Arranged:
    """Inputs by model input key, one leading axis over the samples, in the dtype tfjs takes."""

    arrays: Dict[str, np.ndarray]
    count: int
    added_batch_axis: bool  # a sample lacks the model's first axis (fed one by one with a batch axis of 1)
    batchable: bool  # ... and that axis is free, so several samples can go in one call

    @property
    def sample_bytes(self) -> int:
        return sum(a[0].nbytes for a in self.arrays.values())

    def sample(self, i: int) -> Dict[str, np.ndarray]:
        """Sample i as the model takes it."""
        return {k: a[i:i + 1] if self.added_batch_axis else a[i] for k, a in self.arrays.items()}

    def chunk(self, start: int, stop: int) -> Dict[str, np.ndarray]:
        """Samples start..stop-1 as one batch (only when batchable)."""
        return {k: a[start:stop] for k, a in self.arrays.items()}


def _show(shape) -> str:
    return "[" + ", ".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"


def _as_dict(info, inputs) -> Dict[str, np.ndarray]:
    if isinstance(inputs, np.ndarray):
        if len(info.inputs) != 1:
            raise ModelInputError(f"{info.path}: the model has {len(info.inputs)} inputs "
                                  f"({', '.join(t.key for t in info.inputs)}); give the samples by input name")
        return {info.inputs[0].key: inputs}
    if isinstance(inputs, Mapping):
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    samples = list(inputs)
    if not samples:
        raise ModelInputError(f"{info.path}: no samples given")
    names = set(samples[0])
    for i, s in enumerate(samples):
        if set(s) != names:
            raise ModelInputError(f"{info.path}: sample {i} has inputs {sorted(s)}, sample 0 has {sorted(names)}")
    out = {}
    for name in names:
        shapes = {np.shape(s[name]) for s in samples}
        if len(shapes) > 1:
            raise ModelInputError(f"{info.path}: input '{name}' has different shapes across samples: "
                                  f"{', '.join(map(str, sorted(shapes)))}")
        out[name] = np.stack([np.asarray(s[name]) for s in samples])
    return out


def input_key(info, name: str) -> Optional[str]:
    """The model input a name stands for: its key, or its graph node name (with or without ':0')."""
    for candidate in (name, name.split(":")[0]):
        for t in info.inputs:
            if candidate in (t.key, t.name, t.key.split(":")[0], t.name.split(":")[0]):
                return t.key
    return None


def _match_names(info, given: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out = {}
    for name, array in given.items():
        key = input_key(info, name)
        if key is None:
            raise ModelInputError(f"{info.path}: the model has no input '{name}'; its inputs: "
                                  f"{', '.join(t.key for t in info.inputs)}")
        out[key] = array
    missing = [t.key for t in info.inputs if t.key not in out]
    if missing:
        raise ModelInputError(f"{info.path}: no data for input(s) {', '.join(repr(m) for m in missing)}")
    return out


def _cast(info, t, array: np.ndarray) -> np.ndarray:
    want = t.dtype or "float32"
    kind = array.dtype.kind
    where = f"{info.path}: input '{t.key}'"
    if want == "float32":
        if kind not in "fiu":
            raise ModelInputError(f"{where} is float32; the data has dtype {array.dtype}")
        return np.ascontiguousarray(array, np.float32)
    if want == "int32":
        if kind not in "iub":
            raise ModelInputError(f"{where} is int32; the data has dtype {array.dtype} (give integers)")
        if array.size and kind in "iu" and (array.min() < INT32.min or array.max() > INT32.max):
            raise ModelInputError(f"{where} is int32; the data has values outside its range")
        return np.ascontiguousarray(array, np.int32)
    if want == "bool":
        if kind != "b":
            raise ModelInputError(f"{where} is bool; the data has dtype {array.dtype}")
        return np.ascontiguousarray(array)
    raise ModelInputError(f"{where} has dtype {want}, which qshard cannot feed (float32, int32, bool)")


def _fits(shape: Tuple[int, ...], model: Sequence[int]) -> bool:
    return len(shape) == len(model) and all(m < 0 or m == d for d, m in zip(shape, model))


def arrange_inputs(info, inputs) -> Arranged:
    """Match, check and lay out the samples for the model described by info (a ModelInfo)."""
    arrays = _match_names(info, _as_dict(info, inputs))
    counts = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    count = next(iter(counts.values()))
    if count == 0 or any(c != count for c in counts.values()):
        raise ModelInputError(f"{info.path}: every input needs the same number of samples (> 0) on its first "
                              f"axis; got {', '.join(f'{k}: {c}' for k, c in counts.items())}")
    by_key = {t.key: t for t in info.inputs}
    modes = set()
    out = {}
    for key, array in arrays.items():
        t = by_key[key]
        out[key] = _cast(info, t, array)
        sample = array.shape[1:]
        if t.shape is None:
            modes.add("full")
        elif len(t.shape) >= 1 and t.shape[0] in (-1, 1) and _fits(sample, t.shape[1:]):
            modes.add("free" if t.shape[0] == -1 else "one")
        elif _fits(sample, t.shape):
            modes.add("full")
        else:
            raise ModelInputError(f"{info.path}: input '{key}' takes {_show(t.shape)}; a sample of the data has "
                                  f"shape {_show(sample)} (the data's first axis counts the samples)")
    if "full" in modes and len(modes) > 1:
        raise ModelInputError(f"{info.path}: some inputs' samples carry the model's batch axis and some do not; "
                              f"give every input the same way")
    added = "full" not in modes
    return Arranged(out, count, added, added and modes == {"free"})


def gather_outputs(info, samples: List[Dict[str, np.ndarray]], added_batch_axis: bool
                   ) -> Dict[str, Union[np.ndarray, List[np.ndarray]]]:
    """Per-sample outputs -> {key: array with a leading sample axis, or a list if shapes differ}."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if added_batch_axis and all(v.ndim and v.shape[0] == 1 for v in values):
            values = [v[0] for v in values]
        if len({v.shape for v in values}) == 1:
            out[key] = np.stack(values)
        else:
            out[key] = values
    return out


def describe(info) -> List[str]:
    """One line per input: key, dtype, shape."""
    return [f"{t.key}: {t.dtype or 'float32'} {_show(t.shape) if t.shape is not None else '(any shape)'}"
            for t in info.inputs]

