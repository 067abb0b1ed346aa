"""``arroyo demo --view``: the demo's run, live in the browser.

Two things feed one viewer: a block of its own reads the detector's frames from the
demo's in-process topic (in a consumer group of its own, ``view``, so the demo's block
still gets every frame), and the demo's block shows its results (each frame's total,
maximum and centre of mass) beside them. The run's Start and Stop come through both and
are shown once (same message id). The detector is slowed to a rate a person can follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import webbrowser

from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block
from arroyo.view.publisher import ViewPublisher
from arroyo.view.server import ViewServer, acquire, release

RATE = 25.0
"""Frames per second the detector sends while the demo is viewed."""


class DemoView:
    """The viewer of the demo's topic ``name`` on ``host:port`` (0: a free port):
    :meth:`start` serves and runs the block that shows the frames; :attr:`publisher`
    then goes to the demo's block; :attr:`interval` paces the detector.

    Ctrl-C (or SIGTERM) while the run goes on makes the detector send the rest at full
    speed, and the demo ends with its summary; once the run is over, the page stays up
    until Ctrl-C (or until the ``until`` event given to :meth:`start` is set).
    """

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.name, self.host, self.port = name, host, port
        self.server: ViewServer | None = None
        self.block: Block | None = None
        self.interval = 1 / RATE
        """Seconds between the detector's frames (0 once Ctrl-C came)."""
        self._until = asyncio.Event()
        self._signals = False
        self._running: asyncio.Task[object] | None = None

    @property
    def url(self) -> str:
        """The page (once started), with the total counts of each frame plotted."""
        return self.server.url + "?plot=total" if self.server is not None else ""

    @property
    def publisher(self) -> ViewPublisher:
        """A publisher to this viewer (once started), for the demo's block."""
        assert self.server is not None, "start() first"
        return ViewPublisher(self.host, self.server.port)

    async def start(self, until: asyncio.Event | None = None) -> None:
        """Serve, and show the frames from now on."""
        listener = MemoryListener(self.name, group="view")  # its group starts here
        self.server = await asyncio.to_thread(acquire, self.host, self.port)
        self.block = Block(listener, None, [self.publisher], name="view")
        self._running = asyncio.create_task(self.block.run())
        if until is not None:
            self._until = until
        else:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._interrupted)
            self._signals = True

    def _interrupted(self) -> None:
        self.interval = 0.0
        self._until.set()

    async def stop(self) -> None:
        """Keep the page up until Ctrl-C (or ``until``), then stop showing and serving."""
        if not self._until.is_set() and self._signals:
            print(f"\nthe run stays on {self.url} until Ctrl-C", file=sys.stderr, flush=True)
        await self._until.wait()
        if self._signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if self.block is not None:
            self.block.stop()
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        if self.server is not None:
            await asyncio.to_thread(release, self.server)
            self.server = None


def open_page(url: str) -> None:
    """Open ``url`` in this machine's web browser, when it has a desktop (never a text
    browser in the terminal the demo prints to)."""
    if (
        sys.platform in ("darwin", "win32")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    ):
        webbrowser.open(url)
