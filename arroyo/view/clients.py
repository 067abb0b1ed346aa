"""Each client's queue: bounded, keeps the newest frames, counts what it left out.

A client that reads slower than frames come must not slow anything else, nor make the
server hold more and more. Its :class:`ClientQueue` holds at most ``frames`` frames: when
a newer one comes, the oldest frame still queued is replaced by its event without the
image (the client still gets its metadata, for the counters and plots: only the picture
is dropped, and counted in ``dropped_frames``). It holds at most ``items`` messages in
all: beyond, the oldest event is dropped whole (``dropped_events``). A run's Start and
Stop are dropped only when the queue holds nothing else (``dropped_events`` counts them
too). ``put`` never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque

from arroyo.view.wire import Outgoing


class ClientQueue:
    """A bounded, drop-oldest queue of :class:`Outgoing` for one client (one event loop).

    Dropping takes constant time (amortised): a dropped message leaves an empty slot
    that :meth:`get` skips, so positions of the frames queued stay valid.
    """

    def __init__(self, frames: int = 4, items: int = 2048) -> None:
        if frames < 1 or items < frames:
            raise ValueError(f"need 1 <= frames <= items, got frames={frames} items={items}")
        self.frames = frames
        self.items = items
        self.dropped_frames = 0
        """Frames not sent: their event went without its image (or not at all)."""
        self.dropped_events = 0
        """Messages not sent at all (the queue held ``items``)."""
        self._slots: deque[Outgoing | None] = deque()
        self._base = 0
        """The position of ``_slots[0]`` since the queue was made."""
        self._live = 0
        self._images: deque[int] = deque()
        """Positions of the slots holding a frame, oldest first."""
        self._cursor = 0
        """No event to drop before this position."""
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._live

    @property
    def images(self) -> int:
        """Frames queued now."""
        return len(self._images)

    def put(self, item: Outgoing) -> None:
        """Queue ``item`` behind the others, leaving out the oldest frame (or message)
        when the queue is full. Never waits."""
        slots = self._slots
        position = self._base + len(slots)
        slots.append(item)
        self._live += 1
        if item.image:
            self._images.append(position)
            if len(self._images) > self.frames:
                oldest = self._images.popleft() - self._base
                queued = slots[oldest]
                assert queued is not None
                slots[oldest] = queued.without_image()
                self.dropped_frames += 1
        while self._live > self.items:
            self._drop_oldest()
        self._ready.set()

    def _drop_oldest(self) -> None:
        """Drop the oldest event (the oldest message when only Starts and Stops are left)."""
        slots, base = self._slots, self._base
        position = max(self._cursor, base)
        end = base + len(slots)
        while position < end:
            queued = slots[position - base]
            if queued is not None and queued.kind == "event":
                slots[position - base] = None
                self._cursor = position + 1
                self._dropped(queued)
                return
            position += 1
        self._cursor = end
        while slots[0] is None:
            slots.popleft()
            self._base += 1
        queued = slots.popleft()
        self._base += 1
        assert queued is not None
        self._dropped(queued)

    def _dropped(self, item: Outgoing) -> None:
        self._live -= 1
        self.dropped_events += 1
        if item.image:
            self._images.popleft()  # the oldest event held the oldest frame
            self.dropped_frames += 1

    def peek(self) -> Outgoing | None:
        """The oldest item, left in the queue (None when it is empty)."""
        slots = self._slots
        while slots and slots[0] is None:
            slots.popleft()
            self._base += 1
        return slots[0] if slots else None

    def get_nowait(self) -> Outgoing | None:
        """The oldest item, or None when the queue is empty."""
        slots = self._slots
        while slots and slots[0] is None:
            slots.popleft()
            self._base += 1
        if not slots:
            self._ready.clear()
            return None
        item = slots.popleft()
        assert item is not None
        self._base += 1
        self._live -= 1
        if item.image:
            self._images.popleft()
        return item

    async def get(self, within: float | None = None) -> Outgoing | None:
        """The oldest item, waiting for one at most ``within`` seconds (None when none
        came by then; ``within=None``: as long as it takes)."""
        item = self.get_nowait()
        if item is not None or within == 0:
            return item
        try:
            async with asyncio.timeout(within):
                await self._ready.wait()
        except TimeoutError:
            return None
        return self.get_nowait()
