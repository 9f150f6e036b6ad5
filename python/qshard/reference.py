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

from qshard.errors import ReferenceUnavailable

_PACKAGE = "tensorflowjs"




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


def stand_in_package(folder: Optional[Path] = None) -> Optional[types.ModuleType]:
    """An empty `tensorflowjs` package in sys.modules (unless one is there), pointing at the installed
    folder, with the submodules already imported attached, so `import tensorflowjs.X` works without
    running the real package __init__ (which needs the whole converter)."""
    if _PACKAGE in sys.modules:
        return sys.modules[_PACKAGE]
    folder = folder or tensorflowjs_dir()
    if folder is None:
        return None
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(folder)]
    sys.modules[_PACKAGE] = package
    for name, module in list(sys.modules.items()):
        if name.startswith(_PACKAGE + ".") and name.count(".") == 1 and module is not None:
            setattr(package, name.split(".", 1)[1], module)
    return package


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
    stand_in_package(folder)
    stub = module in ("write_weights", "read_weights")
    real_tensorflow = sys.modules.get("tensorflow")
    if stub:
        # Only tf.io.gfile.GFile is used there; a file object does the same job for local paths, and
        # the reference then behaves the same whether or not TensorFlow was imported earlier in this
        # process (its errors would otherwise be TensorFlow's). The stand-in is visible only while the
        # module loads (it keeps its own reference): left in sys.modules it would break a later
        # `import tensorflow` or `import keras` in this process.
        gfile = types.SimpleNamespace(GFile=open)
        sys.modules["tensorflow"] = types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile))
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if stub:
            sys.modules.pop("tensorflow", None)
            if real_tensorflow is not None:
                sys.modules["tensorflow"] = real_tensorflow
    return mod
