"""safetensors files: the JSON header parsed by qshard, tensors read by pread."""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from qshard.errors import SourceError
from qshard.formats.file_range import as_stored, in_file, itemsize
from qshard.formats.inputs import open_file, parse_json
from qshard.formats.shards import Scratch
from qshard.formats.sources import Source, Tensor, check_tensor, has_suffix, pread_chunks, register
from qshard.lazy import np

if TYPE_CHECKING:
    import numpy

MAX_HEADER = 100 << 20  # the safetensors library's own limit on the header

# Each dtype as numpy's dtype.str of its stored bytes (bfloat16, which numpy lacks, as uint16).
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
                       "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "|i1",
                       "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "|u1", "BOOL": "|b1"}


def _bfloat16_reader(inner):
    """bfloat16 is the top half of a float32: widen per chunk."""
    def read(scratch: Scratch, chunk_bytes: int) -> Iterator["numpy.ndarray"]:
        for chunk in inner(scratch, chunk_bytes // 2):
            out = scratch.get(4, chunk.size * 4).view(np.uint32)
            out[...] = chunk
            out <<= 16
            yield out.view(np.float32)
    return read


def open_safetensors(path: Path) -> Source:
    with open_file(path, "safetensors file", SourceError) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise SourceError(f"{path}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, MAX_HEADER):
            raise SourceError(f"{path}: safetensors header length {length} does not fit the file")
        raw = f.read(length)
    header = parse_json(raw, f"{path}: safetensors header", SourceError, "header")
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
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise SourceError(f"{where}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] and data_start + offsets[1] <= size):
            raise SourceError(f"{where}: data_offsets {offsets!r} fall outside the file")
        bfloat16 = info["dtype"] == "BF16"
        stored = _SAFETENSORS_DTYPES[info["dtype"]]
        check_tensor(where, shape, stored)
        count = math.prod(shape)
        if offsets[1] - offsets[0] != count * itemsize(stored):
            raise SourceError(f"{where}: {offsets[1] - offsets[0]} bytes for shape {shape} of {info['dtype']}")
        reader = pread_chunks(path, data_start + offsets[0], offsets[1] - offsets[0], stored)
        in_place = in_file(path, data_start + offsets[0], offsets[1] - offsets[0], stored,
                           "bfloat16" if bfloat16 else None)
        dtype = stored
        if bfloat16:
            reader, dtype = _bfloat16_reader(reader), "<f4"
        tensors.append(Tensor(name, tuple(shape), dtype, reader, file_range=in_place,
                              stored_range=as_stored(path, data_start + offsets[0], offsets[1] - offsets[0], stored)))
    return Source(path, "safetensors", tensors)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


register("safetensors", open_safetensors, lambda p: has_suffix(p, ".safetensors"), ".safetensors")
