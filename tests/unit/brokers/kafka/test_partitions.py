"""When a Kafka listener commits (partitions.py), without a broker."""

from __future__ import annotations

import pytest

from tests.unit.brokers.kafka.endpoints import make_listener

pytest.importorskip("confluent_kafka")


async def test_an_idle_poll_commits_what_was_acknowledged_without_waiting_for_the_interval() -> (
    None
):
    partitions = make_listener(
        "kafka://h:9092/frames?group=g", commit_interval_ms=60_000
    ).partitions
    partitions.start()
    key = ("frames", 0)
    partitions.assigned([key])
    for offset in range(3):
        partitions.tracker.started(key, offset)
    assert partitions.due(idle=True) is None  # nothing acknowledged: nothing to commit
    partitions.acked(key, 0)
    partitions.acked(key, 1)
    assert partitions.due() is None  # input flowing: the interval is a minute away
    committed = partitions.due(idle=True)
    assert committed is not None
    assert [(tp.topic, tp.partition, tp.offset) for tp in committed] == [("frames", 0, 2)]
    assert partitions.due(idle=True) is None  # nothing acknowledged since
