"""One contract, every broker with acknowledgements: the same tests run against the
in-process memory broker, Kafka, Redis Streams and RabbitMQ, so that none of them can
drift from the others. (ZeroMQ and Redis pub/sub have no acknowledgements: their own
tests say what they promise instead.)

- A Block forwards a run in order and acknowledges every message.
- What a listener received and did not acknowledge is delivered again to the next
  listener of its group.
- A message that cannot be read goes to the dead-letter destination as the original
  bytes, with the reason and where it came from; the messages after it go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from arroyo import DecodeError
from arroyo.brokers import memory, open_listener
from arroyo.runtime import Block
from arroyo.testing import Recorder, listening, make_run, publish_all

Until = Callable[..., Any]


@dataclass
class Broker:
    """How the contract reaches one broker: URLs for a name, and a look at what is left."""

    name: str
    listener: Callable[[str, str], str]  # (name, group) -> listener URL
    publisher: Callable[[str], str]  # name -> publisher URL
    create: Callable[[str], None]  # make the topic/stream/queue exist
    write_raw: Callable[[str, bytes], None]  # put bytes that are not Arroyo data
    dead_letters: Callable[[str, int], list[tuple[bytes, dict[str, str]]]]


def _memory() -> Broker:
    def write_raw(name: str, data: bytes) -> None:
        memory.topic(name).append(data)

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        letters = memory.topic(name).messages()
        return [(bytes(m.payload), dict(m.metadata)) for m in letters[:count]]  # type: ignore[union-attr,arg-type]

    return Broker(
        "memory",
        lambda name, group: f"memory://{name}?group={group}",
        lambda name: f"memory://{name}",
        lambda name: None,
        write_raw,
        dead,
    )


def _kafka(bootstrap: str, read_topic: Callable[..., list[Any]]) -> Broker:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    def create(name: str) -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
            future.result(30)

    def write_raw(name: str, data: bytes) -> None:
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(name, data)
        assert producer.flush(30) == 0

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        records = read_topic(bootstrap, name, count)
        return [(r.value(), {k: v.decode() for k, v in r.headers()}) for r in records]

    return Broker(
        "kafka",
        lambda name, group: f"kafka://{bootstrap}/{name}?group={group}",
        lambda name: f"kafka://{bootstrap}/{name}",
        create,
        write_raw,
        dead,
    )


def _redis(address: str) -> Broker:
    import redis

    client = redis.Redis.from_url(f"redis://{address}")

    def write_raw(name: str, data: bytes) -> None:
        client.xadd(name, {"data": data})

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        entries = client.xrange(name, count=count)
        return [
            (fields[b"data"], {k.decode(): v.decode() for k, v in fields.items() if k != b"data"})
            for _, fields in entries
        ]

    return Broker(
        "redis",
        lambda name, group: f"redis://{address}/{name}?group={group}&block_ms=50",
        lambda name: f"redis://{address}/{name}",
        lambda name: None,
        write_raw,
        dead,
    )


def _rabbitmq(url: str) -> Broker:
    import aio_pika

    async def write(name: str, data: bytes) -> None:
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(name, durable=True)
            await channel.default_exchange.publish(aio_pika.Message(data), routing_key=name)

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        async def read() -> list[tuple[bytes, dict[str, str]]]:
            out: list[tuple[bytes, dict[str, str]]] = []
            connection = await aio_pika.connect_robust(url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(name, durable=True, passive=True)
                while len(out) < count:
                    message = await queue.get(timeout=10)
                    assert message is not None
                    await message.ack()
                    headers = {k: str(v) for k, v in message.headers.items()}
                    out.append((message.body, headers))
            return out

        result: list[tuple[bytes, dict[str, str]]] = _run_in_thread(read)
        return result

    return Broker(
        "rabbitmq",
        lambda name, group: f"{url}?queue={name}",
        lambda name: f"{url}?queue={name}",
        lambda name: _run_in_thread(lambda: _declare(url, name)),
        lambda name, data: _run_in_thread(lambda: write(name, data)),
        dead,
    )


async def _declare(url: str, name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)


def _run_in_thread(make: Callable[[], Any]) -> Any:
    """Run a coroutine to the end from a test that already has an event loop running."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(60)


@pytest.fixture(params=["memory", "kafka", "redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    if request.param == "memory":
        return _memory()
    if request.param == "kafka":
        return _kafka(
            request.getfixturevalue("kafka_bootstrap"), request.getfixturevalue("read_topic")
        )
    if request.param == "redis":
        return _redis(request.getfixturevalue("redis_address"))
    return _rabbitmq(request.getfixturevalue("amqp_url"))


async def test_a_block_forwards_a_run_in_order_and_acknowledges_it(
    broker: Broker, unique_name: Callable[[str], str]
) -> None:
    source, group = unique_name("source"), unique_name("group")
    broker.create(source)
    sent = make_run(30)
    await publish_all(broker.publisher(source), sent)
    out = Recorder()
    first = Block(open_listener(broker.listener(source, group)), None, [out])
    first.max_messages = len(sent)
    stats = await first.run()
    assert out.published == sent
    assert stats.acknowledged == len(sent)
    # Everything was acknowledged: the group's next listener gets only what comes next.
    later = make_run(1, stream="later")
    await publish_all(broker.publisher(source), later)
    again = Recorder()
    second = Block(open_listener(broker.listener(source, group)), None, [again])
    second.max_messages = len(later)
    await second.run()
    assert again.published == later


async def test_what_was_not_acknowledged_is_delivered_again(
    broker: Broker, unique_name: Callable[[str], str], until: Until
) -> None:
    source, group = unique_name("source"), unique_name("group")
    broker.create(source)
    await publish_all(broker.publisher(source), make_run(3))
    async with listening(open_listener(broker.listener(source, group))) as first:
        await until(lambda: len(first.items) == 5, what="the run received once")
    listener = open_listener(broker.listener(source, group))
    async with listening(listener) as again:
        await until(lambda: len(again.items) == 5, what="the run received again")
        assert [bytes(r.data) for r in again.items] == [bytes(r.data) for r in first.items]  # type: ignore[arg-type]
        assert all(r.deliveries >= 2 for r in again.items) or broker.name == "kafka"
        for received in again.items:
            await listener.ack(received)


async def test_an_unreadable_message_goes_to_the_dead_letter_and_the_rest_goes_on(
    broker: Broker, unique_name: Callable[[str], str]
) -> None:
    from arroyo.brokers import open_publisher

    source, dead, group = unique_name("source"), unique_name("dead"), unique_name("group")
    broker.create(source)
    broker.create(dead)
    before, after = make_run(1, stream="a"), make_run(1, stream="b")
    await publish_all(broker.publisher(source), before)
    broker.write_raw(source, b"not Avro at all")
    await publish_all(broker.publisher(source), after)
    out = Recorder()
    block = Block(
        open_listener(broker.listener(source, group)),
        None,
        [out],
        dead_letter=open_publisher(broker.publisher(dead)),
    )
    block.max_messages = len(before) + 1 + len(after)
    stats = await block.run()
    assert out.published == before + after
    assert stats.dead_lettered == 1
    [(data, headers)] = broker.dead_letters(dead, 1)
    assert data == b"not Avro at all"
    assert headers["arroyo.dead-letter.error"] == DecodeError.__name__
    assert "not Arroyo data" in headers["arroyo.dead-letter.reason"]
    source_keys = [k for k in headers if k.startswith("arroyo.source.")]
    assert "arroyo.source.url" in source_keys, json.dumps(headers)
