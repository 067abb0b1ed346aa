"""Reaching a real Redis server (connection.py): TLS, and passwords kept out of errors
and logs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import ConnectError
from arroyo.runtime import Publisher
from arroyo.runtime.listener import Listener
from arroyo.testing import Collect, free_port, listening, make_run, publish_all

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


async def test_tls_round_trip(
    redis_tls_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("tls")
    options = {
        "ssl_ca": os.environ["ARROYO_TLS_CA"],
        "ssl_cert": os.environ.get("ARROYO_TLS_CLIENT_CERT"),
        "ssl_key": os.environ.get("ARROYO_TLS_CLIENT_KEY"),
    }
    url = f"rediss://{redis_tls_address}/{source}"
    messages = make_run(3)
    await publish_all(url, messages, **options)
    listener = open_listener(f"{url}?group=g&block_ms=20", options)
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == len(messages))
        for received in seen.items:
            await listener.ack(received)
    assert [listener.parser.parse(r.data).id for r in seen.items] == [m.id for m in messages]
    assert (await client.xpending(source, "g"))["pending"] == 0


SECRET = "s3cret-Hunter2"


async def start(endpoint: Listener | Publisher) -> None:
    """Start a listener (into a Collect intake) or a publisher."""
    if isinstance(endpoint, Listener):
        await endpoint.start(Collect())
    else:
        await endpoint.start()


async def test_passwords_never_appear_in_errors_or_logs(
    redis_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = f"redis://:{SECRET}@127.0.0.1:{free_port()}/frames?connect_timeout=1"
    errors: list[str] = []
    for endpoint in (open_listener(closed), open_publisher(closed)):
        assert SECRET not in endpoint.name
        with pytest.raises(ConnectError) as refused:
            await start(endpoint)
        errors.append(str(refused.value))
    # A user the server does not know: it refuses the AUTH (password from the YAML here).
    wrong = open_publisher(
        f"redis://{redis_address}/frames", {"username": "nobody", "password": SECRET}
    )
    with pytest.raises(ConnectError) as refused:
        await wrong.start()
    errors.append(str(refused.value))
    assert "cannot connect" in errors[0] and "frames" in errors[0]
    for text in errors:
        assert SECRET not in text
    assert SECRET not in caplog.text
