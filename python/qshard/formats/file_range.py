"""Where a tensor's stored bytes lie in files, for the C++ loop that quantizes it in one call.

A source that can say "these bytes of these files, in this form" gives a tensor a FileRange; the
writer then hands the whole tensor to `ShardWriter.append_file` (read, min/max, quantize, append,
on threads, without the GIL). Sources that cannot (h5py datasets, Fortran-ordered arrays, arrays
in memory, big-endian data) keep the Python chunk loop, with the same bytes out. A tensor written
unchanged whose file bytes are already what a web model stores (`as_stored`) is copied by
`ShardWriter.append_file_bytes` the same way.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Optional, Tuple, Type, Union

from qshard import dtypes
from qshard.errors import QshardError, SourceError
from qshard.lazy import np

# The stored forms the C++ loop widens to float32 itself (little-endian only), by numpy dtype string;
# bfloat16 (no numpy dtype) and tfjs uint8/uint16 codes are named by their sources.
_FORMS = {"<f4": "float32", "<f2": "float16", "<f8": "float64"}
# The weight dtypes a web model stores as plain little-endian values, by numpy dtype string.
_WEB_STORED = {d.numpy: name for name, d in dtypes.TABLE.items() if d.weight and d.numpy}


@dataclass(frozen=True)
class FileRange:
    """A tensor's stored bytes: (path, offset, nbytes) pieces in order, holding `count` elements
    of `stored` (float32, float16, bfloat16, float64, or tfjs uint8/uint16 codes that mean
    code * codes_scale + codes_min). `error` is the exception a failed read becomes."""

    pieces: Tuple[Tuple[str, int, int], ...]
    stored: str
    count: int
    codes_min: float = 0.0
    codes_scale: float = 1.0
    error: Type[QshardError] = SourceError


DType = Union["np.dtype", str]  # a numpy dtype, or its dtype.str ("<f4"): sources need not import numpy


_DTYPE_STR = re.compile(r"[<>|][a-zA-Z]\d+")  # byte order, kind, bytes per element: what dtype.str gives


def dtype_str(dtype: DType) -> str:
    """numpy's dtype.str of a dtype ("<f4"), without importing numpy when given one already
    (any other spelling, "float32" or np.float32, goes through numpy)."""
    if isinstance(dtype, str) and _DTYPE_STR.fullmatch(dtype):
        return dtype
    return np.dtype(dtype).str


def itemsize(dtype: DType) -> int:
    """Bytes per element of a dtype, read from its dtype.str ("<f4": 4)."""
    return int(dtype_str(dtype)[2:])


def _one_piece(path, offset: int, nbytes: int, dtype: DType, form: str,
               error: Type[QshardError] = SourceError) -> FileRange:
    return FileRange(((str(path), int(offset), int(nbytes)),), form, int(nbytes) // itemsize(dtype), error=error)


def stored_form(dtype: DType) -> Optional[str]:
    """The C++ loop's name for a numpy dtype it can read straight from a file, else None."""
    if sys.byteorder != "little":
        return None
    return _FORMS.get(dtype_str(dtype))  # (native order is "<" here; ">" is not read)


def as_stored(path, offset: int, nbytes: int, dtype: DType, error: Type[QshardError] = SourceError) -> Optional[FileRange]:
    """A one-piece FileRange for nbytes at offset of path when those bytes are what a web model
    stores for the tensor unquantized (float32, int32, bool, complex64), else None (float64,
    int64, float16... are converted first)."""
    form = _WEB_STORED.get(dtype_str(dtype)) if sys.byteorder == "little" else None
    return None if form is None else _one_piece(path, offset, nbytes, dtype, form, error)


def in_file(path, offset: int, nbytes: int, dtype: DType, stored: Optional[str] = None) -> Optional[FileRange]:
    """A one-piece FileRange for nbytes at offset of path, or None when the form is not readable
    by the C++ loop. dtype is the numpy dtype of the stored bytes; stored names a form numpy has no
    dtype for (bfloat16, stored as uint16)."""
    form = stored or stored_form(dtype)
    return None if form is None else _one_piece(path, offset, nbytes, dtype, form)
