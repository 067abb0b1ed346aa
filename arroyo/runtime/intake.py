"""The Block's bounded queue (admission control for everything received and not yet
done), and the intake as the listener sees it (counting what comes in)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from arroyo.runtime.listener import Received

if TYPE_CHECKING:
    from arroyo.runtime.block import Block


class BoundedIntake:
    """Holds what a listener handed over until the Block has finished with it.

    A message counts against the bounds from :meth:`put` until :meth:`done` (acked or
    abandoned), whether it waits in the queue or is being processed or published. So
    memory stays bounded by ``size`` messages and ``max_bytes`` bytes whatever the input
    rate (a single message larger than ``max_bytes`` is still admitted, alone).
    """

    def __init__(self, size: int, max_bytes: int) -> None:
        if size < 1:
            raise ValueError(f"queue size must be at least 1, got {size}")
        self.size = size
        self.max_bytes = max_bytes
        self._queue: deque[Received] = deque()
        self._count = 0
        self._bytes = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self.peak = 0
        """The largest number of messages ever held at once (for tests and metrics)."""

    @property
    def depth(self) -> int:
        """Messages waiting to be processed."""
        return len(self._queue)

    @property
    def held(self) -> int:
        """Messages received and not yet done (waiting, processing or publishing)."""
        return self._count

    @property
    def held_bytes(self) -> int:
        """Bytes of the messages received and not yet done."""
        return self._bytes

    def full(self) -> bool:
        """True when a put() would wait."""
        return self._count >= self.size or (self._count > 0 and self._bytes >= self.max_bytes)

    def _fits(self, received: Received) -> bool:
        if self._count == 0:
            return True
        return self._count < self.size and self._bytes + received.size <= self.max_bytes

    def _admit(self, received: Received) -> None:
        self._queue.append(received)
        self._count += 1
        self._bytes += received.size
        self.peak = max(self.peak, self._count)
        _wake(self._getters)

    def offer(self, received: Received) -> bool:
        """Queue ``received`` if it fits now. After close() it is refused (returns False)."""
        return self.offer_many((received,)) == 1

    def offer_many(self, items: Sequence[Received]) -> int:
        """Queue the first of ``items``, in order, as many as fit now; return how many
        (0 after close()). The same as :meth:`offer` for each until one is refused."""
        if self._closed or self._putters:
            return 0
        queue, limit, max_bytes = self._queue, self.size, self.max_bytes
        count, held = self._count, self._bytes
        taken = 0
        for received in items:
            if count and (count >= limit or held + received.size > max_bytes):  # as _fits
                break
            queue.append(received)
            count += 1
            held += received.size
            taken += 1
        if taken:
            self._count, self._bytes = count, held
            self.peak = max(self.peak, count)
            _wake(self._getters)
        return taken

    async def put(self, received: Received) -> bool:
        """Queue ``received``, waiting for room; True when queued. After close() it returns
        False at once: the message is then never acknowledged, and the source redelivers it."""
        while not self._closed and (self._putters or not self._fits(received)):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._putters:
                    self._putters.remove(waiter)
            if self._fits(received):
                break
        admitted = not self._closed
        if admitted:
            self._admit(received)
        _wake(self._putters)
        return admitted

    async def get(self) -> Received | None:
        """The next message to process; None once closed and empty."""
        if not self._queue:
            await self._wait()
        return self._queue.popleft() if self._queue else None

    async def get_batch(self, limit: int) -> list[Received]:
        """The messages waiting now, in order, at most ``limit`` (at least one: it waits
        for one when none waits); an empty list once closed and empty. They stay counted
        against the bounds until :meth:`done`, like those of :meth:`get`."""
        queue = self._queue
        if not queue:
            await self._wait()
        if len(queue) <= limit:
            batch = list(queue)
            queue.clear()
            return batch
        return [queue.popleft() for _ in range(limit)]

    async def _wait(self) -> None:
        """Return once a message waits, or the intake is closed."""
        while not self._queue and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)

    def hand_back(self, which: Callable[[Received], bool]) -> list[Received]:
        """Take the waiting messages for which ``which`` is true out of the queue, in
        order, and free their room; return them (see :meth:`Intake.hand_back`)."""
        queue = self._queue
        back = [received for received in queue if which(received)]
        if back:
            self._queue = deque(received for received in queue if not which(received))
            self.done_many(back)
        return back

    def done(self, received: Received) -> None:
        """``received`` is finished: free its room."""
        self.done_many((received,))

    def done_many(self, batch: Sequence[Received]) -> None:
        """Each of ``batch`` is finished: free their room."""
        self._count -= len(batch)
        self._bytes -= sum([received.size for received in batch])
        for _ in range(min(len(batch), len(self._putters))):
            _wake(self._putters)

    def close(self) -> None:
        """Take no more messages; get() drains what is queued, then returns None."""
        self._closed = True
        for waiters in (self._getters, self._putters):
            while waiters:
                _wake(waiters)


class CountingIntake:
    """The intake as the listener sees it: counts what comes in, stops at max_messages
    (messages handed back do not count towards it: they come again)."""

    def __init__(self, block: Block) -> None:
        self._block = block
        self._intake = block.intake

    def _count(self, received: Received) -> None:
        block = self._block
        block.stats.received += 1
        block.stats.received_bytes += received.size
        block.stats.last_received = time.time()
        stats = block.stats
        if (
            block.max_messages is not None
            and stats.received - stats.handed_back >= block.max_messages
        ):
            self._limit_reached()

    def _limit_reached(self) -> None:
        """``max_messages`` were received: take no more, stop the listener."""
        self._intake.close()
        # A task of the Block's: the loop holds a task only weakly, so one nobody holds
        # could be collected while its stop() waits, and never end.
        self._block._task(self._block.listener.stop())

    async def put(self, received: Received) -> None:
        if self._intake.offer(received):
            self._count(received)
            return
        if await self._intake.put(received):
            self._count(received)

    def offer(self, received: Received) -> bool:
        if self._intake.offer(received):
            self._count(received)
            return True
        return False

    def offer_many(self, items: Sequence[Received]) -> int:
        block, intake = self._block, self._intake
        stats, limit = block.stats, block.max_messages
        if limit is not None:
            items = items[: max(0, limit - stats.received + stats.handed_back)]
        before = intake.held_bytes
        taken = intake.offer_many(items)
        if taken:
            stats.received += taken
            stats.received_bytes += intake.held_bytes - before
            stats.last_received = time.time()
            if limit is not None and stats.received - stats.handed_back >= limit:
                self._limit_reached()
        return taken

    def full(self) -> bool:
        return self._intake.full()

    def hand_back(self, which: Callable[[Received], bool]) -> list[Received]:
        back = self._intake.hand_back(which)
        self._block.stats.handed_back += len(back)
        return back

    async def acknowledged(self) -> None:
        await self._block._settler.acknowledged()


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake the first waiter that is still waiting."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
