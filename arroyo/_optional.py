"""Import optional client libraries with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from arroyo.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise MissingDependencyError saying which extra to install
    (``pip install 'arroyo-streams[extra]'``, or from a clone ``pip install '.[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module.split('.')[0]!r}, which is not installed. "
            f"Install it with: pip install 'arroyo-streams[{extra}]' (in a clone of Arroyo: "
            f"pip install '.[{extra}]')"
        ) from exc
