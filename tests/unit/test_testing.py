"""arroyo.testing: the test doubles keep their promises (without any broker)."""

from __future__ import annotations

import asyncio
import doctest
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import arroyo.testing
from arroyo import Event, Start, Stop
from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block, DeadLetter, Received
from arroyo.testing import (
    Collect,
    Recorder,
    Workers,
    _client_port_range,
    free_port,
    listening,
    make_run,
    publish_all,
)


def test_the_module_example_runs() -> None:
    failed, attempted = doctest.testmod(arroyo.testing)
    assert attempted > 0
    assert failed == 0


def test_make_run_is_a_whole_run_in_order() -> None:
    start, *events, stop = make_run(3, stream="scan-1")
    assert isinstance(start, Start) and start.data == {"n": 3}
    assert isinstance(stop, Stop)
    assert all(isinstance(e, Event) for e in events)
    assert [(e.metadata, e.payload) for e in events] == [  # type: ignore[union-attr]
        ({"i": i}, b"f%d" % i) for i in range(3)
    ]
    assert {m.stream for m in [start, *events, stop]} == {"scan-1"}
    assert [m.seq for m in [start, *events, stop]] == [0, 1, 2, 3, 4]


async def test_recorder_keeps_messages_in_order_and_dead_letters_apart() -> None:
    recorder = Recorder()
    messages = make_run(50)
    await asyncio.gather(*[recorder.send(message) for message in messages])
    letter = DeadLetter(b"raw", "bad", "DecodeError", {"url": "x"}, 1, "b")
    await recorder.publish_dead_letter(letter)
    await recorder.publish(messages[0])
    assert recorder.published == [*messages, messages[0]]
    assert recorder.dead_letters == [letter]


async def test_collect_takes_everything_and_is_never_full() -> None:
    collect = Collect()
    first, second = Received(b"1", {}), Received(b"2", {})
    await collect.put(first)
    assert collect.offer(second) is True
    assert collect.full() is False
    assert collect.items == [first, second]


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> Iterator[str]:
    """A memory topic of this test's own, deleted afterwards."""
    name = unique_name("topic")
    yield name
    memory.delete(name)


async def test_listening_runs_the_listener_and_stops_and_closes_it(
    topic: str, until: Callable[..., Any]
) -> None:
    await publish_all(f"memory://{topic}", make_run(2))
    listener = MemoryListener(topic)  # would wait for more input forever
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 4)
        for received in seen.items:
            await listener.ack(received)
    assert memory.topic(topic).acked() == {0, 1, 2, 3}


async def test_publish_all_publishes_in_order(topic: str) -> None:
    messages = make_run(20)
    await publish_all(f"memory://{topic}", messages)
    assert memory.topic(topic).messages() == messages


async def test_a_block_into_a_recorder(topic: str) -> None:
    messages = make_run(5)
    await publish_all(f"memory://{topic}", messages)
    memory.topic(topic).append(b"not arroyo data")
    out = Recorder()
    await Block(MemoryListener(topic, stop_at_end=True), publishers=[out], dead_letter=out).run()
    assert out.published == messages
    [letter] = out.dead_letters
    assert letter.data == b"not arroyo data"


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_is_never_a_client_port_and_never_repeats() -> None:
    """A server restarted on its port must find it free: the kernel never gives a port
    outside the client range to an outgoing connection."""
    clients = _client_port_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert not any(port in clients for port in ports)
    # A client socket's port (what a connection to a broker gets) is in that range.
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        client.connect(server.getsockname())
        assert client.getsockname()[1] in clients


def test_workers_log_stop_and_kill(workers: Workers, tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    # A memory listener waits forever for input: the workers just stay up.
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n")
    stopped, killed, left = (workers.start(config) for _ in range(3))
    assert workers.processes == [stopped, killed, left]
    started = lambda: all("started: memory://nothing" in workers.log(p) for p in workers.processes)  # noqa: E731
    _wait_for(started, within=30)
    assert workers.stop(stopped) == 0, workers.log(stopped)
    workers.kill(killed)
    assert killed.returncode == -9
    assert left.poll() is None
    workers.kill_all()
    assert left.returncode == -9
    assert workers.stop_all() == [0, -9, -9]  # all exited already: their codes


def _wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not true within {within} s"
        time.sleep(0.05)
