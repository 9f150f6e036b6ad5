"""Optional dependencies: each is imported where a command needs it, and a missing one is an error
that names the module really missing (keras without a backend fails on tensorflow, not on keras)
and the extra of pyproject.toml that brings it."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Type

from qshard.errors import QshardError


# Import names that differ from the name pip installs.
PACKAGES = {"sklearn": "scikit-learn"}


def require(module: str, extra: str, purpose: str, error: Type[QshardError] = QshardError) -> ModuleType:
    """Import `module` (dotted names too), or raise `error` naming what is missing and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(missing_message(exc, module, extra, purpose)) from None


def missing_message(exc: ImportError, module: str, extra: str, purpose: str) -> str:
    """The one-line message for an ImportError raised while importing `module`."""
    wanted = module.split(".")[0]
    missing = (getattr(exc, "name", None) or "").split(".")[0]
    install = f'pip install "qshard[{extra}]"'
    if isinstance(exc, ModuleNotFoundError) and missing in ("", wanted):
        package = f" ({PACKAGES[wanted]})" if wanted in PACKAGES else ""
        return f"{purpose} needs the module {wanted!r}{package}, which is not installed: {install}"
    if isinstance(exc, ModuleNotFoundError):
        return (f"{purpose} needs {wanted!r}, and importing it failed because the module {missing!r} is not "
                f"installed{' (its backend)' if wanted == 'keras' else ''}: {install}")
    return f"{purpose} needs {wanted!r}, and importing it failed: {exc}; {install} (or repair that install)"
