"""Reading tfjs shards: safe paths, pread into buffers the reader owns.

Shards are never memory-mapped: a mapped file that another process truncates kills the reader with
SIGBUS on the next access to a page past the new end, with no chance to report it. pread returns a
short count instead, which becomes a ShardError naming the file. Quantizing reads every tensor
through one reused 128 KiB buffer either way, so this costs nothing there; whole-tensor reads
(inspect --error, read_weights) copy once from the page cache, where a mapping would fault every
page in."""
from __future__ import annotations

import bisect
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from qshard import dtypes
from qshard.errors import ShardError
from qshard.formats import manifest as mf
from qshard.formats.file_range import FileRange
from qshard.formats.inputs import check_memory, open_regular
from qshard.lazy import np


# Characters a browser (the WHATWG URL parser) resolves differently from a file system: it
# percent-decodes ('%2e%2e' is '..'), reads '\\' as '/', cuts the path at '?' and '#', drops tabs
# and line breaks, and strips trailing spaces and control characters (tfjs puts the model's folder
# URL in front, so leading ones stay). A shard path holding one names one file on disk and another
# on a web server; tests/formats/test_tfjs_agreement.py checks the rule both ways.
_URL_UNSAFE = {"%": "'%' (a browser percent-decodes it)", "\\": "a backslash (a browser reads it as '/')",
               "?": "'?' (a browser starts a query there)", "#": "'#' (a browser starts a fragment there)"}


def _browser_problem(path: str) -> str:
    for char, why in _URL_UNSAFE.items():
        if char in path:
            return why
    if any(c in path for c in "\t\n\r"):
        return "a tab or line break (a browser drops them from URLs)"
    if path[-1] <= " ":
        return "a trailing space or control character (a browser strips it from the end of a URL)"
    return ""


def safe_shard_path(folder: Path, path: str, source: str, real_folder: Optional[str] = None) -> Path:
    """folder/path, refusing URLs, absolute paths, '..', symlinks that leave the folder, and
    characters a browser resolves differently from the file system. real_folder: the folder's
    os.path.realpath, when the caller has it (a model of many shards resolves it once)."""
    if "://" in path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise ShardError(f"{source}: shard path {path!r} is not a relative file name inside the model folder")
    parts = path.replace("\\", "/").split("/")
    if any(part in ("..", "") for part in parts) or "\x00" in path:
        raise ShardError(f"{source}: shard path {path!r} leaves the model folder")
    problem = _browser_problem(path)
    if problem:
        raise ShardError(f"{source}: shard path {path!r} holds {problem}, so a browser would fetch "
                         f"another file than the one on disk")
    full = folder / path
    real_folder = real_folder or os.path.realpath(folder)
    # With '..' refused, only a symlink among path's own parts can lead out: one lstat a part
    # (realpath of the whole path would lstat every folder above it again, for every shard).
    here = real_folder
    for part in parts:
        here = os.path.join(here, part)
        if os.path.islink(here):
            if os.path.commonpath([real_folder, os.path.realpath(full)]) != real_folder:
                raise ShardError(f"{source}: shard path {path!r} resolves outside the model folder (symlink)")
            break
    return full


def size_problem(source: str, group: int, have: int, need: int, paths) -> str:
    """The one wording of a group whose shard bytes do not match its weights."""
    gap = f"{have - need} extra bytes" if have > need else f"{need - have} bytes missing"
    return (f"{source}: group {group}: the shards hold {have} bytes but its weights need {need} "
            f"({gap}; files: {', '.join(paths) or 'none'})")


@dataclass
class Located:
    """Where a weight's bytes are: group index, byte offset in the group, byte length."""

    group: int
    offset: int
    nbytes: int


class GroupBytes:
    """The shards of one group, addressed as one byte range and read with pread (see the module
    docstring: never mapped). Each shard is checked to be a regular file when the group is opened;
    at most OPEN_SHARDS stay open at a time, and one opened again must be the same file."""

    OPEN_SHARDS = 64

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)
        self.starts: List[int] = []
        self._sizes: List[int] = []
        self._ids: List[Tuple[int, int]] = []
        self._fds: "OrderedDict[int, int]" = OrderedDict()
        total = 0
        try:
            for index, path in enumerate(self.files):
                st = os.fstat(self._fd(index))
                self.starts.append(total)
                self._sizes.append(st.st_size)
                self._ids.append((st.st_dev, st.st_ino))
                total += st.st_size
        except BaseException:
            self.close()
            raise
        self.total = total

    def view(self, offset: int, nbytes: int) -> memoryview:
        """The bytes [offset, offset + nbytes), read into a new buffer the caller owns."""
        out = bytearray(nbytes)
        self.read_into(offset, memoryview(out))
        return memoryview(out)

    def _spans(self, offset: int, nbytes: int) -> Iterator[Tuple[int, int, int]]:
        """[offset, offset + nbytes) as (shard index, offset in that shard, bytes) per shard."""
        done = 0
        index = bisect.bisect_right(self.starts, offset) - 1 if nbytes else 0
        while done < nbytes:
            start = offset + done - self.starts[index]
            piece = min(nbytes - done, self._sizes[index] - start)
            yield index, start, piece
            done += piece
            index += 1

    def pieces(self, offset: int, nbytes: int) -> Tuple[Tuple[str, int, int], ...]:
        """[offset, offset + nbytes) as (shard path, offset in it, bytes), one per shard it touches."""
        return tuple((str(self.files[index]), start, piece) for index, start, piece in self._spans(offset, nbytes))

    def read_into(self, offset: int, out: memoryview) -> None:
        """Copy [offset, offset + len(out)) into out with pread, shard by shard (no page faults
        on a mapping, no allocation)."""
        done = 0
        for index, start, piece in self._spans(offset, len(out)):
            try:
                got = os.preadv(self._fd(index), [out[done:done + piece]], start)
            except OSError as error:
                raise ShardError(f"{self.files[index]}: cannot read shard: {error.strerror or error}") from None
            if got != piece:
                raise ShardError(f"{self.files[index]}: shard changed while being read (it is now shorter)")
            done += piece

    def _fd(self, index: int) -> int:
        fd = self._fds.get(index)
        if fd is not None:
            self._fds.move_to_end(index)
            return fd
        if len(self._fds) >= self.OPEN_SHARDS:
            os.close(self._fds.popitem(last=False)[1])
        fd = open_regular(self.files[index], "shard file", ShardError)
        if index < len(self._ids):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._ids[index]:
                os.close(fd)
                raise ShardError(f"{self.files[index]}: shard was replaced by another file while being read")
        self._fds[index] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


MAX_STRINGS = 1 << 24  # elements of one string weight: a vocabulary is far smaller; walking this many takes seconds


def _string_bytes(data: GroupBytes, offset: int, spec: mf.WeightSpec, source: str) -> int:
    """Bytes of a string weight: per element a uint32 length, then that many bytes. Its element
    count is refused at once when even empty strings would not fit, so the walk is bounded by the
    shard bytes; it reads them a window at a time."""
    past_end = ShardError(f"{source}: string weight {spec.name!r} runs past the end of its shards")
    if spec.size > MAX_STRINGS:
        raise ShardError(f"{source}: string weight {spec.name!r} has {spec.size} elements; qshard reads string "
                         f"weights of at most {MAX_STRINGS} (each element's length is read one by one)")
    if spec.size * 4 > data.total - offset:
        raise ShardError(f"{source}: string weight {spec.name!r} has {spec.size} elements, which need at "
                         f"least {spec.size * 4} bytes, but its shards hold {data.total - offset} from its start")
    window, window_start, pos = b"", offset, offset
    for _ in range(spec.size):
        if pos + 4 > data.total:
            raise past_end
        if pos + 4 > window_start + len(window):
            window_start = pos
            window = bytes(data.view(pos, min(1 << 20, data.total - pos)))
        at = pos - window_start
        pos += 4 + int.from_bytes(window[at:at + 4], "little")
    if pos > data.total:
        raise past_end
    return pos - offset


def locate_group(gi: int, group: mf.Group, data: GroupBytes, source: str, check: bool = True):
    """Where each weight of one group lies in its shards ({name: Located}); ShardError when a shard
    is empty or the shard bytes do not match the weights (extra bytes tolerated if not check)."""
    for path, size in zip(data.files, data._sizes):
        if size == 0:
            raise ShardError(f"{path}: shard file is empty (group {gi}); a complete shard holds bytes")
    if not any(w.dtype == "string" and not w.quantization for w in group.weights):
        need = sum(w.nbytes for w in group.weights)
        if need != data.total and (check or need > data.total):
            raise ShardError(size_problem(source, gi, data.total, need, group.paths))
    where, offset = {}, 0
    for spec in group.weights:
        if spec.dtype == "string" and not spec.quantization:
            nbytes = _string_bytes(data, offset, spec, source)
        else:
            nbytes = spec.nbytes
        if offset + nbytes > data.total:
            raise ShardError(f"{source}: group {gi}: the shards hold {data.total} bytes, but weight "
                             f"{spec.name!r} needs bytes {offset}..{offset + nbytes} (files: "
                             f"{', '.join(group.paths) or 'none'})")
        where[spec.name] = Located(gi, offset, nbytes)
        offset += nbytes
    if check and offset != data.total:
        raise ShardError(size_problem(source, gi, data.total, offset, group.paths))
    return where


class ShardSet:
    """Every group of a model, with each weight located and the sizes checked against the files."""

    def __init__(self, model: mf.ModelFile, check: bool = True):
        self.model = model
        source = str(model.path)
        self.groups: List[GroupBytes] = []
        self.where = {}
        real_folder = os.path.realpath(model.folder)
        for gi, group in enumerate(model.groups):
            data = GroupBytes([safe_shard_path(model.folder, p, source, real_folder) for p in group.paths])
            self.groups.append(data)
            self.where.update(locate_group(gi, group, data, source, check))

    def chunks(self, spec: mf.WeightSpec, scratch: "Scratch", chunk_bytes: int = 128 * 1024):
        """The stored values of a numeric weight, chunk after chunk, through one reused buffer small
        enough to stay in cache (each chunk is valid until the next). Measured on Zen 1: pread into
        a 128 KiB buffer copies from the page cache at ~10 GB/s, into 256 KiB and more at ~2 GB/s
        (source and destination no longer fit the 512 KiB L2 together)."""
        loc = self.where[spec.name]
        dtype = dtypes.STORED_NUMPY[spec.stored_dtype]
        step = max(chunk_bytes // dtype.itemsize, 1) * dtype.itemsize
        buf = scratch.get(2, min(step, loc.nbytes))
        group = self.groups[loc.group]
        for begin in range(0, loc.nbytes, step):
            part = buf[:min(step, loc.nbytes - begin)]
            group.read_into(loc.offset + begin, memoryview(part))
            yield part.view(dtype)

    def file_range(self, spec: mf.WeightSpec) -> FileRange:
        """Where a numeric weight's stored values lie in the shard files, for the C++ loop: its
        stored range, with the min and scale its uint8/uint16 codes mean."""
        where = self.stored_range(spec)
        q = spec.quantization
        if q is not None and q.dtype in dtypes.AFFINE_QMAX:
            where = replace(where, codes_min=q.min, codes_scale=q.scale)
        return where

    def stored_range(self, spec: mf.WeightSpec) -> FileRange:
        """Where a weight's stored bytes (codes, strings and all) lie in the shard files."""
        loc = self.where[spec.name]
        return FileRange(self.groups[loc.group].pieces(loc.offset, loc.nbytes), spec.stored_dtype, math.prod(spec.shape),
                         error=ShardError)

    def raw_bytes(self, name: str) -> memoryview:
        """A weight's stored bytes, read into memory the caller owns."""
        loc = self.where[name]
        check_memory(loc.nbytes, f"{self.model.path}: weight {name!r}", ShardError)
        return self.groups[loc.group].view(loc.offset, loc.nbytes)

    def stored(self, spec: mf.WeightSpec) -> np.ndarray:
        """The stored values (codes for quantized weights), in memory the caller owns."""
        buf = self.raw_bytes(spec.name)
        if spec.dtype == "string" and not spec.quantization:
            return decode_strings(bytes(buf), spec.shape)
        return np.frombuffer(buf, dtype=dtypes.STORED_NUMPY[spec.stored_dtype]).reshape(spec.shape)


class Scratch:
    """Reusable byte buffers, grown as needed: reading tensor after tensor allocates (and faults
    in) memory once, not per tensor."""

    def __init__(self):
        self._buffers = {}

    def get(self, slot: int, nbytes: int) -> np.ndarray:
        buf = self._buffers.get(slot)
        if buf is None or buf.size < nbytes:
            buf = np.empty(max(nbytes, 64), np.uint8)
            self._buffers[slot] = buf
        return buf[:nbytes]


def decode_strings(data: bytes, shape: Tuple[int, ...]) -> np.ndarray:
    values, pos = [], 0
    for _ in range(int(np.prod(shape))):
        length = int.from_bytes(data[pos:pos + 4], "little")
        values.append(data[pos + 4:pos + 4 + length])
        pos += 4 + length
    return np.array(values, dtype=object).reshape(shape)


def encode_strings(array: np.ndarray) -> bytes:
    """tfjs string tensors: per element a uint32 little-endian byte length, then the UTF-8 bytes."""
    parts = []
    for value in array.reshape(-1).tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)
