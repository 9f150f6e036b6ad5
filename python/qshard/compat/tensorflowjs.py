"""tensorflowjs 4.22's numpy-level functions, computed by qshard: a drop-in replacement.

    from qshard.compat import tensorflowjs as compat
    compat.install()     # tensorflowjs.quantization / .write_weights / .read_weights now call qshard
    ...                  # run the converter, or any tool that calls those modules
    compat.uninstall()   # the original functions are back

The functions can also be called directly, with tensorflowjs's names, signatures, return values
(down to the types: metadata values are numpy.float64, dtypes are numpy scalar types) and errors:

- quantize_weights(data, quantization_dtype) and dequantize_weights(data, metadata,
  original_dtype=np.float32) (tensorflowjs.quantization). float32 data and uint8/uint16/float16
  codes run in qshard's C++ kernels; every other input (int32 data, int or float32 metadata,
  float64 as original dtype, non-ndarray objects, ...) takes a numpy path that performs the
  operations tensorflowjs performs, so the result is the same there too.
- map_layers_to_quantization_dtype(names, quantization_dtype_map): fnmatch patterns, one boolean
  fallthrough dtype, the same ValueErrors for two dtypes on one name or two fallthroughs.
- write_weights(weight_groups, write_dir, shard_size_bytes=4 MiB, write_manifest=True,
  quantization_dtype_map=None) (tensorflowjs.write_weights): the same checks and exceptions, the
  same "auto converted" messages on stdout, the same mutation of the caller's entries (converted
  data, strings turned into object arrays); the shard files are written by qshard's C++ shard
  writer (qshard.tfjs.write_weights), quantizing as it streams. Files and weights_manifest.json
  are byte-identical to tensorflowjs's for finite data, and the returned manifest is equal
  (numpy.float64 min/scale included).
- read_weights(weights_manifest, base_path, flatten=False) and decode_weights(weights_manifest,
  data_buffers, flatten=False) (tensorflowjs.read_weights): the same groups of
  {'name', 'data'}, the same values bit for bit (unquantized weights are read-only views of the
  buffers, as there), dequantized by qshard.

Deliberate deviations:

- write_weights keeps a float32 tensor holding NaN or +-Inf as float32 when uint8/uint16 is asked
  for it, and says so with a RuntimeWarning: tensorflowjs writes codes computed from a NaN range
  and "NaN" into the JSON, which no loader reads back. float16 is written as tensorflowjs
  writes it (NaN and Inf included).
- quantize_weights on float32 data holding NaN/Inf returns what tensorflowjs returns (computed by
  numpy, slowly, with a RuntimeWarning that the codes are meaningless) instead of raising as
  qshard.quantize does; an empty array raises numpy's ValueError for uint8/uint16, as in tensorflowjs.
- The arithmetic is that of tensorflowjs under numpy >= 2 (float64). Under numpy 1.x
  tensorflowjs itself computes float32 data partly in float32 and can differ by one code.
- When write_weights rejects its input (bad dtype, empty tensor to quantize, conflicting
  patterns, ...) it raises the same exception, but before writing any file; tensorflowjs has
  written the shards of the groups before the failing one by then. Only local paths are
  supported (tensorflowjs writes through tf.io.gfile, which also reaches gs:// and the like).
- Results keep the memory order of C- and Fortran-ordered inputs; other strided views give
  C-ordered results (tensorflowjs keeps numpy's "K" order). Values and tobytes() are the same.

Kept on purpose because callers may depend on them (they are tensorflowjs's behaviour):
errors about malformed weight_groups are Python's TypeError for concatenating an int index to a
str (tensorflowjs builds those messages that way); 'int32' given as a string original dtype
truncates instead of rounding; decode_weights skips 4 bytes after an empty string tensor.

install() patches the attributes of the modules tensorflowjs.quantization, .write_weights and
.read_weights (importing them if needed: the real package when it imports, else
qshard.reference's numpy-only stand-in) and any attribute of another loaded tensorflowjs.*
module that is bound to one of the original functions. tensorflowjs's converters call these
through the modules (write_weights.write_weights(...)), so they pick up the replacements. A tool
outside tensorflowjs that ran `from tensorflowjs.write_weights import write_weights` before
install() keeps the original: install first.
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import os
import sys
import threading
import warnings
from typing import Any, Dict, List, Tuple

import numpy as np

from .. import kernels
from .. import reference
from .. import tfjs as _tfjs

__all__ = ["quantize_weights", "dequantize_weights", "map_layers_to_quantization_dtype", "write_weights",
           "read_weights", "decode_weights", "install", "uninstall", "installed"]

_QUANT_TYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_AFFINE_TYPES = [np.uint8, np.uint16]            # compared with ==, as tensorflowjs does
_TYPE_NAMES = {np.uint8: "uint8", np.uint16: "uint16", np.float16: "float16"}
# What tensorflowjs's write_weights accepts (compared with ==) and what it converts first.
_WRITABLE = [np.float16, np.float32, np.int32, np.complex64, np.uint8, np.uint16, bool, object]
_AUTO_CONVERT = {np.dtype(np.float16): np.float32, np.dtype(np.float64): np.float32,
                 np.dtype(np.int64): np.int32, np.dtype(np.complex128): np.complex64}
# What decode_weights accepts as a stored dtype.
_READABLE = [np.float16, np.float32, np.int32, np.complex64, np.uint8, np.uint16, object, bool]
_STRING_LENGTH_BYTES = 4
_MANIFEST_FILE = "weights_manifest.json"
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


def _affine_with_numpy(data, quantization_dtype):
    """tensorflowjs's affine quantization, computed with numpy in float64 as it computes it: used
    for data the kernels do not take (int32, other dtypes, NaN/Inf, empty, non-ndarray)."""
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
    codes = np.round((data.clip(lo, hi) - lo) / scale).astype(quantization_dtype)
    return codes, {"min": lo, "scale": scale}


def quantize_weights(data, quantization_dtype):
    """tensorflowjs.quantization.quantize_weights: (codes, {'min', 'scale'}) for np.uint8 /
    np.uint16, (float16 array, {}) for np.float16; ValueError for any other dtype."""
    if quantization_dtype in _AFFINE_TYPES:
        if not (_is_plain(data, np.float32) and data.size):
            return _affine_with_numpy(data, quantization_dtype)
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


# ------------------------------------------------------------------------------------ write_weights

def _concat_error(index) -> TypeError:
    """tensorflowjs formats its messages about malformed weight_groups as 'weight_groups[' + i,
    with an int i, so what it raises is Python's TypeError for that concatenation: the same here."""
    try:
        "weight_groups[" + index
    except TypeError as error:
        return error
    return TypeError(f"weight_groups[{index}] is malformed")  # pragma: no cover (index is an int)


def _check_groups(weight_groups) -> None:
    if not isinstance(weight_groups, list):
        raise Exception("weight_groups must be a list of groups")
    if not weight_groups:
        raise ValueError("weight_groups must have more than one list element")
    for i, group in enumerate(weight_groups):
        if not isinstance(group, list):
            raise _concat_error(i)
        for entry in group:
            if "name" not in entry or "data" not in entry or not isinstance(entry["data"], np.ndarray):
                raise _concat_error(i)


def _check_shard_size(shard_size_bytes) -> None:
    if shard_size_bytes <= 0:
        raise ValueError("shard_size_bytes must be greater than 0, but got %s" % shard_size_bytes)
    if not isinstance(shard_size_bytes, int):
        raise ValueError("shard_size_bytes must be an integer, but got %s" % shard_size_bytes)


def _check_unique_names(weight_groups) -> None:
    seen = set()
    for group in weight_groups:
        for entry in group:
            name = entry["name"]
            if name in seen:
                raise Exception("Error dumping weights, duplicate weight name " + name)
            seen.add(name)


def _auto_convert(entry) -> None:
    """float64 -> float32, int64 -> int32, float16 -> float32, complex128 -> complex64, in the
    caller's entry, announced on stdout with tensorflowjs's words."""
    data = entry["data"]
    if data.dtype in _AUTO_CONVERT:
        target = _AUTO_CONVERT[data.dtype]
        entry["data"] = data.astype(target)
        print("weight " + entry["name"] + " with shape " + str(data.shape) + " and dtype " + data.dtype.name
              + " was auto converted to the type " + np.dtype(target).name)


def _checked_data(entry) -> np.ndarray:
    """The entry's data as it will be written (strings as an object array, stored back into the
    entry), or tensorflowjs's ValueError."""
    if "name" not in entry:
        raise ValueError("Error dumping weight, no name field found.")
    if "data" not in entry:
        raise ValueError("Error dumping weight, no data field found.")
    name, data = entry["name"], entry["data"]
    if data.dtype.name.startswith(("str", "bytes")):
        data = data.astype(object)
        entry["data"] = data
    if not (data.dtype in _WRITABLE or data.dtype in _AUTO_CONVERT):
        raise ValueError("Error dumping weight " + name + ", dtype " + data.dtype.name + " not supported.")
    if not isinstance(data, np.ndarray):
        raise ValueError("Error dumping weight " + name + ", data must be a numpy ndarray.")
    return data


def _string_bytes(data: np.ndarray) -> bytes:
    """A tfjs string tensor: per element its byte length (uint32, little-endian), then the bytes
    (str elements as UTF-8; other objects fail as they fail in tensorflowjs)."""
    parts = []
    for value in data.flatten().tolist():
        encoded = value if isinstance(value, bytes) else value.encode("utf-8")
        parts.append(len(encoded).to_bytes(_STRING_LENGTH_BYTES, "little"))
        parts.append(encoded)
    return b"".join(parts)


def _as_bytes(data) -> np.ndarray:
    """Bytes to store unchanged, in a form the shard writer copies verbatim (a bool array)."""
    if isinstance(data, bytes):
        return np.frombuffer(data, np.uint8).view(np.bool_)
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8).view(np.bool_)


class _Planned:
    """One weight: what the shard writer gets and what the manifest will say."""

    __slots__ = ("name", "shape", "dtype", "data", "stored", "target", "key")

    def __init__(self, name, shape, dtype, data, stored, target=None):
        self.name, self.shape, self.dtype = name, shape, dtype
        self.data, self.stored, self.target = data, stored, target  # target: uint8/uint16/float16/None
        self.key = ""


def _plan_group(group, quantization_dtype_map) -> List[_Planned]:
    """Everything tensorflowjs does to a group before writing it, in its order (so the same input
    raises the same exception first), without writing."""
    for entry in group:
        _auto_convert(entry)
    names = [entry["name"] for entry in group]
    asked = map_layers_to_quantization_dtype(names, quantization_dtype_map)
    targets = {}
    for entry in group:
        if entry["name"] in asked and entry["data"].dtype == "float32":
            data = entry["data"]
            target = _TYPE_NAMES[asked[entry["name"]]]
            if target != "float16" and data.size == 0:
                data.min()  # numpy's ValueError for a zero-size reduction, which tensorflowjs raises
            targets[id(entry)] = target
    planned = []
    for entry in group:
        target = targets.get(id(entry))
        if target is None:
            data = _checked_data(entry)
            dtype = "string" if data.dtype == object else data.dtype.name
            stored = _as_bytes(_string_bytes(data) if data.dtype == object else data)
            planned.append(_Planned(entry["name"], list(data.shape), dtype, data, stored))
            continue
        data = entry["data"]
        if target == "float16" and data.size and np.isnan(kernels.minmax(data)[0]):
            # qshard's own writer keeps such a tensor as float32; tensorflowjs stores float16 NaNs.
            codes = quantize_weights(data, np.float16)[0]
            planned.append(_Planned(entry["name"], list(data.shape), "float32", data, _as_bytes(codes), "float16!"))
            continue
        planned.append(_Planned(entry["name"], list(data.shape), "float32", data, data, target))
    return planned


def _is_constant(data: np.ndarray) -> bool:
    lo, hi = kernels.minmax(data)
    return lo == hi


def _manifest_entry(item: _Planned, written: dict) -> dict:
    entry = {"name": item.name, "shape": item.shape, "dtype": item.dtype}
    if item.target == "float16!" or (item.target == "float16" and "quantization" in written):
        entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
    elif item.target is not None and "quantization" in written:
        q = written["quantization"]
        low, scale = np.float64(q["min"]), np.float64(q["scale"])
        if scale == 1.0 and _is_constant(item.data):
            scale = 1.0  # constant data: tensorflowjs's scale is the Python float
            if low == 0 and np.signbit(low):
                low = np.float64(item.data.min())  # numpy decides the sign of a min over +-0.0
        entry["quantization"] = {"dtype": item.target, "min": low, "scale": scale, "original_dtype": "float32"}
    return entry


def write_weights(weight_groups, write_dir, shard_size_bytes=1024 * 1024 * 4, write_manifest=True,
                  quantization_dtype_map=None):
    """tensorflowjs.write_weights.write_weights: write the groups ([[{'name', 'data'}, ...], ...])
    as group<i>-shard<j>of<n>.bin files of shard_size_bytes (+ weights_manifest.json) into the
    existing folder write_dir; returns the manifest. quantization_dtype_map is {'uint8' |
    'uint16' | 'float16': patterns or True}; only float32 weights are quantized."""
    _check_groups(weight_groups)
    _check_shard_size(shard_size_bytes)
    _check_unique_names(weight_groups)
    plans = [_plan_group(group, quantization_dtype_map) for group in weight_groups]
    groups, targets = [], {}
    for gi, plan in enumerate(plans):
        row = []
        for wi, item in enumerate(plan):
            item.key = f"{gi}/{wi}"  # tensorflowjs accepts any hashable name; the writer gets plain ones
            if item.target in ("uint8", "uint16", "float16"):
                targets[item.key] = item.target
            row.append((item.key, item.stored))
        groups.append(row)
    kept: List[_tfjs.Kept] = []
    written = _tfjs.write_weights(groups, write_dir, shard_size=int(shard_size_bytes), targets=targets,
                                  write_manifest=False, kept=kept)
    for k in kept:
        gi, wi = (int(part) for part in k.name.split("/"))
        warnings.warn(f"write_weights: weight {plans[gi][wi].name!r} {k.reason}; it is written as float32 "
                      f"(tensorflowjs would write meaningless {k.asked} codes)", RuntimeWarning, stacklevel=2)
    manifest = []
    for plan, group in zip(plans, written):
        manifest.append({"paths": list(group["paths"]),
                         "weights": [_manifest_entry(item, w) for item, w in zip(plan, group["weights"])]})
    if write_manifest:
        with open(os.path.join(write_dir, _MANIFEST_FILE), "wb") as f:
            f.write(json.dumps(manifest).encode())
    return manifest


# ------------------------------------------------------------------------------------- read_weights

def read_weights(weights_manifest, base_path, flatten=False):
    """tensorflowjs.read_weights.read_weights: read each group's shard files (paths relative to
    base_path) and decode them; [[{'name', 'data'}, ...], ...], or one list with flatten=True."""
    if not isinstance(weights_manifest, list):
        raise ValueError("weights_manifest should be a `list`, but received %s" % type(weights_manifest))
    buffers = []
    for group in weights_manifest:
        parts = []
        for path in group["paths"]:
            with open(os.path.join(base_path, path), "rb") as f:
                parts.append(f.read())
        buffers.append(parts[0] if len(parts) == 1 else b"".join(parts))
    return decode_weights(weights_manifest, buffers, flatten=flatten)


def _strings(buffer, offset, shape):
    count = int(np.prod(shape))
    if count == 0:  # tensorflowjs moves past 4 bytes here although it writes none
        return np.array([], "object").reshape(shape), offset + _STRING_LENGTH_BYTES
    values = []
    for _ in range(count):
        length = int(np.frombuffer(buffer[offset:offset + _STRING_LENGTH_BYTES], "<u4")[0])
        offset += _STRING_LENGTH_BYTES
        values.append(buffer[offset:offset + length])
        offset += length
    return np.array(values, "object").reshape(shape), offset


def decode_weights(weights_manifest, data_buffers, flatten=False):
    """tensorflowjs.read_weights.decode_weights: the weights of each manifest group from its buffer
    (a list of one buffer per group, or a single buffer for a one-group manifest)."""
    if not isinstance(data_buffers, list):
        data_buffers = [data_buffers]
    if len(weights_manifest) != len(data_buffers):
        raise ValueError("Mismatch in the length of weights_manifest (%d) and the length of data buffers (%d)"
                         % (len(weights_manifest), len(data_buffers)))
    result = []
    for group, buffer in zip(weights_manifest, data_buffers):
        offset = 0
        entries = []
        for weight in group["weights"]:
            quantization = weight.get("quantization", None)
            is_string = weight["dtype"] == "string"
            if is_string:
                dtype = object
            elif quantization:
                dtype = np.dtype(quantization["dtype"])
            else:
                dtype = np.dtype(weight["dtype"])
            shape = weight["shape"]
            if dtype not in _READABLE:
                raise NotImplementedError("Unsupported data type: %s" % dtype)
            if is_string:
                value, offset = _strings(buffer, offset, shape)
            else:
                count = 1
                for dim in shape:
                    count *= dim
                value = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
                offset += dtype.itemsize * value.size
            if quantization:
                value = dequantize_weights(value, quantization, np.dtype(weight["dtype"]))
            entries.append({"name": weight["name"], "data": value})
        if flatten:
            result.extend(entries)
        else:
            result.append(entries)
    return result


# -------------------------------------------------------------------------------- install/uninstall

_REPLACEMENTS = {
    "quantization": ("quantize_weights", "dequantize_weights", "map_layers_to_quantization_dtype"),
    "write_weights": ("write_weights",),
    "read_weights": ("read_weights", "decode_weights"),
}
_lock = threading.RLock()
_patched: List[Tuple[Any, str, Any, Any]] = []  # (module, attribute, original, replacement), in order


def _replacement(attribute: str):
    return globals()[attribute]


def _tensorflowjs_modules() -> Dict[str, Any]:
    """tensorflowjs.quantization / .write_weights / .read_weights, imported if needed: the real
    package when it imports (TensorFlow and the converter's other dependencies present), else the
    numpy-only stand-in of qshard.reference."""
    if "tensorflowjs" not in sys.modules:
        if importlib.util.find_spec("tensorflowjs") is None:
            raise reference.ReferenceUnavailable(
                "tensorflowjs is not installed, there is nothing to patch "
                "(the functions of qshard.compat.tensorflowjs can be called directly)")
        try:
            importlib.import_module("tensorflowjs")
        except Exception:  # noqa: BLE001 - e.g. no TensorFlow: fall back to the numpy-only modules
            pass
    modules: Dict[str, Any] = {}
    for short in _REPLACEMENTS:
        full = f"tensorflowjs.{short}"
        module = sys.modules.get(full)
        if module is None:
            try:
                module = importlib.import_module(full)
            except ImportError:  # write_weights imports tensorflow for tf.io.gfile only
                module = reference.load(short)
                package = sys.modules.get("tensorflowjs")
                if package is not None and not hasattr(package, short):
                    setattr(package, short, module)  # as an import would, for tensorflowjs.<short>
        modules[short] = module
    return modules


def installed() -> List[str]:
    """'module.attribute' of every attribute install() replaced and uninstall() will restore."""
    with _lock:
        return [f"{module.__name__}.{attribute}" for module, attribute, _, _ in _patched]


def install() -> List[str]:
    """Make tensorflowjs's quantization / write_weights / read_weights functions these ones (see the
    module docstring); returns installed(). Calling it again patches only what is new, e.g. a
    tensorflowjs module loaded since."""
    with _lock:
        modules = _tensorflowjs_modules()
        done = {(id(module), attribute) for module, attribute, _, _ in _patched}
        for short, attributes in _REPLACEMENTS.items():
            module = modules[short]
            for attribute in attributes:
                new = _replacement(attribute)
                if (id(module), attribute) in done or getattr(module, attribute, None) is new:
                    continue
                _patched.append((module, attribute, getattr(module, attribute), new))
                done.add((id(module), attribute))
                setattr(module, attribute, new)
        # Names other tensorflowjs modules bound to an original with `from tensorflowjs.X import f`.
        swaps = [(original, new) for _, _, original, new in _patched]
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "tensorflowjs" or name.startswith("tensorflowjs.")):
                continue
            for attribute, value in list(getattr(module, "__dict__", {}).items()):
                if (id(module), attribute) in done:
                    continue
                new = next((new for original, new in swaps if value is original), None)
                if new is None:
                    continue
                _patched.append((module, attribute, value, new))
                done.add((id(module), attribute))
                setattr(module, attribute, new)
        return installed()


def uninstall() -> List[str]:
    """Put back every original install() replaced; returns what was restored ('module.attribute')."""
    with _lock:
        restored = []
        while _patched:
            module, attribute, original, _ = _patched.pop()
            setattr(module, attribute, original)
            restored.append(f"{module.__name__}.{attribute}")
        return restored[::-1]
