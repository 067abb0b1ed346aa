"""The Kafka publisher: produces to one topic, confirmed by the delivery report.

With ``format: NAME`` (``ess``, ``bluesky-kafka``: :mod:`arroyo.formats`) each message is
sent as the records the format makes for it, through
:class:`~arroyo.formats.sending.FormatSender`: in order, each with the record's key or
else the message's stream, and the format's headers only (no ``arroyo.*`` headers: the
values are not Arroyo's framing); the message is confirmed once all of them are. Dead
letters keep Arroyo's own framing (:meth:`KafkaPublisher.publish_dead_letter`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.kafka import admin
from arroyo.brokers.kafka.connection import hider
from arroyo.brokers.kafka.producer import Entry, Producer
from arroyo.brokers.kafka.settings import KafkaPublisherSettings, check_settings, topics
from arroyo.brokers.kafka.transactions import Transactions
from arroyo.codec import Codec, default_codec
from arroyo.errors import ConfigError, MessageTooLargeError, PublishError
from arroyo.formats import Record, WireFormat
from arroyo.formats.sending import FormatSender
from arroyo.message import Message
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher, send_runs

log = logging.getLogger("arroyo.brokers.kafka")


class KafkaPublisher(PipelinedPublisher):
    """Produces to one topic; confirmed by the delivery report (all in-sync replicas).

    Outputs keep their order also when a delivery fails (see
    :mod:`arroyo.brokers.kafka.producer`); in an exactly-once block they go through the
    block's transactions (:mod:`arroyo.brokers.kafka.transactions`).
    """

    def __init__(
        self,
        url: BrokerURL,
        topic: str,
        settings: KafkaPublisherSettings,
        config: dict[str, str],
        codec: Codec | None = None,
        wire_format: WireFormat | None = None,
    ) -> None:
        self.url = url
        self.topic = topic
        self.settings = settings
        self.codec = codec or default_codec()
        self.config = config
        """The producer's librdkafka settings."""
        self.hide = hider(config, url.password)
        self.connect_timeout = settings.connect_timeout
        self.transactions: Transactions | None = None
        """The exactly-once block's transactions this publisher sends through (set by
        :func:`~arroyo.brokers.kafka.exactly_once.exactly_once`), or None."""
        self._name = str(url)
        self._core: Producer | None = None
        self._headers: dict[tuple[str, bytes], list[tuple[str, str]]] = {}
        self.formatted: FormatSender | None = None
        """Sends messages as ``wire_format``'s records (None: Arroyo's own framing)."""
        if wire_format is not None:
            self.formatted = FormatSender(wire_format, settings.format, self._produce_record)

    @property
    def connected(self) -> bool:
        """False while the producer reaches no broker of the cluster (librdkafka's
        statistics, every second); True when it cannot tell (transactions)."""
        core = self._core
        return core.reachability.up if core is not None else True

    @property
    def name(self) -> str:
        return self._name

    @property
    def servers(self) -> str:
        return self.config["bootstrap.servers"]

    async def start(self) -> None:
        """Create the producer, check that the cluster answers (within connect_timeout,
        else ConnectError), then check the topic's size limit (see the package docstring)."""
        if self.transactions is not None:
            await self.transactions.start(self.connect_timeout)
        else:
            self._core = Producer(self.name, self.config, self.hide)
            await self._core.start(self.connect_timeout)
        await asyncio.to_thread(
            admin.fit_topic,
            self.name,
            self.config,
            self.topic,
            int(self.config["message.max.bytes"]),
            self.connect_timeout,
            self.hide,
        )

    def _schema_headers(self, kind: str, value: bytes) -> list[tuple[str, str]]:
        prefix = value[:10] if value[:1] == b"\xc3" else value[:5]
        headers = self._headers.get((kind, prefix))
        if headers is None:
            if prefix[:2] == b"\xc3\x01":
                schema = prefix[2:10].hex()
            else:
                schema = str(int.from_bytes(prefix[1:5], "big"))
            headers = [("arroyo.kind", kind), ("arroyo.schema", schema)]
            self._headers[(kind, prefix)] = headers
        return headers

    def _produce(
        self, value: bytes, key: bytes | None, headers: list[Any], what: str
    ) -> asyncio.Future[None]:
        if self.transactions is not None:
            return self.transactions.send(self.topic, value, key, headers, what)
        if self._core is None:
            raise PublishError(f"{self.name}: start() was not called")
        return self._core.produce(self.topic, value, key, headers, what)

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode and enqueue ``message`` now (so send order is partition order); the
        future completes with its delivery report (or NotSent: see
        :mod:`arroyo.brokers.kafka.producer`). Raises EncodeError, or
        MessageTooLargeError when it exceeds the producer's message.max.bytes.

        With a ``format``, the format's records are sent instead (see the module
        documentation; ``wire`` is not used)."""
        if self.formatted is not None:
            return self.formatted.send(message)
        return self._produce(*self._entry(message, wire))

    def send_many(
        self, messages: Sequence[Message], wires: Sequence[bytes | None]
    ) -> list[asyncio.Future[None]]:
        """:meth:`send` each, as :meth:`Publisher.send_many` says, in one call of the
        producer (:meth:`Producer.produce_many`) for the messages between two that
        cannot be encoded."""
        produce: Callable[[list[Entry]], list[asyncio.Future[None]]]
        if self.formatted is not None:
            return super().send_many(messages, wires)
        if self.transactions is not None:
            produce = functools.partial(self.transactions.send_many, self.topic)
        elif self._core is not None:
            produce = functools.partial(self._core.produce_many, self.topic)
        else:
            return super().send_many(messages, wires)  # fails each: not started
        return send_runs(messages, wires, self._entry, produce)

    def _entry(self, message: Message, wire: bytes | None) -> Entry:
        """What the producer is given for ``message``: value, key, headers and what it is
        (for errors). Raises EncodeError."""
        value = self.codec.encode(message, wire)
        headers = [*self._schema_headers(message.kind, value), ("arroyo.id", message.id)]
        if message.trace:
            headers += message.trace.items()
        key = message.stream.encode() if message.stream else None
        return value, key, headers, f"{message.kind} {message.id}"

    def _produce_record(self, message: Message, record: Record, what: str) -> asyncio.Future[None]:
        """Enqueue one record of a format (the hook of :class:`FormatSender`)."""
        key = record.key if record.key is not None else message.stream.encode() or None
        headers: list[Any] = list(record.headers)
        if message.trace:
            headers += message.trace.items()
        return self._produce(record.value, key, headers, what)

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Produce the original bytes with the reason and source in headers (see the
        package docstring for multipart messages). When they exceed message.max.bytes,
        the dead letter is sent without them (header ``arroyo.dead-letter.omitted``).
        A ``format`` is not used: dead letters keep Arroyo's own framing."""
        data = letter.data
        parts = [bytes(p) for p in data] if isinstance(data, list) else [bytes(data)]
        headers: list[tuple[str, str | bytes]] = list(letter.headers().items())
        if isinstance(data, list):
            headers.append(("arroyo.dead-letter.parts", str(len(parts))))
            headers += [(f"arroyo.dead-letter.part.{i}", p) for i, p in enumerate(parts[1:], 1)]
        value = parts[0] if parts else b""
        what = f"a dead letter from {dict(letter.source)}"
        try:
            await self._produce(value, None, headers, what)
        except MessageTooLargeError as exc:
            log.error("%s: %s; sending the dead letter without the original bytes", self.name, exc)
            size = sum(len(p) for p in parts)
            headers = [h for h in headers if not h[0].startswith("arroyo.dead-letter.part.")]
            headers.append(("arroyo.dead-letter.omitted", f"original of {size} bytes: {exc}"))
            await self._produce(b"", None, headers, what)

    async def close(self) -> None:
        """Wait for the delivery reports of everything sent (up to 30 s), then stop."""
        if self.transactions is not None:
            await self.transactions.close()
        elif self._core is not None:
            await self._core.close()
            self._core = None


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> KafkaPublisher:
    """``kafka://HOST:PORT/TOPIC`` plus the options of
    :class:`~arroyo.brokers.kafka.settings.KafkaPublisherSettings` and any librdkafka
    producer setting (``linger.ms``, ``compression.type``, ``message.max.bytes``...),
    checked by librdkafka now; a ``format`` is made now (an unknown one, or options it
    does not take, are a ConfigError)."""
    settings, passing = KafkaPublisherSettings.parse(url, options)
    config = settings.producer_config(url, passing)
    found = topics(url)
    if len(found) > 1 or found[0].startswith("^"):
        raise ConfigError(f"{url}: a Kafka publisher writes to exactly one topic")
    wire_format = settings.wire_format(url)
    made = KafkaPublisher(url, found[0], settings, config, codec or default_codec(), wire_format)
    check_settings(url, made.config, "producer", made.hide)
    return made
