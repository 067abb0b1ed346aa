"""Acknowledging: the messages a Block has settled are acknowledged in input order, in
batches, by a task of their own, so that settling never waits for an acknowledgement.

An acknowledgement may wait a long time: a Redis ``XACK`` is retried until the server is
back, a RabbitMQ ``basic.ack`` may wait up to the listener's ``timeout``. Settling
meanwhile goes on confirming outputs, publishing again what failed and sending dead
letters; what it settles is acknowledged in the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.logs import Throttle
from arroyo.runtime.metrics import BlockStats

log = logging.getLogger("arroyo.block")

ACK_BATCH = 512
"""At most this many acknowledgements are handed to the listener at once."""


class Acknowledger:
    """Acknowledges what it is handed, in the order handed, one batch at a time; calls
    ``acked(count)`` after each batch (failed acknowledgements included: they are
    logged, and the broker redelivers those messages)."""

    def __init__(
        self,
        listener: Listener,
        intake: BoundedIntake,
        stats: BlockStats,
        throttle: Throttle,
        acked: Callable[[int], None],
    ) -> None:
        self.listener = listener
        self.intake = intake
        self.stats = stats
        self.throttle = throttle
        self.acked = acked
        self._unacked: deque[Received] = deque()
        """Handed over, not acknowledged yet, in input order."""
        self._task: asyncio.Task[None] | None = None

    def hand(self, batch: list[Received]) -> None:
        """Acknowledge ``batch`` after what was handed before, without waiting. Raises
        what made the acknowledging task fail (an error of the listener's journal)."""
        self._unacked.extend(batch)
        task = self._task
        if task is None or task.done():
            if task is not None and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Return once everything handed over was acknowledged (or failed to be)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Stop acknowledging: what is not acknowledged yet is redelivered by the broker."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        unacked = self._unacked
        while unacked:
            count = min(len(unacked), ACK_BATCH)
            await self._ack([unacked.popleft() for _ in range(count)])

    async def _ack(self, batch: list[Received]) -> None:
        """Acknowledge ``batch``; a failure is logged (the message will be redelivered)."""
        try:
            results = await self.listener.ack_many(batch)
        except Exception as exc:
            results = [exc] * len(batch)
        journal = self.listener.journal
        succeeded = results.count(None)
        self.stats.acknowledged += succeeded
        if succeeded < len(batch) or (journal is not None and journal.crashes):
            for received, error in zip(batch, results, strict=True):
                if error is None:
                    if journal is not None and journal.crashes:
                        journal.settled(received)
                else:
                    self.throttle(
                        log,
                        logging.WARNING,
                        "ack",
                        "could not acknowledge a message from %s (it will be redelivered): %r",
                        dict(received.source),
                        error,
                    )
        self.intake.done_many(batch)
        self.acked(len(batch))
