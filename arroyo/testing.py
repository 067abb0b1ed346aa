"""Test doubles for testing your own operators, connectors and pipelines.

Nothing here needs a test framework or a broker client: use them from pytest, unittest
or a script.

>>> import asyncio
>>> from arroyo.brokers import memory
>>> from arroyo.runtime import Block
>>> from arroyo.testing import Recorder, make_run, publish_all
>>> asyncio.run(publish_all("memory://doc-frames", make_run(3, stream="scan-1")))
>>> out = Recorder()
>>> block = Block(memory.MemoryListener("doc-frames", stop_at_end=True), publishers=[out])
>>> _ = asyncio.run(block.run())
>>> [type(m).__name__ for m in out.published]
['Start', 'Event', 'Event', 'Event', 'Stop']
>>> memory.delete("doc-frames")
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arroyo.brokers import open_publisher
from arroyo.message import Message, Run
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.publisher import DeadLetter, Publisher

__all__ = [
    "BOMBS",
    "DAMAGE",
    "Collect",
    "Recorder",
    "Workers",
    "avro_long",
    "bomb",
    "damage",
    "free_port",
    "hostile_start",
    "listening",
    "make_run",
    "publish_all",
]


class Recorder(Publisher):
    """A publisher that confirms every message at once and keeps it.

    ``published`` holds what was published, in the order of the sends; ``dead_letters``
    holds every dead letter as the :class:`DeadLetter` itself (not published as an Event),
    so a test can check its reason, error, source and original bytes.
    """

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.dead_letters: list[DeadLetter] = []

    async def publish(self, message: Message) -> None:
        """Keep ``message`` in :attr:`published`; confirmed on return."""
        self.published.append(message)

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Keep ``letter`` in :attr:`dead_letters`; confirmed on return."""
        self.dead_letters.append(letter)


class Collect:
    """An intake (what a listener hands messages to) that keeps every
    :class:`~arroyo.runtime.listener.Received` in ``items``, in order; never full."""

    def __init__(self) -> None:
        self.items: list[Received] = []

    async def put(self, received: Received) -> None:
        """Keep ``received``; never waits."""
        self.items.append(received)

    def offer(self, received: Received) -> bool:
        """Keep ``received``; always True."""
        self.items.append(received)
        return True

    def offer_many(self, items: Sequence[Received]) -> int:
        """Keep all of ``items``; returns how many."""
        self.items.extend(items)
        return len(items)

    def full(self) -> bool:
        """Always False."""
        return False

    def hand_back(self, which: Callable[[Received], bool]) -> list[Received]:
        """Takes nothing back: everything in ``items`` is the test's to acknowledge."""
        return []

    async def acknowledged(self) -> None:
        """Returns at once (the test acknowledges, not a Block)."""


@contextlib.asynccontextmanager
async def listening(listener: Listener, within: float = 10) -> AsyncIterator[Collect]:
    """Run ``listener.start`` into a :class:`Collect` for the body of the ``async with``;
    at the end, stop the listener, wait up to ``within`` seconds for ``start`` to return
    (raising what it raised), and close it. Acknowledging is up to the test."""
    collect = Collect()
    task = asyncio.create_task(listener.start(collect))
    try:
        yield collect
    finally:
        await listener.stop()
        async with asyncio.timeout(within):
            await task
        await listener.close()


def make_run(count: int, stream: str = "run") -> list[Message]:
    """One run of ``count + 2`` messages: a Start (data ``{"n": count}``), ``count`` Events
    (metadata ``{"i": i}``, payload ``b"f<i>"``), and a Stop, with seq 0, 1, 2..."""
    run = Run(stream)
    return [
        run.start({"n": count}),
        *(run.event({"i": i}, b"f%d" % i) for i in range(count)),
        run.stop(),
    ]


async def publish_all(url: str, messages: Iterable[Message], **options: Any) -> None:
    """Open a publisher for ``url`` (``options`` as in a YAML block), send ``messages``
    in order, return once every one is confirmed (raising the first failure), and close
    the publisher in any case."""
    async with open_publisher(url, options) as publisher:
        await asyncio.gather(*[publisher.send(message) for message in messages])


# -- hostile input: bytes no encoder writes, for testing what readers do with them -------


def avro_long(n: int) -> bytes:
    """Avro's encoding of a long (zig-zag, then base-128 varint), for any ``n``: values
    beyond 64 bits give the longer varints that no Avro writer produces."""
    z = 2 * n if n >= 0 else -2 * n - 1
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _avro_string(text: bytes) -> bytes:
    return avro_long(len(text)) + text


def hostile_start(data: bytes, *, seq: bytes | None = None, stream: str = "hostile") -> bytes:
    """A ``Start`` in Arroyo's framing (built-in schema) whose ``data`` map is the Avro
    bytes ``data`` as given (and ``seq`` the bytes given, when given): what a reader
    receives from a writer that is broken or hostile."""
    return _hostile(0, data, seq, stream)


def hostile_event(
    metadata: bytes, payload: bytes = b"", *, seq: bytes | None = None, stream: str = "hostile"
) -> bytes:
    """An ``Event`` in Arroyo's framing (built-in schema) whose ``metadata`` map is the
    Avro bytes ``metadata`` as given (see :func:`hostile_start`), with no array and
    ``payload``."""
    return _hostile(1, metadata + avro_long(0) + _avro_string(payload), seq, stream)


def _hostile(branch: int, body: bytes, seq: bytes | None, stream: str) -> bytes:
    from arroyo.schema import builtin

    return b"".join(
        (
            b"\xc3\x01" + builtin().fingerprint,
            _avro_string(b"0" * 32),
            _avro_string(stream.encode()),
            avro_long(0) if seq is None else seq,
            avro_long(1_700_000_000_000_000_000),  # timestamp
            avro_long(branch),  # body: 0 Start, 1 Event, 2 Stop
            body,
        )
    )


# Branches of the arroyo.Value union (null, boolean, long, double, string, bytes, array, map).
_NULL, _STRING, _ARRAY, _MAP = avro_long(0), avro_long(4), avro_long(6), avro_long(7)

BOMBS = (
    "nesting",
    "map nesting",
    "string length",
    "array count",
    "map count",
    "negative count",
    "block size",
    "long number",
    "union branch",
    "items",
)
"""The kinds of :func:`bomb`."""


def bomb(kind: str, size: int = 5000, *, event: bool = False) -> bytes:
    """A ``Start`` (see :func:`hostile_start`) that would make a reader that believes it
    recurse, allocate or loop without end; ``kind`` is one of :data:`BOMBS`:

    - ``nesting``, ``map nesting``: ``data.a`` nests ``size`` arrays (maps) in each other;
    - ``string length``: ``data.s`` declares 2**62 bytes and has 3;
    - ``array count``, ``map count``: a block of 2**40 items with 3 bytes left;
    - ``negative count``: a block of -(2**40) items (a negative count comes with a
      block size in bytes) with 3 bytes left; ``block size``: a block of 2 items
      declaring 2**62 bytes;
    - ``long number``: ``seq`` is an 11-byte varint;
    - ``union branch``: ``data.u`` takes branch 9 of the 8 of ``arroyo.Value``;
    - ``items``: ``data.a`` is a list of ``size`` nulls (2 bytes each on the wire).

    ``event``: an ``Event`` whose ``metadata`` is that map (see :func:`hostile_event`)
    instead of a Start.
    """

    def made(data: bytes, seq: bytes | None = None) -> bytes:
        return hostile_event(data, seq=seq) if event else hostile_start(data, seq=seq)

    entry = avro_long(1)  # a map block of one entry, key "a"
    if kind == "nesting":
        return made(
            entry + _avro_string(b"a") + (_ARRAY + avro_long(1)) * size + _NULL
            + avro_long(0) * (size + 1)
        )  # fmt: skip
    if kind == "map nesting":
        level = _MAP + avro_long(1) + _avro_string(b"a")
        return made(entry + _avro_string(b"a") + level * size + _NULL + avro_long(0) * (size + 1))
    if kind == "string length":
        return made(entry + _avro_string(b"s") + _STRING + avro_long(2**62) + b"abc")
    if kind == "array count":
        return made(entry + _avro_string(b"a") + _ARRAY + avro_long(2**40) + b"abc")
    if kind == "map count":
        return made(avro_long(2**40) + b"abc")
    if kind == "negative count":
        return made(
            entry + _avro_string(b"a") + _ARRAY + avro_long(-(2**40)) + avro_long(3) + b"abc"
        )
    if kind == "block size":
        items = _NULL * 2 + avro_long(0)
        block = avro_long(-2) + avro_long(2**62) + items
        return made(entry + _avro_string(b"a") + _ARRAY + block + avro_long(0))
    if kind == "long number":
        return made(avro_long(0), b"\xff" * 10 + b"\x01")
    if kind == "union branch":
        return made(entry + _avro_string(b"u") + avro_long(9) + avro_long(0))
    if kind == "items":
        items = avro_long(size) + _NULL * size + avro_long(0)
        return made(entry + _avro_string(b"a") + _ARRAY + items + avro_long(0))
    raise ValueError(f"unknown bomb {kind!r}; known: {', '.join(BOMBS)}")


DAMAGE = ("truncated", "bits flipped", "random bytes", "unknown fingerprint")
"""The kinds of :func:`damage`."""


def damage(data: bytes, rnd: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    """``data`` (a framed message) damaged at random by ``rnd``: the kind of damage (one
    of :data:`DAMAGE`, ``kind`` or drawn) and the damaged bytes. A truncated message, bytes
    that do not start with a framing and an unknown fingerprint never decode; flipped
    bits may leave a message that still does."""
    kind = kind or rnd.choice(DAMAGE)
    if kind == "truncated":
        return kind, data[: rnd.randrange(len(data))]
    if kind == "bits flipped":
        damaged = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(10, len(damaged))
            damaged[at] ^= 1 << rnd.randrange(8)
        return kind, bytes(damaged)
    if kind == "random bytes":
        return kind, bytes([rnd.randrange(1, 0xC3)]) + rnd.randbytes(rnd.randrange(64))
    if kind == "unknown fingerprint":
        return kind, data[:2] + rnd.randbytes(8) + data[10:]
    raise ValueError(f"unknown damage {kind!r}; known: {', '.join(DAMAGE)}")


_CLIENT_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _client_port_range() -> range:
    """The ports the kernel gives client sockets (Linux's ``ip_local_port_range``; the
    IANA range 49152-65535 where that file does not exist, as on macOS)."""
    try:
        low, high = map(int, _CLIENT_PORTS.read_text().split())
    except (OSError, ValueError):
        low, high = 49152, 65535
    return range(low, high + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to now and that the kernel never gives
    to a client socket: it lies outside the client (ephemeral) port range, so a server
    stopped and started again on it finds it still free. This process never hands out
    the same port twice.

    Ports are drawn at random from 10000-65535 minus the client range; where the client
    range covers all of that, it falls back to a port the kernel picks (which a client
    may take while the server is down).
    """
    clients = _client_port_range()
    candidates: list[int] = [*range(10000, clients.start), *range(clients.stop, 65536)]
    rng = random.Random()
    for _ in range(1000):
        if not candidates:
            break
        port = rng.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        _handed_out.add(chosen)
        return chosen


class Workers:
    """``arroyo run CONFIG`` worker processes, started in ``folder``.

    Each worker writes its stdout and stderr to ``folder/worker-<n>.log`` (read with
    :meth:`log`). Call :meth:`kill_all` at the end so that none outlives the test.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, config: Path, *arguments: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``arroyo run CONFIG ARGUMENTS...`` (in ``folder``, with ``env`` or this
        process's environment) and return it at once, before it is ready."""
        index = len(self.processes)
        with open(self._log_path(index), "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "arroyo", "run", str(config), *arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env=None if env is None else dict(env),
            )
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        """What ``process`` has written so far (stdout and stderr)."""
        return self._log_path(self.processes.index(process)).read_text(errors="replace")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
        """SIGTERM (unless it has exited already), then wait up to ``timeout`` seconds:
        the exit code (0 for a graceful stop). Raises TimeoutExpired if it does not exit."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout)

    def stop_all(self, timeout: float = 60) -> list[int]:
        """SIGTERM every running worker at once, then wait for each: the exit codes, in
        the order the workers were started."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return [process.wait(timeout) for process in self.processes]

    def kill(self, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
        """SIGKILL ``process`` (no graceful stop, as a crash) and wait until it is gone."""
        if process.poll() is None:
            process.kill()
        process.wait(timeout)

    def kill_all(self) -> None:
        """SIGKILL every worker still running and wait for each."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _log_path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.log"
