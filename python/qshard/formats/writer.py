"""The writing pipeline shared by every converter: weights planned as items, written group by
group into C++ shard writers in one pass, NaN/Inf tensors dropped to float32, and output folders
that appear only when complete. `write_source` is the one loop that quantizes any input source
(qshard.formats.sources)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from qshard import _core, dtypes
from qshard.errors import QshardError, SourceError
from qshard.formats import manifest as mf
from qshard.formats import patterns
from qshard.formats.file_range import FileRange
from qshard.formats.outputs import atomic_folder, write_file_atomically  # noqa: F401 (the writers' import)
from qshard.formats.shards import Scratch
from qshard.lazy import np

if TYPE_CHECKING:
    from qshard.formats.sources import Source, SourceTensor

QMAX = dtypes.AFFINE_QMAX
DEFAULT_SHARD_SIZE = 4 * 1024 * 1024  # what browsers cache, tensorflowjs's default
Progress = Optional[Callable[[int, int], None]]


def check_shard_size(shard_size) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise QshardError(f"shard size must be a positive integer, got {shard_size!r}")


def first_duplicate(names: Iterable[str]) -> Optional[str]:
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


@dataclass
class Kept:
    """A weight left as it was although a dtype was asked for it, and why."""

    name: str
    asked: str
    reason: str


@dataclass
class QuantizeReport:
    """What quantize_model did."""

    out_dir: Path
    weights: int
    changed: Dict[str, str] = field(default_factory=dict)  # name -> new stored dtype
    kept: List[Kept] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    unmatched_patterns: List[str] = field(default_factory=list)
    # (name, stored, new): already-quantized weights re-quantized to a wider dtype, which costs bytes
    # and cannot bring back what the narrower codes lost.
    widened: List[Tuple[str, str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what the source said of how it read the input
    _explicit: Set[str] = field(default_factory=set, repr=False)  # names a pattern (not a bare flag) matched

    @classmethod
    def plan(cls, names: List[str], out_dir, uint8, uint16, float16, keep, source: str = "the model",
             allow_unmatched: bool = False) -> Tuple["QuantizeReport", Dict[str, str]]:
        """An empty report for these weights and the dtype the patterns ask for each; a PatternError
        if a pattern matches no weight of `source`, unless allow_unmatched."""
        targets = patterns.resolve(names, uint8, uint16, float16, keep)
        unmatched = patterns.check_matched(names, source, allow_unmatched, uint8=uint8, uint16=uint16,
                                           float16=float16, keep=keep)
        report = cls(Path(out_dir), len(names), unmatched_patterns=unmatched,
                     _explicit=patterns.explicitly_matched(names, uint8, uint16, float16))
        return report, targets

    def decide(self, name: str, dtype: str, asked: Optional[str], stored: Optional[str] = None) -> Optional[str]:
        """The dtype to write a weight as (None: as it is), noted in the report: only float32
        weights are quantized, and one already stored as asked is left alone."""
        if not asked or asked == stored:
            return None
        if dtype != "float32":
            if name in self._explicit:
                self.kept.append(Kept(name, asked, f"is {dtype}; only float32 weights are quantized"))
            return None
        self.changed[name] = asked
        if stored in dtypes.QUANT_ITEMSIZE and dtypes.QUANT_ITEMSIZE[asked] > dtypes.QUANT_ITEMSIZE[stored]:
            self.widened.append((name, stored, asked))
        return asked

    def written(self, groups, kept: List[Kept]) -> None:
        """Record what the writer did: weights dropped to float32, and the bytes written."""
        for k in kept:
            self.changed.pop(k.name, None)
        self.kept.extend(kept)
        self.bytes_out = sum(item.nbytes for row in groups for item in row)


@dataclass
class Item:
    """One weight to write: where its values come from and how it will be stored."""

    name: str
    shape: Tuple[int, ...]
    dtype: str                                    # tfjs dtype in the manifest
    target: Optional[str] = None                  # uint8/uint16/float16, or None: bytes as they are
    load: Optional[Callable[[Scratch], object]] = None  # stored bytes, whole (no target)
    quantization: Optional[mf.Quantization] = None  # of stored bytes carried unchanged
    stored_nbytes: int = 0                        # bytes if written unchanged
    fallback: Optional[Callable[[Scratch], object]] = None  # stored float32 bytes if the target is refused
    chunks: Optional[Callable[[Scratch], Iterable[np.ndarray]]] = None  # float32 values piece by piece
    raw_chunks: Optional[Callable[[Scratch], Iterable[np.ndarray]]] = None  # stored bytes piece by piece
    file_range: Optional[FileRange] = None        # where the values lie in files: one C++ call quantizes them
    raw_range: Optional[FileRange] = None         # where the stored bytes lie as they are: one C++ call copies them

    @property
    def nbytes(self) -> int:
        if self.target is None:
            return self.stored_nbytes
        return math.prod(self.shape) * (1 if self.target == "uint8" else 2)


class Refused(Exception):
    """A tensor its target cannot represent (NaN / Inf); the group is written again without it."""

    def __init__(self, item: Item, reason: str):
        super().__init__(reason)
        self.item, self.reason = item, reason


def whole(array: np.ndarray) -> Callable[[Scratch], Iterable[np.ndarray]]:
    """A tensor already in memory as a source of float32 chunks: one chunk (none when empty)."""
    def chunks(_: Scratch) -> Iterable[np.ndarray]:
        x = np.require(array, np.float32, ["C_CONTIGUOUS", "ALIGNED"]).reshape(-1)
        return (x,) if x.size else ()
    return chunks


def _merge_range(a: Tuple[float, float, bool], b: Tuple[float, float, bool]) -> Tuple[float, float, bool]:
    """Combine two (lo, hi, has_nan) as one pass would: -0.0 orders below +0.0."""
    def below(x, y):  # x < y in that order
        return x < y or (x == y == 0 and math.copysign(1.0, x) < 0 < math.copysign(1.0, y))
    lo = b[0] if below(b[0], a[0]) else a[0]
    hi = b[1] if below(a[1], b[1]) else a[1]
    return lo, hi, a[2] or b[2]


def _refusal(target: str, lo: float, hi: float, has_nan: bool) -> str:
    """Why a tensor with this range stays float32 although `target` was asked ('' if it does not)."""
    if has_nan:
        return ("holds NaN (kept as float32 rather than a float16 NaN)" if target == "float16"
                else f"holds NaN, which {target} cannot represent")
    if target in QMAX and (math.isinf(lo) or math.isinf(hi)):
        return f"holds Inf, which {target} cannot represent"
    return ""


def _quantized_spec(item: Item, mn: float, scale: float) -> mf.WeightSpec:
    if item.target == "float16":
        return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization("float16", original_dtype="float32"))
    return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization(item.target, mn, scale, "float32"))


def _append_chunked(writer: "_core.ShardWriter", item: Item, scratch: Scratch, threads: int) -> mf.WeightSpec:
    """Two passes over cache-sized chunks: min/max, then codes straight into the shard writer."""
    rng = None
    for chunk in item.chunks(scratch):
        part = _core.minmax(chunk, "", 0)
        rng = part if rng is None else _merge_range(rng, part)
    lo, hi, has_nan = rng if rng is not None else (0.0, 0.0, False)
    reason = _refusal(item.target, lo, hi, has_nan)
    if reason:
        raise Refused(item, reason)
    mn, scale = 0.0, 1.0
    if item.target == "float16":
        for chunk in item.chunks(scratch):
            writer.append_float16(chunk, "", threads)
    elif rng is not None:
        qmax = QMAX[item.target]
        mn, scale, mx = _core.affine_params(lo, hi, qmax)
        for chunk in item.chunks(scratch):
            writer.append_quantized(chunk, mn, scale, mx, qmax, False, "", threads)
    return _quantized_spec(item, mn, scale)


def _from_files(item: Item, where: FileRange, call: Callable[[], object]):
    """call() (a ShardWriter method reading `where`), its read failures raised as the source's
    error naming the file and the weight."""
    try:
        return call()
    except _core.ChangedFileError as error:
        raise where.error(f"{error} (reading weight {item.name!r})") from None
    except OSError as error:  # a failed read names its file; a failed shard write passes through
        if error.filename not in {path for path, _, _ in where.pieces}:
            raise
        raise where.error(f"{error.filename}: cannot read weight {item.name!r}: {error.strerror}") from None


def _append_file(writer: "_core.ShardWriter", item: Item, threads: int) -> mf.WeightSpec:
    """One C++ call without the GIL: the file range read, its min/max, the codes appended (the
    same two passes on `threads`). A NaN tensor is refused for float16 too (the policy above)."""
    where = item.file_range
    written, (lo, hi, has_nan), mn, scale = _from_files(item, where, lambda: writer.append_file(
        where.pieces, where.stored, where.count, item.target, where.codes_min, where.codes_scale, True, "", threads))
    if not written:
        raise Refused(item, _refusal(item.target, lo, hi, has_nan))
    return _quantized_spec(item, mn, scale)


def _append(writer: "_core.ShardWriter", item: Item, scratch: Scratch, threads: int) -> mf.WeightSpec:
    """Write one weight; raises Refused before writing a byte of a tensor its target cannot hold."""
    if item.target is not None and item.file_range is not None:
        return _append_file(writer, item, threads)
    if item.target is not None:
        return _append_chunked(writer, item, scratch, threads)
    if item.raw_range is not None:
        _from_files(item, item.raw_range, lambda: writer.append_file_bytes(item.raw_range.pieces))
    elif item.raw_chunks is not None:
        for chunk in item.raw_chunks(scratch):
            writer.append(chunk)
    else:
        data = item.load(scratch)
        if isinstance(data, np.ndarray):
            writer.append(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        elif len(data):
            writer.append(np.frombuffer(data, np.uint8))
    return mf.WeightSpec(item.name, item.shape, item.dtype, item.quantization)


MAX_SHARDS = 100_000  # per group: 400 GiB in tfjs's 4 MiB shards; keeps tiny --shard-size values from
                      # writing a folder of millions of files that no browser (nor qshard) reads


def check_writable(groups: Sequence[Sequence[Item]], shard_size: int) -> None:
    """Refuse, before a byte is written, what the readers would refuse: weight names a manifest
    cannot carry, and more shards than MAX_SHARDS in a group."""
    for group in groups:
        for item in group:
            problem = mf.name_problem(item.name)
            if problem:
                raise QshardError(problem)
        count = -(-sum(item.nbytes for item in group) // shard_size)
        if count > MAX_SHARDS:
            raise QshardError(f"shard size {shard_size} would split a group into {count} shards; "
                              f"at most {MAX_SHARDS} (use a larger --shard-size)")


def write_groups(out_dir: Path, groups: Sequence[Sequence[Item]], shard_size: int, threads: int,
                  progress: Progress) -> Tuple[List[mf.Group], List[Kept]]:
    """Write every group in one pass over its tensors. Sizes (and so shard names) are fixed from
    the targets up front; a tensor that turns out to hold NaN/Inf is dropped to float32 and its
    group written again (rare, and only that group)."""
    check_writable(groups, shard_size)
    kept: List[Kept] = []
    scratch = Scratch()
    total = sum(item.nbytes for group in groups for item in group)
    done_before = 0
    result = []
    for gi, group in enumerate(groups):
        while True:
            writer = _core.ShardWriter(str(out_dir), gi + 1, sum(item.nbytes for item in group), shard_size)
            done = done_before
            try:
                specs = []
                for item in group:
                    specs.append(_append(writer, item, scratch, threads))
                    done += item.nbytes
                    if progress:
                        progress(done, total)
                writer.finish()
                break
            except BaseException as error:
                writer.abort()  # no background write may land after the caller cleans up
                if not isinstance(error, Refused):
                    raise
                refused = error
                for name in writer.names:
                    (out_dir / name).unlink(missing_ok=True)
                item = refused.item
                kept.append(Kept(item.name, item.target, refused.reason))
                total += item.stored_nbytes - item.nbytes
                item.target = None
                if item.raw_chunks is None:
                    item.load = item.fallback
        done_before = done
        result.append(mf.Group(tuple(writer.names), tuple(specs)))
    return result, kept


def source_item(tensor: "SourceTensor", target: Optional[str]) -> Item:
    """The item that writes a source's tensor: re-quantized to target, or its stored bytes as they are."""
    item = Item(tensor.name, tensor.shape, tensor.web_dtype, quantization=tensor.quantization,
                stored_nbytes=tensor.stored_nbytes, raw_chunks=tensor.stored_chunks, raw_range=tensor.stored_range)
    if target:
        item.target = target
        item.chunks = tensor.float32_chunks
        item.file_range = tensor.file_range
    return item


def write_source(source: "Source", out_dir, *, uint8: patterns.Patterns = None, uint16: patterns.Patterns = None,
                 float16: patterns.Patterns = None, keep: patterns.Patterns = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                 progress: Progress = None, allow_unmatched: bool = False) -> QuantizeReport:
    """Quantize any source into a new folder (appearing only when complete): the float32 tensors
    the patterns select get the new dtype, every other tensor keeps its stored bytes; beside the
    shards, the JSON document the source asks for (model.json, weights_manifest.json)."""
    check_shard_size(shard_size)
    names = [t.name for t in source.tensors]
    for name in names:
        problem = mf.name_problem(name)
        if problem:
            raise SourceError(f"{source.path}: {problem}")
    duplicate = first_duplicate(names)
    if duplicate is not None:
        raise SourceError(f"{source.path}: duplicate tensor name {duplicate!r}")
    report, targets = QuantizeReport.plan(names, out_dir, uint8, uint16, float16, keep, str(source.path),
                                          allow_unmatched)
    report.notes = list(source.notes)
    groups = []
    for group in source.tensor_groups():
        row = []
        for t in group:
            stored = t.quantization.dtype if t.quantization else t.web_dtype
            row.append(source_item(t, report.decide(t.name, t.web_dtype, targets.get(t.name), stored)))
            report.bytes_in += t.nbytes
        groups.append(row)
    with atomic_folder(out_dir, force, inputs=source.inputs) as tmp:
        result, kept = write_groups(tmp, groups, shard_size, threads or 0, progress)
        report.written(groups, kept)
        (tmp / source.document_name).write_bytes(mf.dumps(source.document(result)).encode())
    return report


def quantize_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                   uint8: patterns.Patterns = None, uint16: patterns.Patterns = None,
                   float16: patterns.Patterns = None, keep: patterns.Patterns = None,
                   shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                   progress: Progress = None, kind: Optional[str] = None,
                   allow_unmatched: bool = False) -> QuantizeReport:
    """Re-quantize a web model (float or already quantized) into out_dir: the weights the patterns
    select get the new dtype, every other weight and every other model.json key stay as they were.
    Other inputs (kind 'safetensors', 'npz', 'h5', 'keras' or any registered source, guessed from
    the path when None) are written the same way, as a weights manifest and shards (a Keras model as
    a layers model). A pattern that matches no weight is a PatternError (nothing written) unless
    allow_unmatched."""
    from qshard.formats.sources import open_source  # (the registry imports every source module)
    check_shard_size(shard_size)
    with open_source(src, kind) as source:
        return write_source(source, out_dir, uint8=uint8, uint16=uint16, float16=float16, keep=keep,
                            shard_size=shard_size, force=force, threads=threads, progress=progress,
                            allow_unmatched=allow_unmatched)
