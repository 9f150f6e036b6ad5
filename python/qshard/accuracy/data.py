"""Arrays from data files (.npz, .npy) for eval, mixed and tflite, read as hostile input: a regular
file, each array's declared size checked against the bytes that hold it and the memory available
before anything is read, nothing unpickled, and values that would make a metric meaningless
(NaN, Inf, non-integer class labels, shapes that do not fit the model) refused by name."""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np

from qshard.errors import EvalError, QshardError
from qshard.formats.inputs import available_memory, check_memory, open_file, open_zip, read_npy_header
from qshard.formats.manifest import element_count, shape_problem

PathLike = Union[str, os.PathLike]
NPY_MAGIC = b"\x93NUMPY"


def _read_npy(f, size: int, where: str, error: Type[QshardError]) -> np.ndarray:
    """One .npy array from a stream holding `size` bytes in all."""
    shape, fortran, dtype = read_npy_header(f, where, error)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise error(f"{where}: holds {dtype} values; data arrays must be numbers or booleans")
    problem = shape_problem(shape)
    if problem:
        raise error(f"{where}: {problem}")
    nbytes = element_count(shape) * dtype.itemsize
    have = size - f.tell()
    if nbytes != have:
        raise error(f"{where}: the header declares shape {list(shape)} of {dtype} ({nbytes} bytes), "
                    f"but {have} bytes follow it")
    check_memory(nbytes, where, error)
    data = bytearray(nbytes)
    view, done = memoryview(data), 0
    while done < nbytes:
        try:
            got = f.readinto(view[done:])
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise error(f"{where}: cannot read its data ({e})") from None
        if not got:
            raise error(f"{where}: ends after {done} of {nbytes} bytes")
        done += got
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def load_all(path: PathLike, error: Type[QshardError] = EvalError) -> Dict[str, np.ndarray]:
    """Every array of an .npz file (a .npy file: one array named 'x'), read as load_arrays does."""
    return load_arrays(path, None, error=error)


def load_arrays(path: PathLike, wanted: Optional[Sequence[str]], required: Sequence[str] = (),
                error: Type[QshardError] = EvalError) -> Dict[str, np.ndarray]:
    """The arrays named in `wanted` (those present; None: all) from an .npz file; `required` ones
    must be there. A .npy file counts as one array named wanted[0] (or 'x')."""
    p = Path(path)
    with open_file(p, "data file", error) as f:
        head = f.read(len(NPY_MAGIC))
        f.seek(0)
        size = os.fstat(f.fileno()).st_size
        if head == NPY_MAGIC:
            return {wanted[0] if wanted else "x": _read_npy(f, size, str(p), error)}
    out = {}
    with open_zip(p, "data file (.npz)", error, max_total=available_memory()) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        missing = [k for k in required if k not in names]
        if missing:
            raise error(f"{p}: needs arrays {', '.join(repr(k) for k in required)}; has "
                        f"{', '.join(repr(n) for n in names) or 'none'}")
        for key in (names if wanted is None else wanted):
            if key not in names:
                continue
            info = archive.getinfo(f"{key}.npy")
            where = f"{p}: array {key!r}"
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as e:
                raise error(f"{where}: cannot be read ({e})") from None
            with member:
                out[key] = _read_npy(member, info.file_size, where, error)
    return out


def _first_bad(a: np.ndarray, bad: np.ndarray) -> str:
    index = np.unravel_index(int(np.argmax(bad)), a.shape)
    return f"{a[index].item()!r} at index {tuple(int(i) for i in index)}"


def check_finite(a: np.ndarray, where: str, error: Type[QshardError] = EvalError) -> None:
    """Refuse NaN and +-Inf, naming the first."""
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise error(f"{where}: holds {int(bad.sum())} non-finite value(s), the first {_first_bad(a, bad)}")


def check_samples(a: np.ndarray, where: str, error: Type[QshardError] = EvalError) -> None:
    """An array of samples: at least one axis (the samples), finite values."""
    if a.ndim == 0:
        raise error(f"{where}: is a single number; it needs a first axis of samples")
    check_finite(a, where, error)


def check_labels(y: np.ndarray, metric: str, where: str) -> None:
    """Targets for the metric: finite; for accuracy, class indices (integers >= 0) or rows of
    one-hot / probabilities."""
    check_samples(y, where)
    if metric != "accuracy":
        return
    if y.ndim > 1 and y.shape[-1] > 1:
        return  # one-hot or probability rows: argmax
    if y.dtype.kind == "f":
        fractional = y != np.round(y)
        if fractional.any():
            raise EvalError(f"{where}: accuracy needs integer class labels (or one-hot rows), but it holds "
                            f"{_first_bad(y, fractional)}")
    if y.dtype.kind in "if" and (y < 0).any():
        raise EvalError(f"{where}: class labels must be >= 0, but it holds {_first_bad(y, y < 0)}")


def check_fits(model, x: np.ndarray, y: Optional[np.ndarray], metric: str, source: str) -> None:
    """x fits the model's input, and y its output (for MAE, the same number of values per sample;
    for accuracy, class indices within the outputs or one-hot rows as wide): checked before a
    prediction, whose own errors would not name the data."""
    shapes = getattr(model, "input_shape", None)
    if isinstance(shapes, tuple) and all(d is None or isinstance(d, int) for d in shapes):
        expect = shapes[1:]
        if len(expect) != x.ndim - 1 or any(e is not None and e != d for e, d in zip(expect, x.shape[1:])):
            raise EvalError(f"{source}: array 'x' has samples of shape {list(x.shape[1:])}, but the model takes "
                            f"{[d if d is not None else 'any' for d in expect]}")
    out = getattr(model, "output_shape", None)
    if y is None or not isinstance(out, tuple) or not all(isinstance(d, int) for d in out[1:]):
        return  # several outputs, or sizes known only at run time
    width, per_sample = math.prod(out[1:]), math.prod(y.shape[1:])
    if metric == "mae" and per_sample != width:
        raise EvalError(f"{source}: array 'y' has {per_sample} value(s) per sample, but the model outputs {width}")
    if metric == "accuracy":
        if per_sample > 1 and per_sample != width:
            raise EvalError(f"{source}: array 'y' has rows of {per_sample}, but the model outputs {width} classes")
        if per_sample == 1 and width > 1 and y.size and int(np.max(y)) >= width:
            raise EvalError(f"{source}: array 'y' holds class {int(np.max(y))}, but the model outputs {width} classes")


def labelled(path: PathLike, metric: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """x, y and the optional calibration array of a labelled data file, checked."""
    arrays = load_arrays(path, ("x", "y", "calibration"), required=("x", "y"))
    x, y = arrays["x"], arrays["y"]
    check_samples(x, f"{path}: array 'x'")
    check_labels(y, metric, f"{path}: array 'y'")
    if len(x) != len(y) or len(x) == 0:
        raise EvalError(f"{path}: x has {len(x)} samples and y {len(y)}; need the same number, more than 0")
    calibration = arrays.get("calibration")
    if calibration is not None:
        check_samples(calibration, f"{path}: array 'calibration'")
    return x, y, calibration


def inputs(path: PathLike, key: str = "x", error: Type[QshardError] = EvalError) -> np.ndarray:
    """Model inputs from an .npy file, or the array `key` (else the only array) of an .npz file."""
    arrays = load_arrays(path, (key,), error=error)
    if key not in arrays:
        with open_zip(path, "data file (.npz)", error) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if len(names) != 1:
            raise error(f"{path}: no array named {key!r} (has {', '.join(names) or 'none'})")
        arrays = {key: load_arrays(path, names, error=error)[names[0]]}
    check_samples(arrays[key], f"{path}: array {key!r}", error)
    return arrays[key]

