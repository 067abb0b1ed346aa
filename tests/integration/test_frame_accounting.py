"""Frame accounting counts what the simulated detector lost on purpose.

``arroyo simulate`` drops, duplicates and swaps frames with a seed, over ZeroMQ
PUSH/PULL (lossless: every fault is the simulator's). An Arroyo Block reads them (ZMQ
listener and the format's parser) and counts each run's frames, so each Stop that
reaches the publisher carries the run's summary, which must equal what the simulator
reports injecting, for every format whose frames are numbered (instrument formats by
default; Arroyo's own messages when asked with ``frame_accounting=True``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import Stop
from arroyo.brokers import open_listener
from arroyo.brokers.zmq import ZmqListener
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.runtime.frames import FrameAccounting
from arroyo.simulate import Faults, simulate
from arroyo.testing import Recorder

pytest.importorskip("zmq")


FORMATS = ["json-frame", "msgpack-array", "arroyo", "stream2"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_counts_equal_the_faults_injected(fmt: str, until: Callable[..., Any]) -> None:
    parser = make_parser(fmt)
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=parser)
    out = Recorder()
    asked = True if fmt == "arroyo" else None  # instrument formats count by default
    block = Block(listener, None, [out], name=f"faults-{fmt}", frame_accounting=asked)
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        assert listener.endpoint is not None
        report = await simulate(
            f"zmq+push://{listener.endpoint.removeprefix('tcp://')}",
            frames=300,
            shape=(16, 24),
            format=fmt,
            runs=2,
            compression="bslz4" if fmt == "stream2" else None,
            faults=Faults(drop_rate=0.05, duplicate_rate=0.03, reorder_rate=0.04, seed=11),
        )
        stops = lambda: [m for m in out.published if isinstance(m, Stop)]  # noqa: E731
        await until(lambda: len(stops()) == 2, within=60, what="both runs' Stops")
    finally:
        block.stop()
        await asyncio.wait_for(task, 30)
    assert report.count("dropped") > 0 and report.count("duplicated") > 0
    assert report.count("reordered") > 0
    for stop in stops():
        injected = report.faults[stop.stream]
        assert stop.data["frames_expected"] == 300
        assert stop.data["frames_missing"] == len(injected.dropped)
        assert stop.data["frames_received"] == 300 - len(injected.dropped)
        assert stop.data["frames_duplicated"] == len(injected.duplicated)
        assert stop.data["frames_out_of_order"] == len(injected.reordered)
        # frame numbers: seq counts from 1 (the Start is 0); stream v2 image ids from 0
        offset = 0 if fmt == "stream2" else 1
        listed = [n for a, b in stop.data["frames_missing_ranges"] for n in range(a, b + 1)]
        assert listed == [i + offset for i in injected.dropped][: len(listed)]


async def test_a_lossless_run_has_nothing_missing(until: Callable[..., Any]) -> None:
    parser = make_parser("stream2", decompress=False)
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=parser)
    out = Recorder()
    block = Block(listener, None, [out], name="lossless")
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        assert listener.endpoint is not None
        await simulate(
            f"zmq+push://{listener.endpoint.removeprefix('tcp://')}",
            frames=50,
            shape=(8, 8),
            format="stream2",
            compression="lz4",
        )
        await until(lambda: out.published and isinstance(out.published[-1], Stop), within=30)
    finally:
        block.stop()
        await asyncio.wait_for(task, 30)
    stop = out.published[-1]
    assert isinstance(stop, Stop)
    assert (stop.data["frames_expected"], stop.data["frames_missing"]) == (50, 0)
    assert stop.data["frames_missing_ranges"] == []


def test_the_simulate_command_reports_the_faults_it_injected() -> None:
    """``arroyo simulate --format stream2 --drop-rate R --seed S``, read by a PULL socket."""
    import subprocess
    import sys

    import zmq

    from arroyo.testing import free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "arroyo",
        "simulate",
        f"zmq+push://127.0.0.1:{port}?bind=true",
        "--format",
        "stream2",
        "--compression",
        "lz4",
        "--frames",
        "200",
        "--shape",
        "8x8",
        "--drop-rate",
        "0.1",
        "--duplicate-rate",
        "0.05",
        "--seed",
        "5",
    ]
    sender = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    pull.setsockopt(zmq.RCVTIMEO, 30_000)
    parser = make_parser("stream2")
    accounting = FrameAccounting.for_parser(parser, "cli")
    assert accounting is not None
    try:
        stop = None
        while stop is None:
            for message in parser.parse(pull.recv()):
                observed = accounting.observe(message)
                stop = observed if isinstance(observed, Stop) else None
        output, _ = sender.communicate(timeout=30)
    finally:
        sender.kill()
        pull.close(linger=0)
        context.term()
    assert sender.returncode == 0
    line = output.splitlines()[-1]
    missing, duplicated = stop.data["frames_missing"], stop.data["frames_duplicated"]
    assert (
        line
        == f"faults on purpose: {missing} frames dropped, {duplicated} duplicated, 0 pairs swapped"
    )
    assert missing > 0 and duplicated > 0
