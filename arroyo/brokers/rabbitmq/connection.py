"""How to reach RabbitMQ: the broker of a URL and its settings, connections opened within
``connect_timeout`` (one-line ConnectError otherwise), the queue's declaration, and the
probe of ``arroyo check --connect``."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractQueue,
    AbstractRobustConnection,
)

from arroyo.brokers import BrokerURL, Tls
from arroyo.brokers.connecting import Failure, connect_within, socket_failure
from arroyo.brokers.rabbitmq.settings import RabbitMQQueueSettings, RabbitMQSettings
from arroyo.errors import ConnectError
from arroyo.runtime.logs import redact

log = logging.getLogger("arroyo.brokers.rabbitmq")


class _StartNoise(logging.Filter):
    """Drops what aiormq and aio-pika log about a connection that was never made: a
    failed start says why in one line of its own. (aiormq's "error when creating
    transport" goes for reconnections too: aio-pika logs those failures itself.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("error when creating transport"):
            return False
        if message.startswith("Connection to %s closed") and isinstance(record.args, tuple):
            return getattr(record.args[0], "connection_attempt", 1) != 0
        return True


logging.getLogger("aiormq.connection").addFilter(_StartNoise())
logging.getLogger("aio_pika.robust_connection").addFilter(_StartNoise())


@dataclass(frozen=True)
class RabbitMQBroker:
    """The broker a URL names, with the credentials to use (the options' ``username`` /
    ``password`` win over the URL's, default ``guest``) and the connection settings."""

    scheme: str
    host: str
    port: int
    vhost: str
    username: str
    password: str = field(repr=False)
    tls: Tls | None
    settings: RabbitMQSettings

    @classmethod
    def from_url(cls, url: BrokerURL, settings: RabbitMQSettings) -> RabbitMQBroker:
        """The broker of ``url`` (an empty virtual host is ``/``; the port defaults to
        5672, or 5671 with ``amqps://``); ConfigError for ssl_* options without TLS."""
        tls = settings.tls(url, "amqps")
        return cls(
            scheme=url.scheme,
            host=url.host or "localhost",
            port=url.port or (5671 if tls else 5672),
            vhost=url.path or "/",
            username=settings.username or url.username or "guest",
            password=settings.password or url.password or "guest",
            tls=tls,
            settings=settings,
        )

    def location(self, what: str) -> str:
        """The URL naming ``what`` (``queue=Q``) here, without the credentials."""
        vhost = "" if self.vhost == "/" else self.vhost
        return f"{self.scheme}://{self.host}:{self.port}/{vhost}?{what}"

    async def connect(self, where: str, seconds: float | None = None) -> AbstractRobustConnection:
        """A robust connection (opened again after it is lost, with its channels and
        consumers), tried for up to ``seconds`` (default ``connect_timeout``); raises
        ConnectError (one line naming ``where``, without the password)."""
        made = await self._connect(where, seconds, robust=True, client=where)
        return cast(AbstractRobustConnection, made)

    async def connect_once(self, where: str, client: str) -> AbstractConnection:
        """A connection that is not opened again once lost (what it held goes back to
        the queue), tried as :meth:`connect` does; ``client`` names it in the broker."""
        return await self._connect(where, None, robust=False, client=client)

    async def _connect(
        self, where: str, seconds: float | None, *, robust: bool, client: str
    ) -> AbstractConnection:
        try:
            context = self.tls.context() if self.tls else None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{where}: TLS settings: {self.hide(exc)}") from None
        settings = self.settings
        kind: Any = aio_pika.RobustConnection if robust else aio_pika.Connection
        opener: Any = aio_pika.connect_robust if robust else aio_pika.connect
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "login": self.username,
            "password": self.password,
            "virtualhost": self.vhost,
            "ssl": self.tls is not None,
            "ssl_context": context,
            "heartbeat": settings.heartbeat,
            "client_properties": {"connection_name": f"arroyo {client} (pid {os.getpid()})"},
        }
        if robust:
            options["reconnect_interval"] = settings.reconnect_interval

        async def attempt(left: float) -> AbstractConnection:
            made: list[AbstractConnection] = []

            def tracked(*args: Any, **kwargs: Any) -> AbstractConnection:
                made.append(kind(*args, **kwargs))
                return made[-1]

            try:
                connection: AbstractConnection = await opener(
                    **options, timeout=left, connection_class=tracked
                )
            except BaseException:  # timed out too: stop the reconnecting it began
                for one in made:
                    await disconnect(one)
                raise
            return connection

        limit = settings.connect_timeout if seconds is None else seconds
        return await connect_within(where, limit, attempt, self.explain, self.hide)

    def explain(self, exc: BaseException) -> Failure:
        """Why connecting failed (see :func:`~arroyo.brokers.connecting.socket_failure`)."""
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            code = str(exc).split(" - ")[0]  # ACCESS_REFUSED
            return Failure(
                f"the broker refused the credentials of {self.username!r} ({code})", final=True
            )
        if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
            return Failure(
                f"the broker closed the connection when it opened the virtual host "
                f"{self.vhost!r}: does it exist, and may {self.username!r} use it?",
                final=True,
            )
        return socket_failure(exc, tls=self.tls is not None, plain="amqp", secure="amqps")

    def hide(self, error: BaseException | str) -> str:
        """The text of ``error`` without the password (for errors and logs)."""
        text = str(error) or type(error).__name__
        return redact(text, self.password if self.password != "guest" else None)


def is_up(connection: AbstractConnection | None) -> bool:
    """True while ``connection`` has a live AMQP connection under it (a robust one that
    lost it has none until it has connected again)."""
    transport = connection.transport if connection is not None else None
    return transport is not None and not transport.connection.is_closed


async def disconnect(connection: AbstractConnection | None) -> None:
    """Close ``connection`` (None: nothing to do), whatever state it is in."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()


async def declare(
    channel: AbstractChannel, broker: RabbitMQBroker, settings: RabbitMQQueueSettings, where: str
) -> AbstractQueue:
    """The queue of ``settings``, declared durable (of its ``queue_type``) when missing,
    or only looked up with ``declare=false``; ConnectError (one line) when it exists
    with other settings, does not exist, or cannot be declared."""
    queue, queue_type = settings.queue, settings.queue_type
    arguments: Any = {"x-queue-type": queue_type} if queue_type != "classic" else None
    try:
        return await channel.declare_queue(
            queue, durable=True, passive=not settings.declare, arguments=arguments
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConnectError(
            f"{where}: queue {queue!r} exists with other settings than durable, "
            f"queue_type={queue_type}: {broker.hide(exc)}"
        ) from None
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise ConnectError(f"{where}: queue {queue!r} does not exist (and declare=false)") from None
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        raise ConnectError(f"{where}: cannot declare queue {queue!r}: {broker.hide(exc)}") from None


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """Connect and close within ``seconds`` (``arroyo check --connect``; ``endpoint`` is
    a RabbitMQ listener or publisher): no queue is declared, nothing consumed or
    published."""
    broker: RabbitMQBroker = endpoint.broker
    connection = await broker.connect(endpoint.name, seconds)
    await connection.close()
    return "ok", "connected"
