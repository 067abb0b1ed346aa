"""The RabbitMQ publisher against a real RabbitMQ broker: message properties, exchanges,
dead letters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika
import pytest

from arroyo import Event, encode
from arroyo.brokers import open_publisher
from arroyo.errors import ConnectError, PublishError
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import make_run, publish_all

Count = Callable[[aio_pika.abc.AbstractChannel, str], Awaitable[int]]
pytestmark = pytest.mark.rabbitmq


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


async def test_exchange_and_routing_key(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    queue: Callable[[str], str],
    unique_name: Callable[[str], str],
    count: Count,
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
    with pytest.raises(ConnectError, match="does not exist"):
        await missing.start()


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
