"""ZeroMQ listeners over real sockets (tcp on 127.0.0.1): PUSH/PULL, zero-copy frames,
SUB topics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from arroyo import Event, Start, Stop
from arroyo.brokers import open_listener
from arroyo.brokers.zmq import ZmqListener
from arroyo.message import Message
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.runtime.listener import Raw
from arroyo.simulate import frame, simulate
from arroyo.testing import Recorder

Until = Callable[..., Any]
Running = Callable[..., Any]  # see conftest.py
Finish = Callable[..., Any]


class Capture:
    """A parser that keeps what the listener handed over and makes an empty Event."""

    def __init__(self) -> None:
        self.received: list[Raw] = []

    def parse(self, data: Raw) -> Message:
        self.received.append(data)
        return Event()


async def test_simulated_run_over_push_pull_arrives_whole(
    until: Until, running: Running, finish: Finish
) -> None:
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=make_parser("json-frame"))
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-push-pull")
    task = await running(block)
    assert isinstance(listener, ZmqListener) and listener.endpoint is not None
    report = await simulate(
        listener.endpoint.replace("tcp://", "zmq+push://"),
        frames=20,
        shape=(64, 32),
        dtype=">u2",
        stream="push-pull",
    )
    await until(lambda: len(out.published) == 22, what="Start, 20 frames, Stop")
    await finish(block, task)
    start, *events, stop = out.published
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert start.data["frames"] == 20
    assert [m.stream for m in out.published] == report.streams * 22
    assert [m.seq for m in out.published] == list(range(22))
    for index, event in enumerate(events):
        assert isinstance(event, Event) and event.metadata["frame"] == index
        array = event.to_array()
        assert array.dtype == np.dtype(">u2")
        assert np.array_equal(array, frame(index, (64, 32), ">u2"))


async def test_large_frames_are_handed_over_without_a_copy(
    context: zmq.asyncio.Context, until: Until, running: Running, finish: Finish
) -> None:
    capture = Capture()
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=capture)
    block = Block(listener, None, [], name="zmq-zero-copy")
    task = await running(block)
    assert isinstance(listener, ZmqListener) and listener.endpoint is not None
    push = context.socket(zmq.PUSH)
    push.connect(listener.endpoint)
    big = np.arange(1 << 20, dtype="<u4").tobytes()  # 4 MiB
    await push.send_multipart([b'{"dtype": "<u4"}', big])
    await push.send(b"single part")
    await until(lambda: len(capture.received) == 2)
    await finish(block, task)
    push.close(linger=0)
    multipart, single = capture.received
    assert isinstance(multipart, list)
    header, payload = multipart
    assert header == b'{"dtype": "<u4"}' and isinstance(header, bytes)
    assert isinstance(payload, memoryview) and payload.readonly
    assert payload == big
    assert single == b"single part" and isinstance(single, bytes)


async def test_sub_takes_only_its_topics(
    context: zmq.asyncio.Context, until: Until, running: Running, finish: Finish
) -> None:
    xpub = context.socket(zmq.XPUB)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    capture = Capture()
    listener = open_listener(
        f"zmq+sub://127.0.0.1:{port}", {"topic": ["keep", "also"]}, parser=capture
    )
    block = Block(listener, None, [], name="zmq-sub-topics")
    task = await running(block)
    subscriptions = {await asyncio.wait_for(xpub.recv(), 10) for _ in range(2)}
    assert subscriptions == {b"\x01keep", b"\x01also"}
    for part in (b"keep-1", b"drop-2", b"also-3", b"nothing", b"keep-5"):
        await xpub.send_multipart([part, b"body"])
    await until(lambda: len(capture.received) == 3)
    await finish(block, task)
    xpub.close(linger=0)
    assert capture.received == [[b"keep-1", b"body"], [b"also-3", b"body"], [b"keep-5", b"body"]]
