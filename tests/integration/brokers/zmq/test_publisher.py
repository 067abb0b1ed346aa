"""ZeroMQ publishers over real sockets (tcp on 127.0.0.1): PUSH and PUB, Arroyo's framing
read back by Arroyo listeners, real ``arroyo run`` processes chained."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastavro import reader

from arroyo import Event, Run, Start, Stop
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.zmq import ZmqPublisher
from arroyo.codec_records import from_record
from arroyo.message import Message
from arroyo.runtime import Block
from arroyo.simulate import frame, simulate
from arroyo.testing import Recorder, Workers, free_port

Until = Callable[..., Any]
Running = Callable[..., Any]  # see conftest.py
Finish = Callable[..., Any]


async def test_arroyo_processes_chain_over_zmq_with_the_arroyo_parser(
    until: Until, running: Running, finish: Finish
) -> None:
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


async def test_pub_publisher_and_sub_listener(
    until: Until, running: Running, finish: Finish
) -> None:
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


async def test_a_push_publisher_waits_for_a_receiver(
    until: Until, running: Running, finish: Finish
) -> None:
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
