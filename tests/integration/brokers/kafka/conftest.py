"""What the Kafka tests against the real broker share: the group's committed offsets,
runs of messages to publish, consumer settings that notice a lost member quickly."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from arroyo.message import Message
from arroyo.testing import make_run

ck = pytest.importorskip("confluent_kafka")


@pytest.fixture
def fast() -> dict[str, Any]:
    """Consumer settings that notice a lost member within seconds."""
    return {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@pytest.fixture
def committed() -> Callable[[str, str, str, int], list[int]]:
    """``committed(bootstrap, group, topic, partitions)``: the group's committed offsets."""
    return _committed


@pytest.fixture
def runs() -> Callable[[int, int], tuple[list[str], list[Message]]]:
    """``runs(count, events)``: ``count`` runs interleaved message by message."""
    return _runs


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [ck.TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return [max(tp.offset, 0) for tp in offsets]  # none committed (empty partition): 0
    finally:
        consumer.close()


def _runs(count: int, events: int) -> tuple[list[str], list[Message]]:
    """``count`` runs (Start, events, Stop), interleaved message by message."""
    made = [make_run(events, f"run-{i}-{os.urandom(3).hex()}") for i in range(count)]
    interleaved = [m for group in zip(*made, strict=True) for m in group]
    return [run[0].stream for run in made], interleaved
