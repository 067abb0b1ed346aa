"""A loop whose unit is the batch: the reference of a delivery path without per-message
bookkeeping (the design issue 16 asks for), doing Arroyo's work on the happy path.

Per ``consume(1000)`` batch, on an asyncio loop (the consumer's calls in a thread of
their own, as Arroyo's listener does): each value is checked with ``arroyo.decode``
(framing, guard, fastavro, the Event) and produced byte for byte with Arroyo's headers
(``arroyo.kind``, ``arroyo.schema``, ``arroyo.id``); the batch is confirmed once the last
of its delivery reports came (one counter per batch, no future per message), and its
offsets are committed then, in input order. While one batch waits for its
confirmation, the next is read and produced (two batches in flight).

What it leaves out is what costs nothing while nothing fails: dead letters, retries,
order after a failed delivery, backpressure by bytes, the delivery journal, metrics. So
its rate is the most a runtime whose unit is the batch could reach with the default
check; the rows set Arroyo against it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Timing

_IN_FLIGHT = 2
"""Batches produced and not yet confirmed at most (the one waiting, the one being read)."""


class _Confirmation:
    """The delivery reports of one batch, counted in the producer's poll thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.left = size
        self.error: Any = None
        self.done: asyncio.Future[None] = loop.create_future()
        self._lock = threading.Lock()

    def report(self, error: Any, msg: Any) -> None:
        with self._lock:
            self.left -= 1
            if error is not None and self.error is None:
                self.error = error
            last = self.left == 0
        if last:
            self.loop.call_soon_threadsafe(self.done.set_result, None)


async def batch_loop(
    consumer_config: dict[str, Any],
    producer_config: dict[str, Any],
    src: str,
    dst: str,
    count: int,
    batch: int,
) -> Timing:
    """Forward ``count`` messages from ``src`` to ``dst`` (see the module docstring)."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    from arroyo import decode

    loop = asyncio.get_running_loop()
    consumer = Consumer(consumer_config)
    consumer.subscribe([src])
    producer = Producer(producer_config)
    polling = True

    def poll() -> None:
        while polling:
            producer.poll(0.1)

    poller = threading.Thread(target=poll, name="bench-batch-loop-poll", daemon=True)
    poller.start()
    fetching = ThreadPoolExecutor(1, thread_name_prefix="bench-batch-loop-consumer")
    in_flight: deque[tuple[_Confirmation, list[Any], float, int]] = deque()
    headers: dict[tuple[str, bytes], list[tuple[str, str]]] = {}
    latencies: list[float] = []
    done, began, end = 0, 0.0, 0.0

    async def settle() -> None:
        nonlocal done, end
        confirmation, offsets, taken, size = in_flight.popleft()
        await confirmation.done
        if confirmation.error is not None:
            raise KafkaException(confirmation.error)
        end = time.monotonic()
        latencies.extend([end - taken] * size)
        consumer.commit(offsets=offsets, asynchronous=True)
        done += size

    try:
        while done < count:
            msgs = await loop.run_in_executor(fetching, consumer.consume, batch, 0.1)
            if not msgs:
                while in_flight and in_flight[0][0].done.done():
                    await settle()
                continue
            taken = time.monotonic()
            began = began or taken
            confirmation = _Confirmation(loop, len(msgs))
            positions: dict[tuple[str, int], int] = {}
            for msg in msgs:
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                value = msg.value() or b""
                message = decode(value)
                prefix = value[:10]
                fixed = headers.get((message.kind, prefix))
                if fixed is None:
                    fixed = [("arroyo.kind", message.kind), ("arroyo.schema", prefix[2:].hex())]
                    headers[(message.kind, prefix)] = fixed
                while True:
                    try:
                        producer.produce(
                            dst,
                            value,
                            msg.key(),
                            headers=[*fixed, ("arroyo.id", message.id)],
                            on_delivery=confirmation.report,
                        )
                        break
                    except BufferError:
                        await asyncio.sleep(0.005)  # librdkafka's queue is full
                positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            in_flight.append((confirmation, offsets, taken, len(msgs)))
            while len(in_flight) >= _IN_FLIGHT or (in_flight and in_flight[0][0].done.done()):
                await settle()
        while in_flight:
            await settle()
    finally:
        polling = False
        poller.join()
        fetching.shutdown(wait=False)
        consumer.close()
    return Timing(done, end - began, latencies)
