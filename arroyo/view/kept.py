"""What the viewer keeps for the pages that come later: each run as it was seen (its
Start, its Stop, its counters) and the last messages sent, within bounds."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from arroyo.view.wire import Outgoing


@dataclass
class RunSeen:
    """One run (a stream) as the viewer saw it."""

    start: Outgoing | None = None
    stop: Outgoing | None = None
    events: int = 0
    frames: int = 0
    next_seq: int | None = None
    seq_gaps: int = 0
    """Messages of the run whose ``seq`` never came (between those that did)."""

    def saw(self, seq: int) -> None:
        """A message of the run numbered ``seq`` came (a jump past the next expected one
        is a gap)."""
        if self.next_seq is not None and seq > self.next_seq:
            self.seq_gaps += seq - self.next_seq
        if self.next_seq is None or seq >= self.next_seq:
            self.next_seq = seq + 1

    def summary(self, stream: str) -> dict[str, Any]:
        """The run's counters, for the pages."""
        return {
            "stream": stream,
            "events": self.events,
            "frames": self.frames,
            "seq_gaps": self.seq_gaps,
            "stopped": self.stop is not None,
        }


class Recent:
    """The last ``count`` items sent (consecutive viewer ``seq``), with at most
    ``max_bytes`` of frames among them: beyond, the oldest frames are kept without their
    image."""

    def __init__(self, count: int, max_bytes: float) -> None:
        self.count = count
        self.max_bytes = max_bytes
        self._items: deque[Outgoing] = deque()
        self._images: deque[int] = deque()
        self.image_bytes = 0
        """Bytes of the frames kept."""

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self._items)

    @property
    def first(self) -> int | None:
        """The seq of the oldest item kept (None: none)."""
        return self._items[0].seq if self._items else None

    def add(self, out: Outgoing) -> None:
        """Keep ``out`` (the next seq), within the bounds."""
        items, images = self._items, self._images
        items.append(out)
        if out.image:
            images.append(out.seq)
            self.image_bytes += out.size
        if len(items) > self.count:
            gone = items.popleft()
            if gone.image:
                images.popleft()
                self.image_bytes -= gone.size
        while self.image_bytes > self.max_bytes and images:
            index = images.popleft() - items[0].seq
            self.image_bytes -= items[index].size
            items[index] = items[index].without_image()

    def since(self, seq: int) -> list[Outgoing]:
        """The items from ``seq`` on (all of them when ``seq`` is older than the first)."""
        first = self.first
        if first is None:
            return []
        return list(self._items)[max(0, seq - first) :]
