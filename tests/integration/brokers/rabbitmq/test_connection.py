"""Connecting to a real RabbitMQ broker: queue declarations, TLS, and passwords that never
appear in errors or logs."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from arroyo.brokers import open_listener
from arroyo.errors import ConnectError
from arroyo.runtime import Publisher
from arroyo.runtime.listener import Listener
from arroyo.testing import Collect

Until = Callable[..., Any]
pytestmark = pytest.mark.rabbitmq


async def test_a_queue_declared_otherwise_is_a_clear_error(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str]
) -> None:
    classic = queue("classic")
    await channel.declare_queue(classic, durable=True)
    listener = open_listener(f"{amqp_url}?queue={classic}&queue_type=quorum")
    with pytest.raises(ConnectError, match=f"queue '{classic}' exists with other"):
        await listener.start(Collect())
    await listener.close()


# -- TLS and secrets -------------------------------------------------------------------


@pytest.fixture
def amqps_url() -> str:
    """``amqps://user:pass@host:port/`` of the TLS port of the test RabbitMQ."""
    url = os.environ.get("ARROYO_AMQPS", "")
    ca = os.environ.get("ARROYO_TLS_CA", "")
    message = "RabbitMQ TLS is not available: set ARROYO_AMQPS and ARROYO_TLS_CA"
    if url and ca and os.path.exists(ca):
        parts = urlsplit(url)
        with (
            contextlib.suppress(OSError),
            socket.create_connection((parts.hostname or "", parts.port or 5671), 2),
        ):
            return url
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
