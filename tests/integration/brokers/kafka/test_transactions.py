"""Exactly-once against the real broker: outputs, offsets and dead letters committed
together (SIGKILLed workers: tests/reliability/test_kafka_kill.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from arroyo import decode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.kafka import KafkaPublisher, exactly_once
from arroyo.message import Message
from arroyo.runtime import Block
from arroyo.testing import publish_all

ck = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.kafka

ReadTopic = Callable[..., list[Any]]
Committed = Callable[[str, str, str, int], list[int]]
Runs = Callable[[int, int], tuple[list[str], list[Message]]]


async def test_exactly_once_block_commits_outputs_offsets_and_dead_letters_together(
    kafka_bootstrap: str,
    kafka_topics: Any,
    read_topic: ReadTopic,
    fast: dict[str, Any],
    committed: Committed,
    runs: Runs,
) -> None:
    source, results, dlq = kafka_topics("in", 2), kafka_topics("out", 2), kafka_topics("dlq")
    _, messages = runs(2, 200)
    await publish_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    raw = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(source, b"not arroyo data", partition=0)
    raw.flush(10)
    group = f"{source}-g"
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{source}?group={group}&commit_every=50", fast
    )
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    dead = open_publisher(f"kafka://{kafka_bootstrap}/{dlq}")
    exactly_once(listener, [publisher], dead)
    assert isinstance(dead, KafkaPublisher) and dead.transactions is not None
    total = len(messages) + 1
    stats = await Block(listener, None, [publisher], dead_letter=dead, max_messages=total).run()
    assert (stats.published, stats.dead_lettered) == (len(messages), 1)

    records = read_topic(kafka_bootstrap, results, len(messages))
    assert sorted(decode(r.value()).id for r in records) == sorted(m.id for m in messages)
    (letter,) = read_topic(kafka_bootstrap, dlq, 1)
    assert letter.value() == b"not arroyo data"
    assert dict(letter.headers())["arroyo.dead-letter.error"] == b"DecodeError"
    # Only committed transactions are visible, and the offsets went with them.
    assert sum(committed(kafka_bootstrap, group, source, 2)) == total
