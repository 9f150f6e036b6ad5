"""numpy's .npz archives (uncompressed) and folders of .npy files."""
from __future__ import annotations

import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Iterator

from qshard.errors import SourceError
from qshard.formats.file_range import as_stored, in_file
from qshard.formats.inputs import check_memory, open_file, open_zip, read_exact, read_npy_header
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, check_tensor, has_suffix, npy_files, pread_chunks, register
from qshard.lazy import np


def _npy_header(f, where: str):
    shape, fortran, dtype = read_npy_header(f, where, SourceError)
    if dtype.hasobject:
        raise SourceError(f"{where}: object arrays are not supported")
    check_tensor(where, shape, dtype)
    return tuple(shape), fortran, dtype


def _whole_fortran(path: Path, offset: int, shape, dtype: np.dtype, where: str):
    """Fortran-ordered arrays: read whole with pread (never mapped: a file truncated under a
    mapping kills the process with SIGBUS), then handed out as C-order chunks of rows. The one
    input held in memory whole; refused when the machine does not have the memory."""
    nbytes = math.prod(shape) * dtype.itemsize
    check_memory(nbytes, f"{where}: this Fortran-ordered array (save it C-ordered to stream it)", SourceError)

    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        if not nbytes:
            return
        data = np.empty(nbytes, np.uint8)
        with open_file(path, ".npy file", SourceError) as f:
            read_exact(f.fileno(), memoryview(data), offset, path, SourceError)
        array = data.view(dtype).reshape(shape, order="F")
        rows = max(chunk_bytes // (math.prod(shape[1:]) * dtype.itemsize or 1), 1)
        for i in range(0, shape[0], rows):
            yield np.ascontiguousarray(array[i:i + rows]).reshape(-1)
    return read


def _npy_tensor(name: str, path: Path, where: str, f, end: int) -> Tensor:
    """The array whose header starts at f's position; its data must end by `end` (the file's or
    the zip member's end)."""
    shape, fortran, dtype = _npy_header(f, where)
    offset = f.tell()
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes > end:
        raise SourceError(f"{where}: the header declares shape {list(shape)} of {dtype} ({nbytes} bytes), "
                          f"but only {max(end - offset, 0)} bytes follow it")
    if fortran and len(shape) > 1:
        return Tensor(name, shape, dtype, _whole_fortran(path, offset, shape, dtype, where))
    return Tensor(name, shape, dtype, pread_chunks(path, offset, nbytes, dtype),
                  file_range=in_file(path, offset, nbytes, dtype), stored_range=as_stored(path, offset, nbytes, dtype))


def open_npz(path: Path) -> Source:
    tensors = []
    with open_zip(path, ".npz archive", SourceError) as archive, open_file(path, ".npz archive", SourceError) as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            where = f"{path}: {info.filename}"
            if info.compress_type != zipfile.ZIP_STORED:
                raise SourceError(f"{where}: compressed members (numpy.savez_compressed) cannot be read in "
                                  f"place; save with numpy.savez, or pass a folder of .npy files")
            size = os.fstat(raw.fileno()).st_size
            if not 0 <= info.header_offset <= size - 30:
                raise SourceError(f"{where}: corrupt zip entry (its header lies outside the file)")
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise SourceError(f"{where}: corrupt zip entry")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            data_offset = info.header_offset + 30 + name_len + extra_len
            raw.seek(data_offset)
            tensors.append(_npy_tensor(name, path, where, raw, min(data_offset + info.file_size, size)))
    return Source(path, "npz", tensors)


def open_npy_folder(path: Path) -> Source:
    files = npy_files(path)
    if not files:
        raise SourceError(f"{path}: no .npy files in this folder")
    tensors = []
    for p in files:
        name = p.relative_to(path).with_suffix("").as_posix()
        with open_file(p, ".npy file", SourceError) as f:
            tensors.append(_npy_tensor(name, p, str(p), f, os.fstat(f.fileno()).st_size))
    return Source(path, "npz", tensors)


def _claims(path: Path) -> bool:
    return bool(npy_files(path, first=True)) if path.is_dir() else has_suffix(path, ".npz")


register("npz", lambda p: open_npy_folder(p) if p.is_dir() else open_npz(p), _claims,
         ".npz or a folder of .npy")
