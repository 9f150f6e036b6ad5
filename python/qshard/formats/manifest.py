"""tfjs weights manifests and model.json: parse, validate, write.

A manifest is a list of groups {"paths": [shard files], "weights": [{"name", "shape", "dtype",
"quantization"?}]}; model.json carries it as "weightsManifest" beside "modelTopology" and other
keys, which qshard keeps untouched. JSON is written as tensorflowjs writes it: Python's json.dumps
with default separators, ASCII-escaped, no trailing newline.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from qshard import dtypes
from qshard.errors import ManifestError
from qshard.formats.inputs import parse_json, read_regular

DTYPES = dtypes.WEIGHT_ITEMSIZE
QUANT_DTYPES = dtypes.QUANT_ITEMSIZE
MANIFEST_NAME = "weights_manifest.json"
MODEL_NAME = "model.json"
MAX_ELEMENTS = 1 << 48  # far beyond any real tensor; keeps size arithmetic exact


@dataclass(frozen=True)
class Quantization:
    """How a weight is stored: uint8/uint16 codes with min and scale, or float16."""

    dtype: str
    min: Optional[float] = None
    scale: Optional[float] = None
    original_dtype: Optional[str] = None  # absent in older manifests


@dataclass(frozen=True)
class WeightSpec:
    """One weight of a manifest group."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    quantization: Optional[Quantization] = None
    extra: Tuple[Tuple[str, Any], ...] = ()  # unknown keys, kept in order

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def stored_dtype(self) -> str:
        """The dtype of the bytes in the shards."""
        return self.quantization.dtype if self.quantization else self.dtype

    @property
    def itemsize(self) -> Optional[int]:
        """Bytes per stored element (None for strings, whose size depends on the data)."""
        if self.quantization:
            return QUANT_DTYPES[self.quantization.dtype]
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> Optional[int]:
        """Stored bytes (None for strings)."""
        return None if self.itemsize is None else self.itemsize * self.size


@dataclass(frozen=True)
class Group:
    """Weights whose bytes are concatenated and split into the shards listed in paths."""

    paths: Tuple[str, ...]
    weights: Tuple[WeightSpec, ...]


@dataclass
class ModelFile:
    """A parsed model.json or weights_manifest.json."""

    path: Path                       # the JSON file
    groups: List[Group]
    document: Optional[Dict[str, Any]] = None  # model.json without its weightsManifest; None for a bare manifest
    manifest_key: str = "weightsManifest"

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def is_model_json(self) -> bool:
        return self.document is not None

    def weights(self) -> List[WeightSpec]:
        return [w for g in self.groups for w in g.weights]


def element_count(shape: Sequence[int]) -> Optional[int]:
    """The number of elements of a shape, or None when its non-zero dimensions multiply beyond
    MAX_ELEMENTS (numpy cannot hold such a shape even empty). Stops multiplying there, so a long
    list of huge dimensions costs no time."""
    count = 1
    for d in shape:
        count *= d or 1
        if count > MAX_ELEMENTS:
            return None
    return 0 if 0 in shape else count


def shape_problem(shape: Sequence[Any]) -> str:
    """Why a shape cannot be a tensor's ('' if it can): dimensions must be integers >= 0, their
    product at most MAX_ELEMENTS."""
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"shape must be a list of non-negative integers, got {list(shape)!r}"
    if element_count(shape) is None:
        return f"shape {list(shape)} has more elements than any real tensor"
    return ""


def name_problem(name: Any) -> str:
    """Why a weight name cannot be written to a manifest qshard and tfjs read back ('' if it can)."""
    if not isinstance(name, str) or not name:
        return f"weight name must be a non-empty string, got {name!r}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"weight name {name!r} is not valid Unicode (a lone surrogate escape)"
    return ""


def _fail(source: str, where: str, problem: str) -> ManifestError:
    return ManifestError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


def _parse_quantization(q: Any, source: str, where: str, dtype: str) -> Quantization:
    if not isinstance(q, dict):
        raise _fail(source, where, "quantization must be an object")
    qd = q.get("dtype")
    if qd not in QUANT_DTYPES:
        raise _fail(source, where, f"unknown quantization dtype {qd!r} (known: {', '.join(QUANT_DTYPES)})")
    original = q.get("original_dtype")
    if original is not None and original not in ("float32", "int32"):
        raise _fail(source, where, f"unsupported quantization original_dtype {original!r}")
    if dtype not in ("float32", "int32"):
        raise _fail(source, where, f"a {dtype} weight cannot be quantized")
    if qd == "float16" and dtype != "float32":
        raise _fail(source, where, f"float16 quantization of a {dtype} weight: tfjs accepts it only for float32")
    mn = scale = None
    if qd in ("uint8", "uint16"):
        mn, scale = q.get("min"), q.get("scale")
        for key, value in (("min", mn), ("scale", scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _fail(source, where, f"quantization {key} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise _fail(source, where, f"quantization {key} is {value}, not a finite number")
        if not scale > 0:
            raise _fail(source, where, f"quantization scale must be > 0, got {scale!r}")
        mn, scale = float(mn), float(scale)
    return Quantization(qd, mn, scale, original)


def _parse_weight(w: Any, source: str, where: str) -> WeightSpec:
    if not isinstance(w, dict):
        raise _fail(source, where, "a weight entry must be an object")
    name = w.get("name")
    problem = name_problem(name)
    if problem:
        raise _fail(source, where, problem)
    where = f"{where} ({name!r})"
    shape = w.get("shape")
    problem = shape_problem(shape) if isinstance(shape, list) else f"shape must be a list, got {shape!r}"
    if problem:
        raise _fail(source, where, problem)
    dtype = w.get("dtype")
    if dtype not in DTYPES:
        raise _fail(source, where, f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    if "quantization" in w and w["quantization"] is None:
        raise _fail(source, where, "quantization is null: tfjs reads any 'quantization' key as quantized and fails")
    q = w.get("quantization")
    quant = None if q is None else _parse_quantization(q, source, where, dtype)
    extra = tuple((k, v) for k, v in w.items() if k not in ("name", "shape", "dtype", "quantization"))
    return WeightSpec(name, tuple(shape), dtype, quant, extra)


def parse_manifest(manifest: Any, source: str = "manifest") -> List[Group]:
    """Validate a manifest (the JSON list) and return its groups."""
    if not isinstance(manifest, list):
        raise _fail(source, "", f"the weights manifest must be a list of groups, got {type(manifest).__name__}")
    groups, names = [], set()
    for gi, g in enumerate(manifest):
        where = f"group {gi}"
        if not isinstance(g, dict):
            raise _fail(source, where, "a group must be an object with 'paths' and 'weights'")
        for key in ("paths", "weights"):
            if not isinstance(g.get(key), list):
                raise _fail(source, where, f"missing or invalid '{key}' (must be a list)")
        for pi, p in enumerate(g["paths"]):
            if not isinstance(p, str) or not p:
                raise _fail(source, f"{where}, path {pi}", f"a shard path must be a non-empty string, got {p!r}")
        weights = []
        for wi, w in enumerate(g["weights"]):
            spec = _parse_weight(w, source, f"{where}, weight {wi}")
            if spec.name in names:
                raise _fail(source, f"{where}, weight {wi}", f"duplicate weight name {spec.name!r}")
            names.add(spec.name)
            weights.append(spec)
        groups.append(Group(tuple(g["paths"]), tuple(weights)))
    return groups


def _looks_like_model_json(path: Path) -> bool:
    """A cheap look (no parse): a JSON object naming a weightsManifest, or a list of weight groups."""
    try:
        data = read_regular(path, "JSON file", ManifestError)  # (a FIFO or a huge file is not a model's)
    except ManifestError:
        return False
    head = data.lstrip()[:1]
    if head == b"{":
        return b'"weightsManifest"' in data
    return head == b"[" and b'"paths"' in data and b'"weights"' in data


def model_files(folder: Union[str, os.PathLike]) -> List[Path]:
    """The model JSONs in a folder: model.json and weights_manifest.json by name (even when broken,
    so that the problem is reported), and every other .json holding a weights manifest."""
    folder = Path(folder)
    try:
        jsons = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json"
                       and (p.name in (MODEL_NAME, MANIFEST_NAME) or p.is_file()))
    except OSError as error:
        raise ManifestError(f"{folder}: cannot list the folder: {error.strerror or error}") from None
    return [p for p in jsons if p.name in (MODEL_NAME, MANIFEST_NAME) or _looks_like_model_json(p)]


def find_model_file(path: Union[str, os.PathLike]) -> Path:
    """The JSON file of a web model given the file or its folder; a folder must hold exactly one
    model JSON (whatever its name, e.g. faceres-deep.json)."""
    p = Path(path)
    if p.is_dir():
        found = model_files(p)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ManifestError(f"{p}: no model JSON in this folder (a {MODEL_NAME}, a {MANIFEST_NAME}, or any "
                                f".json with a weightsManifest)")
        names = ", ".join(f.name for f in found)
        raise ManifestError(f"{p}: this folder holds {len(found)} model JSONs ({names}); name the one you mean, "
                            f"e.g. {found[0]}")
    if not p.exists():
        raise ManifestError(f"{p}: no such file or folder")
    return p


def load(path: Union[str, os.PathLike]) -> ModelFile:
    """Read and validate a model.json, a weights_manifest.json, or the folder holding one."""
    p = find_model_file(path)
    source = str(p)
    constants: List[str] = []
    doc = parse_json(read_regular(p, "model JSON", ManifestError), source, ManifestError, constants=constants)
    model = _model_file(p, doc, source)
    if constants:  # after the manifest's own checks, which name the weight when it is theirs
        raise ManifestError(f"{source}: holds {constants[0]}, which is not JSON: a browser's JSON.parse "
                            f"refuses the file")
    return model


def _model_file(p: Path, doc: Any, source: str) -> ModelFile:
    if isinstance(doc, list):
        return ModelFile(p, parse_manifest(doc, source))
    if isinstance(doc, dict):
        if "weightsManifest" not in doc:
            raise ManifestError(f"{source}: a model.json needs a 'weightsManifest' (a list of weight groups)")
        document = {k: v for k, v in doc.items()}
        groups = parse_manifest(doc["weightsManifest"], source)
        return ModelFile(p, groups, document)
    raise ManifestError(f"{source}: expected a model.json object or a weights manifest list, "
                        f"got {type(doc).__name__}")


def weight_entry(spec: WeightSpec) -> Dict[str, Any]:
    """A weight as tensorflowjs writes it: name, shape, dtype, then quantization
    {dtype, min, scale, original_dtype}."""
    entry: Dict[str, Any] = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
    q = spec.quantization
    if q is not None:
        qe: Dict[str, Any] = {"dtype": q.dtype}
        if q.min is not None:
            qe["min"] = q.min
            qe["scale"] = q.scale
        if q.original_dtype is not None:
            qe["original_dtype"] = q.original_dtype
        entry["quantization"] = qe
    for k, v in spec.extra:
        entry[k] = v
    return entry


def dump_manifest(groups: Sequence[Group]) -> List[Dict[str, Any]]:
    """The JSON list of a manifest."""
    return [{"paths": list(g.paths), "weights": [weight_entry(w) for w in g.weights]} for g in groups]


def dumps(obj: Any) -> str:
    """JSON text exactly as tensorflowjs writes it (json.dumps defaults)."""
    return json.dumps(obj)


def model_document(model: ModelFile, groups: Sequence[Group]) -> Any:
    """The JSON document to write for `model` with new groups: model.json keeps every other key
    (and their order) untouched; a bare manifest is just the list."""
    manifest = dump_manifest(groups)
    if model.document is None:
        return manifest
    doc = dict(model.document)
    doc[model.manifest_key] = manifest
    return doc
