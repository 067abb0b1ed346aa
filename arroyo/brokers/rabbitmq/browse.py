"""``arroyo tail`` on a RabbitMQ queue: ``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q``.

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

Options (URL query or YAML): those of :class:`~.settings.RabbitMQBrowseSettings`:
``queue`` (required), ``queue_type``, the connection's (``username``, ``password``,
``connect_timeout``, ``timeout``, ``heartbeat``, TLS with ``amqps://``), ``batch``
(stream messages in flight, default 100) and ``idle_ms``. The queue is never declared,
only looked up (``declare`` is accepted and changes nothing). The other options of a
listener or a publisher (``prefetch``...) are ignored, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from arroyo.brokers import BrokerURL
from arroyo.brokers.rabbitmq.connection import RabbitMQBroker, disconnect
from arroyo.brokers.rabbitmq.settings import (
    RabbitMQBrowseSettings,
    RabbitMQListenerSettings,
    RabbitMQPublisherSettings,
)
from arroyo.browse.base import Browser, Reading, Record, browse_settings
from arroyo.errors import ArroyoError, ConfigError

log = logging.getLogger("arroyo.brokers.rabbitmq")

_CONSUMING = sorted(
    {*RabbitMQListenerSettings.known(), *RabbitMQPublisherSettings.known()}
    - {*RabbitMQBrowseSettings.known()}
)
"""The options of a listener or a publisher that tail does not take (``prefetch``...):
ignored, with a warning, so that their URL can be pasted as it is."""
_QUIET = ("aiormq", "aio_pika")
"""Loggers silenced while browsing: a stream queue's refusal of basic.get closes the
connection, which they would report as an error with a traceback."""


class RabbitMQBrowser(Browser):
    """Reads a queue without acknowledging anything (see the module docstring)."""

    def __init__(self, url: BrokerURL, settings: RabbitMQBrowseSettings, reading: Reading) -> None:
        self.settings = settings
        self.broker = RabbitMQBroker.from_url(url, settings)
        self.queue = settings.queue
        self.reading = reading
        self.queue_type = settings.queue_type
        """The queue's type: as given, else found by :meth:`open`."""
        self._location = self.broker.location(f"queue={settings.queue}")
        self._connection: AbstractConnection | None = None
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
        """Connect (within ``connect_timeout``: ConnectError), look the queue up."""
        self._connection = await self.broker.connect_once(self.name, "tail")
        try:
            channel = await self._connection.channel()
            return await channel.declare_queue(self.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise ArroyoError(f"{self.name}: no queue {self.queue!r}") from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            raise ArroyoError(f"{self.name}: cannot connect: {self.broker.hide(exc)}") from None

    async def open(self) -> None:
        """Connect, look the queue up (never declare it), find its type."""
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
                    raise ArroyoError(f"{self.name}: {self.broker.hide(exc)}") from None
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
        await channel.basic_qos(prefetch_count=self.settings.batch)
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
                    f"{self.name}: {self.broker.hide(exc)} (what tail held goes back to the queue)"
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
        idle = self.settings.idle_ms / 1000
        while True:
            try:
                if self.reading.exit_at_end:
                    async with asyncio.timeout(idle):
                        delivered = await self._inbox.get()
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
        await disconnect(connection)

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
    settings = browse_settings(RabbitMQBrowseSettings, url, options, _CONSUMING)
    if not settings.queue:
        raise ConfigError(f"{url}: tail needs a queue: amqp://USER:PASS@HOST:5672/?queue=NAME")
    return RabbitMQBrowser(url, settings, reading)
