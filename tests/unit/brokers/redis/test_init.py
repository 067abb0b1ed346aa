"""The Redis package imports only with its client library (__init__.py)."""

from __future__ import annotations

import importlib
import sys

import pytest

from arroyo import MissingDependencyError


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.delitem(sys.modules, "arroyo.brokers.redis")
    with pytest.raises(MissingDependencyError, match=r"pip install 'arroyo-streams\[redis\]'"):
        importlib.import_module("arroyo.brokers.redis")
