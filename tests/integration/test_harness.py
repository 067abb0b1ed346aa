"""The harness's own tests: a message really round-trips through each broker (raw clients)."""

from __future__ import annotations

import time
from collections.abc import Callable


def test_kafka_round_trip(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    deleted_after: Callable[[str, str], str],
) -> None:
    from confluent_kafka import Consumer, Producer

    topic = deleted_after("kafka", unique_name("topic"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    delivered = []
    producer.produce(topic, b"hello", key=b"k", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name("group"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        received = None
        while received is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                received = msg
        assert received is not None, f"nothing arrived on {topic} within 30 s"
        assert (received.key(), received.value()) == (b"k", b"hello")
    finally:
        consumer.close()


def test_redis_round_trip(redis_address: str, unique_name: Callable[[str], str]) -> None:
    import redis

    host, port = redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    stream = unique_name("stream")
    try:
        entry = client.xadd(stream, {"body": b"hello"})
        assert client.xrange(stream) == [(entry, {b"body": b"hello"})]
    finally:
        client.delete(stream)
        client.close()


async def test_rabbitmq_round_trip(amqp_url: str, unique_name: Callable[[str], str]) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(unique_name("queue"), auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=queue.name)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        assert message.body == b"hello"
