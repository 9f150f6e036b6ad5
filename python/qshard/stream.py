"""Tensor sources read chunk by chunk: tfjs web models, safetensors, .npz / folders of .npy, Keras
.h5 weight files. Each tensor yields its values in pieces through one reused buffer, so converting
a model never holds a whole large tensor in memory (and releases file pages as it goes)."""
from __future__ import annotations

import json
import mmap
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import manifest as mf
from .errors import QshardError
from .shards import Scratch
from .writer import DEFAULT_SHARD_SIZE

CHUNK_BYTES = 128 * 1024  # below Zen 1's L2 cliff for pread copies; see shards.ShardSet.chunks
KINDS = ("tfjs", "safetensors", "npz", "h5")


class SourceError(QshardError, ValueError):
    """An input that cannot be read as a tensor source."""


# The dtype each source dtype is stored as in a web model (as tensorflowjs converts them).
def tfjs_dtype(dtype: np.dtype) -> str:
    if dtype.kind == "f":
        return "float32"
    if dtype.kind in "iu":
        return "int32"
    if dtype.kind == "b":
        return "bool"
    if dtype == np.complex64 or dtype == np.complex128:
        return "complex64"
    raise SourceError(f"dtype {dtype} has no TensorFlow.js counterpart")


@dataclass
class Tensor:
    """One tensor of a source: its name, shape, source dtype, and a way to read it in chunks."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    read: Callable[[Scratch, int], Iterator[np.ndarray]]  # (scratch, chunk_bytes) -> 1-D chunks
    release: Callable[[], None] = lambda: None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def chunks(self, scratch: Scratch, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        return self.read(scratch, chunk_bytes)

    def float32_chunks(self, scratch: Scratch, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """Values as float32 chunks (float16/float64/bfloat16 converted per chunk, as tensorflowjs
        converts whole tensors)."""
        for chunk in self.read(scratch, chunk_bytes):
            if chunk.dtype == np.float32:
                yield chunk
            else:
                out = scratch.get(3, chunk.size * 4).view(np.float32)
                out[...] = chunk
                yield out

    def stored_chunks(self, scratch: Scratch, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The bytes a web model stores for this tensor unquantized (tfjs dtype), chunk by chunk."""
        target = np.dtype({"float32": np.float32, "int32": np.int32, "bool": np.bool_,
                           "complex64": np.complex64}[tfjs_dtype(self.dtype)])
        for chunk in self.read(scratch, chunk_bytes):
            if chunk.dtype == target:
                yield chunk.view(np.uint8)
            else:
                out = scratch.get(3, chunk.size * target.itemsize).view(target)
                out[...] = chunk  # (int64 -> int32 wraps as numpy's astype does, like tensorflowjs)
                yield out.view(np.uint8)


@dataclass
class Source:
    """A model's tensors in file order, and the model.json document when the input had one."""

    path: Path
    kind: str
    tensors: List[Tensor]
    document: Optional[dict] = None
    groups: Optional[List[List[str]]] = None  # tfjs: names per group; others: one group
    close: Callable[[], None] = lambda: None


def _pread_chunks(path: Path, offset: int, nbytes: int, dtype: np.dtype):
    """A reader of [offset, offset + nbytes) of a file as chunks of dtype, via pread into a reused
    buffer (page-cache copies, no mapping)."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        step = max(chunk_bytes // dtype.itemsize, 1) * dtype.itemsize
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            buf = scratch.get(2, min(step, nbytes) if nbytes else 1)
            for begin in range(0, nbytes, step):
                part = buf[:min(step, nbytes - begin)]
                got = os.preadv(fd, [memoryview(part)], offset + begin)
                if got != len(part):
                    raise SourceError(f"{path}: file ends early (tensor bytes {offset + begin}..)")
                yield part.view(dtype)
        finally:
            os.close(fd)
    return read


# --- safetensors -----------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
                       "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


def _bfloat16_reader(inner):
    """bfloat16 is the top half of a float32: widen per chunk."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        for chunk in inner(scratch, chunk_bytes // 2):
            out = scratch.get(4, chunk.size * 4).view(np.uint32)
            out[...] = chunk
            out <<= 16
            yield out.view(np.float32)
    return read


def open_safetensors(path: Path) -> Source:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SourceError(f"{path}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, 100 << 20):
            raise SourceError(f"{path}: safetensors header length {length} does not fit the file")
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SourceError(f"{path}: safetensors header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise SourceError(f"{path}: safetensors header is not a JSON object")
    data_start = 8 + length
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise SourceError(f"{where}: unsupported or missing dtype {info.get('dtype') if isinstance(info, dict) else info!r}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise SourceError(f"{where}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] and data_start + offsets[1] <= size):
            raise SourceError(f"{where}: data_offsets {offsets!r} fall outside the file")
        kind = _SAFETENSORS_DTYPES[info["dtype"]]
        stored = np.dtype(np.uint16) if kind == "bfloat16" else np.dtype(kind)
        count = int(np.prod(shape, dtype=np.int64))
        if offsets[1] - offsets[0] != count * stored.itemsize:
            raise SourceError(f"{where}: {offsets[1] - offsets[0]} bytes for shape {shape} of {info['dtype']}")
        reader = _pread_chunks(path, data_start + offsets[0], offsets[1] - offsets[0], stored)
        dtype = stored
        if kind == "bfloat16":
            reader, dtype = _bfloat16_reader(reader), np.dtype(np.float32)
        tensors.append(Tensor(name, tuple(shape), dtype, reader))
    return Source(path, "safetensors", tensors)


# --- .npz and folders of .npy ---------------------------------------------------------------------

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
    return Tensor(name, shape, dtype, _pread_chunks(path, offset, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize,
                                                    dtype))


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


# --- Keras .h5 ------------------------------------------------------------------------------------

def open_h5(path: Path) -> Source:
    try:
        import h5py
    except ImportError:
        raise SourceError(f"{path}: reading .h5 files needs h5py: pip install 'qshard[h5]' (or pip install h5py)") from None
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


# --- tfjs -----------------------------------------------------------------------------------------

def guess_kind(path: Union[str, os.PathLike]) -> str:
    """The source kind from the path: a folder with model.json / weights_manifest.json or such a
    file is tfjs; .safetensors; .npz or a folder of .npy; .h5 / .hdf5 / .keras weights."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    name = p.name.lower()
    if p.is_dir():
        if (p / mf.MODEL_NAME).is_file() or (p / mf.MANIFEST_NAME).is_file():
            return "tfjs"
        if any(p.rglob("*.npy")):
            return "npz"
    elif name.endswith(".json"):
        return "tfjs"
    elif name.endswith(".safetensors"):
        return "safetensors"
    elif name.endswith(".npz"):
        return "npz"
    elif name.endswith((".h5", ".hdf5")):
        return "h5"
    raise SourceError(f"{p}: cannot tell what kind of model this is; supported: a tfjs web model (folder, "
                      f"model.json or weights_manifest.json), .safetensors, .npz or a folder of .npy, "
                      f"Keras .h5 / .weights.h5 (give --from {'|'.join(KINDS)})")


def open_source(path: Union[str, os.PathLike], kind: Optional[str] = None) -> Source:
    """Open a model of any supported kind as a tensor source (kind guessed from the path if None)."""
    p = Path(path)
    kind = kind or guess_kind(p)
    if kind not in KINDS:
        raise SourceError(f"unknown source kind {kind!r} (supported: {', '.join(KINDS)})")
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    if kind == "safetensors":
        return open_safetensors(p)
    if kind == "npz":
        return open_npy_folder(p) if p.is_dir() else open_npz(p)
    if kind == "h5":
        return open_h5(p)
    raise SourceError("tfjs sources are read by qshard.tfjs.quantize_model")


def convert(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *, kind: Optional[str] = None,
            uint8=None, uint16=None, float16=None, keep=None, shard_size: int = DEFAULT_SHARD_SIZE,
            force: bool = False, threads: Optional[int] = None, progress=None):
    """Convert a safetensors / npz / npy-folder / h5 model into a tfjs weights manifest and shards
    (one group, tensors in file order), quantizing as asked; memory stays at a few chunks and one
    shard whatever the model's size. Returns a qshard.tfjs.QuantizeReport."""
    from .tfjs import QuantizeReport
    from .writer import _Item, _write_groups, atomic_folder, check_shard_size, first_duplicate

    check_shard_size(shard_size)
    source = open_source(src, kind)
    try:
        names = [t.name for t in source.tensors]
        duplicate = first_duplicate(names)
        if duplicate is not None:
            raise SourceError(f"{src}: duplicate tensor name {duplicate!r}")
        report, targets = QuantizeReport.plan(names, out_dir, uint8, uint16, float16, keep)
        items = []
        for t in source.tensors:
            dtype = tfjs_dtype(t.dtype)
            stored = t.size * mf.DTYPES[dtype]
            report.bytes_in += t.nbytes
            item = _Item(t.name, t.shape, dtype, stored_nbytes=stored,
                         raw_chunks=(lambda scratch, t=t: t.stored_chunks(scratch)))
            item.target = report.decide(t.name, dtype, targets.get(t.name))
            if item.target:
                item.chunks = (lambda scratch, t=t: t.float32_chunks(scratch))
            items.append(item)
        with atomic_folder(out_dir, force) as tmp:
            result, kept = _write_groups(tmp, [items], shard_size, threads or 0, progress)
            report.written([items], kept)
            (tmp / mf.MANIFEST_NAME).write_bytes(mf.dumps(mf.dump_manifest(result)).encode())
        return report
    finally:
        source.close()
