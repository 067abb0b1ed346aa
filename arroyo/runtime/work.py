"""The Block's pipeline: take what the listener handed over from the intake, in input
order, process it, and hand each outcome to the settler in that order.

With concurrency 1 the messages are taken as the listener handed them over, in batches
of up to ``batch_size``: an operator that overrides ``process_batch`` gets each batch in
one call, unless a message of it was being processed when a worker died (then one by
one, so that only the one that kills workers is counted: see
:mod:`arroyo.runtime.journal`) or tracing is on (its spans are per message); other
operators get each message in turn. Above 1, each message is processed in a task of its
own and an emitter keeps the order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from arroyo.runtime import tracing
from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.journal import DeliveryJournal
from arroyo.runtime.listener import Received
from arroyo.runtime.process import Outcome, Processor
from arroyo.runtime.settle import Settler

T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, T]], "asyncio.Task[T]"]


class Pipeline:
    """Processes what the intake holds and hands it to the settler, in input order.

    ``spawn`` makes a task of the Block (one that fails makes the Block fail);
    ``batched``: the operator implements ``process_batch``.
    """

    def __init__(
        self,
        intake: BoundedIntake,
        processor: Processor,
        settler: Settler,
        journal: DeliveryJournal | None,
        batched: bool,
        concurrency: int,
        batch_size: int,
        spawn: Spawn[Any],
    ) -> None:
        self.intake = intake
        self.processor = processor
        self.settler = settler
        self.journal = journal
        self.batched = batched
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.spawn = spawn

    async def run(self) -> None:
        """Until the intake is closed and empty; then wait for the settler to settle
        everything (it runs as a task of the Block meanwhile)."""
        settler = self.spawn(self.settler.run())
        if self.concurrency == 1:
            await self._in_batches()
        else:
            await self._concurrently()
        self.settler.finish()
        await settler

    async def _in_batches(self) -> None:
        journal, processor, settler = self.journal, self.processor, self.settler
        publish = settler.publish
        whole = self.batched and not tracing.on
        while batch := await self.intake.get_batch(self.batch_size):
            if whole and not (journal is not None and journal.suspects(batch)):
                if journal is None:
                    outcomes = await processor.process_batch(batch)
                else:  # all recorded while the batch is processed
                    slots = journal.start_many(batch)
                    outcomes = await processor.process_batch(batch)
                    journal.finish_many(slots)
                settler.publish_many(batch, outcomes)
                continue
            for each in batch:  # one by one, each published as soon as it is done
                if journal is None:
                    publish(each, await processor.process(each))
                else:  # as _journaled does, without a coroutine more per message
                    slot = journal.start(each)
                    result = await processor.process(each)
                    journal.finish(slot)
                    publish(each, result)

    async def _concurrently(self) -> None:
        journal = self.journal
        process = self.processor.process if journal is None else self._journaled
        order: asyncio.Queue[tuple[Received, asyncio.Task[Outcome]] | None] = asyncio.Queue()
        emitter = self.spawn(self._emit(order))
        started = deque[asyncio.Task[Any]]()
        try:
            while (received := await self.intake.get()) is not None:
                # A message that was being processed when a worker died is processed
                # alone: if it kills this worker too, it alone is counted.
                alone = journal is not None and journal.suspect(received)
                if alone and started:
                    await asyncio.wait(started)
                task = self.spawn(process(received))
                order.put_nowait((received, task))
                if journal is not None:
                    while started and started[0].done():
                        started.popleft()
                    started.append(task)
                if alone:
                    await asyncio.wait((task,))
        finally:
            order.put_nowait(None)
        await emitter

    async def _journaled(self, received: Received) -> Outcome:
        """Process ``received``, recorded in the listener's delivery journal while it runs
        (which also sets ``received.deliveries``). Cancelled (abandoned at the end of the
        grace period), it stays recorded: the journal counts it when it is closed."""
        assert self.journal is not None
        slot = self.journal.start(received)
        result = await self.processor.process(received)
        self.journal.finish(slot)
        return result

    async def _emit(
        self, order: asyncio.Queue[tuple[Received, asyncio.Task[Outcome]] | None]
    ) -> None:
        """Take results in input order and start their publication, without waiting for
        the confirmations of earlier ones."""
        while (entry := await order.get()) is not None:
            received, task = entry
            self.settler.publish(received, await task)
