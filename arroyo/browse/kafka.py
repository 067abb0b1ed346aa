"""Browse Kafka topics: ``kafka://HOST:PORT/TOPIC[,TOPIC...|^REGEX]``.

The consumer is assigned every partition of the topics explicitly (``assign()``, never
``subscribe()``), so it joins no consumer group, and it never commits an offset
(``enable.auto.commit=false``, no commit call): the broker keeps nothing about it, and
the groups of real consumers and their committed offsets are untouched. librdkafka needs
a ``group.id`` even so: a random ``arroyo-tail-...`` one is given and never used.

From the beginning, each partition is read from its earliest kept offset; from the end,
from its end when the browser opened. Caught up (to stop there) means: every partition
reached the end offset it had at the start (messages written afterwards are not shown),
or librdkafka reported the end of the partition (an open transaction can hold the end
back). ``isolation.level`` is ``read_committed``, as for Arroyo's listener.

Options (URL query or YAML): ``connect_timeout`` (seconds to reach the cluster, default 10),
``batch`` (messages per fetch, default 500), and any librdkafka setting (keys with a
dot: ``security.protocol``, ``ssl.ca.location``, ``sasl.password``...); ``ssl_ca``,
``ssl_cert``, ``ssl_key`` as for the connector. A listener's ``group`` and commit
options are ignored (with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from arroyo._optional import require
from arroyo.brokers import BrokerURL
from arroyo.brokers.connecting import CONNECT_OPTIONS, connect_timeout
from arroyo.brokers.kafka_checks import unreachable
from arroyo.browse.base import Browser, Reading, Record, browse_options
from arroyo.errors import ArroyoError, ConfigError
from arroyo.runtime.logs import redact

_OPTIONS: dict[str, Any] = {**CONNECT_OPTIONS, "batch": 500}
_IGNORED = (
    "group",
    "delivery_journal",
    "commit_interval_ms",
    "commit_every",
    "batch_size",
    "poll_timeout_ms",
    "drain_timeout_ms",
    "pause_after_ms",
)
_TLS_ALIASES = {
    "ssl_ca": "ssl.ca.location",
    "ssl_cert": "ssl.certificate.location",
    "ssl_key": "ssl.key.location",
}
_REFUSED = {
    "group.id": "tail reads without a consumer group",
    "enable.auto.commit": "tail never commits",
    "enable.auto.offset.store": "tail never commits",
}
_SECRET = re.compile(r"password|secret|token|oauthbearer\.config", re.IGNORECASE)

Partition = tuple[str, int]

_client_log = logging.getLogger("arroyo.browse.kafka.client")


class _ClientLog:
    """librdkafka's own log lines, at debug level and without secrets; connection
    failures (``FAIL``) also go to ``failed``, to explain why the cluster cannot be
    reached."""

    def __init__(self, hide: Callable[[object], str], failed: Callable[[str], None]) -> None:
        self._hide = hide
        self._failed = failed

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = self._hide(msg % args if args else msg)
        if args and args[0] == "FAIL":
            self._failed(text.split("]: ", 1)[-1])
        if _client_log.isEnabledFor(logging.DEBUG):
            _client_log.debug("%s", text)


def _client_config(url: BrokerURL, options: Mapping[str, Any]) -> dict[str, str]:
    """librdkafka settings from the URL query and ``options`` (keys with a dot, and the
    TLS aliases); ``options`` win."""
    config: dict[str, str] = {}
    for given in (url.query, options):
        for key, value in given.items():
            if key in _REFUSED:
                raise ConfigError(f"{url}: {key} cannot be set: {_REFUSED[key]}")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if "." in key:
                config[key] = text
            elif key in _TLS_ALIASES:
                config[_TLS_ALIASES[key]] = text
                config.setdefault("security.protocol", "SSL")
    if "bootstrap.servers" not in config:
        if not url.host:
            raise ConfigError(f"{url}: a Kafka URL needs a broker address: kafka://HOST:9092/TOPIC")
        config["bootstrap.servers"] = f"{url.host}:{url.port or 9092}"
    return config


class KafkaBrowser(Browser):
    """Reads Kafka partitions by assignment, committing nothing (see the module docstring)."""

    def __init__(
        self,
        url: BrokerURL,
        topics: list[str],
        config: dict[str, str],
        reading: Reading,
        *,
        timeout: float = 10.0,
        batch: int = 500,
    ) -> None:
        self.url = url
        self.topics = topics
        self.reading = reading
        self.timeout = timeout
        self.batch = batch
        self.config: dict[str, str] = {
            "group.id": f"arroyo-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **config,
        }
        self._secrets = [v for k, v in config.items() if _SECRET.search(k)]
        if url.password:
            self._secrets.append(url.password)
        self._ck: Any = None
        self._consumer: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._ends: dict[Partition, int] = {}
        self._open_partitions: set[Partition] = set()
        self._errors: list[str] = []

    @property
    def name(self) -> str:
        return str(self.url)

    def _hide(self, text: object) -> str:
        return redact(str(text), *self._secrets)

    async def _call(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    def _on_error(self, error: Any) -> None:
        """librdkafka's error callback (consumer thread): kept to explain a failure."""
        self._note(self._hide(error.str()))

    def _note(self, text: str) -> None:
        if text not in self._errors:
            self._errors.append(text)
        del self._errors[:-5]

    async def open(self) -> None:
        """Find the topics' partitions and their end offsets, and assign them."""
        ck = self._ck = require("confluent_kafka", "kafka", "Browsing Kafka (kafka:// URLs)")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-tail-kafka")
        try:
            self._consumer = await self._call(
                ck.Consumer,
                {
                    **self.config,
                    "error_cb": self._on_error,
                    "logger": _ClientLog(self._hide, self._note),
                },
            )
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self._hide(_text(exc))}") from None
        partitions = await self._partitions()
        for key in partitions:
            low, high = await self._call(self._watermarks, key)
            self._ends[key] = high
            if self.reading.from_end or high <= low:
                continue  # nothing there to show
            self._open_partitions.add(key)
        start = ck.OFFSET_END if self.reading.from_end else ck.OFFSET_BEGINNING
        if not self.reading.exit_at_end:
            self._open_partitions = set(partitions)
        assigned = [ck.TopicPartition(t, p, start) for t, p in sorted(self._open_partitions)]
        await self._call(self._consumer.assign, assigned)

    def _metadata(self) -> Any:
        """(Consumer thread) The cluster's metadata, waiting at most ``timeout`` and serving
        the error callback meanwhile (so a failure can be explained)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._consumer.list_topics(
                    None, max(0.1, min(1.0, deadline - time.monotonic()))
                )
            except self._ck.KafkaException:
                self._consumer.poll(0)
                if time.monotonic() >= deadline:
                    raise

    async def _partitions(self) -> list[Partition]:
        try:
            metadata = await self._call(self._metadata)
        except self._ck.KafkaException as exc:
            reports = [*self._errors, self._hide(_text(exc))]
            line = unreachable(self.name, self.config, reports, self.timeout)
            raise ArroyoError(self._hide(line)) from None
        found: list[Partition] = []
        for wanted in self.topics:
            if wanted.startswith("^"):
                pattern = re.compile(wanted)
                names = sorted(t for t in metadata.topics if pattern.search(t))
            elif wanted in metadata.topics:
                names = [wanted]
            else:
                raise ArroyoError(f"{self.name}: no topic {wanted!r} on the cluster")
            for name in names:
                topic = metadata.topics[name]
                if topic.error is not None:
                    raise ArroyoError(f"{self.name}: topic {name!r}: {self._hide(topic.error)}")
                found += [(name, p) for p in sorted(topic.partitions)]
        return found

    def _watermarks(self, key: Partition) -> tuple[int, int]:
        ck = self._ck
        try:
            low, high = self._consumer.get_watermark_offsets(
                ck.TopicPartition(*key), timeout=self.timeout, cached=False
            )
        except ck.KafkaException as exc:
            raise ArroyoError(
                f"{self.name}: cannot read the offsets of {key[0]}[{key[1]}]: "
                f"{self._hide(_text(exc))}"
            ) from None
        return int(low), int(high)

    async def records(self) -> AsyncGenerator[Record, None]:
        ck = self._ck
        exit_at_end = self.reading.exit_at_end
        while not exit_at_end or self._open_partitions:
            try:
                batch = await self._call(self._consumer.consume, self.batch, 0.2)
            except ck.KafkaException as exc:
                raise ArroyoError(f"{self.name}: {self._hide(_text(exc))}") from None
            for msg in batch:
                key = (msg.topic(), msg.partition())
                error = msg.error()
                if error is not None:
                    if error.code() == ck.KafkaError._PARTITION_EOF:
                        self._open_partitions.discard(key)
                    elif error.fatal() or not error.retriable():
                        raise ArroyoError(f"{self.name}: {self._hide(error.str())}")
                    continue
                if exit_at_end:
                    if key not in self._open_partitions or msg.offset() >= self._ends[key]:
                        self._open_partitions.discard(key)
                        continue  # written after the start: not what we were asked for
                    if msg.offset() >= self._ends[key] - 1:
                        self._open_partitions.discard(key)
                yield self._record(msg)

    def _record(self, msg: Any) -> Record:
        kind, stamp = msg.timestamp()
        source: dict[str, Any] = {
            "url": self.name,
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
        }
        if msg.key() is not None:
            source["key"] = msg.key()
        if kind != self._ck.TIMESTAMP_NOT_AVAILABLE:
            source["timestamp"] = stamp
        headers: dict[str, Any] = {}
        for name, value in msg.headers() or ():
            headers.setdefault(name, []).append(value)
        flat = {k: v[0] if len(v) == 1 else v for k, v in headers.items()}
        value = msg.value() or b""
        parts = flat.pop("arroyo.dead-letter.parts", None)
        if parts is not None:  # a multipart dead letter: parts 1.. are in headers
            data: Any = [value] + [
                flat.pop(f"arroyo.dead-letter.part.{i}", b"") for i in range(1, int(parts))
            ]
            return Record(data, source, flat)
        return Record(value, source, flat)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await self._call(consumer.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _text(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else None
    if error is not None and hasattr(error, "str"):
        return f"{error.name()}: {error.str()}"
    return str(exc) or type(exc).__name__


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> KafkaBrowser:
    """``kafka://HOST:PORT/TOPIC[,TOPIC...|^REGEX]`` plus ``timeout``, ``batch`` and any
    librdkafka consumer setting."""
    require("confluent_kafka", "kafka", "Browsing Kafka (kafka:// URLs)")
    config = _client_config(url, options)
    own_query = {k: v for k, v in url.query.items() if "." not in k and k not in _TLS_ALIASES}
    own_options = {k: v for k, v in options.items() if "." not in k and k not in _TLS_ALIASES}
    own = browse_options(dataclasses.replace(url, query=own_query), own_options, _OPTIONS, _IGNORED)
    timeout = connect_timeout(url, own)
    if own["batch"] < 1:
        raise ConfigError(f"{url}: 'batch' must be at least 1")
    topics = [t.strip() for t in url.path.split(",") if t.strip()]
    if not topics:
        raise ConfigError(f"{url}: a Kafka URL needs a topic, as in kafka://HOST:9092/frames")
    return KafkaBrowser(url, topics, config, reading, timeout=timeout, batch=own["batch"])
