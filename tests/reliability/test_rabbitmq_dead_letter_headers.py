"""RabbitMQ's side of dead letters from a real queue: a dead letter keeps the message's
id and carries RabbitMQ's own death headers; a delivery count header a message brought
from a quorum queue counts nothing on a classic one. What every broker does with poison
(garbage, truncated, an operator that raises...) is tested once for all in
tests/contract/test_dead_letter.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest

from arroyo import Run, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def drain(
    channel: aio_pika.abc.AbstractChannel, name: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in queue ``name``, in order (acknowledged)."""
    queue = await channel.declare_queue(name, durable=True, passive=True)
    messages = []
    while (message := await queue.get(fail=False)) is not None:
        await message.ack()
        messages.append(message)
    return messages


async def test_a_dead_letter_keeps_the_message_id_and_rabbitmq_death_headers(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, amqp_names: dict[str, str]
) -> None:
    run = Run("scan-9")
    good: list[Message] = [run.start({"sample": "Si"}), run.event({"i": 0}), run.stop()]
    bodies = [(good[0].id, encode(good[0])), ("poison-garbage", b"GARBAGE, not Avro at all")]
    bodies += [(m.id, encode(m)) for m in good[1:]]
    await channel.declare_queue(amqp_names["source"], durable=True)
    for message_id, body in bodies:
        await channel.default_exchange.publish(
            aio_pika.Message(body, message_id=message_id, delivery_mode=2), amqp_names["source"]
        )

    block = Block(
        open_listener(f"{amqp_url}?queue={amqp_names['source']}"),
        None,
        [open_publisher(f"{amqp_url}?queue={amqp_names['sink']}")],
        dead_letter=open_publisher(f"{amqp_url}?queue={amqp_names['dlq']}"),
        max_messages=len(bodies),
    )
    stats = await block.run()

    sink = await drain(channel, amqp_names["sink"])
    assert [m.message_id for m in sink] == [m.id for m in good]
    [letter] = await drain(channel, amqp_names["dlq"])
    assert letter.body == b"GARBAGE, not Avro at all"
    assert letter.message_id == "poison-garbage"
    assert letter.headers["x-first-death-reason"] == "rejected"
    assert letter.headers["x-first-death-queue"] == amqp_names["source"]
    assert letter.headers["arroyo.source.queue"] == amqp_names["source"]
    assert stats.dead_lettered == 1
    assert not await drain(channel, amqp_names["source"])  # every message was acknowledged


async def test_a_delivery_count_header_on_a_classic_queue_counts_nothing(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel, amqp_names: dict[str, str]
) -> None:
    # Messages moved from a quorum queue keep its x-delivery-count header; on a classic
    # queue this is their first delivery, whatever the header says.
    run = Run("scan-10")
    moved = [run.event({"i": i}) for i in range(3)]
    await channel.declare_queue(amqp_names["source"], durable=True)
    for message in moved:
        await channel.default_exchange.publish(
            aio_pika.Message(
                encode(message),
                message_id=message.id,
                delivery_mode=2,
                headers={"x-delivery-count": 7},
            ),
            amqp_names["source"],
        )
    block = Block(
        open_listener(f"{amqp_url}?queue={amqp_names['source']}"),
        publishers=[open_publisher(f"{amqp_url}?queue={amqp_names['sink']}")],
        dead_letter=open_publisher(f"{amqp_url}?queue={amqp_names['dlq']}"),
        max_deliveries=5,
        max_messages=len(moved),
    )
    stats = await block.run()
    assert (stats.published, stats.dead_lettered) == (3, 0)
    sink = await drain(channel, amqp_names["sink"])
    assert [m.message_id for m in sink] == [m.id for m in moved]
    assert not await drain(channel, amqp_names["dlq"])
