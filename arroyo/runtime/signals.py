"""Running blocks in a process: SIGTERM/SIGINT, and a stop that cannot hang.

The first signal stops every Block gracefully (no more input, in-flight work finishes
within its ``grace_period``, acknowledgements, close). A second signal stops at once.
Whatever hangs, the process ends: after the first signal a watchdog thread exits the
process (``os._exit``, code 1) when it is still running ``grace_period`` +
:data:`~arroyo.runtime.block.CLOSE_TIMEOUT` + :data:`EXIT_MARGIN` seconds later, and a
second signal shortens that to :data:`SECOND_SIGNAL_EXIT` seconds. A thread blocking
the event loop, or the interpreter's exit, cannot keep the process alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from arroyo.errors import ArroyoError
from arroyo.runtime.logs import line_now

if TYPE_CHECKING:
    from arroyo.runtime.block import Block

log = logging.getLogger("arroyo.block")

EXIT_MARGIN = 5.0
"""Seconds beyond a Block's grace period and close budget before the watchdog ends the
process (the event loop and the interpreter shutting down)."""

SECOND_SIGNAL_EXIT = 3.0
"""After a second signal, the process ends within this many seconds whatever hangs."""

_early_signals: list[int] = []


def catch_early_signals() -> None:
    """Remember SIGTERM/SIGINT received before :func:`run_blocks` installs its handlers
    (while a worker imports and builds its config); run_blocks then stops at once."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, frame: _early_signals.append(received))


class _Watchdog:
    """A daemon thread that ends the process once a deadline has passed."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.why = ""
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, why: str) -> None:
        """End the process in ``seconds`` unless :meth:`disarm` comes first (an earlier
        deadline stays)."""
        deadline = time.monotonic() + seconds
        if self.deadline is None or deadline < self.deadline:
            self.deadline, self.why = deadline, why
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="arroyo-exit", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self.deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)  # a float read: safe whatever the main thread is doing
            deadline = self.deadline
            if deadline is not None and time.monotonic() >= deadline:
                line = line_now(logging.ERROR, "arroyo.block", f"{self.why}: exiting now (code 1)")
                os.write(2, line.encode())
                os._exit(1)


async def run_blocks(blocks: Sequence[Block], handle_signals: bool = True) -> int:
    """Run blocks until all end; return 0 when every block ended cleanly, 1 otherwise.

    With ``handle_signals`` (the process is Arroyo's: ``arroyo run``), SIGTERM/SIGINT
    stop the blocks gracefully and a second signal stops them at once, and the process
    is sure to end (see the module docstring): the watchdog stays armed after this
    returns when a Block left hung work behind, so the interpreter's exit cannot hang.
    """
    from arroyo.runtime.block import CLOSE_TIMEOUT

    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    tasks = [asyncio.create_task(block.run(), name=block.name) for block in blocks]
    watchdog = _Watchdog()
    count = 0
    grace = max((block.grace_period for block in blocks), default=0.0)

    def graceful(signum: int) -> None:
        log.info("received %s: stopping gracefully", signal.Signals(signum).name)
        for block in blocks:
            block.stop()

    def at_once(signum: int) -> None:
        log.warning("received %s again: stopping now", signal.Signals(signum).name)
        for block in blocks:
            block.abort()

    def on_signal(signum: int, frame: Any = None) -> None:
        # A plain signal handler (not loop.add_signal_handler): it runs even while
        # something blocks the event loop's thread, so the watchdog is armed regardless.
        nonlocal count
        count += 1
        name = signal.Signals(signum).name
        if count == 1:
            limit = grace + CLOSE_TIMEOUT + EXIT_MARGIN
            watchdog.arm(limit, f"still running {limit:.0f} s after {name}")
            loop.call_soon_threadsafe(graceful, signum)
        else:
            limit = SECOND_SIGNAL_EXIT
            watchdog.arm(limit, f"still running {limit:.0f} s after {name} again")
            loop.call_soon_threadsafe(at_once, signum)

    previous: dict[signal.Signals, Any] = {}
    if handle_signals:
        for signum in signals:
            previous[signum] = signal.signal(signum, on_signal)
        while _early_signals:
            on_signal(_early_signals.pop(0))
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if handle_signals:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if handle_signals and any(block.abandoned for block in blocks):
        # Abandoned threads or tasks may hold up the interpreter's exit: bound it too.
        watchdog.arm(EXIT_MARGIN, "hung work left behind")
    else:
        watchdog.disarm()
    failed = 0
    for block, result in zip(blocks, results, strict=True):
        if isinstance(result, BaseException):
            failed += 1
            if not isinstance(result, asyncio.CancelledError):
                trace = None if isinstance(result, ArroyoError) else result  # one line
                log.error("block %s failed: %s", block.name, result, exc_info=trace)
    return 1 if failed else 0
