"""The RabbitMQ listener: consumes a queue with manual acknowledgements (see
:mod:`arroyo.brokers.rabbitmq`), and its factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from arroyo.brokers import BrokerURL
from arroyo.brokers.rabbitmq.connection import RabbitMQBroker, declare, disconnect, is_up
from arroyo.brokers.rabbitmq.settings import RabbitMQListenerSettings
from arroyo.errors import ConfigError, ConnectError
from arroyo.runtime import tracing
from arroyo.runtime.journal import from_option
from arroyo.runtime.lag import Source, source
from arroyo.runtime.listener import Intake, Listener, Received, hand_over
from arroyo.runtime.parser import Parser

log = logging.getLogger("arroyo.brokers.rabbitmq")


def deliveries(message: AbstractIncomingMessage, quorum: bool) -> int:
    """How often the broker has delivered ``message``: on a quorum queue (``quorum``),
    its ``x-delivery-count`` + 1; elsewhere 2 when it is redelivered (it may have been
    more), else 1. Only a quorum queue sets ``x-delivery-count``: on another queue the
    header is one the message brought along (moved from a quorum queue, or set by its
    publisher), not a count of this queue's deliveries, and it is ignored."""
    if quorum and message.headers:
        count = message.headers.get("x-delivery-count")
        if isinstance(count, int) and count >= 0:
            return count + 1
    return 2 if message.redelivered else 1


class RabbitMQListener(Listener):
    """Consumes a queue with manual acknowledgements (see :mod:`arroyo.brokers.rabbitmq`).

    ``settings`` are read once: ``queue``, ``queue_type`` and ``prefetch`` are also
    attributes of the listener; ``broker`` is where it connects."""

    def __init__(
        self, url: BrokerURL, settings: RabbitMQListenerSettings, parser: Parser | None = None
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.broker = RabbitMQBroker.from_url(url, settings)
        self.queue = settings.queue
        self.queue_type = settings.queue_type
        self.prefetch = settings.prefetch
        self._location = self.broker.location(f"queue={settings.queue}")
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._lag_channel: AbstractChannel | None = None
        """The channel :meth:`lag` asks on (not the consumer's: a failed passive declare
        closes its channel)."""
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopping = False
        self._unacked: dict[int, AbstractIncomingMessage] = {}
        """Deliveries to this listener not acknowledged (nor requeued) yet, for the lag."""
        self._held: list[AbstractIncomingMessage] = []
        """Deliveries taken from the inbox and not handed over (stopped meanwhile)."""

    @property
    def name(self) -> str:
        return self._location

    @property
    def connected(self) -> bool:
        """False while the connection to RabbitMQ is lost (it is re-opened by itself)."""
        return is_up(self._connection)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._unacked[id(message)] = message
        self._inbox.put_nowait(message)

    async def connect(self) -> None:
        """Connect (within connect_timeout), open a channel, declare the queue; raises
        ConnectError (one line) when any of it fails."""
        if self._queue is not None:
            return
        if self._connection is None:
            self._connection = await self.broker.connect(self.name)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            self._queue = await declare(channel, self.broker, self.settings, self.name)
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            raise ConnectError(f"{self.name}: {self.broker.hide(exc)}") from None

    async def lag(self) -> dict[Source, int] | None:
        """The messages of the queue this listener has not acknowledged, as far as it can
        tell: the queue's ready messages (from a passive declare on a channel of its own)
        plus those delivered to this listener and not acknowledged yet (on its live
        connection: after a reconnection the broker made the others ready again). Those
        delivered to other consumers of the queue do not count (AMQP does not tell)."""
        connection = self._connection
        if connection is None or connection.is_closed:
            return None
        channel = self._lag_channel
        if channel is None or channel.is_closed:
            channel = self._lag_channel = await connection.channel()
        async with asyncio.timeout(self.settings.timeout):
            # on the underlying channel: aio-pika's robust channel answers a passive
            # declare of a queue it knows from its cache, with the count of that time
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(self.queue, passive=True)
        ready = declared.message_count
        if ready is None:
            return None
        for key, message in list(self._unacked.items()):
            with contextlib.suppress(Exception):  # a closed channel: not ours any more
                if self._current(message):
                    continue
            del self._unacked[key]
        return {source(queue=self.queue): ready + len(self._unacked)}

    async def start(self, intake: Intake) -> None:
        """Consume and hand each message over in delivery order until :meth:`stop` (those
        delivered meanwhile together: :func:`hand_over`); the robust connection consumes
        again by itself after a reconnection."""
        if self._stopping:
            return
        await self.connect()
        queue = self._queue
        assert queue is not None
        try:
            tag = await queue.consume(self._on_message, no_ack=False)
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            raise ConnectError(f"{self.name}: {self.broker.hide(exc)}") from None
        log.info("%s: consuming (%s queue, prefetch %d)", self.name, self.queue_type, self.prefetch)
        quorum = self.settings.counts_deliveries
        inbox = self._inbox
        try:
            while True:
                batch: list[Received] = []
                message = await inbox.get()
                while message is not None:  # and those delivered meanwhile
                    batch.append(self._received(message, quorum))
                    if inbox.empty():
                        break
                    message = inbox.get_nowait()
                taken = await hand_over(intake, batch, lambda: self._stopping)
                self._held = [received.handle for received in batch[taken:]]
                if message is None:  # stop()'s
                    break
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            await self._give_back()

    def _received(self, message: AbstractIncomingMessage, quorum: bool) -> Received:
        source: dict[str, Any] = {
            "url": self.name,
            "queue": self.queue,
            "delivery_tag": message.delivery_tag,
        }
        if message.message_id:
            source["message_id"] = message.message_id
        received = Received(message.body, source, message, deliveries(message, quorum))
        if tracing.on:
            received.trace = tracing.carrier(message.headers)
        return received

    async def _give_back(self) -> None:
        """Requeue what was received and not handed over."""
        held, self._held = self._held, []
        while not self._inbox.empty():
            if (message := self._inbox.get_nowait()) is not None:
                held.append(message)
        for message in held:
            self._unacked.pop(id(message), None)
            try:
                await message.nack(requeue=True)
            except Exception as exc:
                log.debug(
                    "%s: could not requeue delivery %s: %r", self.name, message.delivery_tag, exc
                )

    async def stop(self) -> None:
        """Stop handing messages over; the consumer is cancelled and what was received
        but not handed over is requeued."""
        self._stopping = True
        self._inbox.put_nowait(None)

    async def ack(self, received: Received) -> None:
        """``basic.ack`` the delivery (no reply to wait for). When its channel or its
        connection is gone (re-opened meanwhile), it is skipped, logged at debug level:
        the broker has put the message back in the queue and delivers it again."""
        message: AbstractIncomingMessage = received.handle
        self._unacked.pop(id(message), None)
        await self._basic_ack(message, multiple=False)

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        """Acknowledge ``received`` in one ``basic.ack`` with ``multiple`` (up to and
        including the last one's delivery tag) when they are every delivery of their
        channel up to the last one not acknowledged yet: the usual case, as the Block
        acknowledges in input order. Otherwise one :meth:`ack` each. Never fails (as
        :meth:`ack`, a delivery of a closed channel is skipped)."""
        messages: list[AbstractIncomingMessage] = [one.handle for one in received]
        if len(messages) < 2 or not self._all_up_to_last(messages):
            return await super().ack_many(received)
        for message in messages:
            self._unacked.pop(id(message), None)
        await self._basic_ack(messages[-1], multiple=True)
        return [None] * len(messages)

    def _all_up_to_last(self, messages: list[AbstractIncomingMessage]) -> bool:
        """True when ``messages`` came on one open channel and no other delivery of that
        channel with a lower delivery tag than the last of them waits for its ack."""
        channel, last = _channel(messages[-1]), messages[-1].delivery_tag
        if channel is None or last is None:
            return False
        if any(_channel(message) is not channel for message in messages):
            return False
        batch = {id(message) for message in messages}
        return not any(
            key not in batch and _channel(other) is channel and (other.delivery_tag or 0) <= last
            for key, other in self._unacked.items()
        )

    async def _basic_ack(self, message: AbstractIncomingMessage, *, multiple: bool) -> None:
        """``basic.ack`` ``message`` (and, ``multiple``, every delivery of its channel
        before it); skipped, logged at debug level, when its channel is gone."""
        try:
            if self._current(message):
                async with asyncio.timeout(self.settings.timeout):
                    await message.ack(multiple=multiple)
                return
            reason: object = "its connection was closed"
        except (
            aiormq.exceptions.ChannelInvalidStateError,
            aiormq.exceptions.AMQPError,
            TimeoutError,
        ) as exc:
            reason = exc
        log.debug(
            "%s: delivery %s%s was received on a channel that is closed now; not "
            "acknowledged (the broker delivers it again): %r",
            self.name,
            "up to " if multiple else "",
            message.delivery_tag,
            reason,
        )

    def _current(self, message: AbstractIncomingMessage) -> bool:
        """True when ``message`` came on the live connection (raises when its channel is
        closed)."""
        transport = self._connection.transport if self._connection is not None else None
        if transport is None or transport.connection.is_closed:
            return False
        return message.channel.connection is transport.connection

    async def close(self) -> None:
        """Disconnect; what was not acknowledged goes back to the queue."""
        connection, self._connection = self._connection, None
        self._queue = None
        self._lag_channel = None
        self._unacked.clear()
        await disconnect(connection)


def _channel(message: AbstractIncomingMessage) -> Any:
    """The channel ``message`` came on; None when it is closed (aio-pika raises then)."""
    try:
        return message.channel
    except aiormq.exceptions.ChannelInvalidStateError:
        return None


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> RabbitMQListener:
    """``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q&prefetch=256&queue_type=classic``."""
    settings = RabbitMQListenerSettings.from_url(url, options)
    if not settings.queue:
        raise ConfigError(
            f"{url}: an AMQP listener needs a queue, as in amqp://guest:guest@127.0.0.1:5672/?queue=frames"
        )
    made = RabbitMQListener(url, settings, parser)
    broker = made.broker
    scope = f"amqp {broker.host}:{broker.port}{broker.vhost} {settings.queue}"
    made.journal = from_option(settings.delivery_journal, str(url), scope, _message_id_key)
    return made


def _message_id_key(received: Received) -> str | None:
    """A message's key in the delivery journal: its ``message_id`` (Arroyo's publisher
    sets it to the message's id); None without one."""
    return received.source.get("message_id")
