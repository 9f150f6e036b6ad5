"""HDF5 / Keras .h5 weight files, read with h5py."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from qshard.errors import SourceError
from qshard.optional import require
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, register


def open_h5(path: Path) -> Source:
    h5py = require("h5py", "h5", f"{path}: reading .h5 files", SourceError)
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise SourceError(f"{path}: not a readable HDF5 file: {error}") from None
    datasets = []
    f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)

    def reader(name):
        def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
            d = f[name]
            if d.shape == () or d.size == 0:
                yield np.asarray(d[()]).reshape(-1)
                return
            row = int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize or 1
            rows = max(chunk_bytes // row, 1)
            for i in range(0, d.shape[0], rows):
                yield np.ascontiguousarray(d[i:i + rows]).reshape(-1)
        return read

    tensors = []
    for name in datasets:
        d = f[name]
        if d.dtype.kind not in "fiub":
            continue  # strings and other metadata datasets are not weights
        tensors.append(Tensor(name, tuple(d.shape), np.dtype(d.dtype), reader(name)))
    if not tensors:
        f.close()
        raise SourceError(f"{path}: no numeric datasets in this HDF5 file")
    return Source(path, "h5", tensors, close=f.close)


register("h5", open_h5)
