"""ZeroMQ, reached with pyzmq: the test binds a PUSH socket for each source (the listener
connects to it) and a PULL socket for each destination (the publisher connects to it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from arroyo.testing import free_port
from tests.contract.adapters.base import Broker
from tests.contract.brokers import Declared


class ZeroMQ(Broker):
    typo = ("rcvhvm", "rcvhwm")
    letters_are_events = True

    def __init__(self, declared: Declared, unique_name: Callable[[str], str]) -> None:
        import zmq.asyncio

        super().__init__(declared, unique_name)
        self.context = zmq.asyncio.Context()
        self.ports: dict[str, int] = {}
        self.sources: set[str] = set()
        self.sockets: dict[str, Any] = {}
        self.written: dict[str, int] = {}

    async def source(self, tag: str = "source", partitions: int = 1) -> str:
        name = await super().source(tag, partitions)
        self.sources.add(name)
        return name

    async def _make(self, name: str, partitions: int) -> None:
        self.ports[name] = free_port()

    async def destination(self, tag: str = "sink") -> str:
        import zmq

        name = await super().destination(tag)
        pull = self.sockets[name] = self.context.socket(zmq.PULL)
        pull.bind(f"tcp://127.0.0.1:{self.ports[name]}")
        return name

    def listener_url(self, source: str, group: str) -> str:
        return f"zmq+pull://127.0.0.1:{self.ports[source]}"

    def publisher_url(self, name: str) -> str:
        bind = "?bind=true" if name in self.sources else ""  # the listener connects to it
        return f"zmq+push://127.0.0.1:{self.ports[name]}{bind}"

    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        import zmq

        push = self.sockets.get(source)
        if push is None:
            push = self.sockets[source] = self.context.socket(zmq.PUSH)
            push.bind(f"tcp://127.0.0.1:{self.ports[source]}")
        first = self.written.get(source, 0)
        for item in data:
            await push.send(item)  # waits for a listener to connect
        self.written[source] = first + len(data)
        return [str(first + i + 1) for i in range(len(data))]  # the listener counts from 1

    def where(self, headers: dict[str, str]) -> str:
        return headers["arroyo.source.message"]

    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        import zmq

        pull = self.sockets[destination]
        got: list[tuple[bytes, dict[str, str]]] = []
        wait = 200  # ms for the first one, then only what is there already
        while await pull.poll(wait, zmq.POLLIN):
            got.append((await pull.recv(), {}))
            wait = 0
        return got

    async def close(self) -> None:
        for socket in self.sockets.values():
            socket.close(linger=0)
        self.context.term()
