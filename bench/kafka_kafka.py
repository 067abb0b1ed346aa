"""Kafka -> operator -> Kafka in a consumer group: at-least-once and exactly-once.

The source topic (one partition) is pre-loaded with ``count`` Events encoded by
``arroyo.encode``; every variant reads it in a consumer group of its own and writes to
a topic of its own.

- Arroyo, at-least-once: a Block with the Kafka listener, the passthrough operator and
  the Kafka publisher (defaults: queue_size 1000, max_bytes 64 MiB, idempotent
  producer); the message is decoded (schema check) and forwarded byte for byte.
- raw, at-least-once: ``consume(1000)``, ``produce`` each value with a delivery
  callback, ``flush()`` (every delivery report), ``commit(asynchronous=True)``.
- Arroyo, exactly-once: the same Block with ``exactly_once`` (Kafka transactions,
  committed every 1 s or 1000 messages, and when a poll finds the input idle).
- raw, exactly-once: per ``consume(1000)`` batch, ``begin_transaction``, produce,
  ``send_offsets_to_transaction``, ``commit_transaction``.

Both variants get the same client settings: the idempotent producer, 20 MiB
``message.max.bytes``, the same fetch sizes, ``fetch.queue.backoff.ms=10``.

The at-least-once pair alternates with a third variant, the limit: Kafka's own Java
producer writing as many records of the same size (``bench/java_producer.py``); its row
sets Arroyo against it and notes the raw loop's ratio.

At 1 KiB three more variants take turns with them: the raw at-least-once loop checking
each value first, with fastavro alone and with ``arroyo.decode``, the ceilings of a
check (:mod:`bench.ceilings`), and the loop whose unit is the batch
(:mod:`bench.batch_loop`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench import java_producer
from bench.ceilings import CHECKS, batch_row, ceiling_rows, checker, reference_row
from bench.common import (
    Measurement,
    Row,
    Timing,
    best_of,
    lazy_row,
    run_variant,
    size_label,
    unique,
)

KAFKA = os.environ.get("ARROYO_KAFKA", "127.0.0.1:9092")
MAX_BYTES = 20 << 20
"""What the shared broker accepts per record (compose/brokers.sh)."""

BATCH = 1000
"""Messages per consume() call, in every variant (Arroyo's listener default)."""


def producer_settings() -> dict[str, Any]:
    return {"message.max.bytes": MAX_BYTES}


def consumer_settings() -> dict[str, Any]:
    return {
        "max.partition.fetch.bytes": 16 << 20,
        "fetch.max.bytes": 64 << 20,
    }


def raw_consumer_config(group: str) -> dict[str, Any]:
    """What Arroyo's listener sets, for the raw loops (the same work)."""
    return {
        "bootstrap.servers": KAFKA,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.queue.backoff.ms": 10,
        **consumer_settings(),
    }


def raw_producer_config(**extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": KAFKA,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        **producer_settings(),
        **extra,
    }


# -- topics (parent process) -------------------------------------------------------------


def _admin() -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": KAFKA, "log_level": 4})


def create_topics(*names: str) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = _admin()  # kept alive until the futures are done
    futures = admin.create_topics(
        [NewTopic(n, 1, 1, config={"max.message.bytes": str(MAX_BYTES)}) for n in names],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(60)


def delete_topics(*names: str) -> None:
    """Delete (best effort: the data of a benchmark is not kept)."""
    if names:
        admin = _admin()
        futures = admin.delete_topics(list(names), operation_timeout=30)
        for future in futures.values():
            with contextlib.suppress(Exception):  # already gone
                future.result(60)


def messages_in(topic: str) -> int:
    """The high watermark of partition 0 (transaction markers count too)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": unique("watermark")})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high)
    finally:
        consumer.close()


def events(count: int, size: int) -> list[bytes]:
    """``count`` Events of one run with ``size``-byte payloads, as ``arroyo.encode`` writes
    them (each with its own id and seq)."""
    from arroyo import Event, encode

    payload = os.urandom(size)
    return [encode(Event({"frame": i}, payload, stream="bench", seq=i)) for i in range(count)]


def produce_all(topic: str, records: Iterable[tuple[bytes, bytes, int]]) -> None:
    """Produce ``(value, key, partition)`` records to ``topic`` (partition -1: the
    partitioner chooses) and return once every one is confirmed."""
    from confluent_kafka import Producer

    producer = Producer(raw_producer_config(**{"linger.ms": 20}))
    for value, key, partition in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"pre-loading {topic}: not every message was confirmed")


def preload(topic: str, count: int, size: int) -> None:
    """Create ``topic`` and produce ``count`` encoded Events to it (key ``bench``)."""
    create_topics(topic)
    produce_all(topic, ((value, b"bench", -1) for value in events(count, size)))


# -- variants (each in its own process) --------------------------------------------------


async def arroyo(
    src: str, dst: str, group: str, count: int, exactly_once: bool, lazy: bool = False
) -> Timing:
    """A Block: Kafka listener -> Passthrough -> Kafka publisher (``lazy``: the listener
    reads each message as ``check: lazy`` does, else in full)."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.brokers.kafka import KafkaListener
    from arroyo.brokers.kafka import exactly_once as make_exactly_once
    from arroyo.runtime import Block
    from bench.harness import block_parser, measure_block

    listener = open_listener(
        f"kafka://{KAFKA}/{src}?group={group}",
        consumer_settings(),
        block_parser(lazy),
    )
    publisher = open_publisher(f"kafka://{KAFKA}/{dst}", producer_settings())
    transactions = None
    if exactly_once:
        make_exactly_once(listener, [publisher], None)
        assert isinstance(listener, KafkaListener)
        transactions = listener.partitions.txn
    block = Block(listener, None, [publisher], name="bench")
    return await measure_block(block, count, transactions=transactions)


def raw(src: str, dst: str, group: str, count: int, exactly_once: bool, check: str = "") -> Timing:
    """The hand-written loop (see the module docstring). ``check``: each value is first
    checked, ``"fastavro"`` as a peer does by hand, ``"arroyo"`` by ``arroyo.decode``."""
    from confluent_kafka import Consumer, KafkaException, Producer

    checked = checker(check)

    consumer = Consumer(raw_consumer_config(group))
    extra = {"transactional.id": unique("txn")} if exactly_once else {}
    producer = Producer(raw_producer_config(**extra))
    if exactly_once:
        producer.init_transactions()
    consumer.subscribe([src])
    latencies: list[float] = []
    errors: list[Any] = []
    taken = [0.0]

    def on_delivery(error: Any, msg: Any) -> None:
        if error is not None:
            errors.append(error)
        elif not exactly_once:
            latencies.append(time.monotonic() - taken[0])

    done = 0
    began = 0.0
    while done < count:
        msgs = consumer.consume(BATCH, 0.1)
        if not msgs:
            continue
        taken[0] = time.monotonic()
        began = began or taken[0]
        if exactly_once:
            producer.begin_transaction()
        for msg in msgs:
            if msg.error() is not None:
                raise KafkaException(msg.error())
            value = msg.value()
            if checked is not None:
                checked(value or b"")  # a record without a value is refused
            while True:
                try:
                    producer.produce(dst, value, msg.key(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
        if exactly_once:
            positions = consumer.position(consumer.assignment())
            metadata = consumer.consumer_group_metadata()
            producer.send_offsets_to_transaction(positions, metadata)
            producer.commit_transaction()  # flushes; fails if a delivery failed
            latencies += [time.monotonic() - taken[0]] * len(msgs)
        else:
            producer.flush()
            if errors:
                raise KafkaException(errors[0])
            consumer.commit(asynchronous=True)
        done += len(msgs)
    end = time.monotonic()
    consumer.close()
    return Timing(done, end - began, latencies)


async def batched(src: str, dst: str, group: str, count: int, exactly_once: bool) -> Timing:
    """The loop whose unit is the batch (:mod:`bench.batch_loop`), at-least-once, with the
    raw loop's client settings."""
    from bench.batch_loop import batch_loop

    assert not exactly_once, "the batch loop is at-least-once"
    return await batch_loop(
        raw_consumer_config(group), raw_producer_config(), src, dst, count, BATCH
    )


# -- the rows (parent process) -----------------------------------------------------------

COUNTS = {  # (quick, full) messages per run
    1 << 10: (20_000, 100_000),
    1 << 20: (300, 1_500),
}


LIMIT = "Kafka -> Kafka at-least-once vs the limit: Java producer, produce only"


def _variant(
    function: str,
    src: str,
    count: int,
    size: int,
    exactly_once: bool,
    made: list[str],
    lazy: bool = False,
    check: str = "",
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        dst = unique(f"kk-{function}{'-' + check if check else ''}")
        create_topics(dst)
        made.append(dst)
        args = {
            "src": src,
            "dst": dst,
            "group": unique("group"),
            "count": count,
            "exactly_once": exactly_once,
            **({"lazy": True} if lazy else {}),
            **({"check": check} if check else {}),
        }
        result = run_variant("kafka_kafka", function, args, size)
        if not result.error and messages_in(dst) < count:
            result.error = f"{dst} holds fewer than {count} messages"
        return result

    return run


def run(quick: bool, repeat: int) -> list[Row]:
    """The at-least-once and exactly-once rows at 1 KiB and 1 MiB."""
    rows = []
    turn = 0
    for size, counts in COUNTS.items():
        count = counts[0] if quick else counts[1]
        src = unique("kk-src")
        preload(src, count, size)
        made = [src]
        try:
            for exactly_once in (False, True):
                variants = [
                    _variant("arroyo", src, count, size, exactly_once, made),
                    _variant("raw", src, count, size, exactly_once, made),
                ]
                ceilings = not exactly_once and size < 1 << 20
                if not exactly_once:  # check: lazy, and the limit, alternating with the pair
                    variants.append(_variant("arroyo", src, count, size, False, made, lazy=True))
                    variants.append(functools.partial(java_producer.measure, count, size))
                if ceilings:  # the raw loop checking each value, both ways; the batch loop
                    for check in CHECKS:
                        variants.append(_variant("raw", src, count, size, False, made, check=check))
                    variants.append(_variant("batched", src, count, size, False, made))
                a, b, *more = best_of(variants, repeat, turn)
                turn += 1
                guarantee = "exactly-once" if exactly_once else "at-least-once"
                rows.append(
                    Row(
                        f"Kafka -> Kafka, {guarantee}",
                        size_label(size),
                        a,
                        b,
                        target=0.9 if size >= 1 << 20 else 0.5 if exactly_once else 0.4,
                    )
                )
                if more:
                    lazy, java, *checking = more
                    path = "Kafka -> Kafka, at-least-once"
                    rows.append(lazy_row(path, size_label(size), lazy, b))
                    ratio = ("raw loop / Java producer", b, java)
                    rows.append(
                        reference_row(LIMIT, size, a, java, "Java ProducerPerformance", ratio)
                    )
                    if ceilings:
                        path = "Kafka -> Kafka at-least-once"
                        *checking, batch = checking
                        rows += ceiling_rows(path, size, a, b, checking)
                        rows.append(batch_row(path, size, a, b, batch))
        finally:
            delete_topics(*made)
    return rows


def measure_arroyo(src: str, count: int, size: int = 1 << 10) -> Measurement:
    """Arroyo's at-least-once Block on the pre-loaded topic ``src`` (for the peers' rows)."""
    made: list[str] = []
    try:
        return _variant("arroyo", src, count, size, False, made)()
    finally:
        delete_topics(*made)
