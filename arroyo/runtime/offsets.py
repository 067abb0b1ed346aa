"""Ordered acknowledgement for sources with offsets (Kafka): commit below the lowest gap."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    """Tracks, per partition, which offsets are in flight and which may be committed.

    Messages finish in any order; the committable offset of a partition is the lowest
    offset still in flight (or one past the highest finished when none is), so a commit
    never skips a message that is not done.
    """

    def __init__(self) -> None:
        self._pending: dict[P, set[int]] = {}
        self._heaps: dict[P, list[int]] = {}
        self._next: dict[P, int] = {}
        self._committed: dict[P, int] = {}

    def started(self, partition: P, offset: int) -> None:
        """``offset`` was received and is now in flight."""
        self.started_many(((partition, offset),))

    def started_many(self, handles: Iterable[tuple[P, int]]) -> None:
        """Each ``(partition, offset)`` of ``handles`` was received and is now in flight."""
        last: P | None = None
        pending, heap, push = set[int](), list[int](), heapq.heappush
        for partition, offset in handles:
            if partition != last or last is None:  # a batch holds runs of one partition
                found = self._pending.get(partition)
                if found is None:  # the three tables are made and forgotten together
                    found = self._pending[partition] = set()
                    self._heaps[partition] = []
                pending, heap, last = found, self._heaps[partition], partition
            pending.add(offset)
            push(heap, offset)
            if offset >= self._next.get(partition, 0):
                self._next[partition] = offset + 1

    def finished(self, partition: P, offset: int) -> None:
        """``offset`` is done (acknowledged). Unknown offsets (revoked partition) are ignored."""
        self.finished_many(((partition, offset),))

    def finished_many(self, handles: Iterable[tuple[P, int]]) -> None:
        """:meth:`finished` for each ``(partition, offset)`` of ``handles``."""
        tables = self._pending
        for partition, offset in handles:
            pending = tables.get(partition)
            if pending is not None:
                pending.discard(offset)

    def committable(self, partition: P) -> int | None:
        """The offset to commit for ``partition`` (the next one to read), or None."""
        pending, heap = self._pending.get(partition), self._heaps.get(partition)
        if pending is None or heap is None:
            return None
        while heap and heap[0] not in pending:
            heapq.heappop(heap)
        return heap[0] if heap else self._next.get(partition)

    def to_commit(self, partitions: Iterable[P] | None = None, full: bool = False) -> dict[P, int]:
        """The committable offsets of ``partitions`` (default: all tracked) that moved
        since they were last :meth:`committed`; all of them when ``full`` (to commit again
        after a commit failed)."""
        out = {}
        for partition in list(self._pending) if partitions is None else partitions:
            offset = self.committable(partition)
            if offset is not None and (full or offset > self._committed.get(partition, -1)):
                out[partition] = offset
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        """These offsets were committed."""
        for partition, offset in offsets.items():
            self._committed[partition] = max(self._committed.get(partition, -1), offset)

    def in_flight(self, partitions: Iterable[P] | None = None) -> int:
        """How many messages are in flight (in the given partitions, or in all)."""
        keys = self._pending.keys() if partitions is None else partitions
        return sum(len(self._pending.get(p, ())) for p in keys)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop all state of ``partitions`` (revoked: another consumer owns them now)."""
        for partition in partitions:
            for table in (self._pending, self._heaps, self._next, self._committed):
                table.pop(partition, None)
