"""numpy, imported when a module first uses it rather than when the module is imported.

Importing numpy costs ~75 ms (its own modules and OpenBLAS), more than half of the `qshard`
command's start-up. `qshard quantize` of a tfjs or safetensors model never needs an array: the
files are read, reduced and quantized by the compiled core (qshard.formats.file_range), so the
modules on that path write `from qshard.lazy import np` and call numpy only inside functions; the
command then runs without importing numpy at all (tests/cli/test_start_up.py holds it to that).

Python's importlib.util.LazyLoader would do this for every `import numpy` in the process, but on
Python 3.11 the import statement itself reads the module's __spec__, which loads it.
"""
from __future__ import annotations

from typing import Any


class _Numpy:
    """Forwards every attribute to numpy, importing it on the first one."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import numpy  # (after the first time, a lookup in sys.modules)
        return getattr(numpy, name)

    def __repr__(self) -> str:
        return "<numpy, imported on first use>"


np: Any = _Numpy()
