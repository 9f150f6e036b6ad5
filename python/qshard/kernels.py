"""numpy-facing wrappers around the C++ kernels: dtype and shape checks, output arrays, threads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from qshard import _core, dtypes

AFFINE_QMAX = dtypes.AFFINE_QMAX
DTYPES = dtypes.QUANT_DTYPES


@dataclass(frozen=True)
class QuantParams:
    """How a tensor was quantized: the code dtype and, for uint8/uint16, min and scale."""

    dtype: str
    min: Optional[float] = None
    scale: Optional[float] = None
    max: Optional[float] = None  # the nudged maximum (values above it were clipped)

    @property
    def affine(self) -> bool:
        """True for uint8/uint16 (codes * scale + min), False for float16."""
        return self.dtype in AFFINE_QMAX


def _isa(isa: Optional[str]) -> str:
    return "" if isa is None else str(isa)


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return int(threads)


def _ready(a: np.ndarray, dtype=None) -> np.ndarray:
    """C-contiguous, aligned, native byte order (the kernels read through typed pointers): no
    copy if it already is. Views into shard files can sit at odd offsets; those are copied once."""
    return np.require(a, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def _float32(array, fn: str) -> np.ndarray:
    """The data as a C-contiguous float32 array: no copy if it already is one."""
    a = np.asarray(array)
    if a.dtype.kind == "f":  # float64 / float16 / big-endian float32: converted, as tensorflowjs does
        return _ready(a, np.float32)
    raise TypeError(f"{fn}: expected a float32 array (float64 and float16 are converted), got {a.dtype}")


def _out(out: Optional[np.ndarray], shape, dtype, fn: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.size != int(np.prod(shape)):
        got = f"{out.dtype}[{out.size}]" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"{fn}: out must be a {np.dtype(dtype)} array of {int(np.prod(shape))} elements, got {got}")
    return out


def _affine_qmax(dtype: str, fn: str) -> int:
    if dtype not in AFFINE_QMAX:
        raise ValueError(f"{fn}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return AFFINE_QMAX[dtype]


def minmax(array, *, isa: Optional[str] = None, threads: Optional[int] = None) -> Tuple[float, float]:
    """Minimum and maximum of a float array in one pass (NaN if it holds a NaN)."""
    x = _float32(array, "minmax")
    if x.size == 0:
        raise ValueError("minmax: the array is empty")
    lo, hi, has_nan = _core.minmax(x, _isa(isa), _threads(threads))
    if has_nan:
        return float("nan"), float("nan")
    return lo, hi


def affine_params(lo: float, hi: float, dtype: str = "uint8") -> QuantParams:
    """tensorflowjs's quantization parameters for values in [lo, hi] (zero nudged to a code)."""
    qmax = _affine_qmax(dtype, "affine_params")
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"affine_params: need finite lo <= hi, got {lo}, {hi}")
    mn, scale, mx = _core.affine_params(lo, hi, qmax)
    return QuantParams(dtype, mn, scale, mx)


def quantize(array, dtype: str = "uint8", *, out: Optional[np.ndarray] = None, isa: Optional[str] = None,
             threads: Optional[int] = None, name: Optional[str] = None) -> Tuple[np.ndarray, QuantParams]:
    """Quantize a float32 tensor to uint8/uint16 codes (tensorflowjs semantics) or to float16."""
    x = _float32(array, "quantize")
    if dtype == "float16":
        codes = _out(out, x.shape, np.float16, "quantize")
        _core.f16_from_f32(x, codes.reshape(-1).view(np.uint16), _isa(isa), _threads(threads))
        return codes.reshape(x.shape), QuantParams("float16")
    qmax = _affine_qmax(dtype, "quantize")
    codes = _out(out, x.shape, np.uint8 if qmax == 255 else np.uint16, "quantize")
    kernel = _core.quantize_u8 if qmax == 255 else _core.quantize_u16
    try:
        mn, scale, mx = kernel(x, codes.reshape(-1), _isa(isa), _threads(threads))
    except ValueError as error:
        where = f"tensor {name!r}: " if name else ""
        raise ValueError(f"cannot quantize to {dtype}: {where}{error}") from None
    return codes.reshape(x.shape), QuantParams(dtype, mn, scale, mx)


def quantize_with(array, params: QuantParams, *, out: Optional[np.ndarray] = None, isa: Optional[str] = None,
                  threads: Optional[int] = None) -> np.ndarray:
    """Quantize with parameters fixed beforehand (e.g. from the min/max of a whole streamed tensor)."""
    x = _float32(array, "quantize_with")
    if params.dtype == "float16":
        return quantize(x, "float16", out=out, isa=isa, threads=threads)[0]
    qmax = _affine_qmax(params.dtype, "quantize_with")
    codes = _out(out, x.shape, np.uint8 if qmax == 255 else np.uint16, "quantize_with")
    mx = params.max if params.max is not None else params.min + qmax * params.scale
    _core.quantize_with(x, codes.reshape(-1), float(params.min), float(params.scale), float(mx), qmax,
                        _isa(isa), _threads(threads))
    return codes.reshape(x.shape)


def dequantize(codes, params: QuantParams, dtype: str = "float32", *, out: Optional[np.ndarray] = None,
               isa: Optional[str] = None, threads: Optional[int] = None, rounding: str = "half_even") -> np.ndarray:
    """Codes back to float32 (q * scale + min, as tfjs computes it), or to int32 rounded
    half to even (numpy, tensorflowjs's Python reader) or, with rounding="half_up", as
    JavaScript's Math.round (the tfjs client)."""
    if dtype not in ("float32", "int32"):
        raise ValueError(f"dequantize: dtype must be 'float32' or 'int32', got {dtype!r}")
    if rounding not in ("half_even", "half_up"):
        raise ValueError(f"dequantize: rounding must be 'half_even' or 'half_up', got {rounding!r}")
    q = np.asarray(codes)
    if params.dtype == "float16":
        if dtype != "float32":
            raise ValueError("dequantize: float16 codes only dequantize to float32")
        if q.dtype not in (np.float16, np.uint16):
            raise TypeError(f"dequantize: float16 codes must be a float16 (or uint16 bits) array, got {q.dtype}")
        q = _ready(q).view(np.uint16)
        result = _out(out, q.shape, np.float32, "dequantize")
        _core.f32_from_f16(q, result.reshape(-1), _isa(isa), _threads(threads))
        return result.reshape(q.shape)
    qmax = _affine_qmax(params.dtype, "dequantize")
    expected = np.uint8 if qmax == 255 else np.uint16
    if q.dtype != expected:
        raise TypeError(f"dequantize: {params.dtype} codes must be a {params.dtype} array, got {q.dtype}")
    if params.min is None or params.scale is None:
        raise ValueError(f"dequantize: {params.dtype} codes need min and scale")
    q = _ready(q)
    result = _out(out, q.shape, np.float32 if dtype == "float32" else np.int32, "dequantize")
    _core.dequantize(q, result.reshape(-1), float(params.min), float(params.scale), _isa(isa), _threads(threads),
                     rounding == "half_up")
    return result.reshape(q.shape)


def float16_bits(array, *, isa: Optional[str] = None, threads: Optional[int] = None) -> np.ndarray:
    """float32 -> IEEE half bit patterns (uint16), identical to numpy's astype(float16)."""
    x = _float32(array, "float16_bits")
    bits = np.empty(x.shape, np.uint16)
    _core.f16_from_f32(x, bits.reshape(-1), _isa(isa), _threads(threads))
    return bits
