"""When a Kafka listener commits (partitions.py), without a broker."""

from __future__ import annotations

import asyncio

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


async def test_a_revocation_waits_for_the_work_under_way_not_for_what_was_handed_back() -> None:
    """Offsets 0-4 handed over; 0 done, 1 under way, 2-4 handed back by the Block. The
    drain waits for 1 alone, and the commit stops before 2, the first handed back."""
    partitions = make_listener("kafka://h:9092/frames?group=g&drain_timeout_ms=5000").partitions
    partitions.start()
    key = ("frames", 0)
    partitions.assigned([key])
    partitions.tracker.started_many([(key, offset) for offset in range(5)])
    partitions.acked(key, 0)
    partitions.revoke([key])
    partitions.handed_back([key] * 3)  # offsets 2, 3 and 4
    assert partitions.in_flight([key]) == 1
    revoking = asyncio.ensure_future(partitions.revoked([key], False, None))
    await asyncio.sleep(0)
    assert not revoking.done()  # offset 1 is under way
    partitions.acked(key, 1)
    assert await asyncio.wait_for(revoking, 1) == {key: 2}
    assert partitions.in_flight([key]) == 0  # forgotten, with what was handed back
