"""PUSH/PULL backpressure: when the Block cannot keep up, the remote PUSH blocks; nothing
is dropped, nothing piles up in the bridge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import zmq

from arroyo.brokers import open_listener
from arroyo.brokers.zmq import ZmqListener
from arroyo.message import Message
from arroyo.runtime import Block, Publisher
from arroyo.runtime.listener import Raw

FRAME = 1 << 20  # 1 MiB: socket buffers hold only a few of them
TOTAL = 100


class Gate(Publisher):
    """Confirms nothing until opened."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.published: list[Message] = []

    async def publish(self, message: Message) -> None:
        await self.open.wait()
        self.published.append(message)


class Numbered:
    """Reads the frame number a test sender wrote into each frame's first 4 bytes."""

    def parse(self, data: Raw) -> Message:
        from arroyo import Event

        assert isinstance(data, memoryview)
        return Event(metadata={"n": int.from_bytes(data[:4], "little")})


def sender(endpoint: str, blocked: threading.Event, sent: list[int]) -> None:
    """Push TOTAL frames; a send that waits 300 ms for room means the bridge pushed back."""
    with zmq.Context() as context, context.socket(zmq.PUSH) as push:
        push.setsockopt(zmq.SNDHWM, 2)
        push.setsockopt(zmq.SNDTIMEO, 300)
        push.setsockopt(zmq.LINGER, 10_000)
        push.connect(endpoint)
        frame = bytearray(FRAME)
        n = 0
        while n < TOTAL:
            frame[:4] = n.to_bytes(4, "little")
            try:
                push.send(bytes(frame))
            except zmq.Again:
                blocked.set()
                continue
            sent.append(n)
            n += 1


async def test_a_full_block_makes_the_remote_push_block(until: Callable[..., Any]) -> None:
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true&rcvhwm=2", parser=Numbered())
    gate = Gate()
    block = Block(listener, None, [gate], name="zmq-backpressure", queue_size=4)
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    await asyncio.wait_for(listener.ready.wait(), 10)
    assert listener.endpoint is not None
    blocked, sent = threading.Event(), []
    thread = threading.Thread(target=sender, args=(listener.endpoint, blocked, sent))
    thread.start()
    try:
        await until(blocked.is_set, within=30, what="the sender blocked")
        # The sender is stuck far from the end, and the bridge holds only its queue.
        assert len(sent) < TOTAL // 2
        assert block.intake.held <= 4
        gate.open.set()
        await until(lambda: len(gate.published) == TOTAL, within=60, what="every frame")
    finally:
        gate.open.set()
        await asyncio.to_thread(thread.join, 30)
        block.stop()
        await asyncio.wait_for(task, 10)
    assert [m.metadata["n"] for m in gate.published] == list(range(TOTAL))  # type: ignore[union-attr]
    assert block.intake.peak <= 4
