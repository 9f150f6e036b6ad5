"""HDF5 / Keras .h5 weight files, read with h5py."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Tuple

from qshard.errors import SourceError
from qshard.formats.inputs import require_regular
from qshard.optional import require
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, check_tensor, has_suffix, register
from qshard.lazy import np


def check_dataset(d, where: str, error=SourceError) -> None:
    """Refuse a dataset whose values live in other files (external storage, virtual datasets):
    reading it would open paths the file names, a FIFO or a device among them."""
    if d.external or getattr(d, "is_virtual", False):
        raise error(f"{where}: its data lives in other files (HDF5 external storage or a virtual "
                    f"dataset), which qshard does not open")


def blocks(shape: Tuple[int, ...], itemsize: int, chunk_bytes: int) -> Iterator[tuple]:
    """Index tuples covering an array in C order, each selecting at most chunk_bytes (one element
    at least): a whole row block where rows are small, slices of the last axes where they are not."""
    inner, axis = itemsize, len(shape)
    while axis > 0 and inner * shape[axis - 1] <= chunk_bytes:
        inner *= shape[axis - 1]
        axis -= 1
    if axis == 0:
        yield ()
        return
    step = max(chunk_bytes // inner, 1)
    for outer in np.ndindex(*shape[:axis - 1]):
        for i in range(0, shape[axis - 1], step):
            yield outer + (slice(i, min(i + step, shape[axis - 1])),)


def open_h5(path: Path) -> Source:
    h5py = require("h5py", "h5", f"{path}: reading .h5 files", SourceError)
    require_regular(path, "HDF5 file", SourceError)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise SourceError(f"{path}: not a readable HDF5 file: {error}") from None
    try:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        tensors = []
        for name in datasets:
            d = f[name]
            if d.dtype.kind not in "fiub":
                continue  # strings and other metadata datasets are not weights
            where = f"{path}: dataset {name!r}"
            check_dataset(d, where)
            check_tensor(where, d.shape, d.dtype)
            tensors.append(Tensor(name, tuple(d.shape), np.dtype(d.dtype), _reader(f, name, where)))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        f.close()
        raise SourceError(f"{path}: cannot read the HDF5 file: {error}") from None
    except BaseException:
        f.close()
        raise
    if not tensors:
        f.close()
        raise SourceError(f"{path}: no numeric datasets in this HDF5 file")
    notes = []
    if "model_config" in f.attrs:
        notes.append(f"{path} holds a whole Keras model: its weights were written as a weights manifest "
                     f"under their HDF5 dataset names; --from keras writes a tfjs layers model (model.json) instead")
    return Source(path, "h5", tensors, close=f.close, notes=notes)


def _reader(f, name: str, where: str):
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        d = f[name]
        if math.prod(d.shape) == 0:
            return
        try:
            for index in blocks(d.shape, d.dtype.itemsize, chunk_bytes):
                yield np.ascontiguousarray(d[index]).reshape(-1)
        except (OSError, ValueError, RuntimeError) as error:
            raise SourceError(f"{where}: cannot read its data: {error}") from None
    return read


register("h5", open_h5, lambda p: has_suffix(p, ".h5", ".hdf5"), "Keras .h5 / .weights.h5 (HDF5 datasets)")
