"""The one dtype table: every dtype a tfjs web model stores, with what qshard needs to know of it.

Weight dtypes are what a manifest entry's `dtype` may say; quantization dtypes are what its
`quantization.dtype` may say (the stored form of a float32 weight). Every module reads its sizes,
numpy types and code ranges from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class DType:
    """A tfjs dtype: bytes per element, the little-endian numpy dtype of its stored bytes (as the
    string numpy's dtype.str gives, so this table does not import numpy), and for the affine
    quantization dtypes the largest code."""

    name: str
    itemsize: Optional[int]        # None: strings (each element has its own length)
    numpy: Optional[str]
    weight: bool                   # may be a weight's dtype
    quantization: bool = False     # may be a quantization dtype
    qmax: Optional[int] = None     # uint8 / uint16: codes 0..qmax


TABLE: Dict[str, DType] = {d.name: d for d in (
    DType("float32", 4, "<f4", weight=True),
    DType("int32", 4, "<i4", weight=True),
    DType("bool", 1, "|b1", weight=True),
    DType("complex64", 8, "<c8", weight=True),
    DType("string", None, None, weight=True),
    DType("uint8", 1, "|u1", weight=False, quantization=True, qmax=255),
    DType("uint16", 2, "<u2", weight=False, quantization=True, qmax=65535),
    DType("float16", 2, "<f2", weight=False, quantization=True),
)}

WEIGHT_ITEMSIZE: Dict[str, Optional[int]] = {n: d.itemsize for n, d in TABLE.items() if d.weight}
QUANT_ITEMSIZE: Dict[str, int] = {n: d.itemsize for n, d in TABLE.items() if d.quantization}
QUANT_DTYPES = tuple(QUANT_ITEMSIZE)                       # uint8, uint16, float16
AFFINE_QMAX: Dict[str, int] = {n: d.qmax for n, d in TABLE.items() if d.qmax}
# Bytes per element of a float32 weight stored as each choice qshard offers (float32 = unquantized).
STORED_ITEMSIZE: Dict[str, int] = {"float32": 4, **QUANT_ITEMSIZE}


def __getattr__(name: str):
    # STORED_NUMPY, the numpy dtype of each dtype's stored bytes, is made on first use (PEP 562):
    # making it imports numpy (qshard/lazy.py says why that waits).
    if name == "STORED_NUMPY":
        import numpy
        table: Dict[str, "np.dtype"] = {n: numpy.dtype(d.numpy) for n, d in TABLE.items() if d.numpy is not None}
        globals()[name] = table
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
