"""Read, write and re-quantize TensorFlow.js web models (model.json / weights_manifest.json + shards).

Output is byte-identical to tensorflowjs 4.22's write_weights for the same weights and dtypes, with
deliberate differences (see README): a float32 tensor holding NaN/Inf is kept as float32 when
uint8/uint16 was asked (float16 is honoured when its only non-finite values are +-Inf); an empty
float32 tensor quantizes to no codes with min 0, scale 1 (tensorflowjs raises); and a tensor of
zeros of both signs records min -0.0 where numpy may pick +0.0 (same codes, same values).
qshard.compat.tensorflowjs reproduces tensorflowjs exactly, these cases included.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from . import manifest as mf
from . import patterns
from .errors import OutputError, QshardError
from .kernels import QuantParams, dequantize
from .shards import Scratch, ShardSet, encode_strings

DEFAULT_SHARD_SIZE = 4 * 1024 * 1024
QMAX = {"uint8": 255, "uint16": 65535}
_AUTO = {np.dtype(np.float16): np.float32, np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32,
         np.dtype(np.complex128): np.complex64}
_TFJS_DTYPE = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool",
               np.dtype(np.complex64): "complex64"}
Progress = Optional[Callable[[int, int], None]]


@dataclass
class Kept:
    """A weight left as it was although a dtype was asked for it, and why."""

    name: str
    asked: str
    reason: str


@dataclass
class _Item:
    """One weight to write: where its values come from and how it will be stored."""

    name: str
    shape: Tuple[int, ...]
    dtype: str                                    # tfjs dtype in the manifest
    target: Optional[str] = None                  # uint8/uint16/float16, or None: bytes as they are
    load: Optional[Callable[[Scratch], object]] = None  # float32 values (target) or stored bytes (none)
    quantization: Optional[mf.Quantization] = None  # of stored bytes carried unchanged
    stored_nbytes: int = 0                        # bytes if written unchanged
    fallback: Optional[Callable[[Scratch], object]] = None  # stored float32 bytes if the target is refused
    chunks: Optional[Callable[[Scratch], Iterable[np.ndarray]]] = None  # float32 values piece by piece

    @property
    def nbytes(self) -> int:
        if self.target is None:
            return self.stored_nbytes
        return math.prod(self.shape) * (1 if self.target == "uint8" else 2)


class _Refused(Exception):
    """A tensor its target cannot represent (NaN / Inf); the group is written again without it."""

    def __init__(self, item: _Item, reason: str):
        super().__init__(reason)
        self.item, self.reason = item, reason


def _refusal(x: np.ndarray, target: str) -> Tuple[float, float, str]:
    """(lo, hi, reason): reason is '' when the target can represent x."""
    if x.size == 0:
        return 0.0, 0.0, ""
    lo, hi, has_nan = _core.minmax(x.reshape(-1), "", 0)
    if has_nan:
        if target == "float16":
            return lo, hi, "holds NaN (kept as float32 rather than a float16 NaN)"
        return lo, hi, f"holds NaN, which {target} cannot represent"
    if (np.isinf(lo) or np.isinf(hi)) and target in QMAX:
        return lo, hi, f"holds Inf, which {target} cannot represent"
    return lo, hi, ""


def _merge_range(a: Tuple[float, float, bool], b: Tuple[float, float, bool]) -> Tuple[float, float, bool]:
    """Combine two (lo, hi, has_nan) as one pass would: -0.0 orders below +0.0."""
    def below(x, y):  # x < y in that order
        return x < y or (x == y == 0 and np.signbit(x) and not np.signbit(y))
    lo = b[0] if below(b[0], a[0]) else a[0]
    hi = b[1] if below(a[1], b[1]) else a[1]
    return lo, hi, a[2] or b[2]


def _append_chunked(writer: "_core.ShardWriter", item: _Item, scratch: Scratch, threads: int) -> mf.WeightSpec:
    """Two passes over cache-sized chunks: min/max, then codes straight into the shard writer."""
    rng = None
    for chunk in item.chunks(scratch):
        part = _core.minmax(chunk, "", 0)
        rng = part if rng is None else _merge_range(rng, part)
    lo, hi, has_nan = rng if rng is not None else (0.0, 0.0, False)
    reason = ""
    if has_nan:
        reason = ("holds NaN (kept as float32 rather than a float16 NaN)" if item.target == "float16"
                  else f"holds NaN, which {item.target} cannot represent")
    elif item.target in QMAX and (np.isinf(lo) or np.isinf(hi)):
        reason = f"holds Inf, which {item.target} cannot represent"
    if reason:
        raise _Refused(item, reason)
    if item.target == "float16":
        for chunk in item.chunks(scratch):
            writer.append_float16(chunk, "", threads)
        return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization("float16", original_dtype="float32"))
    qmax = QMAX[item.target]
    if rng is None:
        mn, scale = 0.0, 1.0
    else:
        mn, scale, mx = _core.affine_params(lo, hi, qmax)
        for chunk in item.chunks(scratch):
            writer.append_quantized(chunk, mn, scale, mx, qmax, False, "", threads)
    return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization(item.target, mn, scale, "float32"))


def _append(writer: "_core.ShardWriter", item: _Item, scratch: Scratch, threads: int) -> mf.WeightSpec:
    """Write one weight; raises _Refused before writing a byte of a tensor its target cannot hold."""
    if item.target is not None and item.chunks is not None:
        return _append_chunked(writer, item, scratch, threads)
    if item.target is None:
        data = item.load(scratch)
        if isinstance(data, np.ndarray):
            writer.append(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        elif len(data):
            writer.append(np.frombuffer(data, np.uint8))
        return mf.WeightSpec(item.name, item.shape, item.dtype, item.quantization)
    x = np.ascontiguousarray(item.load(scratch), dtype=np.float32).reshape(-1)
    lo, hi, reason = _refusal(x, item.target)
    if reason:
        raise _Refused(item, reason)
    if item.target == "float16":
        writer.append_float16(x, "", threads)
        return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization("float16", original_dtype="float32"))
    qmax = QMAX[item.target]
    if x.size == 0:
        mn, scale = 0.0, 1.0
    else:
        mn, scale, mx = _core.affine_params(lo, hi, qmax)
        writer.append_quantized(x, mn, scale, mx, qmax, False, "", threads)
    return mf.WeightSpec(item.name, item.shape, item.dtype, mf.Quantization(item.target, mn, scale, "float32"))


def _write_groups(out_dir: Path, groups: Sequence[Sequence[_Item]], shard_size: int, threads: int,
                  progress: Progress) -> Tuple[List[mf.Group], List[Kept]]:
    """Write every group in one pass over its tensors. Sizes (and so shard names) are fixed from
    the targets up front; a tensor that turns out to hold NaN/Inf is dropped to float32 and its
    group written again (rare, and only that group)."""
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
            except _Refused as refused:
                for name in writer.names:
                    (out_dir / name).unlink(missing_ok=True)
                item = refused.item
                kept.append(Kept(item.name, item.target, refused.reason))
                total += item.stored_nbytes - item.nbytes
                item.target, item.load = None, item.fallback
        done_before = done
        result.append(mf.Group(tuple(writer.names), tuple(specs)))
    return result, kept


def _item_from_array(name: str, data) -> _Item:
    a = np.asarray(data)
    if a.dtype.kind in ("U", "S", "O"):
        raw = encode_strings(a)
        return _Item(name, a.shape, "string", load=lambda _: raw, stored_nbytes=len(raw))
    if a.dtype in _AUTO:
        a = a.astype(_AUTO[a.dtype])
    if a.dtype not in _TFJS_DTYPE:
        raise QshardError(f"weight {name!r}: dtype {a.dtype} is not a TensorFlow.js weight dtype "
                          f"(float32, int32, bool, complex64, string; float64/float16/int64 are converted)")
    a = np.ascontiguousarray(a).reshape(a.shape)  # (keeps 0-d scalars 0-d)
    return _Item(name, a.shape, _TFJS_DTYPE[a.dtype], load=lambda _: a, stored_nbytes=a.nbytes,
                 fallback=lambda _: a)


def _normalize_groups(weight_groups) -> List[List[Tuple[str, object]]]:
    """Accept [[{'name', 'data'}, ...], ...] (tensorflowjs), [[(name, array)]], or {name: array}."""
    if isinstance(weight_groups, dict):
        return [list(weight_groups.items())]
    groups = []
    for group in weight_groups:
        entries = []
        for entry in (group.items() if isinstance(group, dict) else group):
            if isinstance(entry, dict):
                entries.append((entry["name"], entry["data"]))
            else:
                name, data = entry
                entries.append((name, data))
        groups.append(entries)
    return groups


@contextmanager
def atomic_folder(out_dir: Union[str, os.PathLike], force: bool = False) -> Iterator[Path]:
    """A temporary folder beside out_dir that becomes out_dir only if the block completes."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (use --force / force=True to replace it)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.qshard-", dir=parent))
    except OSError as error:
        raise OutputError(f"{out}: cannot create the output folder: {error.strerror or error}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.qshard-old-", dir=parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, document) -> None:
    path.write_bytes(mf.dumps(document).encode())


def write_weights(weight_groups, write_dir: Union[str, os.PathLike], *, shard_size: int = DEFAULT_SHARD_SIZE,
                  uint8: patterns.Patterns = None, uint16: patterns.Patterns = None,
                  float16: patterns.Patterns = None, keep: patterns.Patterns = None,
                  targets: Optional[Dict[str, str]] = None, write_manifest: bool = True,
                  threads: Optional[int] = None, progress: Progress = None,
                  kept: Optional[List[Kept]] = None) -> List[dict]:
    """Write weight groups as tfjs shards (+ weights_manifest.json) into an existing folder;
    returns the manifest. `targets` (name -> dtype) overrides the pattern arguments; weights left
    as float32 because they hold NaN/Inf are appended to `kept` when given."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise QshardError(f"shard size must be a positive integer, got {shard_size!r}")
    groups = _normalize_groups(weight_groups)
    names = [name for group in groups for name, _ in group]
    seen = set()
    for name in names:
        if name in seen:
            raise QshardError(f"duplicate weight name {name!r}")
        seen.add(name)
    if targets is None:
        targets = patterns.resolve(names, uint8, uint16, float16, keep)
    items = []
    for group in groups:
        row = []
        for name, data in group:
            item = _item_from_array(name, data)
            if targets.get(name) and item.dtype == "float32":
                item.target = targets[name]
            row.append(item)
        items.append(row)
    out = Path(write_dir)
    result, left = _write_groups(out, items, shard_size, threads or 0, progress)
    if kept is not None:
        kept.extend(left)
    manifest = mf.dump_manifest(result)
    if write_manifest:
        _write_json(out / mf.MANIFEST_NAME, manifest)
    return manifest


class WebModel:
    """A web model opened for reading: specs from its manifest, values from its mapped shards."""

    def __init__(self, path: Union[str, os.PathLike], check: bool = True):
        self.file = mf.load(path)
        self.shards = ShardSet(self.file, check=check)

    @property
    def specs(self) -> List[mf.WeightSpec]:
        return self.file.weights()

    def spec(self, name: str) -> mf.WeightSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(name)

    def stored(self, name: str) -> np.ndarray:
        """The stored values: codes for quantized weights (read-only view when in one shard)."""
        return self.shards.stored(self.spec(name))

    def values(self, name: str, rounding: str = "half_up") -> np.ndarray:
        """The weight's values, dequantized to its original dtype as the tfjs client does
        (int32 originals round like Math.round; rounding="half_even" gives tensorflowjs's Python)."""
        spec = self.spec(name)
        stored = self.shards.stored(spec)
        q = spec.quantization
        if q is None:
            return stored
        params = QuantParams(q.dtype, q.min, q.scale)
        original = "int32" if spec.dtype == "int32" else "float32"
        if q.dtype == "float16":
            out = dequantize(stored, params)
            return out.astype(np.int32) if original == "int32" else out
        return dequantize(stored, params, original, rounding=rounding)


def read_weights(path: Union[str, os.PathLike], *, raw: bool = False, rounding: str = "half_up") -> Dict[str, np.ndarray]:
    """name -> values of a web model, dequantized as the tfjs client does (raw=True: the stored
    codes; rounding="half_even": int32 weights as tensorflowjs's Python reader rounds them)."""
    model = WebModel(path)
    return {s.name: (model.stored(s.name) if raw else model.values(s.name, rounding)) for s in model.specs}


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


def quantize_model(src: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                   uint8: patterns.Patterns = None, uint16: patterns.Patterns = None,
                   float16: patterns.Patterns = None, keep: patterns.Patterns = None,
                   shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                   progress: Progress = None) -> QuantizeReport:
    """Re-quantize a web model (float or already quantized) into out_dir: the weights the patterns
    select get the new dtype, every other weight and every other model.json key stay as they were."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise QshardError(f"shard size must be a positive integer, got {shard_size!r}")
    model = WebModel(src)
    specs = model.specs
    names = [s.name for s in specs]
    targets = patterns.resolve(names, uint8, uint16, float16, keep)
    explicit = patterns.explicitly_matched(names, uint8, uint16, float16)
    report = QuantizeReport(Path(out_dir), len(specs),
                            unmatched_patterns=patterns.unmatched(names, uint8, uint16, float16, keep))
    report.bytes_in = sum(loc.nbytes for loc in model.shards.where.values())
    shards = model.shards
    groups = []
    for group in model.file.groups:
        row = []
        for spec in group.weights:
            target = targets.get(spec.name)
            is_float = spec.dtype == "float32"
            loc = shards.where[spec.name]
            if spec.dtype == "string" and not spec.quantization:
                stored = (lambda _, n=spec.name: shards.raw_bytes(n))
            else:
                stored = (lambda scratch, s=spec: shards.read_stored(s, scratch))
            item = _Item(spec.name, spec.shape, spec.dtype, load=stored, quantization=spec.quantization,
                         stored_nbytes=loc.nbytes, fallback=stored)
            if target and is_float and target != spec.stored_dtype:
                item.target = target
                if spec.quantization is not None:  # dequantize first; keep the original bytes on refusal
                    def values(scratch, s=spec):
                        codes = shards.read_stored(s, scratch)
                        out = scratch.get(1, 4 * s.size).view(np.float32).reshape(s.shape)
                        q = s.quantization
                        return dequantize(codes, QuantParams(q.dtype, q.min, q.scale), out=out)
                    item.load = values
                else:
                    item.chunks = (lambda scratch, s=spec: shards.chunks(s, scratch))
                report.changed[spec.name] = target
            elif target and not is_float and spec.name in explicit:
                report.kept.append(Kept(spec.name, target, f"is {spec.dtype}; only float32 weights are quantized"))
            row.append(item)
        groups.append(row)
    with atomic_folder(out_dir, force) as tmp:
        result, kept = _write_groups(tmp, groups, shard_size, threads or 0, progress)
        for k in kept:
            report.changed.pop(k.name, None)
        report.kept.extend(kept)
        report.bytes_out = sum(item.nbytes for row in groups for item in row)
        _write_json(tmp / model.file.path.name, mf.model_document(model.file, result))
    return report
