"""The Kafka publisher against the real broker: message size limits, and the topic it
creates to fit them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import Event
from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import MessageTooLargeError
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output
from arroyo.testing import free_port

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # noqa: E402

pytestmark = pytest.mark.kafka

ReadTopic = Callable[..., list[Any]]
Committed = Callable[[str, str, str, int], list[int]]
Runs = Callable[[int, int], tuple[list[str], list[Message]]]


async def test_a_message_over_the_producer_limit_names_the_settings_to_raise(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    name = kafka_topics("big")
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{name}", {"message.max.bytes": 100_000})
    async with publisher:
        with pytest.raises(MessageTooLargeError) as caught:
            await publisher.publish(Event({}, b"x" * 200_000))
        text = str(caught.value)
        assert "message.max.bytes=100000" in text
        assert "max.message.bytes" in text
        await publisher.publish(Event({}, b"x" * 50_000))  # still works afterwards


async def test_a_message_over_the_topic_limit_names_the_settings_to_raise(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    name = kafka_topics("small", **{"max.message.bytes": "20000"})
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{name}")
    async with publisher:
        with pytest.raises(MessageTooLargeError) as caught:
            await publisher.publish(Event({}, b"x" * 50_000))
        assert "topic's max.message.bytes" in str(caught.value)
        await publisher.publish(Event({}, b"x" * 1000))


async def test_a_frame_at_the_default_limit_goes_through_with_default_settings(
    kafka_bootstrap: str, kafka_topics: Any, unique_name: Callable[[str], str], fast: dict[str, Any]
) -> None:
    """A frame just under the publisher's default message.max.bytes (64 MiB, more than
    the consumer's fetch.max.bytes of 50 MiB) is published and read back by a listener,
    neither with any setting, into a topic the publisher creates to fit it."""
    name = unique_name("big")
    kafka_topics.made.append(name)  # deleted after the test
    payload = os.urandom(1 << 20) * 63 + os.urandom((1 << 20) - (64 << 10))
    async with open_publisher(f"kafka://{kafka_bootstrap}/{name}") as publisher:
        await publisher.publish(Event({"frame": 0}, payload))
    got: list[bytes] = []

    class Keep(Operator):
        async def process(self, message: Message) -> Output:
            assert isinstance(message, Event)
            got.append(message.payload)
            return None

    listener = open_listener(f"kafka://{kafka_bootstrap}/{name}?group={name}-g", fast)
    await asyncio.wait_for(Block(listener, Keep(), max_messages=1).run(), 120)
    assert got == [payload]


async def test_a_missing_topic_the_broker_default_fits_is_left_to_the_broker(
    kafka_bootstrap: str, kafka_topics: Any, unique_name: Callable[[str], str]
) -> None:
    """With message.max.bytes within the broker's default for new topics, starting the
    publisher creates no topic (the broker creates it on the first message, as usual)."""
    name = unique_name("plain")
    kafka_topics.made.append(name)
    url = f"kafka://{kafka_bootstrap}/{name}"
    async with open_publisher(url, {"message.max.bytes": 1 << 20}):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        assert name not in admin.list_topics(timeout=10).topics


async def test_a_list_of_bootstrap_servers_reaches_the_cluster_past_a_dead_one(
    kafka_bootstrap: str, kafka_topics: Any, unique_name: Callable[[str], str], fast: dict[str, Any]
) -> None:
    """``kafka://DEAD,LIVE/TOPIC``: the client bootstraps from whichever answers, for the
    publisher and the listener alike."""
    name = kafka_topics("servers")
    servers = f"127.0.0.1:{free_port()},{kafka_bootstrap}"
    sent = [Event({"i": i}, b"x") for i in range(5)]
    async with open_publisher(f"kafka://{servers}/{name}") as publisher:
        for message in sent:
            await publisher.publish(message)
    got: list[Message] = []

    class Keep(Operator):
        async def process(self, message: Message) -> Output:
            got.append(message)
            return None

    listener = open_listener(f"kafka://{servers}/{name}?group={unique_name('g')}", fast)
    await asyncio.wait_for(Block(listener, Keep(), max_messages=len(sent)).run(), 60)
    assert got == sent
