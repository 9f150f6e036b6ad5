"""Input files written from their specifications, and output folders compared byte for byte."""
import json
import os
import struct
from pathlib import Path

import numpy as np


def write_safetensors(path, arrays, bf16=()):
    """A safetensors file written from its specification (8-byte header length, JSON, data)."""
    codes = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.bool_): "BOOL"}
    header, blobs, offset = {"__metadata__": {"format": "np"}}, [], 0
    for name, a in arrays.items():
        if name in bf16:
            data = (np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            dtype = "BF16"
        else:
            data, dtype = np.ascontiguousarray(a).tobytes(), codes[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def same_output(a, b):
    """Two folders hold the same file names with the same bytes."""
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for name in names:
        assert (Path(a) / name).read_bytes() == (Path(b) / name).read_bytes(), name
