"""What a Kafka listener owns: its partitions, what it handed over from each, what it may
commit, and what happens when partitions are assigned or revoked.

Offsets are committed in batches (every ``commit_interval_ms`` or ``commit_every``
acknowledgements, whichever comes first, and at once when a poll found nothing new: the
input is idle, so no batch is coming to share the commit), and only below the lowest
message of each partition that is not acknowledged yet
(:class:`~arroyo.runtime.offsets.OffsetTracker`), so a commit never skips unfinished
work. In exactly-once mode the offsets go into the
open transaction instead (:mod:`arroyo.brokers.kafka.transactions`).

On a revocation, the revoked partitions stop being handed over; their messages that wait
in the Block unprocessed are taken back (``Intake.hand_back``: the new owner reads them
from the commit, so a rebalance waits only for the work under way, not for a full
queue); the messages under way get up to ``drain_timeout_ms`` to be acknowledged; their
offsets are committed (stopping before the first message taken back), and only then are
they let go. Lost partitions (the group moved on without this consumer) are
committed nothing: their new owner processes the unfinished messages again.

Everything here runs on the event loop, except :meth:`Partitions.commit_now` and
:meth:`Partitions.on_commit` (librdkafka's commit callback), in the consumer's thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import Hide, Key, error_text, offsets_list, partitions_text
from arroyo.brokers.kafka.transactions import TransactionError, Transactions
from arroyo.errors import ArroyoError
from arroyo.runtime.logs import Throttle
from arroyo.runtime.offsets import OffsetTracker

log = logging.getLogger("arroyo.brokers.kafka")


class Partitions:
    """The partitions of one listener and their offsets (see the module docstring).

    ``group_metadata()`` gives the consumer's group metadata (from its thread);
    ``acknowledged()`` returns once the Block has acknowledged every message whose
    outputs are confirmed (:meth:`arroyo.runtime.listener.Intake.acknowledged`).
    """

    def __init__(
        self,
        name: str,
        hide: Hide,
        *,
        commit_interval: float,
        commit_every: int,
        drain_timeout: float,
        group_metadata: Callable[[], Awaitable[Any]],
        acknowledged: Callable[[], Awaitable[None]],
    ) -> None:
        self.name = name
        self.hide = hide
        self.commit_interval = commit_interval
        self.commit_every = commit_every
        self.drain_timeout = drain_timeout
        self._group_metadata = group_metadata
        self._acknowledged = acknowledged
        self.tracker: OffsetTracker[Key] = OffsetTracker()
        self.owned: dict[Key, int] = {}
        """The assigned partitions, each with the generation of its assignment (a new
        dict at each change: a batch fetched earlier keeps the one of its time)."""
        self.generation = 0
        self.txn: Transactions | None = None
        """The exactly-once transactions (set by :func:`~.exactly_once.exactly_once`)."""
        self.failure: BaseException | None = None
        self.closing = False
        self._handed_back: collections.Counter[Key] = collections.Counter()
        """Messages of partitions being revoked that nobody processes (the Block gave
        them back, or their hand-over was cancelled), per partition: not in flight any
        more, and not finished (the commit stops before the first), for the new owner."""
        self.commit_failures = 0
        """Failed asynchronous commits (counted in the consumer's thread)."""
        self._commit_failures_seen = 0
        self._acked = 0
        self._next_commit = 0.0
        self._progress: asyncio.Future[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._repeats = Throttle(30.0)

    def start(self) -> None:
        """The listener starts: the first commit is due in ``commit_interval``."""
        self._next_commit = asyncio.get_running_loop().time() + self.commit_interval

    def acked(self, key: Key, offset: int) -> None:
        """The message at ``offset`` of ``key`` is done (ignored for a revoked partition)."""
        self.acked_many(((key, offset),))

    def acked_many(self, handles: Sequence[tuple[Key, int]]) -> None:
        """:meth:`acked` for each ``(key, offset)`` of ``handles``."""
        self.tracker.finished_many(handles)
        self._acked += len(handles)
        progress = self._progress
        if progress is not None and not progress.done():
            progress.set_result(None)

    def due(self, idle: bool = False) -> list[Any] | None:
        """Offsets to commit now (at-least-once), or None; in exactly-once mode, start a
        transaction commit instead when one is due. ``idle``: the last poll found no new
        message; what was acknowledged since the last commit is committed now, instead of
        waiting for the interval (a transaction's outputs are not visible to
        ``read_committed`` consumers until it commits)."""
        now = asyncio.get_running_loop().time()
        if (
            self._acked < self.commit_every
            and now < self._next_commit
            and not (idle and self._acked)
        ):
            return None
        if self.txn is not None:
            if self._commit_task is None or self._commit_task.done():
                self._next_commit = now + self.commit_interval
                if self._acked or self.txn.in_transaction:
                    self._acked = 0
                    self._commit_task = asyncio.ensure_future(self._commit_transaction())
            return None
        self._next_commit = now + self.commit_interval
        if not self._acked and self.commit_failures == self._commit_failures_seen:
            return None
        self._acked = 0
        full = self.commit_failures != self._commit_failures_seen
        self._commit_failures_seen = self.commit_failures
        offsets = self.tracker.to_commit(full=full)
        if not offsets:
            return None
        self.tracker.committed(offsets)
        return offsets_list(offsets)

    async def _commit(self, metadata: Any) -> None:
        """Commit the open transaction with every acknowledged offset."""
        assert self.txn is not None
        committed = await self.txn.commit(self.tracker.to_commit, metadata, self._acknowledged)
        self.tracker.committed(committed)

    async def _commit_transaction(self) -> None:
        try:
            await self._commit(await self._group_metadata())
        except Exception as exc:
            if self.failure is None:
                self.failure = (
                    exc if isinstance(exc, ArroyoError) else TransactionError(self.hide(exc))
                )

    async def _drain(self, keys: list[Key]) -> bool:
        """Wait (up to drain_timeout) until the in-flight messages of ``keys`` are acked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while self.in_flight(keys) > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._progress = loop.create_future()
            try:
                async with asyncio.timeout(remaining):
                    await self._progress
            except TimeoutError:
                return False
        return True

    def handed_back(self, keys: Iterable[Key]) -> None:
        """A message of each of ``keys`` (partitions being revoked) will be processed by
        nobody here: the Block gave it back unprocessed, or its hand-over was cancelled."""
        self._handed_back.update(keys)

    def in_flight(self, keys: list[Key]) -> int:
        """Messages of ``keys`` handed over, not handed back, and not acknowledged yet."""
        return self.tracker.in_flight(keys) - sum(self._handed_back[key] for key in keys)

    def assigned(self, keys: list[Key]) -> None:
        """``keys`` are this consumer's now."""
        owned = dict(self.owned)
        for key in keys:
            self.generation += 1
            owned[key] = self.generation
        self.owned = owned
        log.info("%s: assigned %s", self.name, partitions_text(keys))

    def revoke(self, keys: list[Key]) -> None:
        """Hand nothing more over from ``keys`` (first step of a revocation)."""
        owned = dict(self.owned)
        for key in keys:
            owned.pop(key, None)
        self.owned = owned

    async def revoked(self, keys: list[Key], lost: bool, metadata: Any) -> dict[Key, int]:
        """Let the in-flight work of ``keys`` finish (bounded), commit, forget them.
        Returns the offsets the consumer's thread must commit (at-least-once)."""
        try:
            if self.closing:
                return {}
            if lost:
                log.warning(
                    "%s: lost %s (the group moved on without this consumer); their "
                    "unfinished messages will be processed again by their new owner",
                    self.name,
                    partitions_text(keys),
                )
                if self.txn is not None:
                    await self.txn.abort(TransactionError("partitions lost"))
                return {}
            drained = await self._drain(keys)
            if not drained:
                log.warning(
                    "%s: %d messages of revoked %s still unfinished after %.1f s; their new "
                    "owner will process them again",
                    self.name,
                    self.in_flight(keys),
                    partitions_text(keys),
                    self.drain_timeout,
                )
            if self.txn is not None:
                if not drained:
                    # Their outputs would land in a later transaction than their offsets.
                    await self.txn.abort(
                        TransactionError("revoked partitions did not drain in time")
                    )
                    return {}
                await self._commit(metadata)
                return {}
            return self.tracker.to_commit(keys, full=True)
        finally:
            self.tracker.forget(keys)
            for key in keys:
                self._handed_back.pop(key, None)
            log.info("%s: revoked %s", self.name, partitions_text(keys))

    async def close(self, commit: Callable[[dict[Key, int]], Awaitable[None]]) -> None:
        """Commit every acknowledged offset (through ``commit``, or the last transaction);
        a failure is logged. Nothing is committed after this."""
        try:
            if self._commit_task is not None:
                await asyncio.gather(self._commit_task, return_exceptions=True)
            if self.txn is not None:
                if self.txn.failure is None and self.failure is None:
                    await self._commit(await self._group_metadata())
            else:
                offsets = self.tracker.to_commit(full=True)
                if offsets:
                    await commit(offsets)
        except Exception as exc:
            log.error("%s: final commit failed: %s", self.name, self.hide(exc))
        finally:
            self.closing = True

    def commit_now(self, consumer: Any, offsets: dict[Key, int]) -> None:
        """(Consumer thread) Commit ``offsets`` and wait (a revocation, the end); a
        failure is logged."""
        try:
            result = consumer.commit(offsets=offsets_list(offsets), asynchronous=False)
        except ck.KafkaException as exc:
            log.warning(
                "%s: could not commit offsets %s: %s",
                self.name,
                offsets,
                self.hide(error_text(exc)),
            )
            return
        failed = [p for p in result or () if p.error is not None]
        if failed:
            log.warning("%s: could not commit offsets: %s", self.name, failed)

    def on_commit(self, error: Any, partitions: list[Any]) -> None:
        """(Consumer thread) librdkafka's ``on_commit``: a failed commit is counted, so
        that the next one commits every partition again, and logged (throttled)."""
        failed = [p for p in partitions if p.error is not None]
        if error is not None or failed:
            self.commit_failures += 1
            text = self.hide(error.str()) if error is not None else str(failed)
            self._repeats(
                log,
                logging.WARNING,
                text,
                "%s: committing offsets failed (retried): %s",
                self.name,
                text,
            )
