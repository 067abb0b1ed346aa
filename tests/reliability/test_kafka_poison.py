"""Poison messages on Kafka: undecodable records go to the dead-letter topic with their
original bytes and the reason in headers, and the worker keeps going."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import Run, decode, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.runtime import Block

ck = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.kafka


def poison(i: int) -> bytes:
    """Undecodable bytes of several kinds: garbage, empty, truncated, unknown schema."""
    good = encode(Run("x").event({"i": i}))
    return [
        f"garbage {i}".encode(),
        b"",
        good[: len(good) // 2],
        b"\xc3\x01" + bytes(8) + good[10:],
    ][i % 4]


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_worker_goes_on(
    kafka_bootstrap: str, kafka_topics: Any, read_topic: Callable[..., list[Any]]
) -> None:
    source, results, dlq = kafka_topics("in", 3), kafka_topics("out", 3), kafka_topics("dlq")
    run = Run("good")
    good = [run.event({"i": i}) for i in range(1000)]
    records: list[tuple[bytes, bool]] = [(encode(m), True) for m in good]
    records += [(poison(i), False) for i in range(100)]
    random.Random(7).shuffle(records)
    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    bad_at: dict[tuple[int, int], bytes] = {}

    for i, (value, ok) in enumerate(records):

        def report(err: Any, msg: Any, value: bytes = value, ok: bool = ok) -> None:
            assert err is None
            if not ok:
                bad_at[(msg.partition(), msg.offset())] = value

        producer.produce(source, value, partition=i % 3, on_delivery=report)
    assert producer.flush(30) == 0

    group = f"{source}-g"
    listener = open_listener(f"kafka://{kafka_bootstrap}/{source}?group={group}")
    stats = await Block(
        listener,
        None,
        [open_publisher(f"kafka://{kafka_bootstrap}/{results}")],
        dead_letter=open_publisher(f"kafka://{kafka_bootstrap}/{dlq}"),
        max_messages=len(records),
    ).run()
    assert (stats.published, stats.dead_lettered, stats.acknowledged) == (1000, 100, 1100)

    outputs = read_topic(kafka_bootstrap, results, 1000)
    assert sorted(decode(r.value()).id for r in outputs) == sorted(m.id for m in good)

    letters = read_topic(kafka_bootstrap, dlq, 100)
    seen = set()
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers()}
        where = (int(headers["arroyo.source.partition"]), int(headers["arroyo.source.offset"]))
        assert headers["arroyo.source.topic"] == source
        assert (letter.value() or b"") == bad_at[where], "not the original bytes"
        assert headers["arroyo.dead-letter.error"] == "DecodeError"
        assert headers["arroyo.dead-letter.reason"]
        assert headers["arroyo.dead-letter.attempts"] == "1"
        seen.add(where)
    assert seen == set(bad_at)
    # The bad messages are acknowledged too: their offsets are committed with the rest.
    probe = ck.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    offsets = probe.committed([ck.TopicPartition(source, p) for p in range(3)], timeout=10)
    probe.close()
    assert sum(tp.offset for tp in offsets) == len(records)
