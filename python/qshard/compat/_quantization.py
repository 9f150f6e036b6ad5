"""tensorflowjs 4.22's quantization.py functions, computed by qshard (see compat.tensorflowjs)."""
from __future__ import annotations

import fnmatch
import warnings
from typing import Any, Dict, Tuple

import numpy as np

from qshard import kernels

_QUANT_TYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_AFFINE_TYPES = [np.uint8, np.uint16]            # compared with ==, as tensorflowjs does
TYPE_NAMES = {np.uint8: "uint8", np.uint16: "uint16", np.float16: "float16"}
# What tensorflowjs's write_weights accepts (compared with ==) and what it converts first.
WRITABLE = [np.float16, np.float32, np.int32, np.complex64, np.uint8, np.uint16, bool, object]
AUTO_CONVERT = {np.dtype(np.float16): np.float32, np.dtype(np.float64): np.float32,
                 np.dtype(np.int64): np.int32, np.dtype(np.complex128): np.complex64}
# What decode_weights accepts as a stored dtype.
READABLE = [np.float16, np.float32, np.int32, np.complex64, np.uint8, np.uint16, object, bool]
STRING_LENGTH_BYTES = 4
MANIFEST_FILE = "weights_manifest.json"
_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


# ---------------------------------------------------------------------------------------- patterns

def map_layers_to_quantization_dtype(names, quantization_dtype_map):
    """Name -> numpy dtype (np.uint8 / np.uint16 / np.float16) for every name that a pattern of
    quantization_dtype_map ({'uint8': patterns, ...}) matches; a dtype mapped to True instead of
    patterns takes every name no pattern matched (at most one such fallthrough)."""
    if quantization_dtype_map is None:
        return {}
    chosen: Dict[Any, Any] = {}
    fallthrough = None
    for dtype_name, patterns in quantization_dtype_map.items():
        if isinstance(patterns, bool) and patterns:
            if fallthrough is not None:
                raise ValueError("More than one quantization fallthrough provided, exactly one is supported")
            fallthrough = dtype_name
            continue
        for pattern in ([patterns] if isinstance(patterns, str) else patterns):
            for name in fnmatch.filter(names, pattern):
                dtype = _QUANT_TYPES[dtype_name]
                if name in chosen and chosen[name] != dtype:
                    raise ValueError("Two quantization values %s, %s match the same node %s"
                                     % (dtype, chosen[name], name))
                chosen[name] = dtype
    if fallthrough is not None:
        for name in set(names) - set(chosen):
            chosen[name] = _QUANT_TYPES[fallthrough]
    return chosen


# ------------------------------------------------------------------------------ quantize / dequantize

def _is_plain(data, dtype) -> bool:
    """A numpy ndarray (not a subclass) of exactly this native dtype: the kernels' input."""
    return type(data) is np.ndarray and data.dtype == dtype and data.dtype.isnative


def _layout(data: np.ndarray) -> Tuple[np.ndarray, bool]:
    """A Fortran-ordered array is passed to the kernels as its (C-ordered) transpose, so the result
    can be transposed back and keep the layout numpy would give it."""
    if data.ndim > 1 and data.flags.f_contiguous and not data.flags.c_contiguous:
        return data.T, True
    return data, False


def _restore(result: np.ndarray, data: np.ndarray, transposed: bool) -> np.ndarray:
    """The kernels' result in the input's shape and layout (0-d inputs come back 1-d from some)."""
    if transposed:
        return result.T
    return result if result.shape == data.shape else result.reshape(data.shape)


# Under numpy 1.x, tensorflowjs's per-element math on float32 data runs in float32: numpy 1's
# value-based casting turns the float64 min / max / scale scalars into float32 before clip, the
# subtraction and the division (the metadata it returns stays float64). Codes then differ from the
# float64 arithmetic of numpy >= 2 by a step in rare cases (tests/data/golden has both).
NUMPY_ARITHMETIC = "float64" if int(np.__version__.split(".")[0]) >= 2 else "float32"
ARITHMETICS = ("float64", "float32")


def _affine_with_numpy(data, quantization_dtype, arithmetic: str = "float64"):
    """tensorflowjs's affine quantization, computed with numpy as it computes it: used for data
    the kernels do not take (int32, other dtypes, NaN/Inf, empty, non-ndarray) and for the float32
    arithmetic of tensorflowjs under numpy 1.x."""
    lo = data.min().astype(np.float64)
    hi = data.max().astype(np.float64)
    if lo == hi:
        return np.zeros_like(data, dtype=quantization_dtype), {"min": lo, "scale": 1.0}
    qmax = np.iinfo(quantization_dtype).max
    scale = (hi - lo) / qmax
    if lo <= 0 <= hi:  # nudge the range so that 0.0 is exactly one of the codes
        zero_code = np.round((0 - lo) / scale)
        lo = -zero_code * scale
        hi = qmax * scale + lo
    if arithmetic == "float32" and data.dtype == np.float32:
        lo32, hi32, scale32 = np.float32(lo), np.float32(hi), np.float32(scale)
        codes = np.round((data.clip(lo32, hi32) - lo32) / scale32).astype(quantization_dtype)
    else:
        codes = np.round((data.clip(lo, hi) - lo) / scale).astype(quantization_dtype)
    return codes, {"min": lo, "scale": scale}


def quantize_weights(data, quantization_dtype, *, arithmetic: str = NUMPY_ARITHMETIC):
    """tensorflowjs.quantization.quantize_weights: (codes, {'min', 'scale'}) for np.uint8 /
    np.uint16, (float16 array, {}) for np.float16; ValueError for any other dtype. `arithmetic`:
    'float64' (tensorflowjs under numpy >= 2) or 'float32' (under numpy 1.x); default: as
    tensorflowjs would compute with the numpy installed here."""
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}, got {arithmetic!r}")
    if quantization_dtype in _AFFINE_TYPES:
        if not (_is_plain(data, np.float32) and data.size) or arithmetic == "float32":
            return _affine_with_numpy(data, quantization_dtype, arithmetic)
        name = "uint8" if np.iinfo(quantization_dtype).max == 255 else "uint16"
        source, transposed = _layout(data)
        try:
            codes, params = kernels.quantize(source, name)
        except ValueError:  # NaN or Inf: the kernels refuse, tensorflowjs computes garbage
            warnings.warn(f"quantize_weights: the data holds NaN or Inf; its {name} codes and min/scale are "
                          f"meaningless (computed as tensorflowjs computes them)", RuntimeWarning, stacklevel=2)
            return _affine_with_numpy(data, quantization_dtype)
        codes = _restore(codes, data, transposed)
        if params.max == params.min:  # constant data: tensorflowjs writes scale 1.0 (a Python float)
            lo = params.min
            if lo == 0 and np.signbit(lo):
                # Zeros of both signs: qshard orders -0.0 first, numpy's min may return either.
                lo = data.min()
            return codes, {"min": np.float64(lo), "scale": 1.0}
        return codes, {"min": np.float64(params.min), "scale": np.float64(params.scale)}
    if quantization_dtype == np.float16:
        if data.dtype != np.float32:
            raise ValueError("Invalid data dtype %r\nfloat16 quantization only supports float32 dtype" % data.dtype)
        if not _is_plain(data, np.float32):
            return data.astype(np.float16), {}
        source, transposed = _layout(data)
        return _restore(kernels.quantize(source, "float16")[0], data, transposed), {}
    raise ValueError("Invalid `quantization_dtype`: %r" % quantization_dtype)


def _kernel_params(data: np.ndarray, scale, low, as_int32: bool):
    """QuantParams when the kernels compute exactly what numpy computes for these codes and
    metadata (Python or numpy float64 metadata, finite, int32 results in range), else None."""
    if type(scale) not in (float, np.float64) or type(low) not in (float, np.float64):
        return None
    scale, low = float(scale), float(low)
    if not (np.isfinite(scale) and np.isfinite(low)):
        return None
    name = "uint8" if data.dtype == np.uint8 else "uint16"
    if as_int32:
        top = low + kernels.AFFINE_QMAX[name] * scale
        if not (_INT32_MIN < min(low, top) and max(low, top) < _INT32_MAX):
            return None
    return kernels.QuantParams(name, low, scale)


def _is_float32(dtype) -> bool:
    try:
        return np.dtype(dtype) == np.dtype(np.float32) and np.dtype(dtype).isnative
    except TypeError:
        return False


def dequantize_weights(data, metadata, original_dtype=np.float32):
    """tensorflowjs.quantization.dequantize_weights: uint8/uint16 codes -> codes * scale + min as
    original_dtype (rounded for np.int32), float16 -> float32."""
    dtype = data.dtype
    if dtype in _AFFINE_TYPES:
        if not ("scale" in metadata and "min" in metadata):
            raise ValueError("Missing metadata min or scale for dtype %s" % dtype.name)
        scale, low = metadata["scale"], metadata["min"]
        as_int32 = original_dtype == np.int32
        # (numpy gives a scalar, not a 0-d array, for 0-d codes: left to numpy)
        if type(data) is np.ndarray and data.ndim and (as_int32 or _is_float32(original_dtype)):
            params = _kernel_params(data, scale, low, as_int32)
            if params is not None:
                source, transposed = _layout(data)
                values = kernels.dequantize(source, params, "int32" if as_int32 else "float32")
                return _restore(values, data, transposed)
        if as_int32:
            return np.round(data * scale + low).astype(original_dtype)
        return (data * scale + low).astype(original_dtype)
    if dtype == np.float16:
        if original_dtype != np.float32:
            raise ValueError("Invalid data dtype %r\nfloat16 quantization only supports float32 dtype" % data.dtype)
        if type(data) is not np.ndarray or not dtype.isnative:
            return data.astype(original_dtype)
        source, transposed = _layout(data)
        return _restore(kernels.dequantize(source, kernels.QuantParams("float16")), data, transposed)
    raise ValueError("Invalid dtype %s for dequantization\nSupported dtypes are uint8, uint16, float16" % dtype.name)


