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

Options (URL query or YAML): those of
:class:`~arroyo.brokers.kafka.settings.KafkaBrowseSettings` (``connect_timeout``,
``batch``, the TLS options) and any librdkafka setting (keys with a dot), but none that
would make it consume (``group.id``, ``enable.auto.commit``). A listener's own options
(``group``, the commit options...) are ignored, with a warning, so a listener's URL can
be pasted as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import confluent_kafka as ck

from arroyo.brokers import BrokerURL
from arroyo.brokers.kafka.connection import ClientLog, error_text, hider, reach, unreachable
from arroyo.brokers.kafka.settings import (
    KafkaBrowseSettings,
    KafkaListenerSettings,
    topics,
)
from arroyo.browse.base import Browser, Reading, Record, without_listening_options
from arroyo.errors import ArroyoError, ConfigError, ConnectError

_REFUSED = {
    "group.id": "tail reads without a consumer group",
    "enable.auto.commit": "tail never commits",
    "enable.auto.offset.store": "tail never commits",
}
_CONSUMING = sorted(set(KafkaListenerSettings.known()) - set(KafkaBrowseSettings.known()))
"""A listener's options that make no sense for a reader that changes nothing."""

Partition = tuple[str, int]


class KafkaBrowser(Browser):
    """Reads Kafka partitions by assignment, committing nothing (see the module docstring)."""

    def __init__(
        self,
        url: BrokerURL,
        topics: list[str],
        settings: KafkaBrowseSettings,
        config: dict[str, str],
        reading: Reading,
    ) -> None:
        self.url = url
        self.topics = topics
        self.settings = settings
        self.reading = reading
        self.timeout = settings.connect_timeout
        self.batch = settings.batch
        self.config: dict[str, str] = {
            "group.id": f"arroyo-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **config,
        }
        self.hide = hider(config, url.password)
        self._said = ClientLog(self.name, self.hide)
        self._consumer: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._ends: dict[Partition, int] = {}
        self._open_partitions: set[Partition] = set()

    @property
    def name(self) -> str:
        return str(self.url)

    async def _call(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    def _on_error(self, error: Any) -> None:
        """librdkafka's error callback (consumer thread): kept to explain a failure."""
        self._said.reports.append(self.hide(error.str()))

    async def open(self) -> None:
        """Find the topics' partitions and their end offsets, and assign them."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-tail-kafka")
        config = {**self.config, "error_cb": self._on_error, "logger": self._said}
        try:
            self._consumer = await self._call(ck.Consumer, config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self.hide(error_text(exc))}") from None
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
        """(Consumer thread) The cluster's metadata, waiting at most ``timeout`` (see
        :func:`~arroyo.brokers.kafka.connection.reach`)."""
        return reach(self._consumer, self.timeout, lambda: False, self._said, self.config)

    async def _partitions(self) -> list[Partition]:
        try:
            metadata = await self._call(self._metadata)
        except ck.KafkaException as exc:
            reports = [*self._said.reports] or [self.hide(error_text(exc))]
            line = unreachable(self.name, self.config, reports, self.timeout)
            raise ConnectError(self.hide(line)) from None
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
                    raise ArroyoError(f"{self.name}: topic {name!r}: {self.hide(topic.error)}")
                found += [(name, p) for p in sorted(topic.partitions)]
        return found

    def _watermarks(self, key: Partition) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                ck.TopicPartition(*key), timeout=self.timeout, cached=False
            )
        except ck.KafkaException as exc:
            raise ArroyoError(
                f"{self.name}: cannot read the offsets of {key[0]}[{key[1]}]: "
                f"{self.hide(error_text(exc))}"
            ) from None
        return int(low), int(high)

    async def records(self) -> AsyncGenerator[Record, None]:
        exit_at_end = self.reading.exit_at_end
        while not exit_at_end or self._open_partitions:
            try:
                batch = await self._call(self._consumer.consume, self.batch, 0.2)
            except ck.KafkaException as exc:
                raise ArroyoError(f"{self.name}: {self.hide(error_text(exc))}") from None
            for msg in batch:
                key = (msg.topic(), msg.partition())
                error = msg.error()
                if error is not None:
                    if error.code() == ck.KafkaError._PARTITION_EOF:
                        self._open_partitions.discard(key)
                    elif error.fatal() or not error.retriable():
                        raise ArroyoError(f"{self.name}: {self.hide(error.str())}")
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
        if kind != ck.TIMESTAMP_NOT_AVAILABLE:
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


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> KafkaBrowser:
    """``kafka://HOST:PORT/TOPIC[,TOPIC...|^REGEX]`` plus the options of the module
    docstring (a listener's own options are ignored, with a warning)."""
    kept_url, kept = without_listening_options(url, options, _CONSUMING)
    settings, passing = KafkaBrowseSettings.parse(kept_url, kept)
    for key in passing:
        if key in _REFUSED:
            raise ConfigError(f"{url}: {key} cannot be set: {_REFUSED[key]}")
    config = settings.client_config(url, passing)
    return KafkaBrowser(url, topics(url), settings, config, reading)
