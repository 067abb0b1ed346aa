"""Plug-ins by name: what Arroyo builds in, and what other packages add through entry
points (parsers ``arroyo.parsers``, formats ``arroyo.formats``, connectors
``arroyo.connectors``), and importing an object named ``module:attr``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from arroyo.errors import ConfigError


def import_object(spec: str) -> Any:
    """Import ``module:attr`` (or ``module.attr``; ``attr`` may be dotted). Raises
    ImportError (or AttributeError) naming what is missing."""
    module, sep, attr = spec.partition(":")
    if not sep:
        module, _, attr = spec.rpartition(".")
    if not module or not attr:
        raise ImportError(f"{spec!r} is not of the form 'module:attr'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Plugins:
    """One kind of plug-in: the built-in ones (name -> ``module:attr``, imported only when
    used) and those other packages declare under the entry point ``group``."""

    kind: str
    group: str
    builtin: Mapping[str, str]

    def names(self) -> list[str]:
        """Every name: built in and from entry points."""
        return sorted(set(self.builtin) | {e.name for e in entry_points(group=self.group)})

    def load(self, name: str) -> Any:
        """The object registered as ``name``. Raises ConfigError naming the known ones."""
        if name in self.builtin:
            return import_object(self.builtin[name])
        found = [e for e in entry_points(group=self.group) if e.name == name]
        if not found:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return found[0].load()

    def make(self, name: str, **options: Any) -> Any:
        """``load(name)(**options)``; options it does not take are a ConfigError."""
        factory = self.load(name)
        try:
            return factory(**options)
        except TypeError as exc:
            message = f"{self.kind} {name!r} does not accept these options: {exc}"
            raise ConfigError(message) from None
