"""Redis pub/sub against a real Redis server (pubsub.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import Event
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers import redis as redis_broker
from arroyo.brokers.redis import RedisPubSubListener, RedisPubSubPublisher
from arroyo.errors import PublishError
from arroyo.testing import listening, make_run

Until = Callable[..., Any]
pytestmark = pytest.mark.redis


async def test_pubsub_round_trip(
    redis_address: str,
    unique_name: Callable[[str], str],
    until: Until,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    channel = unique_name("channel")
    listener = open_listener(f"redis+pubsub://{redis_address}/{channel}")
    publisher = open_publisher(f"redis+pubsub://{redis_address}/{channel}")
    assert isinstance(listener, RedisPubSubListener)
    assert isinstance(publisher, RedisPubSubPublisher)
    messages = make_run(20)
    async with listening(listener) as seen:
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        await publisher.start()
        try:
            await asyncio.gather(*(publisher.send(m) for m in messages))
            assert publisher.receivers == 1
        finally:
            await publisher.close()
        await until(lambda: len(seen.items) == len(messages))
    assert [listener.parser.parse(r.data).id for r in seen.items] == [m.id for m in messages]
    await listener.ack(seen.items[0])  # a no-op
    assert "at-most-once" in caplog.text
    doc = redis_broker.__doc__ or ""
    assert "at-most-once" in doc and "is lost" in doc
    assert "at-most-once" in (RedisPubSubListener.__doc__ or "")


async def test_pubsub_min_subscribers_refuses_a_message_nobody_receives(
    redis_address: str, unique_name: Callable[[str], str]
) -> None:
    channel = unique_name("channel")
    publisher = open_publisher(f"redis+pubsub://{redis_address}/{channel}?min_subscribers=1")
    await publisher.start()
    try:
        with pytest.raises(PublishError, match="0 subscribers"):
            await publisher.publish(Event())
    finally:
        await publisher.close()
