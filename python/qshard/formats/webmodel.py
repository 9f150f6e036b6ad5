"""Read, write and re-quantize TensorFlow.js web models (model.json / weights_manifest.json + shards).

Output is byte-identical to tensorflowjs 4.22's write_weights for the same weights and dtypes, with
deliberate differences (see README): a float32 tensor holding NaN/Inf is kept as float32 when
uint8/uint16 was asked (float16 is honoured when its only non-finite values are +-Inf); an empty
float32 tensor quantizes to no codes with min 0, scale 1 (tensorflowjs raises); and a tensor of
zeros of both signs records min -0.0 where numpy may pick +0.0 (same codes, same values).
qshard.compat.tensorflowjs reproduces tensorflowjs exactly, these cases included.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from qshard.errors import QshardError
from qshard.formats import manifest as mf
from qshard.formats import patterns
from qshard.formats.shards import ShardSet, encode_strings
from qshard.formats.writer import (
    DEFAULT_SHARD_SIZE,
    Item,
    Kept,
    Progress,
    QuantizeReport,
    atomic_folder,
    check_shard_size,
    first_duplicate,
    whole,
    write_groups,
)
from qshard.kernels import QuantParams, dequantize

_AUTO = {np.dtype(np.float16): np.float32, np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32,
         np.dtype(np.complex128): np.complex64}
_TFJS_DTYPE = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool",
               np.dtype(np.complex64): "complex64"}


def _item_from_array(name: str, data) -> Item:
    a = np.asarray(data)
    if a.dtype.kind in ("U", "S", "O"):
        raw = encode_strings(a)
        return Item(name, a.shape, "string", load=lambda _: raw, stored_nbytes=len(raw))
    if a.dtype in _AUTO:
        a = a.astype(_AUTO[a.dtype])
    if a.dtype not in _TFJS_DTYPE:
        raise QshardError(f"weight {name!r}: dtype {a.dtype} is not a TensorFlow.js weight dtype "
                          f"(float32, int32, bool, complex64, string; float64/float16/int64 are converted)")
    a = np.ascontiguousarray(a).reshape(a.shape)  # (keeps 0-d scalars 0-d)
    return Item(name, a.shape, _TFJS_DTYPE[a.dtype], load=lambda _: a, stored_nbytes=a.nbytes,
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
    check_shard_size(shard_size)
    groups = _normalize_groups(weight_groups)
    names = [name for group in groups for name, _ in group]
    duplicate = first_duplicate(names)
    if duplicate is not None:
        raise QshardError(f"duplicate weight name {duplicate!r}")
    if targets is None:
        targets = patterns.resolve(names, uint8, uint16, float16, keep)
    items = []
    for group in groups:
        row = []
        for name, data in group:
            item = _item_from_array(name, data)
            if targets.get(name) and item.dtype == "float32":
                item.target = targets[name]
                item.chunks = whole(item.load(None))  # the array as converted above
            row.append(item)
        items.append(row)
    out = Path(write_dir)
    result, left = write_groups(out, items, shard_size, threads or 0, progress)
    if kept is not None:
        kept.extend(left)
    manifest = mf.dump_manifest(result)
    if write_manifest:
        _write_json(out / mf.MANIFEST_NAME, manifest)
    return manifest


def write_model(document: dict, weights: List[Tuple[str, np.ndarray]], out_dir: Union[str, os.PathLike],
                report: QuantizeReport, targets: Dict[str, str], *, shard_size: int = DEFAULT_SHARD_SIZE,
                force: bool = False, threads: Optional[int] = None, progress: Progress = None,
                inputs: Iterable[Union[str, os.PathLike]] = ()) -> QuantizeReport:
    """Write a model folder that appears only when complete: the shards of `weights` (each float32
    weight stored as `targets` asks) and model.json, which is `document` plus its weightsManifest.
    The report (from QuantizeReport.plan) records what was changed, kept and written. The folder
    must not be or hold any of `inputs` (the files the model was read from)."""
    report.bytes_in = sum(a.nbytes for _, a in weights)
    targets = dict(targets)
    for name, array in weights:
        dtype = "float32" if array.dtype.kind == "f" else str(array.dtype)
        if report.decide(name, dtype, targets.get(name)) is None:
            targets.pop(name, None)
    kept: List[Kept] = []
    with atomic_folder(out_dir, force, inputs=inputs) as tmp:
        manifest = write_weights([weights], tmp, shard_size=shard_size, targets=targets, write_manifest=False,
                                 threads=threads, progress=progress, kept=kept)
        for k in kept:
            report.changed.pop(k.name, None)
        report.kept.extend(kept)
        report.bytes_out = sum(os.path.getsize(tmp / p) for g in manifest for p in g["paths"])
        _write_json(tmp / mf.MODEL_NAME, dict(document, weightsManifest=manifest))
    return report


class WebModel:
    """A web model opened for reading: specs from its manifest, values from its mapped shards."""

    def __init__(self, path: Union[str, os.PathLike], check: bool = True):
        self.file = mf.load(path)
        self.shards = ShardSet(self.file, check=check)

    @property
    def specs(self) -> List[mf.WeightSpec]:
        return self.file.weights()

    def files(self) -> List[Path]:
        """Every file the model is read from: its JSON and its shards (what no output may overwrite)."""
        return [self.file.path] + [f for group in self.shards.groups for f in group.files]

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
    codes; rounding="half_even": int32 weights as tensorflowjs's Python reader rounds them). The
    arrays are the caller's own, read from the shards (never views of a mapped file)."""
    model = WebModel(path)
    return {s.name: model.stored(s.name) if raw else model.values(s.name, rounding) for s in model.specs}
