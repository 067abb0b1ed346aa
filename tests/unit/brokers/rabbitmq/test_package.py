"""The RabbitMQ package without its client library."""

from __future__ import annotations

import importlib
import sys

import pytest

from arroyo import MissingDependencyError


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aio_pika", None)
    monkeypatch.delitem(sys.modules, "arroyo.brokers.rabbitmq", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'arroyo-streams\[rabbitmq\]'"):
        importlib.import_module("arroyo.brokers.rabbitmq")
