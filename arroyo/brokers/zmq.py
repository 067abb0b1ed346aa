"""ZeroMQ: ``zmq+pull://`` and ``zmq+sub://`` listeners, ``zmq+push://`` and ``zmq+pub://``
publishers (pyzmq, asyncio).

``zmq+pull://HOST:PORT`` connects to a sender that binds (a detector); ``zmq+pull://*:PORT``
binds on every interface, and ``?bind=true`` binds on HOST only (``127.0.0.1``). A
bound port 0 takes a free port (``endpoint`` tells which, once ``ready`` is set).

**No acknowledgements.** ZeroMQ has none: :meth:`ZmqListener.ack` does nothing, and a
message is gone once received. What the bridge received but had not finished when it
stops or crashes, and what still sits in its socket queue (up to ``rcvhwm`` messages),
is lost; no one redelivers it. A publisher's confirmation only means the message was
handed to the socket: ZeroMQ tells nothing about delivery.

**PUSH/PULL** is lossless while both ends live and gives backpressure: the listener
takes a message only when the Block has room, its socket queue holds at most
``rcvhwm`` messages, then TCP buffers fill and the sender's ``send`` blocks at its
``sndhwm``. **PUB/SUB drops by design**: a subscriber that falls behind, or joins late,
misses messages, and nothing tells it. The listener counts what it can detect, gaps in
``seq`` per stream (the sender's numbers: ``arroyo`` framing, ``json-frame`` headers with
``seq``; and seq_num gaps that a parser counts in its ``missing`` attribute, as the
bluesky parser does), in the Prometheus counter ``arroyo_zmq_gaps{block}`` with a log
warning. A dead-lettered message leaves a gap too. A lost Stop leaves no gap (nothing of
its run follows it), so a run that ends without its Stop is counted in
``arroyo_zmq_runs_without_stop{block}``, with a warning: when its stream starts again
with a new Start, or when nothing of it came for ``run_timeout`` seconds (then the Stop
was lost or the sender stopped sending). Runs still open when the listener stops are
logged, not counted.

**Messages**: ``Received.data`` is the single frame (bytes) of a one-part message, or
the list of frames of a multipart one, and the parser gets exactly that. Frames of at
least ``copy_threshold`` bytes (64 KiB) are handed over without a copy, as read-only
``memoryview``\\ s of ZeroMQ's buffers, and become Event payloads as they are; the
codec then copies a payload once into the encoded message. Smaller frames are bytes.

The publishers send Arroyo's own framing (:meth:`arroyo.codec.Codec.encode`), one
frame per message, for another Arroyo process to read with the ``arroyo`` parser
(``zmq+pull://...?parser=arroyo``, the default). Large messages are sent zero-copy.

Options (URL query or YAML):

- listeners: ``rcvhwm`` (16: the socket queue; the Block's intake is the real buffer,
  so memory stays bounded in bytes; raise it for PUB/SUB bursts), ``topic`` (SUB only:
  a prefix filter on the first frame; a list in YAML; default: everything), ``bind``,
  ``copy_threshold`` (bytes), ``run_timeout`` (60 s: see above);
- publishers: ``sndhwm`` (16: messages queued in the socket; PUSH then blocks, so the
  Block waits; PUB drops), ``bind``, ``linger`` (ms that close() waits for queued
  messages to go out; -1 forever).

ZeroMQ reconnects by itself; a connecting socket needs no peer at start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from arroyo._optional import require
from arroyo.brokers import BrokerURL, take_options
from arroyo.brokers.connector import Connector
from arroyo.codec import Codec, default_codec
from arroyo.errors import ArroyoError, ConfigError
from arroyo.message import Message, Start, Stop
from arroyo.runtime.listener import Intake, Listener, Raw, Received
from arroyo.runtime.logs import Throttle, current_block
from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.publisher import PipelinedPublisher

if TYPE_CHECKING:
    from arroyo.browse.base import Browser, Reading

zmq = require("zmq", "zmq", "The ZeroMQ connectors (zmq+*:// URLs)")
zmq_asyncio = require("zmq.asyncio", "zmq", "The ZeroMQ connectors (zmq+*:// URLs)")

log = logging.getLogger("arroyo.brokers.zmq")

GAPS = Counter(
    "arroyo_zmq_gaps",
    "Messages missing from a ZeroMQ stream (gaps in seq per stream: PUB/SUB drops)",
    ["block"],
)
RUNS_WITHOUT_STOP = Counter(
    "arroyo_zmq_runs_without_stop",
    "Runs of a ZeroMQ stream that ended without their Stop (lost, or the sender stopped): "
    "a new Start of the stream came first, or nothing of it for run_timeout seconds",
    ["block"],
)

RECEIVING = {"zmq+pull": "PULL", "zmq+sub": "SUB"}
SENDING = {"zmq+push": "PUSH", "zmq+pub": "PUB"}
COPY_THRESHOLD = 65536
"""Frames at least this large are handed over (and sent) without a copy."""


def address(url: BrokerURL, bind: bool) -> tuple[str, bool]:
    """``(tcp://HOST:PORT, bind?)`` for a zmq URL; ConfigError when it is not usable.

    ``*`` as host always binds; port 0 (binding only) takes a free port.
    """
    if url.path:
        raise ConfigError(
            f"{url}: a ZeroMQ URL has no path (found {url.path!r}); "
            "a SUB topic goes in the query: ?topic=NAME"
        )
    if not url.host:
        raise ConfigError(f"{url}: a ZeroMQ URL needs a host, as in zmq+pull://127.0.0.1:5555")
    bind = bind or url.host == "*"
    if url.port is None or (url.port == 0 and not bind):
        raise ConfigError(
            f"{url}: a ZeroMQ URL needs a port, as in zmq+pull://127.0.0.1:5555"
            + (" (port 0 only when binding)" if url.port == 0 else "")
        )
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = "*" if url.port == 0 else str(url.port)
    return f"tcp://{host}:{port}", bind


def open_socket(
    context: Any, kind: str, url: BrokerURL, bind: bool, options: dict[int, int]
) -> tuple[Any, str]:
    """A socket of ``kind`` (``PULL``...) bound or connected to ``url``, with socket
    ``options`` set first; returns it and its endpoint (the bound port when it was 0)."""
    target, binding = address(url, bind)
    socket = context.socket(getattr(zmq, kind))
    try:
        for option, value in options.items():
            socket.setsockopt(option, value)
        if binding:
            socket.bind(target)
            endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        else:
            socket.connect(target)
            endpoint = target
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        how = "bind" if binding else "connect to"
        raise ArroyoError(f"{url}: cannot {how} {target}: {exc}") from None
    return socket, endpoint


def _name(url: BrokerURL, endpoint: str | None = None) -> str:
    """``scheme://host:port`` for logs, with the real port once a port 0 is bound."""
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host
    port = endpoint.rsplit(":", 1)[-1] if endpoint and url.port == 0 else url.port
    return f"{url.scheme}://{host}:{port}"


class SeqGaps:
    """A parser that reports gaps: it parses with ``parser`` and watches ``seq`` per stream.

    A Start begins a stream; afterwards a message whose ``seq`` is beyond the next
    expected one means messages were lost: they are added to ``arroyo_zmq_gaps`` and
    logged. A stream first seen without its Start (a late join) is not a gap. Increases
    of the wrapped parser's ``missing`` attribute (if it has one) count too. A run that
    ends without its Stop (a new Start of its stream, or nothing of it for
    ``run_timeout`` seconds, see :meth:`expire`) is added to
    ``arroyo_zmq_runs_without_stop`` and logged.
    """

    def __init__(
        self, parser: Parser, where: str, streams: int = 10_000, run_timeout: float = 60.0
    ) -> None:
        self.parser = parser
        self.where = where
        self.run_timeout = run_timeout
        self.missing = 0
        """Messages known to be lost so far."""
        self.without_stop = 0
        """Runs that ended without their Stop so far."""
        self._streams = streams
        self._next: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """Per open run: the next seq expected, and when a message of it last came."""
        self._parser_missing = int(getattr(parser, "missing", 0) or 0)
        self._throttle = Throttle()

    @property
    def wrapped(self) -> Parser:
        """The parser this one parses with (whose frame counter the Block uses)."""
        return self.parser

    def parse(self, data: Raw) -> Message | list[Message]:
        """Parse with the wrapped parser, then note gaps. Raises what the parser raises."""
        result = self.parser.parse(data)
        for message in result if isinstance(result, list) else (result,):
            self._observe(message)
        reported = getattr(self.parser, "missing", None)
        if isinstance(reported, int) and reported > self._parser_missing:
            self._lost(reported - self._parser_missing, None)
            self._parser_missing = reported
        return result

    def _observe(self, message: Message) -> None:
        stream, seq = message.stream, message.seq
        known = self._next.get(stream)
        expected = None if known is None else known[0]
        if expected is not None and isinstance(message, Start):
            self._unstopped(stream, expected - 1, "its stream started again")
        elif expected is not None and seq > expected:
            self._lost(seq - expected, f"stream {stream!r}: seq {seq} follows {expected - 1}")
        if isinstance(message, Stop):
            self._next.pop(stream, None)
            return
        if expected is None or seq >= expected or isinstance(message, Start):
            self._next[stream] = (seq + 1, time.monotonic())
            self._next.move_to_end(stream)
            if len(self._next) > self._streams:
                self._next.popitem(last=False)

    def expire(self, now: float | None = None) -> None:
        """Count the open runs with nothing for ``run_timeout`` seconds (before ``now``, a
        ``time.monotonic()`` value) as ended without their Stop (the listener calls this
        about every second)."""
        now = time.monotonic() if now is None else now
        for stream, (expected, last) in list(self._next.items()):
            if now - last >= self.run_timeout:
                del self._next[stream]
                self._unstopped(stream, expected - 1, f"nothing of it for {self.run_timeout:g} s")

    def flush_log(self) -> None:
        """Log the count of the warnings left out (throttled) since the last one."""
        self._throttle.flush()

    def open_runs(self) -> list[str]:
        """The streams of the runs seen without their Stop yet."""
        return list(self._next)

    def _lost(self, count: int, detail: str | None) -> None:
        self.missing += count
        GAPS.labels(current_block.get()).inc(count)
        self._throttle(
            log,
            logging.WARNING,
            "lost",
            "%s: %d message(s) lost%s (ZeroMQ does not redeliver)",
            self.where,
            count,
            f" ({detail})" if detail else "",
        )

    def _unstopped(self, stream: str, last: int, why: str) -> None:
        self.without_stop += 1
        RUNS_WITHOUT_STOP.labels(current_block.get()).inc()
        self._throttle(
            log,
            logging.WARNING,
            "unstopped",
            "%s: run %r ended without its Stop (%s; its last message had seq %d): the Stop "
            "was lost, or the sender stopped sending",
            self.where,
            stream,
            why,
            last,
        )


class ZmqListener(Listener):
    """Receives from a PULL or SUB socket and hands each message to the Block.

    ``ready`` is set once the socket is bound or connected; ``endpoint`` is then its
    address (with the real port when it bound port 0).
    """

    def __init__(
        self,
        url: BrokerURL,
        parser: Parser | None = None,
        *,
        rcvhwm: int = 16,
        topics: list[str] | None = None,
        bind: bool = False,
        copy_threshold: int = COPY_THRESHOLD,
        run_timeout: float = 60.0,
    ) -> None:
        if url.scheme not in RECEIVING:
            raise ConfigError(f"{url}: a listener needs zmq+pull:// or zmq+sub://")
        address(url, bind)
        self.url = url
        self._name = _name(url)
        super().__init__(SeqGaps(parser or AvroParser(), self._name, run_timeout=run_timeout))
        self.kind = RECEIVING[url.scheme]
        self.rcvhwm = rcvhwm
        self.topics = [""] if topics is None else topics
        self.bind = bind
        self.copy_threshold = copy_threshold
        self.endpoint: str | None = None
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pending: asyncio.Future[Any] | None = None
        self._socket: Any = None

    @property
    def name(self) -> str:
        return self._name

    async def start(self, intake: Intake) -> None:
        """Bind or connect, then hand over each message as it arrives, in arrival order.

        Takes the next message only once the intake took this one (backpressure).
        Returns after :meth:`stop`. Raises ArroyoError when the socket cannot bind.
        """
        options = {zmq.RCVHWM: self.rcvhwm, zmq.LINGER: 0}
        context = zmq_asyncio.Context.instance()
        socket, self.endpoint = open_socket(context, self.kind, self.url, self.bind, options)
        self._socket = socket
        self._name = _name(self.url, self.endpoint)
        if isinstance(self.parser, SeqGaps):
            self.parser.where = self._name
        if self.kind == "SUB":
            for topic in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        log.info("%s: %s %s", self.name, "bound" if self.bind else "listening on", self.endpoint)
        self.ready.set()
        count = 0
        # Messages already queued are read without an asyncio round trip (the shadow is
        # the same socket, used synchronously with NOBLOCK); only an empty queue is awaited.
        shadow = zmq.Socket.shadow(socket.underlying)
        expiring = asyncio.create_task(self._expire_runs())
        try:
            while not self._stopping.is_set():
                try:
                    frames = shadow.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    frames = await self._wait(socket)
                    if frames is None:
                        break
                count += 1
                parts = [self._part(frame) for frame in frames]
                data: Raw = parts[0] if len(parts) == 1 else parts
                await intake.put(Received(data, {"url": self.name, "message": count}))
                if count % 32 == 0:
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
        buffer: memoryview = frame.buffer
        if buffer.nbytes >= self.copy_threshold:
            return buffer.toreadonly()
        return bytes(buffer)

    async def stop(self) -> None:
        """Stop receiving: start() returns without waiting for another message."""
        self._stopping.set()
        if self._pending is not None:
            self._pending.cancel()

    async def ack(self, received: Received) -> None:
        """Nothing to do: ZeroMQ has no acknowledgements (the message is already gone)."""


class ZmqPublisher(PipelinedPublisher):
    """Sends messages in Arroyo's framing, one frame each, on a PUSH or PUB socket.

    Confirmation means the message was handed to the socket (queued for sending):
    ZeroMQ says nothing about delivery. PUSH waits when ``sndhwm`` messages are queued
    (so the Block waits); PUB drops instead. :meth:`close` waits up to ``linger`` ms for
    queued messages to go out.
    """

    def __init__(
        self,
        url: BrokerURL,
        codec: Codec | None = None,
        *,
        sndhwm: int = 16,
        bind: bool = False,
        linger: int = 5000,
    ) -> None:
        if url.scheme not in SENDING:
            raise ConfigError(f"{url}: a publisher needs zmq+push:// or zmq+pub://")
        address(url, bind)
        self.url = url
        self.codec = codec or default_codec()
        self.kind = SENDING[url.scheme]
        self.sndhwm = sndhwm
        self.bind = bind
        self.linger = linger
        self.endpoint: str | None = None
        self._context: Any = None
        self._socket: Any = None

    @property
    def name(self) -> str:
        return _name(self.url, self.endpoint)

    async def start(self) -> None:
        """Bind or connect (a connecting socket needs no peer yet)."""
        self._context = zmq_asyncio.Context()
        try:
            self._socket, self.endpoint = open_socket(
                self._context,
                self.kind,
                self.url,
                self.bind,
                {zmq.SNDHWM: self.sndhwm, zmq.LINGER: self.linger},
            )
        except BaseException:
            self._context.term()
            self._context = None
            raise
        log.info("%s: %s %s", self.name, "bound" if self.bind else "sending to", self.endpoint)

    def send(self, message: Message, wire: bytes | None = None) -> Awaitable[None]:
        """Encode ``message`` and queue it on the socket now; the result completes once
        ZeroMQ took it (at once unless a PUSH socket is at its high-water mark).
        Raises EncodeError at once for a message that cannot be encoded."""
        if self._socket is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        future: Awaitable[None] = self._socket.send(self.codec.encode(message, wire), copy=False)
        return future

    async def close(self) -> None:
        """Close the socket, waiting up to ``linger`` ms for queued messages to be sent."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._context is not None:
            context, self._context = self._context, None
            await asyncio.to_thread(context.term)


def _topics(url: BrokerURL, value: Any) -> list[str]:
    topics = value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) for t in topics):
        raise ConfigError(f"{url}: option 'topic' must be a string or a list of strings")
    return topics


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> ZmqListener:
    """``zmq+pull://HOST:PORT`` or ``zmq+sub://HOST:PORT?topic=T`` (``*`` binds):
    options ``rcvhwm``, ``topic`` (SUB), ``bind``, ``copy_threshold``."""
    if url.scheme not in RECEIVING:
        raise ConfigError(
            f"{url}: {url.scheme}:// sends; a listener needs zmq+pull:// or zmq+sub://"
        )
    known = {
        "rcvhwm": 16,
        "topic": "",
        "bind": False,
        "copy_threshold": COPY_THRESHOLD,
        "run_timeout": 60.0,
    }
    opts = take_options(url, options, known)
    if url.scheme != "zmq+sub" and ("topic" in options or "topic" in url.query):
        raise ConfigError(f"{url}: option 'topic' is for zmq+sub:// only")
    for key in ("rcvhwm", "copy_threshold"):
        if opts[key] < 0:
            raise ConfigError(f"{url}: option {key!r} must not be negative, got {opts[key]}")
    if opts["run_timeout"] <= 0:
        raise ConfigError(
            f"{url}: option 'run_timeout' must be positive, got {opts['run_timeout']}"
        )
    return ZmqListener(
        url,
        parser,
        rcvhwm=opts["rcvhwm"],
        topics=_topics(url, opts["topic"]),
        bind=opts["bind"],
        copy_threshold=opts["copy_threshold"],
        run_timeout=float(opts["run_timeout"]),
    )


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> ZmqPublisher:
    """``zmq+push://HOST:PORT`` or ``zmq+pub://HOST:PORT`` (``*`` binds): options
    ``sndhwm``, ``bind``, ``linger`` (ms)."""
    if url.scheme not in SENDING:
        raise ConfigError(
            f"{url}: {url.scheme}:// receives; a publisher needs zmq+push:// or zmq+pub://"
        )
    opts = take_options(url, options, {"sndhwm": 16, "bind": False, "linger": 5000})
    if opts["sndhwm"] < 0:
        raise ConfigError(f"{url}: option 'sndhwm' must not be negative, got {opts['sndhwm']}")
    return ZmqPublisher(url, codec, sndhwm=opts["sndhwm"], bind=opts["bind"], linger=opts["linger"])


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """ZeroMQ has no handshake to try: a socket connects when a peer is there."""
    return "skipped", "ZeroMQ has no handshake to try (it connects when a peer is there)"


def _browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    from arroyo.browse import zmq as browse

    return browse.browser(url, options, reading)


CONNECTOR = Connector(
    name="zmq",
    schemes=("zmq+pub", "zmq+sub", "zmq+push", "zmq+pull"),
    extra="zmq",
    listener=listener,
    publisher=publisher,
    browser=_browser,
    probe=probe,
    acknowledges=False,
    notes={"zmq+sub": "at-most-once: PUB/SUB drops by design"},
)
