"""Connecting to a real RabbitMQ broker: queue declarations, TLS, and passwords that never
appear in errors or logs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import ConnectError
from arroyo.runtime import Publisher
from arroyo.runtime.listener import Listener
from arroyo.testing import Collect, free_port, listening, make_run, publish_all

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


async def test_tls_round_trip(amqps_url: str, queue: Callable[[str], str], until: Until) -> None:
    source = queue("tls")
    options = {
        "ssl_ca": os.environ["ARROYO_TLS_CA"],
        "ssl_cert": os.environ.get("ARROYO_TLS_CLIENT_CERT"),
        "ssl_key": os.environ.get("ARROYO_TLS_CLIENT_KEY"),
    }
    url = f"{amqps_url}?queue={source}"
    messages = make_run(3)
    await publish_all(url, messages, **options)
    listener = open_listener(url, options)
    assert listener.name.startswith("amqps://")
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == len(messages))
        for received in seen.items:
            await listener.ack(received)
    assert [listener.parser.parse(r.data).id for r in seen.items] == [m.id for m in messages]


SECRET = "s3cret-Hunter2"


async def start(endpoint: Listener | Publisher) -> None:
    """Start a listener (into a Collect intake) or a publisher."""
    if isinstance(endpoint, Listener):
        await endpoint.start(Collect())
    else:
        await endpoint.start()


async def test_passwords_never_appear_in_errors_or_logs(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    parts = urlsplit(amqp_url)
    wrong = f"amqp://guest:{SECRET}@{parts.hostname}:{parts.port}/?queue=frames"
    closed = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/?queue=frames&connect_timeout=1"
    errors = []
    for url in (wrong, closed):
        for endpoint in (open_listener(url), open_publisher(url)):
            assert SECRET not in endpoint.name
            with pytest.raises(ConnectError) as refused:
                await start(endpoint)
            errors.append(str(refused.value))
    yaml_password = open_publisher(f"{amqp_url}?queue=frames", {"password": SECRET})
    with pytest.raises(ConnectError) as refused:
        await yaml_password.start()
    errors.append(str(refused.value))
    assert "ACCESS_REFUSED" in errors[0] and "queue=frames" in errors[0]
    for text in errors:
        assert SECRET not in text
    assert SECRET not in caplog.text
