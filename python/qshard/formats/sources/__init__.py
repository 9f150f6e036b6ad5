"""Tensor sources: every kind of model qshard reads, behind one small protocol and one registry.

A source (`Source`) is a model's tensors in file order, in groups, plus what to write beside the
shards. Each tensor (`SourceTensor`) says its name, shape, web-model dtype and stored quantization,
and gives its values as float32 chunks or its stored bytes as they are, never a whole large
tensor in memory; a tensor whose values lie in a file as they are also gives their FileRange and
is then quantized by one C++ call (qshard.formats.file_range). One loop quantizes any source:
qshard.formats.writer.write_source, which `qshard.tfjs.quantize_model` runs.

Which kind of input a path is, is decided here only: `guess_kind` asks each registered kind, in
the order they were registered, whether it claims the path.

Adding a format (ONNX initializers, GGUF, ...) is one new module in this package, imported at the
bottom of this file, that:
  1. parses the file's header (with qshard.formats.inputs: open_file / open_regular, parse_json,
     read_npy_header...), refusing bad input with a SourceError that names the file and tensor;
  2. makes one `Tensor` per tensor, calling `check_tensor` first: `read` yields its values in
     C order as 1-D numpy chunks of about chunk_bytes (`pread_chunks(path, offset, nbytes, dtype)`
     for values that lie in the file as they are, `array_reader(array)` for values in memory), and
     `file_range=in_file(path, offset, nbytes, dtype)` where they lie in the file in a form the
     C++ loop reads (float32/float16/bfloat16/float64, little-endian), and
     `stored_range=as_stored(path, offset, nbytes, dtype)` so weights written unchanged are copied
     in C++ too;
  3. returns `Source(path, "gguf", tensors, close=...)` from an opener, and calls
     `register("gguf", opener, claims=lambda p: has_suffix(p, ".gguf"), describes=".gguf")`.
The writer, the CLI's --from, the report, NaN/Inf fall-back and atomic output then apply as they
do for every other kind (tests/formats/test_seam.py registers a fake kind this way). A source
whose tensors are stored quantized (tfjs) implements SourceTensor itself (sources/tfjs.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from qshard import dtypes
from qshard.errors import SourceError
from qshard.formats import manifest as mf
from qshard.formats.file_range import DType, FileRange, dtype_str, itemsize
from qshard.formats.inputs import open_regular
from qshard.formats.shards import Scratch
from qshard.lazy import np

if TYPE_CHECKING:
    import numpy

CHUNK_BYTES = 128 * 1024  # below Zen 1's L2 cliff for pread copies; see shards.ShardSet.chunks
Reader = Callable[[Scratch, int], Iterator["numpy.ndarray"]]  # (scratch, chunk_bytes) -> 1-D chunks in C order


class SourceTensor(Protocol):
    """The seam: what the write loop needs of a tensor, whatever file it comes from."""

    name: str
    shape: Tuple[int, ...]
    web_dtype: str                             # the dtype a web model's manifest gives it
    quantization: Optional[mf.Quantization]    # how its stored bytes are quantized (None: plain values)
    nbytes: int                                # bytes it takes in the input (the report's bytes in)
    stored_nbytes: int                         # bytes it takes written unquantized, as stored_chunks gives them
    file_range: Optional[FileRange]            # where its values lie in files, for the C++ loop (None: chunks)
    stored_range: Optional[FileRange]          # where the bytes stored_chunks gives lie in files as they are
                                               # (the writer then copies them in C++; None: stored_chunks)

    def float32_chunks(self, scratch: Scratch) -> Iterator[np.ndarray]:
        """Its values as 1-D float32 chunks (only asked of float32 tensors)."""

    def stored_chunks(self, scratch: Scratch) -> Iterator[np.ndarray]:
        """The bytes a web model stores for it when it is not re-quantized, as uint8 chunks."""


# The dtype each source dtype is stored as in a web model (as tensorflowjs converts them).
def tfjs_dtype(dtype: DType) -> str:
    """The tfjs dtype a source dtype becomes (SourceError when it has none)."""
    code = dtype_str(dtype)  # byte order, kind, bytes per element: "<f4"
    kind = code[1]
    if kind == "f":
        return "float32"
    if kind in "iu":
        return "int32"
    if kind == "b":
        return "bool"
    if code[1:] in ("c8", "c16"):
        return "complex64"
    raise SourceError(f"dtype {np.dtype(dtype)} has no TensorFlow.js counterpart (float, int, uint, bool and "
                      f"complex do)")


def check_tensor(where: str, shape, dtype: DType) -> None:
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
    """A SourceTensor of plain values: name, shape, source dtype (a numpy dtype or its dtype.str,
    "<f4"), and a way to read it in chunks."""

    name: str
    shape: Tuple[int, ...]
    dtype: DType
    read: Reader
    release: Callable[[], None] = lambda: None
    file_range: Optional[FileRange] = None  # where the stored bytes lie, when the C++ loop can read them
    stored_range: Optional[FileRange] = None  # the same, when they are already what a web model stores
    quantization: Optional[mf.Quantization] = None  # plain values are not stored quantized

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * itemsize(self.dtype)

    @property
    def web_dtype(self) -> str:
        return tfjs_dtype(self.dtype)

    @property
    def stored_nbytes(self) -> int:
        return self.size * mf.DTYPES[self.web_dtype]

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
                with np.errstate(over="ignore"):  # float64 beyond float32 becomes +-inf, as in tensorflowjs;
                    out[...] = chunk              # the writer's non-finite policy then says so by name
                yield out

    def stored_chunks(self, scratch: Scratch, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The bytes a web model stores for this tensor unquantized (tfjs dtype), chunk by chunk."""
        target = dtypes.STORED_NUMPY[self.web_dtype]
        for chunk in self.read(scratch, chunk_bytes):
            if chunk.dtype == target:
                yield chunk.view(np.uint8)
            else:
                out = scratch.get(3, chunk.size * target.itemsize).view(target)
                with np.errstate(over="ignore"):  # float64 -> +-inf, int64 -> int32 wraps: as numpy's astype
                    out[...] = chunk              # does, like tensorflowjs
                yield out.view(np.uint8)


@dataclass
class Source:
    """A model's tensors in file order, in groups, and the JSON document written beside the shards."""

    path: Path
    kind: str
    tensors: List[SourceTensor]
    groups: Optional[List[List[SourceTensor]]] = None  # None: every tensor in one group
    close: Callable[[], None] = lambda: None
    document: Callable[[Sequence[mf.Group]], Any] = mf.dump_manifest  # the written groups -> the JSON to write
    document_name: str = mf.MANIFEST_NAME
    inputs: List[Path] = field(default_factory=list)  # files no output may overwrite (default: path)
    notes: List[str] = field(default_factory=list)  # what the user should know of how it was read

    def tensor_groups(self) -> List[List[SourceTensor]]:
        """The tensors group by group, as the output keeps them."""
        return self.groups if self.groups is not None else [self.tensors]

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pread_chunks(path: Path, offset: int, nbytes: int, dtype: DType) -> Reader:
    """A reader of [offset, offset + nbytes) of a file as chunks of dtype, via pread into a reused
    buffer (page-cache copies, no mapping)."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator["numpy.ndarray"]:
        kind = np.dtype(dtype)
        step = max(chunk_bytes // kind.itemsize, 1) * kind.itemsize
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
                yield part.view(kind)
        finally:
            os.close(fd)
    return read


def array_reader(array: np.ndarray) -> Reader:
    """A reader of an array already in memory, as C-order chunks of about chunk_bytes."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.isnative:  # numpy's own dtype object (h5py hands out equal copies the kernels refuse)
        flat = flat.view(np.dtype(flat.dtype.str))

    def read(scratch: Scratch, chunk_bytes: int) -> Iterator[np.ndarray]:
        step = max(chunk_bytes // max(flat.itemsize, 1), 1)
        for begin in range(0, flat.size, step):
            yield flat[begin:begin + step]
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


def has_suffix(path: Path, *suffixes: str) -> bool:
    """Whether path is not a folder and its name ends (in any case) with one of suffixes."""
    return not path.is_dir() and path.name.lower().endswith(suffixes)


# --- the registry: the one place that decides what kind of input a path is ----------------------

Opener = Callable[[Path], Source]


@dataclass(frozen=True)
class Kind:
    """A registered input kind: how to open it, whether a path looks like it, and its words in errors."""

    opener: Opener
    claims: Callable[[Path], bool]  # whether guess_kind should take a path for this kind
    describes: str


def _never(path: Path) -> bool:
    return False


REGISTRY: Dict[str, Kind] = {}


def register(kind: str, opener: Opener, claims: Optional[Callable[[Path], bool]] = None,
             describes: str = "") -> None:
    """Make `open_source(path, kind)` call opener(path), and `guess_kind(path)` answer kind for
    the paths `claims` accepts (asked after the kinds registered before it)."""
    REGISTRY[kind] = Kind(opener, claims or _never, describes or kind)


def kinds() -> Tuple[str, ...]:
    """The kinds registered, in order (what --from accepts)."""
    return tuple(REGISTRY)


def guess_kind(path: Union[str, os.PathLike]) -> str:
    """The source kind from the path: the first registered kind that claims it."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    for kind, entry in REGISTRY.items():
        if entry.claims(p):
            return kind
    described = ", ".join(entry.describes for entry in REGISTRY.values())
    raise SourceError(f"{p}: cannot tell what kind of model this is; supported: {described} "
                      f"(give --from {'|'.join(REGISTRY)})")


def open_source(path: Union[str, os.PathLike], kind: Optional[str] = None) -> Source:
    """Open a model of any supported kind as a tensor source (kind guessed from the path if None)."""
    p = Path(path)
    kind = kind or guess_kind(p)
    if kind not in REGISTRY:
        raise SourceError(f"unknown source kind {kind!r} (supported: {', '.join(REGISTRY)})")
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    source = REGISTRY[kind].opener(p)
    if not source.inputs:
        source.inputs = [p]
    return source


# The kinds qshard reads, in the order guess_kind asks them (each module registers itself).
from qshard.formats.sources import tfjs, safetensors, numpy, h5, keras  # noqa: E402,F401

KINDS = kinds()  # the built-in kinds
