"""numpy's .npz archives (uncompressed) and folders of .npy files."""
from __future__ import annotations

import mmap
import struct
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from qshard.errors import SourceError
from qshard.formats.file_range import in_file
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, pread_chunks, register


def _npy_header(f, where: str):
    try:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = reader(f)
    except ValueError as error:
        raise SourceError(f"{where}: not a readable .npy array: {error}") from None
    if dtype.hasobject:
        raise SourceError(f"{where}: object arrays are not supported")
    return tuple(shape), fortran, dtype


def _memmap_rows(path: Path, offset: int, shape, dtype):
    """Fortran-ordered arrays: C-order chunks copied out of a mapping, its pages released after."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        if not shape or int(np.prod(shape)) == 0:
            if shape == ():
                arr = np.memmap(path, dtype, "r", offset, (1,))
                yield np.array(arr)
            return
        arr = np.memmap(path, dtype, "r", offset, shape, order="F")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize or 1
        rows = max(chunk_bytes // row, 1)
        try:
            for i in range(0, shape[0], rows):
                yield np.ascontiguousarray(arr[i:i + rows]).reshape(-1)
                if hasattr(mmap, "MADV_DONTNEED"):  # drop the pages just read from this process
                    arr._mmap.madvise(mmap.MADV_DONTNEED)
        finally:
            del arr
    return read


def _npy_tensor(name: str, path: Path, where: str, base_offset: int = 0, f=None) -> Tensor:
    shape, fortran, dtype = _npy_header(f, where)
    offset = base_offset + f.tell()
    if fortran and len(shape) > 1:
        return Tensor(name, shape, dtype, _memmap_rows(path, offset, shape, dtype))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return Tensor(name, shape, dtype, pread_chunks(path, offset, nbytes, dtype),
                  file_range=in_file(path, offset, nbytes, dtype))


def open_npz(path: Path) -> Source:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SourceError(f"{path}: not a zip archive (.npz)") from None
    tensors = []
    with archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            where = f"{path}: {info.filename}"
            if info.compress_type != zipfile.ZIP_STORED:
                raise SourceError(f"{where}: compressed members (numpy.savez_compressed) cannot be read in "
                                  f"place; save with numpy.savez, or pass a folder of .npy files")
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise SourceError(f"{where}: corrupt zip entry")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            data_offset = info.header_offset + 30 + name_len + extra_len
            raw.seek(data_offset)
            tensors.append(_npy_tensor(name, path, where, 0, raw))
    return Source(path, "npz", tensors)


def open_npy_folder(path: Path) -> Source:
    files = sorted(p for p in path.rglob("*.npy") if p.is_file())
    if not files:
        raise SourceError(f"{path}: no .npy files in this folder")
    tensors = []
    for p in files:
        name = p.relative_to(path).with_suffix("").as_posix()
        with open(p, "rb") as f:
            tensors.append(_npy_tensor(name, p, str(p), 0, f))
    return Source(path, "npz", tensors)


register("npz", lambda p: open_npy_folder(p) if p.is_dir() else open_npz(p))
