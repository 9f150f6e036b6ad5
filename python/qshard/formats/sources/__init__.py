"""Tensor sources: every kind of weights file qshard reads, behind one small protocol.

A source is a model's tensors in file order (`Source.tensors`), each a `Tensor` with a name, shape,
source dtype and a chunk reader, so converting a model never holds a whole large tensor in memory;
a tensor whose stored bytes lie in a file as they are also gives its FileRange, and is then
quantized by one C++ call (qshard.formats.file_range).
Each input kind is one module here that registers an opener with `register`; adding a format
(ONNX initializers, GGUF, ...) is one new module and one line at the bottom of this file. tfjs web
models are read by qshard.formats.webmodel (their quantized codes and groups carry over as they are).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from qshard.errors import SourceError
from qshard.formats import manifest as mf
from qshard.formats.file_range import FileRange
from qshard.formats.inputs import open_regular
from qshard.formats.shards import Scratch

CHUNK_BYTES = 128 * 1024  # below Zen 1's L2 cliff for pread copies; see shards.ShardSet.chunks




# The dtype each source dtype is stored as in a web model (as tensorflowjs converts them).
def tfjs_dtype(dtype: np.dtype) -> str:
    """The tfjs dtype a source dtype becomes (SourceError when it has none)."""
    if dtype.kind == "f":
        return "float32"
    if dtype.kind in "iu":
        return "int32"
    if dtype.kind == "b":
        return "bool"
    if dtype == np.complex64 or dtype == np.complex128:
        return "complex64"
    raise SourceError(f"dtype {dtype} has no TensorFlow.js counterpart (float, int, uint, bool and complex do)")


def check_tensor(where: str, shape, dtype: np.dtype) -> None:
    """Refuse, naming the tensor, a shape with more elements than any real tensor or a dtype tfjs
    has no counterpart for: before anything is allocated, read or written."""
    problem = mf.shape_problem(shape)
    if problem:
        raise SourceError(f"{where}: {problem}")
    try:
        tfjs_dtype(dtype)
    except SourceError as error:
        raise SourceError(f"{where}: {error}") from None


@dataclass
class Tensor:
    """One tensor of a source: its name, shape, source dtype, and a way to read it in chunks."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    read: Callable[[Scratch, int], Iterator[np.ndarray]]  # (scratch, chunk_bytes) -> 1-D chunks
    release: Callable[[], None] = lambda: None
    file_range: Optional[FileRange] = None  # where the stored bytes lie, when the C++ loop can read them

    @property
    def size(self) -> int:
        return math.prod(self.shape)

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
        target = dtypes.STORED_NUMPY[tfjs_dtype(self.dtype)]
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


def pread_chunks(path: Path, offset: int, nbytes: int, dtype: np.dtype):
    """A reader of [offset, offset + nbytes) of a file as chunks of dtype, via pread into a reused
    buffer (page-cache copies, no mapping)."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        step = max(chunk_bytes // dtype.itemsize, 1) * dtype.itemsize
        fd = open_regular(path, "file", SourceError)
        try:
            buf = scratch.get(2, min(step, nbytes) if nbytes else 1)
            for begin in range(0, nbytes, step):
                part = buf[:min(step, nbytes - begin)]
                try:
                    got = os.preadv(fd, [memoryview(part)], offset + begin)
                except OSError as error:
                    raise SourceError(f"{path}: cannot read: {error.strerror or error}") from None
                if got != len(part):
                    raise SourceError(f"{path}: file ends early (tensor bytes {offset + begin}..); "
                                      f"was it changed while being read?")
                yield part.view(dtype)
        finally:
            os.close(fd)
    return read



MAX_FILES = 100_000  # a folder of .npy weights with more files than this is not a model


def npy_files(folder: Path, first: bool = False) -> List[Path]:
    """The .npy files under folder, sorted (symlinked folders not followed; at most MAX_FILES
    entries looked at, so pointing qshard at / fails fast instead of walking the disk)."""
    found, seen = [], 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        seen += len(dirs) + len(names)
        if seen > MAX_FILES:
            raise SourceError(f"{folder}: more than {MAX_FILES} files and folders below it; "
                              f"not a folder of .npy weights")
        found.extend(Path(root) / n for n in names if n.endswith(".npy"))
        if first and found:
            break
    return sorted(found)


# --- the registry --------------------------------------------------------------------------------

Opener = Callable[[Path], Source]
_OPENERS: Dict[str, Opener] = {}
KINDS = ("tfjs", "safetensors", "npz", "h5")  # what --from accepts (tfjs is read by webmodel)


def register(kind: str, opener: Opener) -> None:
    """Make `open_source(path, kind)` call opener(path)."""
    _OPENERS[kind] = opener


def guess_kind(path: Union[str, os.PathLike]) -> str:
    """The source kind from the path: a folder with a model JSON (model.json, weights_manifest.json
    or any .json holding a weights manifest) or such a file is tfjs; .safetensors; .npz or a folder
    of .npy; .h5 / .hdf5 / .keras weights."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    name = p.name.lower()
    if p.is_dir():
        if mf.model_files(p):
            return "tfjs"
        if npy_files(p, first=True):
            return "npz"
    elif name.endswith(".json"):
        return "tfjs"
    elif name.endswith(".safetensors"):
        return "safetensors"
    elif name.endswith(".npz"):
        return "npz"
    elif name.endswith((".h5", ".hdf5")):
        return "h5"
    raise SourceError(f"{p}: cannot tell what kind of model this is; supported: a tfjs web model (a folder "
                      f"holding one model JSON, or the JSON file), .safetensors, .npz or a folder of .npy, "
                      f"Keras .h5 / .weights.h5 (give --from {'|'.join(KINDS)})")


def open_source(path: Union[str, os.PathLike], kind: Optional[str] = None) -> Source:
    """Open a model of any supported kind as a tensor source (kind guessed from the path if None)."""
    p = Path(path)
    kind = kind or guess_kind(p)
    if kind not in KINDS:
        raise SourceError(f"unknown source kind {kind!r} (supported: {', '.join(KINDS)})")
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    opener = _OPENERS.get(kind)
    if opener is None:
        raise SourceError("tfjs sources are read by qshard.tfjs.quantize_model")
    return opener(p)


# The kinds qshard reads (each module registers its opener when imported).
from qshard import dtypes
from qshard.formats.sources import h5, numpy, safetensors  # noqa: E402,F401
