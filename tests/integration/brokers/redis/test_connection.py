"""Reaching a real Redis server (connection.py): TLS, and passwords kept out of errors
and logs."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from arroyo.runtime import Publisher
from arroyo.runtime.listener import Listener
from arroyo.testing import Collect

Until = Callable[..., Any]
pytestmark = pytest.mark.redis


@pytest.fixture
def redis_tls_address() -> str:
    """``host:port`` of the TLS port of the test Redis (ARROYO_REDIS_TLS)."""
    address = os.environ.get("ARROYO_REDIS_TLS", "")
    ca = os.environ.get("ARROYO_TLS_CA", "")
    message = "Redis TLS is not available: set ARROYO_REDIS_TLS and ARROYO_TLS_CA"
    if address and ca and os.path.exists(ca):
        host, port = address.rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 2):
            return address
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


SECRET = "s3cret-Hunter2"


async def start(endpoint: Listener | Publisher) -> None:
    """Start a listener (into a Collect intake) or a publisher."""
    if isinstance(endpoint, Listener):
        await endpoint.start(Collect())
    else:
        await endpoint.start()
