"""Small helpers for the tasks the runtime starts, waits for with a bound, or leaves behind."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("arroyo.block")


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of a future nobody awaits as seen (as a done callback: no
    'Future exception was never retrieved' when it fails)."""
    if not future.cancelled():
        future.exception()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and return once it has ended, raising what it raised unless that
    is the CancelledError asked for here. The caller's own cancellation is raised: when
    the task that awaits this is cancelled meanwhile, it is not taken for the task's
    (what ``contextlib.suppress(asyncio.CancelledError)`` around the await would do)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if cancelling():
            raise


def cancelling() -> bool:
    """True when the current task is being cancelled (a cancel asked of it, not a
    CancelledError raised by what it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value), never negative; None
    for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


async def bounded(work: Awaitable[Any], seconds: float | None, what: str) -> bool:
    """Await ``work`` for at most ``seconds`` (None: no limit) and raise what it raised;
    when it takes longer, cancel it without waiting for it to end (it may ignore the
    cancellation), log ``what`` took too long, and return False."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait((task,), timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(retrieve)
        raise
    if done:
        task.result()
        return True
    task.cancel()
    task.add_done_callback(retrieve)
    log.warning("%s took longer than %.1f s: left as it is", what, seconds or 0.0)
    return False
