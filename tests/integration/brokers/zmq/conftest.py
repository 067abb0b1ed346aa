"""What the ZeroMQ integration tests share: a pyzmq context for hand-made peer sockets,
and a Block running in the background until its listener's socket is ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio

from arroyo.brokers.zmq import ZmqListener
from arroyo.runtime import Block

Running = Callable[[Block], Awaitable["asyncio.Task[Any]"]]
"""The type of the ``running`` fixture."""
Finish = Callable[[Block, "asyncio.Task[Any]"], Awaitable[None]]
"""The type of the ``finish`` fixture."""


@pytest.fixture
async def context() -> AsyncIterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


async def _running(block: Block) -> asyncio.Task[Any]:
    task = asyncio.create_task(block.run())
    listener = block.listener
    assert isinstance(listener, ZmqListener)
    ready = asyncio.create_task(listener.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what the block raised
    assert listener.ready.is_set()
    return task


async def _finish(block: Block, task: asyncio.Task[Any]) -> None:
    block.stop()
    await asyncio.wait_for(task, 10)


@pytest.fixture
def running() -> Running:
    """``task = await running(block)``: the block runs, its ZeroMQ listener is ready."""
    return _running


@pytest.fixture
def finish() -> Finish:
    """``await finish(block, task)``: stop the block and wait for it to end."""
    return _finish
