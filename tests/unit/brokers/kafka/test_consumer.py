"""The Kafka consumer thread's own logic, without a broker (a fake confluent-kafka
consumer, wired to a listener)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arroyo.brokers.kafka import KafkaListener
from tests.unit.brokers.kafka.endpoints import make_listener

ck = pytest.importorskip("confluent_kafka")


class _Record:
    """What the listener reads of a confluent-kafka message."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return "frames"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return b""


class _Rebalancing:
    """A consumer whose ``poll()`` (``during="poll"``) or second ``consume()``
    (``during="consume"``) serves a rebalance through the listener's own callbacks, as
    librdkafka does: partition 0 is revoked and assigned again, and reading restarts at
    its committed offset 0. The message that ``poll()`` returns is offset 0 of the new
    assignment when the rebalance came first, else offset 5 of the old one."""

    def __init__(self, listener: KafkaListener, during: str) -> None:
        self.listener, self.during, self.consumed = listener, during, 0
        self.resumed: list[Any] = []

    def _rebalance(self) -> None:
        partitions = [ck.TopicPartition("frames", 0)]
        self.listener.consumer._on_revoke(self, partitions)
        self.listener.consumer._on_assign(self, partitions)

    def consume(self, count: int, timeout: float) -> list[_Record]:
        self.consumed += 1
        if self.consumed == 1:
            return []
        if self.during == "consume":
            self._rebalance()
            return [_Record(0, offset) for offset in range(3)]
        return [_Record(0, offset) for offset in range(1, 3)]

    def poll(self, timeout: float) -> _Record:
        if self.during == "poll":
            self._rebalance()
            return _Record(0, 0)
        return _Record(0, 5)

    def resume(self, partitions: list[Any]) -> None:
        self.resumed += partitions


@pytest.mark.parametrize(
    ("during", "offsets"),
    [("poll", [0, 1, 2]), ("consume", [0, 1, 2])],
    ids=["rebalance-before-the-first-message", "rebalance-after-the-first-message"],
)
async def test_fetch_drops_only_a_first_message_that_a_rebalance_made_stale(
    during: str, offsets: list[int]
) -> None:
    """Issue 14, defect 7: a rebalance served while ``poll()`` waited for the first
    message made the listener drop that message, although it was the first one of the
    new assignment (offset 0 of a new group): it was never processed, and the offsets
    after it were committed. Only a rebalance after it (during the ``consume()`` that
    takes the rest of the batch) makes it stale."""
    kafka = make_listener("kafka://h:9092/frames?group=g")
    kafka._loop = asyncio.get_running_loop()
    consumer = _Rebalancing(kafka, during)
    kafka.consumer.client = consumer
    batch = await asyncio.to_thread(kafka.consumer.fetch, None)
    assert [m.offset() for m in batch] == offsets
    assert [(p.topic, p.partition) for p in consumer.resumed] == [("frames", 0)]
