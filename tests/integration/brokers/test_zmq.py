"""ZeroMQ connectors over real sockets (tcp on 127.0.0.1): listeners, publishers, parsers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from fastavro import reader
from prometheus_client import REGISTRY

from arroyo import Event, Run, Start, Stop, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.zmq import ZmqListener, ZmqPublisher
from arroyo.codec import from_record
from arroyo.message import Message
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.runtime.listener import Raw
from arroyo.simulate import frame, simulate
from arroyo.testing import Recorder, Workers, free_port

Until = Callable[..., Any]


class Capture:
    """A parser that keeps what the listener handed over and makes an empty Event."""

    def __init__(self) -> None:
        self.received: list[Raw] = []

    def parse(self, data: Raw) -> Message:
        self.received.append(data)
        return Event()


@pytest.fixture
async def context() -> AsyncIterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


async def running(block: Block) -> asyncio.Task[Any]:
    task = asyncio.create_task(block.run())
    listener = block.listener
    assert isinstance(listener, ZmqListener)
    ready = asyncio.create_task(listener.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what the block raised
    assert listener.ready.is_set()
    return task


async def finish(block: Block, task: asyncio.Task[Any]) -> None:
    block.stop()
    await asyncio.wait_for(task, 10)


async def test_simulated_run_over_push_pull_arrives_whole(until: Until) -> None:
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
    context: zmq.asyncio.Context, until: Until
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


async def test_sub_takes_only_its_topics(context: zmq.asyncio.Context, until: Until) -> None:
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


async def test_arroyo_processes_chain_over_zmq_with_the_arroyo_parser(until: Until) -> None:
    publisher = open_publisher("zmq+push://127.0.0.1:0?bind=true")
    assert isinstance(publisher, ZmqPublisher)
    await publisher.start()
    assert publisher.endpoint is not None
    listener = open_listener(publisher.endpoint.replace("tcp://", "zmq+pull://"))
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-chain")
    task = await running(block)
    run = Run("chained")
    sent = [
        run.start({"sample": "Si"}),
        run.array_event(np.arange(1 << 19, dtype=">f8"), {"frame": 0}),  # 4 MiB
        run.event({"note": "no payload"}),
        run.stop({"status": "ok"}),
    ]
    for message in sent:
        await publisher.publish(message)
    await until(lambda: len(out.published) == len(sent))
    await finish(block, task)
    await publisher.close()
    assert out.published == sent
    assert np.array_equal(out.published[1].to_array(), sent[1].to_array())  # type: ignore[union-attr]


async def test_gaps_over_pub_sub_are_counted_and_logged(
    context: zmq.asyncio.Context, until: Until, caplog: pytest.LogCaptureFixture
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
    context: zmq.asyncio.Context, until: Until, caplog: pytest.LogCaptureFixture
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


async def test_pub_publisher_and_sub_listener(until: Until) -> None:
    publisher = open_publisher("zmq+pub://127.0.0.1:0?bind=true")
    await publisher.start()
    assert isinstance(publisher, ZmqPublisher) and publisher.endpoint is not None
    listener = open_listener(publisher.endpoint.replace("tcp://", "zmq+sub://"))
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-pub-sub")
    task = await running(block)
    # PUB drops until the subscription arrives: publish probes until one gets through.
    probe = Run("probe")
    await publisher.publish(probe.start())

    async def keep_probing() -> None:
        while not out.published:
            await publisher.publish(probe.event())
            await asyncio.sleep(0.005)  # pace the probes

    prober = asyncio.create_task(keep_probing())
    await until(lambda: bool(out.published), what="the subscription reached the publisher")
    await prober
    out.published.clear()
    run = Run("after-probe")
    sent = [run.start(), run.event({"x": 1}), run.stop()]
    for message in sent:
        await publisher.publish(message)
    await until(lambda: out.published[-3:] == sent)
    await finish(block, task)
    await publisher.close()


async def test_a_push_publisher_waits_for_a_receiver(until: Until) -> None:
    publisher = open_publisher("zmq+push://127.0.0.1:0?bind=true&sndhwm=1")
    await publisher.start()
    assert isinstance(publisher, ZmqPublisher) and publisher.endpoint is not None
    run = Run("waits")
    sends = [
        asyncio.ensure_future(publisher.send(m))
        for m in (run.start(), run.event(), run.event(), run.stop())
    ]
    await asyncio.sleep(0)  # one turn of the loop: whatever the socket would take, it took
    assert not any(send.done() for send in sends)  # no receiver yet: nothing handed over
    listener = open_listener(publisher.endpoint.replace("tcp://", "zmq+pull://"))
    out = Recorder()
    block = Block(listener, None, [out], name="zmq-waits")
    task = await running(block)
    await asyncio.wait_for(asyncio.gather(*sends), 10)
    await until(lambda: len(out.published) == 4)
    await finish(block, task)
    await publisher.close()
    assert [m.seq for m in out.published] == [0, 1, 2, 3]


OPS = '''
from arroyo import Event
from arroyo.runtime import Operator


class Invert(Operator):
    """Inverts each frame (a new array, so a real result) and notes it in the metadata."""

    async def process(self, message):
        if not isinstance(message, Event) or message.array is None:
            return message
        inverted = ~message.to_array()
        metadata = {**message.metadata, "inverted": True}
        return Event.from_array(inverted, metadata, stream=message.stream, seq=message.seq)
'''


async def test_two_arroyo_processes_chain_over_zmq(
    tmp_path: Path, workers: Workers, until: Until
) -> None:
    """Process A (json-frame in, operator, Arroyo framing out on PUSH) feeds process B
    (PULL with the arroyo parser) which archives to a file: real `arroyo run` processes."""
    first, second = free_port(), free_port()
    output = tmp_path / "out.avro"
    (tmp_path / "ops.py").write_text(OPS)
    (tmp_path / "a.yaml").write_text(
        "blocks:\n"
        "  - name: a\n"
        f"    listener: {{url: 'zmq+pull://127.0.0.1:{first}?bind=true', parser: json-frame}}\n"
        "    operator: ops:Invert\n"
        f"    publishers: ['zmq+push://127.0.0.1:{second}?bind=true']\n"
    )
    (tmp_path / "b.yaml").write_text(
        "blocks:\n"
        "  - name: b\n"
        f"    listener: zmq+pull://127.0.0.1:{second}\n"
        f"    publishers: ['file://{output}']\n"
    )
    processes = [workers.start(tmp_path / name) for name in ("a.yaml", "b.yaml")]
    try:
        report = await simulate(
            f"zmq+push://127.0.0.1:{first}", frames=25, shape=(128, 64), dtype=">u2", runs=2
        )

        def archived() -> list[Message]:
            try:
                with open(output, "rb") as file:
                    records = reader(
                        file, return_record_name=True, return_record_name_override=True
                    )
                    return [from_record(r, True) for r in records]
            except (OSError, ValueError, EOFError, StopIteration):
                return []  # not there yet, or a block being written

        await until(lambda: len(archived()) == 2 * 27, within=60, what="both runs archived")
    finally:
        codes = workers.stop_all(timeout=30)
    assert codes == [0, 0], [workers.log(p) for p in processes]
    messages = archived()
    for run, stream in enumerate(report.streams):
        start, *events, stop = [m for m in messages if m.stream == stream]
        assert isinstance(start, Start) and isinstance(stop, Stop)
        assert [e.seq for e in events] == list(range(1, 26))
        for index, event in enumerate(events):
            assert isinstance(event, Event) and event.metadata["inverted"] is True
            assert event.metadata["frame"] == index
            expected = ~frame(index, (128, 64), ">u2", run)  # numpy answers in native order
            array = event.to_array()
            assert array.dtype == expected.dtype
            assert np.array_equal(array, expected)
