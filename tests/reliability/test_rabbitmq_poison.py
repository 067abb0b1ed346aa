"""Bad input on a RabbitMQ queue goes to the dead-letter queue with its reason; the rest flows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest

from arroyo import Run, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, RetryPolicy

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


async def test_poison_goes_to_the_dead_letter_and_the_rest_flows(
    amqp_url: str,
    channel: aio_pika.abc.AbstractChannel,
    amqp_names: dict[str, str],
    explode: Operator,
) -> None:
    run = Run("scan-9")
    good: list[Message] = [run.start({"sample": "Si"})]
    good += [run.event({"i": i}, b"frame %d" % i) for i in range(10)]
    exploding = run.event({"i": 10, "explode": True}, b"saturated frame")
    bad = [
        ("garbage", b"GARBAGE, not Avro at all"),
        ("truncated", encode(run.event({"i": 11}, b"x" * 100))[:-7]),
        ("empty", b""),
        ("exploding", encode(exploding)),
    ]
    stop = run.stop()
    await channel.declare_queue(amqp_names["source"], durable=True)
    poisoned: dict[str, tuple[str, bytes]] = {}
    bodies: list[tuple[str, bytes]] = []
    for index, message in enumerate(good):
        bodies.append((message.id, encode(message)))
        if index % 3 == 0 and bad:  # poison in between the good ones
            label, body = bad.pop(0)
            bodies.append((f"poison-{label}", body))
            poisoned[f"poison-{label}"] = (label, body)
    bodies.append((stop.id, encode(stop)))
    good.append(stop)
    for message_id, body in bodies:
        await channel.default_exchange.publish(
            aio_pika.Message(body, message_id=message_id, delivery_mode=2), amqp_names["source"]
        )

    block = Block(
        open_listener(f"{amqp_url}?queue={amqp_names['source']}"),
        explode,
        [open_publisher(f"{amqp_url}?queue={amqp_names['sink']}")],
        dead_letter=open_publisher(f"{amqp_url}?queue={amqp_names['dlq']}"),
        retry=RetryPolicy(attempts=2, initial=0.001, maximum=0.002),
        max_messages=len(bodies),
    )
    stats = await block.run()

    sink = await drain(channel, amqp_names["sink"])
    assert [m.message_id for m in sink] == [m.id for m in good]  # everything good, in order
    letters = {
        str(m.headers["arroyo.source.message_id"]): m
        for m in await drain(channel, amqp_names["dlq"])
    }
    assert set(letters) == set(poisoned)
    reasons = {}
    for message_id, (label, body) in poisoned.items():
        letter = letters[message_id]
        assert letter.body == body  # the original bytes, to replay
        assert letter.message_id == message_id
        assert letter.headers["x-first-death-reason"] == "rejected"
        assert letter.headers["x-first-death-queue"] == amqp_names["source"]
        assert letter.headers["arroyo.source.queue"] == amqp_names["source"]
        reasons[label] = (
            letter.headers["arroyo.dead-letter.error"],
            letter.headers["arroyo.dead-letter.reason"],
            letter.headers["arroyo.dead-letter.attempts"],
        )
    assert reasons["garbage"][0] == "DecodeError"
    assert str(reasons["garbage"][1]).startswith("not Arroyo data")
    assert "truncated" in str(reasons["truncated"][1])
    assert reasons["empty"][0] == "DecodeError"
    assert reasons["exploding"] == (
        "ValueError",
        "cannot integrate frame 11: detector saturated",
        "2",
    )
    assert stats.dead_lettered == 4
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
