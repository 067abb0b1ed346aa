"""RabbitMQ: ``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`` (``amqps://`` for TLS), with aio-pika.

An empty VHOST is ``/`` (``%2F`` also works). The queue is declared when missing
(``declare=false`` to only use an existing one): durable, of ``queue_type``
``classic`` (default) or ``quorum``. Connections are robust: after a lost connection
or a broker restart they are opened again (every ``reconnect_interval`` seconds),
with their channels, prefetch and consumers.

**Listener.** Consumes the queue with manual acknowledgements; workers sharing a queue
are competing consumers. ``prefetch`` (default 256) is how many unacknowledged
messages the broker sends ahead: the backpressure. A message is acknowledged once the
Block is done with it; a message received on a channel that has since been re-opened
cannot be acknowledged any more (the broker redelivers it, so it is processed again).
What a worker had not acknowledged when it died goes back to the queue.
``Received.deliveries`` is exact on quorum queues (their ``x-delivery-count``
header). Classic queues only say whether a message was delivered before, so there it
is 1 or 2, and a message that keeps crashing workers is dead-lettered only when
``max_deliveries`` is 1: use ``queue_type=quorum`` where that matters. The header is
read only when the listener's ``queue_type`` is ``quorum`` (checked by the declaration;
with ``declare=false`` it must match the queue): on a classic queue an
``x-delivery-count`` comes with the message (moved from a quorum queue), and counts
nothing here. The delivery journal (``delivery_journal``, on by default:
:mod:`arroyo.runtime.journal`) replaces the broker's count, on both kinds of queue, with
the number of workers (of this machine) that died while processing the message, for
messages that have a ``message_id`` (Arroyo's publisher sets it): the other messages a
dying worker held are not counted with it.

**Publisher.** Persistent messages (delivery mode 2), each confirmed by the broker
(publisher confirms); sends are pipelined on one channel and keep their order. By
default to the queue (the default exchange, routing key = queue name); with
``exchange=X`` (which must exist) and ``routing_key=K`` to an exchange. Each message
carries ``message_id`` (the Arroyo id), ``type`` (start/event/stop) and the headers
``arroyo.stream`` and ``arroyo.seq``. A message no queue takes is not dropped: it is
returned, and the publish fails (and is retried by the Block), as does one not
confirmed within ``confirm_timeout`` seconds (default 60).

**Dead letters** (as the Block's ``dead_letter``): the original bytes with RabbitMQ's
dead-letter headers (``x-death``, ``x-first-death-reason`` = ``rejected``,
``x-first-death-queue``, ``x-first-death-exchange``) and Arroyo's
(``arroyo.dead-letter.reason``, ``arroyo.source.queue``...).

Connection settings (URL query or YAML): ``password`` and ``username`` (instead of
the URL's), ``timeout`` (seconds, for acknowledgements), ``connect_timeout`` (seconds,
default 10: how long starting keeps trying to reach the broker before it fails with one
line, see :mod:`arroyo.brokers.connecting`), ``reconnect_interval`` (seconds),
``heartbeat`` (seconds); with ``amqps://``, ``ssl_ca`` (CA file), ``ssl_cert`` /
``ssl_key`` (client certificate), ``ssl_verify`` (default true). Passwords never appear
in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from arroyo._optional import require
from arroyo.brokers import TLS_OPTIONS, BrokerURL, Tls, take_options
from arroyo.brokers.connecting import (
    CONNECT_OPTIONS,
    CONNECT_TIMEOUT,
    Failure,
    connect_timeout,
    connect_within,
    socket_failure,
)
from arroyo.brokers.connector import Connector
from arroyo.codec import Codec
from arroyo.errors import ConfigError, ConnectError, PublishError
from arroyo.message import Message
from arroyo.runtime.journal import from_option
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.logs import redact
from arroyo.runtime.ordering import FailStop
from arroyo.runtime.parser import Parser
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher

require("aio_pika", "rabbitmq", "The RabbitMQ connector (amqp:// URLs)")

import aio_pika  # noqa: E402
import aiormq  # noqa: E402
from aio_pika.abc import (  # noqa: E402
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage  # noqa: E402
from pamqp.commands import Basic  # noqa: E402

if TYPE_CHECKING:
    from arroyo.browse.base import Browser, Reading

log = logging.getLogger("arroyo.brokers.rabbitmq")

_CONNECTION_OPTIONS: dict[str, Any] = {
    "username": None,
    "password": None,
    "timeout": 10.0,
    **CONNECT_OPTIONS,
    "reconnect_interval": 2.0,
    "heartbeat": 60,
    **TLS_OPTIONS,
}
_QUEUE_OPTIONS: dict[str, Any] = {"queue": "", "queue_type": "classic", "declare": True}
_QUEUE_TYPES = ("classic", "quorum")
_NO_DRAIN: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters else {}
)
"""Publishes queue their frames without waiting for each to be written (aiormq >= 7.2);
the order stays that of the channel's write queue and confirmations are still awaited."""


class RabbitMQConnectError(ConnectError):
    """The broker could not be reached, refused the credentials, or refused a queue."""


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


# -- connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class AmqpSettings:
    """Where and how to connect (from the URL and the options)."""

    host: str
    port: int
    vhost: str = "/"
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    tls: Tls | None = None
    timeout: float = 10.0
    connect_timeout: float = CONNECT_TIMEOUT
    reconnect_interval: float = 2.0
    heartbeat: int = 60

    @classmethod
    def from_url(cls, url: BrokerURL, opts: dict[str, Any]) -> AmqpSettings:
        """Settings from ``url`` and the options taken by :func:`take_options`."""
        tls = Tls.from_options(url, opts, "amqps")
        for key in ("timeout", "reconnect_interval"):
            if opts[key] <= 0:
                raise ConfigError(f"{url}: option {key!r} must be positive, got {opts[key]}")
        return cls(
            host=url.host or "localhost",
            port=url.port or (5671 if tls else 5672),
            vhost=url.path or "/",
            username=opts["username"] or url.username or "guest",
            password=opts["password"] or url.password or "guest",
            tls=tls,
            timeout=float(opts["timeout"]),
            connect_timeout=connect_timeout(url, opts),
            reconnect_interval=float(opts["reconnect_interval"]),
            heartbeat=int(opts["heartbeat"]),
        )

    async def connect(self, where: str) -> AbstractRobustConnection:
        """A robust connection, trying for up to ``connect_timeout`` seconds; raises
        RabbitMQConnectError (one line naming ``where``, without the password)."""
        try:
            context = self.tls.context() if self.tls else None
        except (OSError, ssl.SSLError) as exc:
            raise RabbitMQConnectError(f"{where}: TLS settings: {self.hide(exc)}") from None

        async def attempt(seconds: float) -> AbstractRobustConnection:
            made: list[AbstractRobustConnection] = []

            def tracked(*args: Any, **kwargs: Any) -> AbstractRobustConnection:
                made.append(aio_pika.RobustConnection(*args, **kwargs))
                return made[-1]

            try:
                connection: AbstractRobustConnection = await aio_pika.connect_robust(
                    host=self.host,
                    port=self.port,
                    login=self.username,
                    password=self.password,
                    virtualhost=self.vhost,
                    ssl=self.tls is not None,
                    ssl_context=context,
                    timeout=seconds,
                    reconnect_interval=self.reconnect_interval,
                    heartbeat=self.heartbeat,
                    client_properties={"connection_name": f"arroyo {where} (pid {os.getpid()})"},
                    connection_class=cast(Any, tracked),
                )
            except BaseException:  # timed out too: stop the reconnecting it began
                for one in made:
                    with contextlib.suppress(Exception):
                        await one.close()
                raise
            return connection

        try:
            return await connect_within(where, self.connect_timeout, attempt, self._explain)
        except ConnectError as exc:
            raise RabbitMQConnectError(self.hide(str(exc))) from None

    def _explain(self, exc: BaseException) -> Failure:
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


def _location(url: BrokerURL, settings: AmqpSettings, what: str) -> str:
    vhost = "" if settings.vhost == "/" else settings.vhost
    return f"{url.scheme}://{settings.host}:{settings.port}/{vhost}?{what}"


async def _declare(
    channel: AbstractChannel,
    settings: AmqpSettings,
    queue: str,
    queue_type: str,
    declare: bool,
    where: str,
) -> AbstractQueue:
    """The queue, declared durable when missing (or only checked with declare=False)."""
    arguments: Any = {"x-queue-type": queue_type} if queue_type != "classic" else None
    try:
        return await channel.declare_queue(
            queue, durable=True, passive=not declare, arguments=arguments
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise RabbitMQConnectError(
            f"{where}: queue {queue!r} exists with other settings than durable, "
            f"queue_type={queue_type}: {settings.hide(exc)}"
        ) from None
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise RabbitMQConnectError(
            f"{where}: queue {queue!r} does not exist (and declare=false)"
        ) from None
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        raise RabbitMQConnectError(
            f"{where}: cannot declare queue {queue!r}: {settings.hide(exc)}"
        ) from None


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


# -- listener ------------------------------------------------------------------------


class RabbitMQListener(Listener):
    """Consumes a queue with manual acknowledgements (see the module docstring)."""

    def __init__(
        self,
        settings: AmqpSettings,
        queue: str,
        *,
        queue_type: str = "classic",
        prefetch: int = 256,
        declare: bool = True,
        parser: Parser | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.queue = queue
        self.queue_type = queue_type
        self.prefetch = prefetch
        self.declare = declare
        self._location = location or f"amqp://{settings.host}:{settings.port}/?queue={queue}"
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopping = False

    @property
    def name(self) -> str:
        return self._location

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def connect(self) -> None:
        """Connect (within connect_timeout), open a channel, declare the queue; raises
        RabbitMQConnectError (one line) when any of it fails."""
        if self._queue is not None:
            return
        if self._connection is None:
            self._connection = await self.settings.connect(self.name)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            self._queue = await _declare(
                channel, self.settings, self.queue, self.queue_type, self.declare, self.name
            )
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            raise RabbitMQConnectError(f"{self.name}: {self.settings.hide(exc)}") from None

    async def start(self, intake: Intake) -> None:
        """Consume and hand each message over in delivery order until :meth:`stop`; the
        robust connection consumes again by itself after a reconnection."""
        if self._stopping:
            return
        await self.connect()
        queue = self._queue
        assert queue is not None
        try:
            tag = await queue.consume(self._on_message, no_ack=False)
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            raise RabbitMQConnectError(f"{self.name}: {self.settings.hide(exc)}") from None
        log.info("%s: consuming (%s queue, prefetch %d)", self.name, self.queue_type, self.prefetch)
        try:
            while (message := await self._inbox.get()) is not None:
                source: dict[str, Any] = {
                    "url": self.name,
                    "queue": self.queue,
                    "delivery_tag": message.delivery_tag,
                }
                if message.message_id:
                    source["message_id"] = message.message_id
                count = deliveries(message, self.queue_type == "quorum")
                await intake.put(Received(message.body, source, message, count))
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            await self._give_back()

    async def _give_back(self) -> None:
        """Requeue what was received and not handed over."""
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            if message is None:
                continue
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
        try:
            if self._current(message):
                async with asyncio.timeout(self.settings.timeout):
                    await message.ack()
                return
            reason: object = "its connection was closed"
        except (
            aiormq.exceptions.ChannelInvalidStateError,
            aiormq.exceptions.AMQPError,
            TimeoutError,
        ) as exc:
            reason = exc
        log.debug(
            "%s: delivery %s was received on a channel that is closed now; not "
            "acknowledged (the broker delivers it again): %r",
            self.name,
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
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


# -- publisher -----------------------------------------------------------------------


class RabbitMQPublisher(PipelinedPublisher):
    """Publishes persistent messages with publisher confirms (see the module docstring)."""

    def __init__(
        self,
        settings: AmqpSettings,
        codec: Codec,
        *,
        queue: str = "",
        queue_type: str = "classic",
        declare: bool = True,
        exchange: str = "",
        routing_key: str | None = None,
        confirm_timeout: float = 60.0,
        location: str | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.confirm_timeout = confirm_timeout
        self.queue = queue
        self.queue_type = queue_type
        self.declare = declare
        self.exchange = exchange
        self.routing_key = routing_key if routing_key is not None else queue
        self._location = location or f"amqp://{settings.host}:{settings.port}/?queue={queue}"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._fail_stop = FailStop(self._location)

    @property
    def name(self) -> str:
        return self._location

    async def start(self) -> None:
        """Connect, open a channel with publisher confirms, declare the queue (or check
        that the exchange exists)."""
        self._connection = connection = await self.settings.connect(self.name)
        try:
            channel = await connection.channel(publisher_confirms=True)
            if self.exchange:
                await channel.get_exchange(self.exchange, ensure=True)
            elif self.queue:
                await _declare(
                    channel, self.settings, self.queue, self.queue_type, self.declare, self.name
                )
        except aiormq.exceptions.ChannelNotFoundEntity:
            await connection.close()
            raise RabbitMQConnectError(
                f"{self.name}: exchange {self.exchange!r} does not exist"
            ) from None
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            await connection.close()
            raise RabbitMQConnectError(f"{self.name}: {self.settings.hide(exc)}") from None
        except RabbitMQConnectError:
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
        properties = Basic.Properties(
            delivery_mode=2,
            message_id=message.id,
            message_type=message.kind,
            headers={"arroyo.stream": message.stream, "arroyo.seq": message.seq},
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
                timeout=self.confirm_timeout,
                **_NO_DRAIN,
            )
        except asyncio.CancelledError:
            raise
        except (aiormq.exceptions.AMQPError, RuntimeError, OSError, TimeoutError) as exc:
            raise PublishError(f"{self.name}: not confirmed: {self.settings.hide(exc)}") from None
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
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


# -- factories -----------------------------------------------------------------------


def _queue_options(url: BrokerURL, opts: dict[str, Any]) -> None:
    if opts["queue_type"] not in _QUEUE_TYPES:
        raise ConfigError(
            f"{url}: option 'queue_type' must be one of {', '.join(_QUEUE_TYPES)}, "
            f"got {opts['queue_type']!r}"
        )


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> RabbitMQListener:
    """``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q&prefetch=256&queue_type=classic``."""
    known = {**_CONNECTION_OPTIONS, **_QUEUE_OPTIONS, "prefetch": 256, "delivery_journal": ""}
    opts = take_options(url, options, known)
    settings = AmqpSettings.from_url(url, opts)
    _queue_options(url, opts)
    if not opts["queue"]:
        raise ConfigError(
            f"{url}: an AMQP listener needs a queue, as in amqp://guest:guest@127.0.0.1:5672/?queue=frames"
        )
    if opts["prefetch"] < 1:
        raise ConfigError(f"{url}: option 'prefetch' must be at least 1, got {opts['prefetch']}")
    made = RabbitMQListener(
        settings,
        opts["queue"],
        queue_type=opts["queue_type"],
        prefetch=opts["prefetch"],
        declare=opts["declare"],
        parser=parser,
        location=_location(url, settings, f"queue={opts['queue']}"),
    )
    scope = f"amqp {settings.host}:{settings.port}{settings.vhost} {opts['queue']}"
    made.journal = from_option(opts["delivery_journal"], str(url), scope, _message_id_key)
    return made


def _message_id_key(received: Received) -> str | None:
    """A message's key in the delivery journal: its ``message_id`` (Arroyo's publisher
    sets it to the message's id); None without one."""
    return received.source.get("message_id")


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> RabbitMQPublisher:
    """``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`` or ``...?exchange=X&routing_key=K``."""
    known = {
        **_CONNECTION_OPTIONS,
        **_QUEUE_OPTIONS,
        "exchange": "",
        "routing_key": None,
        "confirm_timeout": 60.0,
    }
    opts = take_options(url, options, known)
    settings = AmqpSettings.from_url(url, opts)
    _queue_options(url, opts)
    if opts["confirm_timeout"] <= 0:
        raise ConfigError(f"{url}: option 'confirm_timeout' must be positive")
    if not opts["queue"] and not opts["exchange"]:
        raise ConfigError(
            f"{url}: an AMQP publisher needs a queue (?queue=Q) or an exchange "
            "(?exchange=X&routing_key=K)"
        )
    what = f"queue={opts['queue']}" if not opts["exchange"] else f"exchange={opts['exchange']}"
    return RabbitMQPublisher(
        settings,
        codec,
        queue=opts["queue"],
        queue_type=opts["queue_type"],
        declare=opts["declare"],
        exchange=opts["exchange"],
        routing_key=opts["routing_key"],
        confirm_timeout=float(opts["confirm_timeout"]),
        location=_location(url, settings, what),
    )


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """Connect and close within ``seconds`` (``arroyo check --connect``): no queue is
    declared, nothing consumed or published."""
    settings = dataclasses.replace(endpoint.settings, connect_timeout=seconds)
    connection = await settings.connect(endpoint.name)
    await connection.close()
    return "ok", "connected"


def _browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    from arroyo.browse import rabbitmq as browse

    return browse.browser(url, options, reading)


CONNECTOR = Connector(
    name="rabbitmq",
    schemes=("amqp", "amqps"),
    extra="rabbitmq",
    listener=listener,
    publisher=publisher,
    browser=_browser,
    probe=probe,
)
