"""The runtime's task helpers: cancelling a task without swallowing the caller's cancel."""

from __future__ import annotations

import asyncio

import pytest

from arroyo.runtime.tasks import cancel_and_wait


async def test_cancel_and_wait_ends_the_task_and_returns() -> None:
    task = asyncio.ensure_future(asyncio.Event().wait())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_cancel_and_wait_raises_what_the_task_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.ensure_future(fails())
    await asyncio.wait((task,))
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancel_is_raised_not_taken_for_the_tasks() -> None:
    """The task takes a while to end after its cancel (it cleans up); the caller that
    waits for it is cancelled meanwhile: the caller must stop, not go on."""
    cleaning, release = asyncio.Event(), asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()

    went_on = False

    async def caller(task: asyncio.Future[None]) -> None:
        nonlocal went_on
        await cancel_and_wait(task)
        went_on = True

    task = asyncio.ensure_future(slow_to_end())
    await asyncio.sleep(0)
    outer = asyncio.ensure_future(caller(task))
    await cleaning.wait()
    outer.cancel()  # lands in the caller's await of the task ...
    await asyncio.sleep(0)
    release.set()  # ... which then ends, cancelled
    await asyncio.wait((outer,))
    assert outer.cancelled()
    assert not went_on
