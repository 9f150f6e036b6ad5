"""qshard: fast, exact weight quantization for TensorFlow.js web models and TFLite.

    >>> import numpy as np, qshard
    >>> codes, params = qshard.quantize(np.array([0, -0.1, 1.2], np.float32), "uint8")
    >>> codes.tolist(), params.min, params.scale
    ([20, 0, 255], -0.10196078817049663, 0.0050980394085248315)
"""
from __future__ import annotations

import importlib as _importlib
import os as _os

# The compiled core and the array API load on first use (PEP 562), not at `import qshard`: the core
# imports numpy, and the qshard command wants to choose numpy's BLAS threads before that happens
# (qshard/cli/__init__.py).
_KERNELS = ("QuantParams", "affine_params", "dequantize", "float16_bits", "minmax", "quantize", "quantize_with")


def __getattr__(name: str):
    if name in _KERNELS:
        return getattr(_importlib.import_module(".kernels", __name__), name)
    if name == "_core":
        return _importlib.import_module("._core", __name__)
    if name == "__version__":
        # From the compiled core (the build stamps it), not importlib.metadata: that import alone costs
        # ~50 ms of every command's start-up.
        return getattr(_importlib.import_module("._core", __name__), "__version__", "") or "0.0.0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def isa() -> str:
    """The instruction set the kernels use by default ('serial' or 'avx2')."""
    from . import _core
    return _core.isa()


def available_isas() -> list:
    """Instruction sets this CPU can run, the serial reference first."""
    from . import _core
    return list(_core.available_isas())


def set_isa(name: str = "") -> None:
    """Force an instruction set for this process ('serial' = the scalar reference; '' = best)."""
    from . import _core
    _core.set_isa(name)


def get_num_threads() -> int:
    """Threads a call uses by default (QSHARD_NUM_THREADS, else the usable cores)."""
    from . import _core
    return _core.get_num_threads()


def set_num_threads(threads: int = 0) -> None:
    """Set the default thread count (0 = automatic)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    from . import _core
    _core.set_num_threads(threads)


if _os.environ.get("QSHARD_ISA"):
    from . import _core
    try:
        _core.set_isa(_os.environ["QSHARD_ISA"])
    except ValueError as _error:
        raise ImportError(f"QSHARD_ISA={_os.environ['QSHARD_ISA']!r}: {_error}; "
                          f"available here: {', '.join(_core.available_isas())}") from None

__all__ = ["QuantParams", "affine_params", "available_isas", "dequantize", "float16_bits",
           "get_num_threads", "isa", "minmax", "quantize", "quantize_with", "set_isa", "set_num_threads",
           "__version__"]
