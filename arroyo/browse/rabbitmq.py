"""Browse a RabbitMQ queue: ``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q``.

**Stream queues** (``x-queue-type: stream``) are read as streams: a consumer from the
first offset (or from the next one, from the end), whose acknowledgements only grant
credit: a stream loses nothing by being read. AMQP does not tell where a stream ends,
so stopping at the end means: no message came for ``idle_ms`` (default 1000).

**Classic and quorum queues** cannot be read without taking messages: AMQP 0-9-1 has no
way to look. The browser takes them one by one with ``basic.get`` and never acknowledges
any; when it closes (at the end, on ``--count``, Ctrl-C, a crash, or when its connection
drops) RabbitMQ puts every one back where it was. Until then, what the browser holds is
invisible to the queue's other consumers. What RabbitMQ changes even so: the messages
shown are marked ``redelivered``, and a quorum queue counts each look as a delivery
(``x-delivery-count`` rises by one). So a queue with a ``delivery-limit`` drops or
dead-letters a message looked at that often, and an Arroyo worker reading it later counts
those looks against its Block's ``max_deliveries`` (a redelivered message on a classic
queue counts as a second delivery). Stopping at the end means: as many messages as the queue had
ready at the start, or none left. Reading from the end is impossible (the older messages
would have to be taken first): read a stream queue, or bind a queue of your own.

The type of the queue is found by asking for a message: a stream queue refuses
``basic.get`` (and closes that connection), and is then read as a stream. ``queue_type``
(``classic``, ``quorum`` or ``stream``) says it instead.

Options (URL query or YAML): ``queue`` (required), ``queue_type``, ``username``,
``password``, ``timeout`` (seconds), ``heartbeat``; ``ssl_ca``, ``ssl_cert``, ``ssl_key``,
``ssl_verify`` (``amqps://``); ``batch`` (stream messages in flight, default 100) and
``idle_ms``. The queue is never declared, only looked up (``declare`` is accepted and
changes nothing). A listener's ``prefetch`` is ignored (with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from arroyo._optional import require
from arroyo.brokers import TLS_OPTIONS, BrokerURL
from arroyo.brokers.connecting import CONNECT_OPTIONS
from arroyo.browse.base import Browser, Reading, Record, browse_options
from arroyo.errors import ArroyoError, ConfigError

log = logging.getLogger("arroyo.browse.rabbitmq")

_PURPOSE = "Browsing RabbitMQ (amqp:// URLs)"
_OPTIONS: dict[str, Any] = {
    "queue": "",
    "queue_type": "",
    "username": None,
    "password": None,
    "timeout": 10.0,
    "reconnect_interval": 2.0,
    "heartbeat": 60,
    "batch": 100,
    "idle_ms": 1000,
    **TLS_OPTIONS,
    **CONNECT_OPTIONS,
}
_IGNORED = ("prefetch", "exchange", "routing_key", "confirm_timeout", "delivery_journal")
_TYPES = ("", "classic", "quorum", "stream")
_QUIET = ("aiormq", "aio_pika")
"""Loggers silenced while browsing: a stream queue's refusal of basic.get closes the
connection, which they would report as an error with a traceback."""


class RabbitMQBrowser(Browser):
    """Reads a queue without acknowledging anything (see the module docstring)."""

    def __init__(
        self,
        settings: Any,
        queue: str,
        location: str,
        reading: Reading,
        *,
        queue_type: str = "",
        batch: int = 100,
        idle_ms: int = 1000,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.reading = reading
        self.queue_type = queue_type
        self.batch = batch
        self.idle = idle_ms / 1000
        self._location = location
        self._connection: Any = None
        self._queue: Any = None
        self._ready = 0
        self._first: Any = None
        self._held: list[Any] = []
        self._given_back = 0
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._levels: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self._location

    @property
    def outcome(self) -> str:
        if self.queue_type == "stream" or not self._given_back:
            return super().outcome
        taken = self._given_back
        what = "the message taken is" if taken == 1 else f"the {taken} messages taken are"
        return f"{self.name}: {what} back in the queue (marked redelivered)"

    async def _connect(self) -> Any:
        aio_pika = require("aio_pika", "rabbitmq", _PURPOSE)
        aiormq = require("aiormq", "rabbitmq", _PURPOSE)
        settings = self.settings
        try:
            self._connection = await aio_pika.connect(
                host=settings.host,
                port=settings.port,
                login=settings.username,
                password=settings.password,
                virtualhost=settings.vhost,
                ssl=settings.tls is not None,
                ssl_context=settings.tls.context() if settings.tls else None,
                timeout=settings.timeout,
                heartbeat=settings.heartbeat,
                client_properties={"connection_name": f"arroyo tail (pid {os.getpid()})"},
            )
            channel = await self._connection.channel()
            return await channel.declare_queue(self.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise ArroyoError(f"{self.name}: no queue {self.queue!r}") from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError, ssl.SSLError) as exc:
            raise ArroyoError(f"{self.name}: cannot connect: {settings.hide(exc)}") from None

    async def open(self) -> None:
        """Connect, look the queue up (never declare it), find its type."""
        aiormq = require("aiormq", "rabbitmq", _PURPOSE)
        for name in _QUIET:
            self._levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._queue = await self._connect()
        self._ready = int(self._queue.declaration_result.message_count or 0)
        if self.queue_type != "stream":
            try:
                self._first = await self._queue.get(no_ack=False, fail=False)
            except aiormq.exceptions.AMQPError as exc:
                if "stream" not in str(exc):
                    raise ArroyoError(f"{self.name}: {self.settings.hide(exc)}") from None
                await self._disconnect()
                self._queue = await self._connect()
                self.queue_type = "stream"
        if self.queue_type == "stream":
            await self._consume_stream()
            return
        if self._first is not None:
            self._held.append(self._first)
        if self.reading.from_end:
            raise ConfigError(
                f"{self.name}: {self.queue!r} is not a stream queue: RabbitMQ cannot show its "
                "new messages without taking all older ones first (leave out --from-end)"
            )
        if not self.reading.exit_at_end:
            log.warning(
                "%s: every message shown is held (invisible to other consumers) until tail "
                "exits, then put back: RabbitMQ cannot show a queue without taking it",
                self.name,
            )

    async def _consume_stream(self) -> None:
        channel = await self._queue.channel.get_underlay_channel()
        await channel.basic_qos(prefetch_count=self.batch)
        offset = "next" if self.reading.from_end else "first"
        await channel.basic_consume(
            self.queue,
            consumer_callback=self._inbox.put,
            no_ack=False,
            arguments={"x-stream-offset": offset},
        )

    async def records(self) -> AsyncGenerator[Record, None]:
        if self.queue_type == "stream":
            async for record in self._stream_records():
                yield record
            return
        aiormq = require("aiormq", "rabbitmq", _PURPOSE)
        if self._first is not None:
            yield self._record(self._first)
        taken = len(self._held)
        exit_at_end = self.reading.exit_at_end
        while not exit_at_end or (taken < self._ready and self._first is not None):
            try:
                message = await self._queue.get(
                    no_ack=False, fail=False, timeout=self.settings.timeout
                )
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                raise ArroyoError(
                    f"{self.name}: {self.settings.hide(exc)} (what tail held goes back to the "
                    "queue)"
                ) from None
            if message is None:
                if exit_at_end:
                    return
                await asyncio.sleep(0.25)  # basic.get cannot wait: ask again soon
                continue
            self._held.append(message)
            taken += 1
            yield self._record(message)

    async def _stream_records(self) -> AsyncGenerator[Record, None]:
        aio_pika = require("aio_pika", "rabbitmq", _PURPOSE)
        while True:
            try:
                if self.reading.exit_at_end:
                    delivered = await asyncio.wait_for(self._inbox.get(), self.idle)
                else:
                    delivered = await self._inbox.get()
            except TimeoutError:
                return
            message = aio_pika.IncomingMessage(delivered, no_ack=False)
            record = self._record(message, offset=(message.headers or {}).get("x-stream-offset"))
            await message.ack()  # on a stream, only grants credit for the next message
            yield record

    def _record(self, message: Any, offset: Any = None) -> Record:
        body: bytes = message.body
        headers = dict(message.headers or {})
        source: dict[str, Any] = {"url": self.name, "queue": self.queue}
        if offset is not None:
            source["offset"] = offset
        if message.message_id:
            source["message_id"] = message.message_id
        if message.type:
            source["type"] = message.type
        if isinstance(message.timestamp, datetime):
            source["timestamp"] = int(message.timestamp.timestamp() * 1000)
        source["redelivered"] = bool(message.redelivered)
        count = headers.get("x-delivery-count")
        if isinstance(count, int):
            source["delivery_count"] = count
        sizes = headers.pop("arroyo.dead-letter.parts", None)
        if sizes is not None:  # a multipart dead letter: the parts were joined
            parts: list[bytes | memoryview] = []
            start = 0
            for size in str(sizes.decode() if isinstance(sizes, bytes) else sizes).split(","):
                parts.append(body[start : start + int(size)])
                start += int(size)
            return Record(parts, source, headers)
        return Record(body, source, headers)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        """Put every message taken back (one ``basic.nack``), then disconnect (which would
        put them back too)."""
        held, self._held = self._held, []
        self._given_back += len(held)
        if held:
            try:
                await held[-1].nack(multiple=True, requeue=True)
            except Exception as exc:
                log.debug("%s: nack failed (the disconnection requeues): %r", self.name, exc)
        await self._disconnect()
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._levels.clear()


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> RabbitMQBrowser:
    """``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`` plus the options of the module docstring."""
    require("aio_pika", "rabbitmq", _PURPOSE)
    from arroyo.brokers.rabbitmq import AmqpSettings

    opts = browse_options(url, options, _OPTIONS, _IGNORED, silent=("declare",))
    settings = AmqpSettings.from_url(url, opts)
    if not opts["queue"]:
        raise ConfigError(f"{url}: tail needs a queue: amqp://USER:PASS@HOST:5672/?queue=NAME")
    if opts["queue_type"] not in _TYPES:
        raise ConfigError(
            f"{url}: option 'queue_type' must be classic, quorum or stream, "
            f"got {opts['queue_type']!r}"
        )
    if opts["batch"] < 1 or opts["idle_ms"] < 1:
        raise ConfigError(f"{url}: options 'batch' and 'idle_ms' must be at least 1")
    vhost = "" if settings.vhost == "/" else settings.vhost
    location = f"{url.scheme}://{settings.host}:{settings.port}/{vhost}?queue={opts['queue']}"
    return RabbitMQBrowser(
        settings,
        opts["queue"],
        location,
        reading,
        queue_type=opts["queue_type"],
        batch=opts["batch"],
        idle_ms=opts["idle_ms"],
    )
