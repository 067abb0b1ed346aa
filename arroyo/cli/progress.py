"""A one-line status of running blocks, redrawn about once a second on a terminal.

``arroyo run`` and ``arroyo bridge`` show it when their stdout is a terminal (and the
process is not one of several workers, whose lines would overwrite each other); on
anything else (a pipe, a file, a service's journal) there is none: logs only. While it
is shown, a log line written to the same terminal first erases it, so the two never
end up on one line; the next redraw puts it back below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import IO, Any, Protocol

from arroyo.runtime.logs import WORKER_ENV
from arroyo.runtime.metrics import BlockStats

_ERASE = "\r\x1b[K"
"""Back to the start of the line and erase it."""


class _Intake(Protocol):
    @property
    def depth(self) -> int: ...
    @property
    def size(self) -> int: ...


class _Block(Protocol):
    @property
    def stats(self) -> BlockStats: ...
    @property
    def intake(self) -> _Intake: ...


def wanted(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (stdout) is a terminal and this process runs alone (not as a
    worker of ``arroyo run --workers``)."""
    stream = stream or sys.stdout
    return stream.isatty() and WORKER_ENV not in os.environ


class Meter:
    """Counts, rates and queue depth of blocks, as one line."""

    def __init__(self, blocks: Sequence[_Block]) -> None:
        self.blocks = blocks
        self._started = self._at = time.monotonic()
        self._received = self._bytes = 0

    def line(self, average: bool = False) -> str:
        """``received 120 (25.2 MB)  published 118  acked 118  dead-lettered 1  dropped 0
        |  40 msg/s  8.4 MB/s  |  queue 2/1000``: counts and queue depth summed over the
        blocks; rates since the previous call (with ``average``: since the start)."""
        stats = [b.stats for b in self.blocks]
        received = sum(s.received for s in stats)
        received_bytes = sum(s.received_bytes for s in stats)
        now = time.monotonic()
        if average:
            self._at, self._received, self._bytes = self._started, 0, 0
        seconds = now - self._at
        rate = (received - self._received) / seconds if seconds > 0 else 0.0
        mbps = (received_bytes - self._bytes) / seconds / 1e6 if seconds > 0 else 0.0
        self._at, self._received, self._bytes = now, received, received_bytes
        depth = sum(b.intake.depth for b in self.blocks)
        size = sum(b.intake.size for b in self.blocks)
        return (
            f"received {received} ({received_bytes / 1e6:.1f} MB)  "
            f"published {sum(s.published for s in stats)}  "
            f"acked {sum(s.acknowledged for s in stats)}  "
            f"dead-lettered {sum(s.dead_lettered for s in stats)}  "
            f"dropped {sum(s.dropped for s in stats)}  |  "
            f"{rate:.0f} msg/s  {mbps:.1f} MB/s  |  queue {depth}/{size}"
        )


class _ErasingStream:
    """A log handler's stream that erases the status line before each write."""

    def __init__(self, stream: Any, display: _Display) -> None:
        self._stream = stream
        self._display = display

    def write(self, text: str) -> int:
        self._display.erase()
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Display:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.visible = False

    def draw(self, line: str) -> None:
        self.stream.write(_ERASE + line)
        self.stream.flush()
        self.visible = True

    def erase(self) -> None:
        if self.visible:
            self.visible = False
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(_ERASE)
                self.stream.flush()


@contextlib.asynccontextmanager
async def shown(
    blocks: Sequence[_Block], stream: IO[str] | None = None, interval: float = 1.0
) -> AsyncIterator[None]:
    """Show the status of ``blocks`` on ``stream`` (stdout) every ``interval`` seconds
    while the body runs; at the end, the last status stays on its own line."""
    display = _Display(stream or sys.stdout)
    meter = Meter(blocks)
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream.isatty()
    ]
    originals = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = _ErasingStream(handler.stream, display)

    async def redraw() -> None:
        while True:
            await asyncio.sleep(interval)
            display.draw(meter.line())

    task = asyncio.create_task(redraw())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for handler, original in zip(handlers, originals, strict=True):
            handler.stream = original
        with contextlib.suppress(OSError, ValueError):
            display.draw(meter.line(average=True))
            display.stream.write("\n")
            display.stream.flush()
