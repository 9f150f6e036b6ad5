"""TensorFlow.js web models (model.json or weights_manifest.json + shards) as a source: tensors keep
their groups, their stored quantization (re-quantizing dequantizes chunk by chunk; weights left
alone keep their codes), and the output's JSON is the input's with the new manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Tuple

from qshard.formats import manifest as mf
from qshard.formats.file_range import FileRange
from qshard.formats.shards import Scratch, ShardSet
from qshard.formats.sources import Source, has_suffix, register
from qshard.lazy import np


class WebTensor:
    """One weight of a web model, read from its shards."""

    def __init__(self, spec: mf.WeightSpec, shards: ShardSet):
        self.spec, self.shards = spec, shards
        self.name: str = spec.name
        self.shape: Tuple[int, ...] = spec.shape
        self.web_dtype: str = spec.dtype
        self.quantization: Optional[mf.Quantization] = spec.quantization
        self.nbytes = self.stored_nbytes = shards.where[spec.name].nbytes

    @property
    def file_range(self) -> Optional[FileRange]:
        """Where the stored values lie in the shard files (numeric weights only)."""
        return self.shards.file_range(self.spec)

    @property
    def stored_range(self) -> FileRange:
        """Where the stored bytes lie in the shard files, written unchanged as they are."""
        return self.shards.stored_range(self.spec)

    def float32_chunks(self, scratch: Scratch) -> Iterator[np.ndarray]:
        """The values as float32 chunks, dequantized chunk by chunk when stored quantized."""
        q = self.quantization
        if q is None:
            yield from self.shards.chunks(self.spec, scratch)
            return
        from qshard.kernels import QuantParams, dequantize  # (the array API imports numpy)
        params = QuantParams(q.dtype, q.min, q.scale)
        for codes in self.shards.chunks(self.spec, scratch):
            out = scratch.get(1, 4 * codes.size).view(np.float32)
            yield dequantize(codes, params, out=out)

    def stored_chunks(self, scratch: Scratch) -> Iterator[np.ndarray]:
        """The stored bytes as they are (codes stay codes); a string weight in one piece."""
        if self.spec.dtype == "string" and not self.quantization:
            data = self.shards.raw_bytes(self.name)
            if len(data):
                yield np.frombuffer(data, np.uint8)
            return
        for chunk in self.shards.chunks(self.spec, scratch):
            yield chunk.view(np.uint8)


def open_web_model(path: Path) -> Source:
    """A web model (its folder, model.json or weights_manifest.json) as a source."""
    model = mf.load(path)
    shards = ShardSet(model)
    groups = [[WebTensor(spec, shards) for spec in group.weights] for group in model.groups]

    def close() -> None:
        for group in shards.groups:
            group.close()
    files = [model.path] + [f for group in shards.groups for f in group.files]
    return Source(model.path, "tfjs", [t for g in groups for t in g], groups, close,
                  lambda written: mf.model_document(model, written), model.path.name, files)


def _claims(path: Path) -> bool:
    """A folder holding a model JSON (model.json, weights_manifest.json or any .json holding a
    weights manifest), or a .json file."""
    return bool(mf.model_files(path)) if path.is_dir() else has_suffix(path, ".json")


register("tfjs", open_web_model, _claims, "a tfjs web model (a folder holding one model JSON, or the JSON file)")
