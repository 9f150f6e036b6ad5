"""safetensors files: the JSON header parsed by qshard, tensors read by pread."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from qshard.errors import SourceError
from qshard.formats.file_range import in_file
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, pread_chunks, register

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
        reader = pread_chunks(path, data_start + offsets[0], offsets[1] - offsets[0], stored)
        in_place = in_file(path, data_start + offsets[0], offsets[1] - offsets[0], stored,
                           "bfloat16" if kind == "bfloat16" else None)
        dtype = stored
        if kind == "bfloat16":
            reader, dtype = _bfloat16_reader(reader), np.dtype(np.float32)
        tensors.append(Tensor(name, tuple(shape), dtype, reader, file_range=in_place))
    return Source(path, "safetensors", tensors)


register("safetensors", open_safetensors)
