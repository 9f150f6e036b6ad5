"""Load modules of the official tensorflowjs converter (4.22) as a numpy-only reference.

`import tensorflowjs` runs the package __init__, which imports the whole converter (TensorFlow,
tf_keras, tensorflow_hub, ...). The modules qshard compares against need numpy only, so they are
loaded from the installed folder under an empty stand-in package. Install the reference with
`pip install --no-deps tensorflowjs==4.22.0`.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Optional

_PACKAGE = "tensorflowjs"


class ReferenceUnavailable(ImportError):
    """The official tensorflowjs package is not installed here."""


def tensorflowjs_dir() -> Optional[Path]:
    """Folder of the installed tensorflowjs package, found without importing it."""
    package = sys.modules.get(_PACKAGE)
    if package is not None:  # the real package, or the stand-in load() registered
        paths = list(getattr(package, "__path__", []) or [])
        return Path(paths[0]) if paths else None
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def load(module: str = "quantization") -> types.ModuleType:
    """tensorflowjs.<module> loaded without running the package __init__."""
    name = f"{_PACKAGE}.{module}"
    if name in sys.modules:
        return sys.modules[name]
    folder = tensorflowjs_dir()
    if folder is None or not (folder / f"{module}.py").is_file():
        raise ReferenceUnavailable(
            "the official tensorflowjs package is not installed; "
            "install it with: pip install --no-deps tensorflowjs==4.22.0")
    if _PACKAGE not in sys.modules:
        stand_in = types.ModuleType(_PACKAGE)
        stand_in.__path__ = [str(folder)]
        sys.modules[_PACKAGE] = stand_in
    if module in ("write_weights", "read_weights") and "tensorflow" not in sys.modules:
        # Only tf.io.gfile.GFile is used there; a file object does the same job for local paths.
        gfile = types.SimpleNamespace(GFile=open)
        sys.modules["tensorflow"] = types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile))
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
