"""ZeroMQ listeners: ``zmq+pull://`` and ``zmq+sub://`` (pyzmq, asyncio).

A listener takes a message only when the Block has room (backpressure), reads what its
socket already holds without an asyncio round trip, and hands large frames over without
a copy. It counts what it can tell was lost (:mod:`arroyo.brokers.zmq.gaps`). ZeroMQ has
no acknowledgements: :meth:`ZmqListener.ack` does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.zmq import zmq, zmq_asyncio
from arroyo.brokers.zmq.connection import RECEIVING, address, display_name, open_socket
from arroyo.brokers.zmq.gaps import SeqGaps
from arroyo.brokers.zmq.settings import ZmqListenerSettings
from arroyo.errors import ConfigError
from arroyo.runtime import tracing
from arroyo.runtime.listener import Intake, Listener, Raw, Received, hand_over
from arroyo.runtime.parser import AvroParser, Parser

log = logging.getLogger("arroyo.brokers.zmq")

_MARK = len(tracing.ZMQ_FRAME)

BATCH = 64
"""Messages read from the socket's queue and handed over together at most."""
BATCH_BYTES = 1 << 20
"""A batch ends once it holds this many bytes (a large frame is a batch of its own), so
what waits outside the Block's bounds is at most about this much."""


class ZmqListener(Listener):
    """Receives from a PULL or SUB socket and hands each message to the Block.

    ``ready`` is set once the socket is bound or connected; ``endpoint`` is then its
    address (with the real port when it bound port 0).
    """

    def __init__(
        self, url: BrokerURL, parser: Parser | None, settings: ZmqListenerSettings
    ) -> None:
        if url.scheme not in RECEIVING:
            raise ConfigError(f"{url}: a listener needs zmq+pull:// or zmq+sub://")
        address(url, settings.bind)
        self.url = url
        self._name = display_name(url)
        super().__init__(
            SeqGaps(parser or AvroParser(), self._name, run_timeout=settings.run_timeout)
        )
        self.kind = RECEIVING[url.scheme]
        self.rcvhwm = settings.rcvhwm
        self.topics = list(settings.topic)
        self.bind = settings.bind
        self.copy_threshold = settings.copy_threshold
        self.endpoint: str | None = None
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pending: asyncio.Future[Any] | None = None
        self._socket: Any = None

    @property
    def name(self) -> str:
        return self._name

    async def start(self, intake: Intake) -> None:
        """Bind or connect, then hand over each message as it arrives, in arrival order:
        those the socket already holds together, up to :data:`BATCH` messages or
        :data:`BATCH_BYTES` bytes (:func:`hand_over`).

        Reads the next batch only once the intake took this one (backpressure).
        Returns after :meth:`stop`. Raises ConnectError when the socket cannot bind.
        """
        options = {zmq.RCVHWM: self.rcvhwm, zmq.LINGER: 0}
        context = zmq_asyncio.Context.instance()
        socket, self.endpoint = open_socket(context, self.kind, self.url, self.bind, options)
        self._socket = socket
        self._name = display_name(self.url, self.endpoint)
        if isinstance(self.parser, SeqGaps):
            self.parser.where = self._name
        if self.kind == "SUB":
            for topic in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        log.info("%s: %s %s", self.name, "bound" if self.bind else "listening on", self.endpoint)
        self.ready.set()
        count = 0
        # Messages already queued are read without an asyncio round trip (the shadow is
        # the same socket, used synchronously with NOBLOCK) and handed over together;
        # only an empty queue is awaited.
        shadow = zmq.Socket.shadow(socket.underlying)
        expiring = asyncio.create_task(self._expire_runs())
        try:
            while not self._stopping.is_set():
                batch: list[Received] = []
                size, emptied = 0, False
                while len(batch) < BATCH and size < BATCH_BYTES:
                    try:
                        frames = shadow.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        if batch:
                            emptied = True
                            break
                        frames = await self._wait(socket)
                        if frames is None:
                            return
                    count += 1
                    received = self._received(frames, count)
                    batch.append(received)
                    size += received.size
                await hand_over(intake, batch)
                if not emptied:
                    # Let the Block work even when the socket never waits (not after every
                    # message: a loop iteration costs more than a small message).
                    await asyncio.sleep(0)
        finally:
            expiring.cancel()
            socket.close(linger=0)
            self._socket = None
            if isinstance(self.parser, SeqGaps):
                self.parser.flush_log()
            if isinstance(self.parser, SeqGaps) and (runs := self.parser.open_runs()):
                log.info(
                    "%s: stopped with %d run(s) not ended by a Stop yet: %s",
                    self.name,
                    len(runs),
                    ", ".join(map(repr, runs[:10])),
                )

    def _received(self, frames: list[Any], count: int) -> Received:
        """The ``count``-th message received, from its frames."""
        trace = None
        if len(frames) > 1 and frames[-1].buffer[:_MARK] == tracing.ZMQ_FRAME:
            trace = frames.pop().bytes  # trace context after Arroyo's framing
        parts = [self._part(frame) for frame in frames]
        data: Raw = parts[0] if len(parts) == 1 else parts
        received = Received(data, {"url": self.name, "message": count})
        if trace is not None and tracing.on:
            received.trace = tracing.from_zmq_frame(trace)
        return received

    async def _expire_runs(self) -> None:
        """Every second, let the gap tracker count runs that ended without their Stop."""
        if not isinstance(self.parser, SeqGaps):
            return
        while True:
            await asyncio.sleep(min(1.0, self.parser.run_timeout / 4))
            self.parser.expire()

    async def _wait(self, socket: Any) -> list[Any] | None:
        """The next message, awaited; None when stop() interrupted the wait."""
        self._pending = socket.recv_multipart(copy=False)
        try:
            frames: list[Any] = await self._pending
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping.is_set() and (task is None or not task.cancelling()):
                return None
            raise
        finally:
            self._pending = None
        return frames

    def _part(self, frame: Any) -> bytes | memoryview:
        """A received frame: bytes when small, a read-only view of ZeroMQ's buffer when large."""
        if len(frame) >= self.copy_threshold:
            buffer: memoryview = frame.buffer
            return buffer.toreadonly()
        return frame.bytes  # type: ignore[no-any-return]

    async def stop(self) -> None:
        """Stop receiving: start() returns without waiting for another message."""
        self._stopping.set()
        if self._pending is not None:
            self._pending.cancel()

    async def ack(self, received: Received) -> None:
        """Nothing to do: ZeroMQ has no acknowledgements (the message is already gone)."""


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> ZmqListener:
    """``zmq+pull://HOST:PORT`` or ``zmq+sub://HOST:PORT?topic=T`` (``*`` binds), with
    the options of :class:`~arroyo.brokers.zmq.settings.ZmqListenerSettings`. Checks
    them (ConfigError naming the option); opens no socket."""
    if url.scheme not in RECEIVING:
        raise ConfigError(
            f"{url}: {url.scheme}:// sends; a listener needs zmq+pull:// or zmq+sub://"
        )
    settings = ZmqListenerSettings.from_url(url, options)
    if url.scheme != "zmq+sub" and "topic" in settings.model_fields_set:
        raise ConfigError(f"{url}: option 'topic' is for zmq+sub:// only")
    return ZmqListener(url, parser, settings)
