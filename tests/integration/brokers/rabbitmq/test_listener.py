"""The RabbitMQ listener against a real RabbitMQ broker: order, acknowledgements,
prefetch, redelivery and delivery counts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from arroyo import Event
from arroyo.brokers import open_listener
from arroyo.brokers.rabbitmq import RabbitMQListener
from arroyo.testing import listening, make_run, publish_all

Until = Callable[..., Any]
Count = Callable[[aio_pika.abc.AbstractChannel, str], Awaitable[int]]
pytestmark = pytest.mark.rabbitmq


async def test_competing_consumers_share_a_queue(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    count: Count,
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
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    count: Count,
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
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    count: Count,
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
    count: Count,
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


async def test_a_batch_of_acknowledgements_is_one_basic_ack(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    count: Count,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = queue("source")
    await publish_all(f"{amqp_url}?queue={source}", make_run(10))
    listener = open_listener(f"{amqp_url}?queue={source}")
    assert isinstance(listener, RabbitMQListener)
    sent: list[bool] = []  # the multiple flag of each basic.ack
    basic_ack = listener._basic_ack

    async def counted(message: Any, *, multiple: bool) -> None:
        sent.append(multiple)
        await basic_ack(message, multiple=multiple)

    monkeypatch.setattr(listener, "_basic_ack", counted)
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 12)  # Start, 10 Events, Stop
        assert await listener.ack_many(seen.items) == [None] * 12
    assert sent == [True]
    assert await count(channel, source) == 0  # all of them, not only the last


async def test_a_batch_that_leaves_an_earlier_delivery_out_acknowledges_one_by_one(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    until: Until,
    count: Count,
) -> None:
    source = queue("source")
    sent = make_run(10)
    await publish_all(f"{amqp_url}?queue={source}", sent)
    url = f"{amqp_url}?queue={source}"
    listener = open_listener(url)
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 12)
        # The first is still being processed: an ack "up to" the last would take it too.
        assert await listener.ack_many(seen.items[1:]) == [None] * 11
    assert await count(channel, source) == 1
    async with listening(open_listener(url)) as again:
        await until(lambda: len(again.items) == 1)
    assert listener.parser.parse(again.items[0].data) == sent[0]
