"""What a ZeroMQ listener can tell it lost, over real PUB/SUB sockets: gaps in seq and
runs whose Stop was dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio
from prometheus_client import REGISTRY

from arroyo import Run, encode
from arroyo.brokers import open_listener
from arroyo.runtime import Block
from arroyo.testing import Recorder

Until = Callable[..., Any]
Running = Callable[..., Any]  # see conftest.py
Finish = Callable[..., Any]


async def test_gaps_over_pub_sub_are_counted_and_logged(
    context: zmq.asyncio.Context,
    until: Until,
    caplog: pytest.LogCaptureFixture,
    running: Running,
    finish: Finish,
) -> None:
    xpub = context.socket(zmq.XPUB)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    listener = open_listener(f"zmq+sub://127.0.0.1:{port}")
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-gaps")
    task = await running(block)
    await asyncio.wait_for(xpub.recv(), 10)  # the subscription arrived: nothing is dropped
    run = Run("gappy")
    messages = [run.start(), *(run.event({"i": i}) for i in range(5)), run.stop()]
    with caplog.at_level(logging.WARNING, logger="arroyo.brokers.zmq"):
        for index, message in enumerate(messages):
            if index not in (2, 3):  # as if PUB had dropped events 1 and 2
                await xpub.send(encode(message))
        await until(lambda: len(out.published) == 5)
    await finish(block, task)
    xpub.close(linger=0)
    assert REGISTRY.get_sample_value("arroyo_zmq_gaps_total", {"block": "zmq-gaps"}) == 2
    assert "2 message(s) lost (stream 'gappy': seq 4 follows 1)" in caplog.text


async def test_a_run_whose_stop_was_dropped_is_counted_over_pub_sub(
    context: zmq.asyncio.Context,
    until: Until,
    caplog: pytest.LogCaptureFixture,
    running: Running,
    finish: Finish,
) -> None:
    xpub = context.socket(zmq.XPUB)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    listener = open_listener(f"zmq+sub://127.0.0.1:{port}?run_timeout=0.5")
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-lost-stop")
    task = await running(block)
    await asyncio.wait_for(xpub.recv(), 10)  # the subscription arrived
    run = Run("stopless")
    messages = [run.start(), *(run.event({"i": i}) for i in range(3))]  # the Stop is dropped
    with caplog.at_level(logging.WARNING, logger="arroyo.brokers.zmq"):
        for message in messages:
            await xpub.send(encode(message))
        await until(lambda: len(out.published) == 4)

        def counted() -> float:
            sample = {"block": "zmq-lost-stop"}
            return REGISTRY.get_sample_value("arroyo_zmq_runs_without_stop_total", sample) or 0

        await until(lambda: counted() == 1, what="the run without its Stop counted")
    await finish(block, task)
    xpub.close(linger=0)
    gaps = REGISTRY.get_sample_value("arroyo_zmq_gaps_total", {"block": "zmq-lost-stop"})
    assert not gaps  # a lost Stop leaves no gap in seq: only the new counter tells
    assert "run 'stopless' ended without its Stop (nothing of it for 0.5 s" in caplog.text
