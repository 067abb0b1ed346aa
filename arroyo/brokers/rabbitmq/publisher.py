"""The RabbitMQ publisher: persistent messages with publisher confirms, pipelined on one
channel (see :mod:`arroyo.brokers.rabbitmq`), and its factory."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from arroyo.brokers import BrokerURL
from arroyo.brokers.rabbitmq.connection import RabbitMQBroker, declare, disconnect, is_up
from arroyo.brokers.rabbitmq.settings import RabbitMQPublisherSettings
from arroyo.codec import Codec
from arroyo.errors import ConfigError, ConnectError, PublishError
from arroyo.message import Message
from arroyo.runtime.ordering import FailStop
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher

_NO_DRAIN: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters else {}
)
"""Publishes queue their frames without waiting for each to be written (aiormq >= 7.2);
the order stays that of the channel's write queue and confirmations are still awaited."""


class RabbitMQPublisher(PipelinedPublisher):
    """Publishes persistent messages with publisher confirms (see
    :mod:`arroyo.brokers.rabbitmq`).

    ``settings`` are read once: ``queue``, ``exchange`` and ``routing_key`` (the queue's
    name unless given) are also attributes of the publisher; ``broker`` is where it
    connects."""

    def __init__(self, url: BrokerURL, settings: RabbitMQPublisherSettings, codec: Codec) -> None:
        self.settings = settings
        self.broker = RabbitMQBroker.from_url(url, settings)
        self.codec = codec
        self.queue = settings.queue
        self.exchange = settings.exchange
        self.routing_key = settings.routing_key if settings.routing_key is not None else self.queue
        what = f"exchange={self.exchange}" if self.exchange else f"queue={self.queue}"
        self._location = self.broker.location(what)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._fail_stop = FailStop(self._location)

    @property
    def name(self) -> str:
        return self._location

    @property
    def connected(self) -> bool:
        """False while the connection to RabbitMQ is lost (it is re-opened by itself)."""
        return is_up(self._connection)

    async def start(self) -> None:
        """Connect, open a channel with publisher confirms, declare the queue (or check
        that the exchange exists)."""
        self._connection = connection = await self.broker.connect(self.name)
        try:
            channel = await connection.channel(publisher_confirms=True)
            if self.exchange:
                await channel.get_exchange(self.exchange, ensure=True)
            elif self.queue:
                await declare(channel, self.broker, self.settings, self.name)
        except aiormq.exceptions.ChannelNotFoundEntity:
            await connection.close()
            raise ConnectError(f"{self.name}: exchange {self.exchange!r} does not exist") from None
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            await connection.close()
            raise ConnectError(f"{self.name}: {self.broker.hide(exc)}") from None
        except ConnectError:
            await connection.close()
            raise
        self._channel = channel

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode now and start the publish; publishes go out on one channel in send()
        order. The result completes once the broker confirmed the message.

        After a publish failed, the sends given behind it are not written but fail with
        NotSent until all of them have completed (:class:`FailStop`): after a
        reconnection, none of them goes out before the failed one is published again."""
        if self._channel is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        headers: dict[str, Any] = {"arroyo.stream": message.stream, "arroyo.seq": message.seq}
        if message.trace:
            headers.update(message.trace)
        properties = Basic.Properties(
            delivery_mode=2, message_id=message.id, message_type=message.kind, headers=headers
        )
        body = self.codec.encode(message, wire)
        loop = asyncio.get_running_loop()
        if not self._fail_stop.given():
            refused: asyncio.Future[None] = loop.create_future()
            refused.set_exception(self._fail_stop.not_sent())
            return refused
        return loop.create_task(self._publish_given(body, properties))

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Publish the original bytes with RabbitMQ's dead-letter headers and Arroyo's
        (the parts of a multipart message are joined; ``arroyo.dead-letter.parts`` gives
        their sizes)."""
        if self._channel is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        headers: dict[str, Any] = dict(letter.headers())
        queue = str(letter.source.get("queue") or letter.source.get("url") or "")
        exchange = str(letter.source.get("exchange") or "")
        when = datetime.fromtimestamp(letter.timestamp / 1e9, UTC).replace(microsecond=0)
        headers.update(
            {
                "x-first-death-reason": "rejected",
                "x-first-death-queue": queue,
                "x-first-death-exchange": exchange,
                "x-death": [
                    {
                        "count": 1,
                        "reason": "rejected",
                        "queue": queue,
                        "exchange": exchange,
                        "routing-keys": [queue],
                        "time": when,
                    }
                ],
            }
        )
        if isinstance(letter.data, list):
            body = b"".join(letter.data)
            headers["arroyo.dead-letter.parts"] = ",".join(str(len(p)) for p in letter.data)
        else:
            body = letter.data
        message_id = letter.source.get("message_id")
        properties = Basic.Properties(
            delivery_mode=2,
            headers=headers,
            message_id=str(message_id) if message_id else None,
        )
        if not self._fail_stop.given():
            raise self._fail_stop.not_sent()
        await self._publish_given(body, properties)

    async def _publish_given(self, body: bytes, properties: Basic.Properties) -> None:
        """Publish a send that was given (FailStop.given), and tell FailStop how it ended."""
        error: BaseException | None = None
        try:
            await self._publish(body, properties)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._fail_stop.completed(error)

    async def _publish(self, body: bytes, properties: Basic.Properties) -> None:
        assert self._channel is not None
        try:
            await self._channel.ready()  # after a reconnection: the channel is open again
            channel = await self._channel.get_underlay_channel()
            if not self._fail_stop.writable():
                raise self._fail_stop.not_sent()
            confirmation = await channel.basic_publish(
                body,
                exchange=self.exchange,
                routing_key=self.routing_key,
                properties=properties,
                mandatory=True,
                timeout=self.settings.confirm_timeout,
                **_NO_DRAIN,
            )
        except asyncio.CancelledError:
            raise
        except (aiormq.exceptions.AMQPError, RuntimeError, OSError, TimeoutError) as exc:
            raise PublishError(f"{self.name}: not confirmed: {self.broker.hide(exc)}") from None
        if isinstance(confirmation, Basic.Ack):
            return
        if isinstance(confirmation, DeliveredMessage):
            raise PublishError(
                f"{self.name}: no queue took the message (exchange {self.exchange!r}, routing "
                f"key {self.routing_key!r}); it was returned"
            )
        raise PublishError(f"{self.name}: not confirmed: the broker answered {confirmation!r}")

    async def close(self) -> None:
        """Disconnect (the Block has waited for every confirmation)."""
        connection, self._connection = self._connection, None
        self._channel = None
        await disconnect(connection)


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> RabbitMQPublisher:
    """``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`` or ``...?exchange=X&routing_key=K``."""
    settings = RabbitMQPublisherSettings.from_url(url, options)
    if not settings.queue and not settings.exchange:
        raise ConfigError(
            f"{url}: an AMQP publisher needs a queue (?queue=Q) or an exchange "
            "(?exchange=X&routing_key=K)"
        )
    return RabbitMQPublisher(url, settings, codec)
