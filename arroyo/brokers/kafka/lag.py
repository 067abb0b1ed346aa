"""A Kafka consumer's lag per assigned partition: the log end offset minus the group's
committed offset (:meth:`arroyo.runtime.listener.Listener.lag`).

Read in a thread of its own, never the consumer's (whose polls it would hold up): the
consumer's client is thread-safe, and :class:`LagReader` keeps it from being closed
while a read uses it.
"""

from __future__ import annotations

import threading
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import Key

_EARLIEST = {"earliest", "smallest", "beginning"}


class LagReader:
    """Reads the lag of the partitions it is given, with the consumer it is given, never
    after :meth:`closing` (the consumer is about to close)."""

    def __init__(self, timeout: float, reset: str) -> None:
        self.timeout = timeout
        self.from_start = reset in _EARLIEST
        """Where a partition without a committed offset is read from (auto.offset.reset)."""
        self._lock = threading.Lock()
        self._closed = False

    def closing(self) -> None:
        """Wait for a read in progress to end; read nothing from now on."""
        with self._lock:
            self._closed = True

    def read(self, consumer: Any, keys: list[Key]) -> dict[Key, int] | None:
        """Lag per partition of ``keys`` (blocking, up to a few ``timeout``); None once
        closing. Without a committed offset, a partition's lag counts from the
        consumer's position, else from where auto.offset.reset starts (the low
        watermark, or the end). Raises KafkaException when the cluster does not answer."""
        with self._lock:
            if self._closed or consumer is None:
                return None
            if not keys:
                return {}
            wanted = [ck.TopicPartition(t, p) for t, p in keys]
            committed = consumer.committed(wanted, timeout=self.timeout)
            positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(wanted)}
            out: dict[Key, int] = {}
            for tp in committed:
                key = (tp.topic, tp.partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout, cached=False)
                start = tp.offset if tp.offset >= 0 else positions.get(key, -1)
                if start < 0:
                    start = low if self.from_start else high
                out[key] = max(0, high - max(start, low))
            return out
