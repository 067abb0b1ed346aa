"""Redis pub/sub (at-most-once): :class:`RedisPubSubListener` subscribes to a channel,
:class:`RedisPubSubPublisher` publishes to one with pipelined ``PUBLISH``
(``pipeline.py``). What is lost and when: the package documentation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from arroyo.brokers import BrokerURL
from arroyo.brokers.redis.connection import (
    READING,
    RedisServer,
    connect,
    is_connection_error,
    target,
)
from arroyo.brokers.redis.pipeline import RedisPublisher
from arroyo.brokers.redis.settings import RedisPubSubListenerSettings, RedisPubSubPublisherSettings
from arroyo.codec import Codec
from arroyo.errors import ConnectError, PublishError
from arroyo.message import Message
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.parser import Parser

log = logging.getLogger("arroyo.brokers.redis")

BATCH = 1000
BATCH_BYTES = 4 << 20
"""PUBLISH commands and bytes per pipeline (as the Streams publisher's defaults)."""


class RedisPubSubListener(Listener):
    """Subscribes to a Redis pub/sub channel.

    at-most-once: a message published while this listener is not subscribed, is
    disconnected, or is too slow (Redis cuts it off past its output buffer limit) is
    lost, and acknowledging does nothing. Use Redis Streams where that matters.
    """

    def __init__(
        self, url: BrokerURL, settings: RedisPubSubListenerSettings, parser: Parser | None = None
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.server = RedisServer.from_url(url, settings)
        self.channel = target(url, "frames")
        self._location = self.server.location(url, self.channel)
        self._client: Redis | None = None
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._session: asyncio.Future[None] | None = None
        self._lost = False

    @property
    def name(self) -> str:
        return self._location

    @property
    def subscribed(self) -> asyncio.Event:
        """Set once the subscription is active (messages published before are not seen)."""
        return self._subscribed

    async def connect(self) -> None:
        """Connect (within connect_timeout); raises ConnectError (one line) when it
        cannot."""
        if self._client is None:
            self._client = await connect(self.server, self.name)

    async def start(self, intake: Intake) -> None:
        """Subscribe and hand each message over until :meth:`stop`; resubscribes after a
        lost connection (what was published meanwhile is lost)."""
        await self.connect()
        client = self._client
        assert client is not None
        log.info(
            "%s: subscribed; pub/sub is at-most-once: messages published while this "
            "listener is not subscribed, disconnected or too slow are lost",
            self.name,
        )

        def lost(attempt: int, exc: BaseException) -> None:
            self._subscribed.clear()
            self._lost = True
            if attempt == 1:
                log.warning(
                    "%s: connection lost (%s); messages published until it is back are lost",
                    self.name,
                    self.server.hide(str(exc) or type(exc).__name__),
                )

        receiving = READING.call(
            functools.partial(self._receive, client, intake), lost, retry_if=is_connection_error
        )
        self._session = session = asyncio.ensure_future(receiving)
        try:
            await session
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._stopping.is_set() or (current is not None and current.cancelling()):
                raise
        finally:
            self._session = None

    async def _receive(self, client: Redis, intake: Intake) -> None:
        """One subscription: hand messages over until stopped; raises when the connection
        is lost (ConnectError for what a reconnection cannot mend)."""
        source = {"url": self.name, "channel": self.channel}
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self._subscribed.set()
            if self._lost:
                log.warning(
                    "%s: subscribed again after a lost connection; messages published "
                    "meanwhile are lost",
                    self.name,
                )
                self._lost = False
            while not self._stopping.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None and message["type"] == "message":
                    await intake.put(Received(message["data"], source))
        except (RedisError, OSError) as exc:
            if not is_connection_error(exc):
                raise ConnectError(f"{self.name}: {self.server.hide(str(exc))}") from None
            raise
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        """Stop receiving (within about 0.2 s; at once while waiting to reconnect)."""
        self._stopping.set()
        if self._session is not None and not self._subscribed.is_set():
            self._session.cancel()

    async def ack(self, received: Received) -> None:
        """Nothing to acknowledge: pub/sub has no acknowledgements."""

    async def close(self) -> None:
        """Disconnect."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class RedisPubSubPublisher(RedisPublisher):
    """Publishes to a Redis pub/sub channel with pipelined ``PUBLISH``. Confirmed once
    the server accepted it; subscribers that are not listening miss it (at-most-once)."""

    def __init__(
        self, url: BrokerURL, settings: RedisPubSubPublisherSettings, codec: Codec
    ) -> None:
        server = RedisServer.from_url(url, settings)
        self.channel = target(url, "frames")
        super().__init__(server, server.location(url, self.channel), BATCH, BATCH_BYTES)
        self.settings = settings
        self.codec = codec
        self.min_subscribers = settings.min_subscribers
        self.receivers = 0
        """How many subscribers received the last confirmed message."""

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode now and queue the PUBLISH; messages go out in send() order."""
        data = self.codec.encode(message, wire)
        return self._queue(("PUBLISH", self.channel, data), len(data))

    def _result(self, reply: Any) -> BaseException | None:
        error = super()._result(reply)
        if error is None:
            self.receivers = int(reply)
            if self.receivers < self.min_subscribers:
                error = PublishError(
                    f"{self.name}: {self.receivers} subscribers received it, fewer than "
                    f"min_subscribers={self.min_subscribers}"
                )
        return error
