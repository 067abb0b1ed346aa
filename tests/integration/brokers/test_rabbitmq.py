"""RabbitMQ connectors against a real RabbitMQ broker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest

from arroyo import Event, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.rabbitmq import RabbitMQConnectError, RabbitMQListener
from arroyo.errors import PublishError
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import Collect, listening, make_run, publish_all

Until = Callable[..., Any]
pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def queue(
    amqp_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[[str], str]]:
    """Makes queue names unique to the test; deletes the queues afterwards."""
    names: list[str] = []

    def make(tag: str = "queue") -> str:
        names.append(unique_name(tag))
        return names[-1]

    yield make
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


async def count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    """Messages ready in queue ``name`` (not counting those delivered and unacknowledged)."""
    declared = await channel.declare_queue(name, passive=True)
    assert declared.declaration_result.message_count is not None
    return declared.declaration_result.message_count


async def test_messages_are_persistent_and_described(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str]
) -> None:
    source = queue("source")
    message = make_run(1, stream="scan-7")[1]
    await publish_all(f"{amqp_url}?queue={source}", [message])
    got = await (await channel.get_queue(source)).get(timeout=10)
    await got.ack()
    assert got.body == encode(message)
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (got.message_id, got.type) == (message.id, "event")
    assert got.headers == {"arroyo.stream": "scan-7", "arroyo.seq": 1}


async def test_competing_consumers_share_a_queue(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str], until: Until
) -> None:
    source = queue("source")
    url = f"{amqp_url}?queue={source}"
    first, second = open_listener(url), open_listener(url)
    messages = make_run(198)
    async with listening(first) as one, listening(second) as two:
        await publish_all(url, messages)  # the broker deals them out in turn
        await until(lambda: len(one.items) + len(two.items) == len(messages), within=30)
        for listener, seen in ((first, one), (second, two)):
            for received in seen.items:
                await listener.ack(received)
    assert one.items and two.items, "one consumer got everything"
    ids = [first.parser.parse(r.data).id for r in one.items + two.items]
    assert sorted(ids) == sorted(m.id for m in messages)
    assert await count(channel, source) == 0


async def test_prefetch_bounds_what_is_unacknowledged(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str], until: Until
) -> None:
    source = queue("source")
    await publish_all(f"{amqp_url}?queue={source}", make_run(18))
    listener = open_listener(f"{amqp_url}?queue={source}&prefetch=5")
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 5)
        assert await count(channel, source) == 15  # the broker keeps the rest
        await listener.ack(seen.items[0])
        await until(lambda: len(seen.items) == 6, what="one more after one ack")
        for received in seen.items[1:6]:
            await listener.ack(received)
    assert await count(channel, source) == 14  # 6 acknowledged; the others are back


async def test_unacknowledged_messages_are_redelivered(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str], until: Until
) -> None:
    source = queue("source")
    await publish_all(f"{amqp_url}?queue={source}", make_run(1))
    url = f"{amqp_url}?queue={source}"
    async with listening(open_listener(url)) as first:
        await until(lambda: len(first.items) == 3)
    assert [r.deliveries for r in first.items] == [1, 1, 1]
    second = open_listener(url)
    async with listening(second) as again:
        await until(lambda: len(again.items) == 3)
        assert [r.data for r in again.items] == [r.data for r in first.items]
        assert [r.deliveries for r in again.items] == [2, 2, 2]  # classic: "redelivered"
        for received in again.items:
            await second.ack(received)
    assert await count(channel, source) == 0


async def test_quorum_queues_count_deliveries_exactly(
    amqp_url: str, queue: Callable[[str], str], until: Until
) -> None:
    source = queue("quorum")
    url = f"{amqp_url}?queue={source}&queue_type=quorum"
    await publish_all(url, [Event()])
    counts = []
    for _ in range(3):  # delivered, never acknowledged: as if the worker crashed
        async with listening(open_listener(url)) as seen:
            await until(lambda: len(seen.items) == 1)
        counts.append(seen.items[0].deliveries)
    assert counts == [1, 2, 3]


async def test_acks_from_a_reopened_channel_are_skipped_and_work_resumes(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="arroyo")
    source = queue("source")
    url = f"{amqp_url}?queue={source}&reconnect_interval=0.1"
    await publish_all(url, [Event(metadata={"n": 1})])
    listener = open_listener(url)
    assert isinstance(listener, RabbitMQListener)
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 1)
        connection = listener._connection
        assert connection is not None and connection.transport is not None
        await connection.transport.connection.close(ConnectionResetError("cut"))  # lost link
        await listener.ack(seen.items[0])  # cannot be sent: skipped, no error
        await until(lambda: len(seen.items) == 2, within=30, what="redelivered after reconnect")
        assert seen.items[1].data == seen.items[0].data
        assert seen.items[1].deliveries == 2
        await listener.ack(seen.items[1])
        await publish_all(url, [Event(metadata={"n": 2})])
        await until(lambda: len(seen.items) == 3, what="new messages after reconnect")
        await listener.ack(seen.items[2])
    assert "not acknowledged (the broker delivers it again)" in caplog.text
    assert await count(channel, source) == 0


async def test_exchange_and_routing_key(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    unique_name: Callable[[str], str],
) -> None:
    bound = queue("bound")
    exchange = await channel.declare_exchange(unique_name("exchange"), auto_delete=True)
    declared = await channel.declare_queue(bound, durable=True)
    await declared.bind(exchange, "frames.raw")
    url = f"{amqp_url}?exchange={exchange.name}&routing_key=frames.raw"
    await publish_all(url, [Event()])
    assert await count(channel, bound) == 1

    nowhere = open_publisher(f"{amqp_url}?exchange={exchange.name}&routing_key=nowhere")
    await nowhere.start()
    try:
        with pytest.raises(PublishError, match="no queue took the message"):
            await nowhere.publish(Event())
    finally:
        await nowhere.close()
    missing = open_publisher(f"{amqp_url}?exchange={unique_name('missing')}")
    with pytest.raises(RabbitMQConnectError, match="does not exist"):
        await missing.start()


async def test_a_queue_declared_otherwise_is_a_clear_error(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str]
) -> None:
    classic = queue("classic")
    await channel.declare_queue(classic, durable=True)
    listener = open_listener(f"{amqp_url}?queue={classic}&queue_type=quorum")
    with pytest.raises(RabbitMQConnectError, match=f"queue '{classic}' exists with other"):
        await listener.start(Collect())
    await listener.close()


async def test_dead_letters_follow_rabbitmq_conventions(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, queue: Callable[[str], str]
) -> None:
    dlq = queue("dlq")
    publisher = open_publisher(f"{amqp_url}?queue={dlq}")
    await publisher.start()
    source = {"url": "amqp://127.0.0.1:5672/?queue=frames", "queue": "frames", "delivery_tag": 7}
    try:
        await publisher.publish_dead_letter(
            DeadLetter(b"\x00garbage", "not Arroyo data", "DecodeError", source, 1, "workers")
        )
    finally:
        await publisher.close()
    got = await (await channel.get_queue(dlq)).get(timeout=10)
    await got.ack()
    assert got.body == b"\x00garbage"
    assert got.headers["x-first-death-reason"] == "rejected"
    assert got.headers["x-first-death-queue"] == "frames"
    death = got.headers["x-death"]
    assert isinstance(death, list) and death[0]["queue"] == "frames"  # type: ignore[index]
    assert got.headers["arroyo.dead-letter.reason"] == "not Arroyo data"
    assert got.headers["arroyo.dead-letter.error"] == "DecodeError"
    assert got.headers["arroyo.source.delivery_tag"] == "7"
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
