"""Where a tensor's stored bytes lie in files, for the C++ loop that quantizes it in one call.

A source that can say "these bytes of these files, in this form" gives a tensor a FileRange; the
writer then hands the whole tensor to `ShardWriter.append_file` (read, min/max, quantize, append,
on threads, without the GIL). Sources that cannot (h5py datasets, Fortran-ordered arrays, arrays
in memory, big-endian data) keep the Python chunk loop, with the same bytes out.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional, Tuple, Type

import numpy as np

from qshard.errors import QshardError, SourceError

# The stored forms the C++ loop widens to float32 itself (native little-endian only), by numpy dtype;
# bfloat16 (no numpy dtype) and tfjs uint8/uint16 codes are named by their sources.
_FORMS = {np.dtype("<f4"): "float32", np.dtype("<f2"): "float16", np.dtype("<f8"): "float64"}


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


def stored_form(dtype: np.dtype) -> Optional[str]:
    """The C++ loop's name for a numpy dtype it can read straight from a file, else None."""
    if sys.byteorder != "little":
        return None
    return _FORMS.get(np.dtype(dtype))  # (native order compares equal to "<" here; ">" does not)


def in_file(path, offset: int, nbytes: int, dtype: np.dtype, stored: Optional[str] = None) -> Optional[FileRange]:
    """A one-piece FileRange for nbytes at offset of path, or None when the form is not readable
    by the C++ loop (stored names a form numpy has no dtype for, e.g. bfloat16)."""
    form = stored or stored_form(dtype)
    if form is None:
        return None
    itemsize = 2 if form == "bfloat16" else np.dtype(dtype).itemsize
    return FileRange(((str(path), int(offset), int(nbytes)),), form, int(nbytes) // itemsize)
