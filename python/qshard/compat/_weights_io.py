"""tensorflowjs 4.22's write_weights.py / read_weights.py functions, computed by qshard (see
compat.tensorflowjs)."""
from __future__ import annotations

import json
import os
import warnings
from typing import List

import numpy as np

from qshard import kernels
from qshard.formats import webmodel

from ._quantization import (
    AUTO_CONVERT,
    MANIFEST_FILE,
    READABLE,
    STRING_LENGTH_BYTES,
    TYPE_NAMES,
    WRITABLE,
    dequantize_weights,
    map_layers_to_quantization_dtype,
    quantize_weights,
)

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
    if data.dtype in AUTO_CONVERT:
        target = AUTO_CONVERT[data.dtype]
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
    if not (data.dtype in WRITABLE or data.dtype in AUTO_CONVERT):
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
        parts.append(len(encoded).to_bytes(STRING_LENGTH_BYTES, "little"))
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
            target = TYPE_NAMES[asked[entry["name"]]]
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
    kept: List[webmodel.Kept] = []
    written = webmodel.write_weights(groups, write_dir, shard_size=int(shard_size_bytes), targets=targets,
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
        with open(os.path.join(write_dir, MANIFEST_FILE), "wb") as f:
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
        return np.array([], "object").reshape(shape), offset + STRING_LENGTH_BYTES
    values = []
    for _ in range(count):
        length = int(np.frombuffer(buffer[offset:offset + STRING_LENGTH_BYTES], "<u4")[0])
        offset += STRING_LENGTH_BYTES
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
            if dtype not in READABLE:
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


