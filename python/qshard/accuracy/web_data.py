"""Samples for evaluating a web model: read from an .npz file, or made up from the model's signature.

samples.npz holds one array per model input, named as the input (its signature key or graph node
name), or `x` when the model has one input; the first axis counts the samples. An optional `y`
holds labels (class ids or one-hot rows) or regression targets for the task metric.

Without a file, inputs are synthesized from the signature: uniform [0, 1) floats (4-D float
inputs are taken as NHWC images with pixels in [0, 1)), integers uniform in [0, 256) for 4-D int32
inputs (uint8-style images) and in [0, 10) otherwise, random bools. Free axes other than the batch
axis get 224 (images) or 1. Fidelity measured on such inputs is a guess: real models are built for
real data, and their outputs on noise may exercise them very differently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ..errors import ModelInputError
from .data import load_all
from .samples import arrange_inputs, input_key

LABELS = "y"
ONE_INPUT = "x"
IMAGE_SIDE = 224


@dataclass
class Samples:
    """Inputs by the model's input keys (first axis = samples), optional labels, and where they came from."""

    inputs: Dict[str, np.ndarray]
    labels: Optional[np.ndarray]
    source: str  # the file, or a description of the made-up inputs
    synthetic: bool = False

    @property
    def count(self) -> int:
        return len(next(iter(self.inputs.values())))


def load_samples(path: Union[str, os.PathLike], info) -> Samples:
    """Read and check an .npz of samples for the model info describes (a tfjs_runner.ModelInfo)."""
    p = Path(path)
    arrays = load_all(p, ModelInputError)
    labels = arrays.pop(LABELS, None)
    keys = [t.key for t in info.inputs]
    one = len(keys) == 1 and input_key(info, ONE_INPUT) is None
    expected = " or ".join(f"'{k}'" for k in keys) + (f" (or '{ONE_INPUT}')" if len(keys) == 1 else "")
    inputs, given_as = {}, {}
    for name, array in arrays.items():
        key = keys[0] if one and name == ONE_INPUT else input_key(info, name)
        if key is None:
            raise ModelInputError(f"{p}: array '{name}' is not an input of the model (its inputs: {expected}; "
                                  f"labels go in '{LABELS}')")
        if key in inputs:
            raise ModelInputError(f"{p}: arrays '{given_as[key]}' and '{name}' both feed input '{key}'")
        inputs[key], given_as[key] = array, name
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise ModelInputError(f"{p}: no array for input(s) {', '.join(repr(m) for m in missing)} "
                              f"(arrays: {', '.join(arrays) or 'none'}; name one per model input: {expected})")
    for key, array in inputs.items():
        _check_array(p, given_as[key], array)
    try:
        arranged = arrange_inputs(info, inputs)
    except ModelInputError as error:
        raise ModelInputError(f"{p}: {_without_prefix(str(error), info)} "
                              f"(arrays: {', '.join(f'{v} -> {k}' for k, v in given_as.items())})") from None
    if labels is not None:
        if labels.ndim == 0 or len(labels) != arranged.count:
            raise ModelInputError(f"{p}: array '{LABELS}' has {labels.shape[0] if labels.ndim else 0} labels for "
                                  f"{arranged.count} samples")
        _check_array(p, LABELS, labels)
    return Samples(inputs, labels, str(p))


def _without_prefix(message: str, info) -> str:
    prefix = f"{info.path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _check_array(path: Path, name: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "fiub":
        raise ModelInputError(f"{path}: array '{name}' has dtype {array.dtype}; need numbers or bools")
    if array.ndim == 0 or len(array) == 0:
        raise ModelInputError(f"{path}: array '{name}' holds no samples (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if bad.any():
            what = "NaN" if np.isnan(array).any() else "Inf"
            raise ModelInputError(f"{path}: array '{name}' holds {what} (sample {int(np.flatnonzero(bad)[0])}, "
                                  f"{int(bad.sum())} sample(s) in all)")


def _synthetic_shape(shape) -> tuple:
    if shape and shape[0] in (-1, 1):
        shape = shape[1:]
    image = len(shape) == 3
    return tuple((3 if image and i == 2 else IMAGE_SIDE if image else 1) if d < 0 else d
                 for i, d in enumerate(shape))


def synthesize(info, count: int = 8, seed: int = 0) -> Samples:
    """Made-up samples from the model's signature (see the module notes); the description says which."""
    rng = np.random.default_rng(seed)
    inputs, said = {}, []
    for t in info.inputs:
        if t.shape is None:
            raise ModelInputError(f"{info.path}: input '{t.key}' has no known shape; give samples (--data)")
        shape = _synthetic_shape(t.shape)
        image = len(t.shape) == 4
        if t.dtype == "int32":
            high = 256 if image else 10
            inputs[t.key] = rng.integers(0, high, (count, *shape), dtype=np.int32)
            said.append(f"{t.key}: int32 {list(shape)} uniform in [0, {high})")
        elif t.dtype == "bool":
            inputs[t.key] = rng.random((count, *shape)) < 0.5
            said.append(f"{t.key}: random bool {list(shape)}")
        else:
            inputs[t.key] = rng.random((count, *shape), dtype=np.float32)
            said.append(f"{t.key}: float32 {list(shape)} uniform in [0, 1)" + (" (as images)" if image else ""))
    return Samples(inputs, None, f"{count} made-up samples: " + "; ".join(said), synthetic=True)
