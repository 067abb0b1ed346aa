"""RabbitMQ -> operator -> RabbitMQ: consume with prefetch, publish with confirms, ack.

The source queues (durable, classic; one per variant run) are pre-loaded at once
through a fanout exchange with ``count`` persistent messages encoded by
``arroyo.encode``; every variant consumes its own queue and publishes to a queue of
its own.

- Arroyo: a Block with the RabbitMQ listener (prefetch 256), the passthrough operator
  and the RabbitMQ publisher (persistent messages, publisher confirms, pipelined).
- raw (aio-pika): ``queue.consume(callback)`` with prefetch 256 (aio-pika runs each
  callback as a task of its own, so up to 256 are under way at once); the callback
  publishes the body as a persistent message on a channel with publisher confirms,
  awaits the confirmation, then acks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.common import Measurement, Row, Timing, best_of, run_variant, size_label, unique

URL = os.environ.get("ARROYO_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PREFETCH = 256
"""Arroyo's listener default."""


async def _preload(exchange: str, queues: list[str], count: int, size: int) -> None:
    import aio_pika

    from bench.kafka_kafka import events

    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        fanout = await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT)
        for name in queues:
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(fanout)
        pending = []
        for data in events(count, size):
            message = aio_pika.Message(data, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            pending.append(fanout.publish(message, routing_key=""))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await fanout.delete()


async def _delete(*queues: str) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)


async def _depth(queue: str) -> int:
    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def arroyo(src: str, dst: str, count: int) -> Timing:
    """A Block: RabbitMQ listener -> Passthrough -> RabbitMQ publisher."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.runtime import Block
    from bench.harness import measure_block

    listener = open_listener(f"{URL}?queue={src}", {"prefetch": PREFETCH})
    publisher = open_publisher(f"{URL}?queue={dst}")
    return await measure_block(Block(listener, None, [publisher], name="bench"), count)


async def raw(src: str, dst: str, count: int) -> Timing:
    """The hand-written loop (see the module docstring)."""
    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    consuming = await connection.channel()
    await consuming.set_qos(prefetch_count=PREFETCH)
    publishing = await connection.channel(publisher_confirms=True)
    await publishing.declare_queue(dst, durable=True)
    queue = await consuming.declare_queue(src, durable=True, passive=True)
    latencies: list[float] = []
    began: list[float] = []
    done = asyncio.Event()
    end = [0.0]

    async def on_message(message: Any) -> None:
        taken = time.monotonic()
        if not began:
            began.append(taken)
        out = aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await publishing.default_exchange.publish(out, routing_key=dst)  # confirmed
        await message.ack()
        end[0] = time.monotonic()
        latencies.append(end[0] - taken)
        if len(latencies) >= count:
            done.set()

    await queue.consume(on_message)
    await done.wait()
    await connection.close()
    return Timing(len(latencies), end[0] - began[0], latencies)


def _variant(
    function: str, src: str, count: int, size: int, made: list[str]
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        dst = unique(f"rq-{function}")
        made.append(dst)
        result = run_variant("rabbitmq", function, {"src": src, "dst": dst, "count": count}, size)
        if not result.error and asyncio.run(_depth(dst)) < count:
            result.error = f"{dst} holds fewer than {count} messages"
        asyncio.run(_delete(src, dst))
        return result

    return run


def _rotating(
    function: str, sources: Iterator[str], count: int, size: int, made: list[str]
) -> Callable[[], Measurement]:
    """A variant that consumes the next of its pre-loaded queues at each run."""
    return lambda: _variant(function, next(sources), count, size, made)()


COUNTS = {  # (quick, full) messages per run
    1 << 10: (10_000, 50_000),
    1 << 20: (200, 1_000),
}


def run(quick: bool, repeat: int) -> list[Row]:
    """The rows at 1 KiB and 1 MiB."""
    rows = []
    for turn, (size, counts) in enumerate(COUNTS.items()):
        count = counts[0] if quick else counts[1]
        sources = {
            function: [unique(f"rq-src-{function}") for _ in range(repeat)]
            for function in ("arroyo", "raw")
        }
        made = [q for queues in sources.values() for q in queues]
        asyncio.run(_preload(unique("rq-fanout"), made, count, size))
        variants = [_rotating(f, iter(q), count, size, made) for f, q in sources.items()]
        try:
            a, b = best_of(variants, repeat, turn)
        finally:
            asyncio.run(_delete(*made))
        target = 0.9 if size >= 1 << 20 else 0.7
        rows.append(Row("RabbitMQ -> RabbitMQ", size_label(size), a, b, target=target))
    return rows
