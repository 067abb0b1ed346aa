"""``connected`` of the listeners and publishers that can tell (``arroyo_connected``,
``/readyz``): False once the network to the real broker breaks, True again once it is
back. A TCP proxy the test controls (tests/tcp_proxy.py) stands between them and the
broker. Nothing is published while the network is cut: each part tells by itself (a
Redis publisher by its PING every second)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.runtime import Listener, Publisher
from arroyo.testing import Collect, make_run
from tests.tcp_proxy import TcpProxy


def _parts(
    broker: str, request: pytest.FixtureRequest, name: str
) -> tuple[TcpProxy, Callable[[str], tuple[Listener, Publisher]]]:
    """The proxy to the broker, and what makes the listener and a publisher through it."""
    if broker == "redis":
        host, port = request.getfixturevalue("redis_address").rsplit(":", 1)
        proxy = TcpProxy(host, int(port))

        def redis(address: str) -> tuple[Listener, Publisher]:
            url = f"redis://{address}/{name}"
            return open_listener(f"{url}?group=g"), open_publisher(url)

        return proxy, redis
    url = urlsplit(request.getfixturevalue("amqp_url"))
    assert url.hostname is not None and url.port is not None
    proxy = TcpProxy(url.hostname, url.port)

    def rabbitmq(address: str) -> tuple[Listener, Publisher]:
        base = f"amqp://{url.username}:{url.password}@{address}/?queue={name}"
        return open_listener(base), open_publisher(base)

    return proxy, rabbitmq


@pytest.mark.parametrize(
    "broker",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ],
)
async def test_connected_follows_the_network(
    broker: str,
    request: pytest.FixtureRequest,
    unique_name: Callable[[str], str],
    deleted_after: Callable[[str, str], str],
    until: Callable[..., Any],
) -> None:
    proxy, make = _parts(broker, request, deleted_after(broker, unique_name(broker)))
    await proxy.open()
    listener, publisher = make(proxy.address)
    parts: list[Listener | Publisher] = [listener, publisher]
    got = Collect()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(proxy.close)
        stack.push_async_callback(publisher.close)
        stack.push_async_callback(listener.close)
        await listener.connect()
        await publisher.start()
        reading = asyncio.create_task(listener.start(got))
        stack.push_async_callback(asyncio.wait_for, reading, 30)
        stack.push_async_callback(listener.stop)
        await publisher.publish(make_run(0)[0])  # the listener reads: it is consuming
        await until(lambda: len(got.items) == 1, within=20, what="the listener reading")
        assert all(part.connected for part in parts)
        await proxy.cut()
        await until(lambda: not any(p.connected for p in parts), within=20, what="disconnected")
        await proxy.restore()
        await until(lambda: all(p.connected for p in parts), within=30, what="connected again")
