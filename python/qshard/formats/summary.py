"""`qshard inspect` and `qshard verify`: what a web model holds, and whether its files add up."""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

from qshard.errors import ManifestError, ShardError
from qshard.formats import manifest as mf
from qshard.formats.shards import GroupBytes, locate_group, safe_shard_path
from qshard.lazy import np


@dataclass
class Verification:
    """The result of verify(): problems (empty when the model is sound) and what was checked."""

    path: str
    problems: List[str] = field(default_factory=list)
    weights: int = 0
    shards: int = 0
    bytes: int = 0
    stray_files: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Union[str, os.PathLike]) -> Verification:
    """Check a web model's integrity: manifest valid, shard paths safe and present, and every
    group's shard bytes exactly what its weights need (no missing, no extra bytes)."""
    result = Verification(str(path))
    try:
        model = mf.load(path)
    except ManifestError as error:
        result.problems.append(str(error))
        return result
    result.path = str(model.path)
    referenced = set()
    for gi, group in enumerate(model.groups):
        result.weights += len(group.weights)
        files, missing = [], False
        for p in group.paths:
            try:
                full = safe_shard_path(model.folder, p, str(model.path))
            except ShardError as error:
                result.problems.append(str(error))
                missing = True
                continue
            referenced.add(os.path.normpath(p))
            if not full.exists():
                result.problems.append(f"{full}: shard file is missing (group {gi})")
                missing = True
            else:
                files.append(full)
        result.shards += len(files)
        result.bytes += sum(f.stat().st_size for f in files)
        if missing:
            continue
        try:  # the readers' own check of this group: regular files, empty shards, sizes, string lengths
            locate_group(gi, group, GroupBytes(files), str(model.path))
        except ShardError as error:
            result.problems.append(str(error))
    for entry in sorted(os.listdir(model.folder)):
        full = model.folder / entry
        if entry.endswith(".bin") and full.is_file() and os.path.normpath(entry) not in referenced:
            result.stray_files.append(entry)
    return result


@dataclass
class WeightRow:
    name: str
    shape: tuple
    dtype: str
    stored: str
    nbytes: int
    quantization: str
    max_abs_error: Optional[float] = None
    sqnr_db: Optional[float] = None


def _error(values: np.ndarray, original: np.ndarray):
    from qshard.accuracy.weight_error import error_of
    a, b = np.asarray(values), np.asarray(original)
    if a.size == 0 or a.size != b.size:
        return None, None
    return error_of(a.reshape(-1), b.reshape(-1))


def gzipped_size(path: Union[str, os.PathLike]) -> int:
    """Bytes of the file gzipped at level 6 (as a web server would send it), read in 1 MiB pieces."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def inspect(path: Union[str, os.PathLike], against: Optional[Union[str, os.PathLike]] = None,
            gzip_size: bool = True) -> Dict[str, object]:
    """Per-weight table (and totals) of a web model; errors against an original model if given."""
    from qshard.formats.webmodel import WebModel  # (the array API: every command but inspect goes without)
    model = WebModel(path)
    original = WebModel(against) if against else None
    original_names = {s.name for s in original.specs} if original else set()
    rows = []
    for spec in model.specs:
        q = spec.quantization
        if q is None:
            qtext = ""
        elif q.min is not None:
            qtext = f"min {q.min:.6g} scale {q.scale:.6g}"
        else:
            qtext = q.dtype
        row = WeightRow(spec.name, spec.shape, spec.dtype, spec.stored_dtype,
                        model.shards.where[spec.name].nbytes, qtext)
        if original and spec.name in original_names and spec.dtype in ("float32", "int32"):
            row.max_abs_error, row.sqnr_db = _error(model.values(spec.name), original.values(spec.name))
        rows.append(row)
    total = sum(r.nbytes for r in rows)
    gz = None
    if gzip_size:
        gz = sum(gzipped_size(f) for group in model.shards.groups for f in group.files)
    by_dtype: Dict[str, int] = {}
    for r in rows:
        by_dtype[r.stored] = by_dtype.get(r.stored, 0) + r.nbytes
    return {"path": str(model.file.path), "rows": rows, "weights": len(rows), "bytes": total,
            "gzip_bytes": gz, "bytes_by_stored_dtype": by_dtype,
            "shards": sum(len(g.files) for g in model.shards.groups)}


def human(n: Optional[float]) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


def format_inspect(info: Dict[str, object]) -> str:
    rows: List[WeightRow] = info["rows"]
    with_error = any(r.max_abs_error is not None for r in rows)
    name_width = max([len("weight")] + [len(r.name) for r in rows])
    header = f"{'weight':<{name_width}}  {'shape':<16} {'dtype':<8} {'stored':<8} {'bytes':>10}  {'quantization':<32}"
    if with_error:
        header += f" {'max |err|':>10} {'SQNR dB':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        line = (f"{r.name:<{name_width}}  {str(list(r.shape)):<16} {r.dtype:<8} {r.stored:<8} {r.nbytes:>10}  "
                f"{r.quantization:<32}")
        if with_error:
            err = "" if r.max_abs_error is None else f"{r.max_abs_error:.3g}"
            sq = "" if r.sqnr_db is None else ("inf" if math.isinf(r.sqnr_db) else f"{r.sqnr_db:.1f}")
            line += f" {err:>10} {sq:>8}"
        lines.append(line)
    lines.append("")
    parts = ", ".join(f"{d} {human(b)}" for d, b in sorted(info["bytes_by_stored_dtype"].items()))
    gz = f", gzip {human(info['gzip_bytes'])}" if info["gzip_bytes"] is not None else ""
    lines.append(f"{info['weights']} weights in {info['shards']} shards: {human(info['bytes'])}{gz} ({parts})")
    return "\n".join(lines)
