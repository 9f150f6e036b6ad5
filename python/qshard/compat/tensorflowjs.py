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
- quantize_weights computes as tensorflowjs does with the numpy installed here: float64 per
  element under numpy >= 2, float32 under numpy 1.x (where tensorflowjs's codes can differ by a
  step); `arithmetic="float64"|"float32"` picks one explicitly. write_weights always uses the
  float64 arithmetic of numpy >= 2 (qshard's writer). Both are pinned by tests/data/golden.
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

import importlib
import importlib.util
import sys
import threading
from typing import Any, Dict, List, Tuple

from qshard import reference

from ._quantization import (
    dequantize_weights,
    map_layers_to_quantization_dtype,
    quantize_weights,
)
from ._weights_io import decode_weights, read_weights, write_weights

__all__ = ["quantize_weights", "dequantize_weights", "map_layers_to_quantization_dtype", "write_weights",
           "read_weights", "decode_weights", "install", "uninstall", "installed"]


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
            # Keep `import tensorflowjs.X` working afterwards (the real __init__ would fail again),
            # with whatever submodules the failed import did load.
            reference.stand_in_package()
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
