"""Every option of the Kafka connector: its name, type, default and constraints.

This is the one place they are written. The URL's query and the YAML options next to the
URL fill these models (see :mod:`arroyo.brokers.settings`); an unknown option, or a value
out of range, is a ConfigError naming the option and ``kafka``.

Keys with a dot are librdkafka's settings (``linger.ms``, ``security.protocol``,
``sasl.password``...): they pass through to the client as they are
(:meth:`KafkaSettings.passes_through`), and librdkafka checks them when the listener or
publisher is made (:func:`check_settings`), before anything starts: a misspelled key is
a ConfigError naming it, with the closest known name. What Arroyo sets in librdkafka
unless told otherwise is here too (:data:`CONSUMER`, :data:`PRODUCER`). ``create:`` next
to a Kafka URL is a key of the endpoint, not of the connector: its model is
``TopicSettings`` in ``arroyo/config.py`` and :mod:`arroyo.brokers.kafka.admin` acts on it.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import confluent_kafka as ck
from pydantic import Field

from arroyo.brokers import BrokerURL
from arroyo.brokers.settings import ConnectSettings, FormatSettings, TlsSettings
from arroyo.errors import ConfigError

log = logging.getLogger("arroyo.brokers.kafka")

Role = Literal["producer", "consumer"]

_TLS_KEYS = {
    "ssl_ca": "ssl.ca.location",
    "ssl_cert": "ssl.certificate.location",
    "ssl_key": "ssl.key.location",
}
"""The TLS options every Arroyo connector takes, as librdkafka names them."""

CONSUMER: dict[str, str] = {
    "enable.auto.commit": "false",
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "enable.partition.eof": "false",
    # librdkafka stops prefetching when its queue is full and by default looks again
    # only after 1 s: a fast Block would drain the queue and wait.
    "fetch.queue.backoff.ms": "10",
}
"""What a listener's consumer gets unless the options say otherwise."""

MESSAGE_MAX_BYTES = 64 << 20
"""The producer's ``message.max.bytes`` unless set: detector frames of several MiB fit
(librdkafka's default, 1 MB, does not take one 1024x1024 frame of 16-bit pixels)."""

PRODUCER: dict[str, str] = {
    # A record counts as delivered once every in-sync replica has it (what the
    # idempotent producer needs anyway, written out): with a topic of replication 3
    # and min.insync.replicas=2, a confirmed message survives the loss of a broker.
    "acks": "all",
    "enable.idempotence": "true",
    "partitioner": "murmur2_random",
    "message.max.bytes": str(MESSAGE_MAX_BYTES),
}
"""What a publisher's producer gets unless the options say otherwise."""


class KafkaSettings(ConnectSettings, TlsSettings):
    """The options of every Kafka endpoint: ``connect_timeout``, and ``ssl_ca``,
    ``ssl_cert``, ``ssl_key`` (librdkafka's ``ssl.ca.location``,
    ``ssl.certificate.location``, ``ssl.key.location``; any of them implies
    ``security.protocol=SSL``) and ``ssl_verify`` (false: librdkafka's
    ``enable.ssl.certificate.verification=false``). Keys with a dot pass through."""

    broker = "kafka"

    @classmethod
    def passes_through(cls, key: str) -> bool:
        """librdkafka's settings (keys with a dot) go to the client as they are."""
        return "." in key

    def client_config(self, url: BrokerURL, passing: Mapping[str, Any]) -> dict[str, str]:
        """librdkafka's settings: the TLS options, then the keys that pass through (which
        win), and ``bootstrap.servers`` from the URL unless set. Raises ConfigError for a
        value that is not a string, number or boolean, or a URL without an address."""
        config: dict[str, str] = {}
        for option, key in _TLS_KEYS.items():
            value = getattr(self, option)
            if value is not None:
                config[key] = _client_value(url, option, value)
        if not self.ssl_verify:
            config["enable.ssl.certificate.verification"] = "false"
        tls = bool(config)
        config.update({key: _client_value(url, key, value) for key, value in passing.items()})
        if tls:
            config.setdefault("security.protocol", "SSL")
        config.setdefault("bootstrap.servers", servers(url))
        return config


class KafkaListenerSettings(KafkaSettings):
    """The options of a listener (``group`` is required; see the package docstring)."""

    group: str = ""
    """The consumer group (``?group=G``)."""
    commit_interval_ms: int = Field(default=1000, ge=0)
    """Commit acknowledged offsets at least this often (and at once when a poll finds
    nothing new: the input is idle)."""
    commit_every: int = Field(default=1000, ge=0)
    """... or after this many acknowledgements, whichever comes first."""
    batch_size: int = Field(default=1000, ge=0)
    """Messages taken per ``consume()`` call."""
    poll_timeout_ms: int = Field(default=100, ge=0)
    """How long a poll waits for the first message."""
    drain_timeout_ms: int = Field(default=10000, ge=0)
    """How long revoked partitions' in-flight messages get to be acknowledged."""
    pause_after_ms: int = Field(default=200, ge=0)
    """A Block full for longer than this pauses the partitions (the consumer keeps
    polling, so it stays in the group)."""
    delivery_journal: bool | str = ""
    """Where the delivery journal is kept (:mod:`arroyo.runtime.journal`): ``""`` or true
    for the default folder, a folder, or false for none."""

    def consumer_config(self, url: BrokerURL, passing: Mapping[str, Any]) -> dict[str, str]:
        """The consumer's librdkafka settings. Raises ConfigError without a group, or for
        settings Arroyo manages itself (``group.id``, ``enable.auto.commit=true``)."""
        if not self.group:
            raise ConfigError(f"{url}: a Kafka listener needs a consumer group: add ?group=NAME")
        client = self.client_config(url, passing)
        if "group.id" in client:
            raise ConfigError(f"{url}: set the consumer group with 'group', not 'group.id'")
        if client.get("enable.auto.commit", "false").lower() in ("true", "1"):
            raise ConfigError(
                f"{url}: enable.auto.commit must stay false: Arroyo commits offsets itself, "
                "only once messages are done"
            )
        return {"group.id": self.group, **CONSUMER, **client}


class KafkaPublisherSettings(KafkaSettings, FormatSettings):
    """The options of a publisher: ``format`` and ``format_options`` (a facility's wire
    format instead of Arroyo's: :class:`~arroyo.brokers.settings.FormatSettings`);
    librdkafka's producer settings pass through."""

    def producer_config(self, url: BrokerURL, passing: Mapping[str, Any]) -> dict[str, str]:
        """The producer's librdkafka settings. Raises ConfigError for a
        ``transactional.id`` (Arroyo makes one for exactly-once blocks)."""
        client = self.client_config(url, passing)
        if "transactional.id" in client:
            raise ConfigError(
                f"{url}: transactional.id is managed by Arroyo: use 'guarantee: exactly-once' "
                "on the block instead"
            )
        return {**PRODUCER, **client}


class KafkaBrowseSettings(KafkaSettings):
    """The options of ``arroyo tail`` (a listener's own options are ignored, with a
    warning, so a listener's URL can be pasted as it is)."""

    batch: int = Field(default=500, ge=1)
    """Messages per fetch."""


def topics(url: BrokerURL) -> list[str]:
    """The topics of ``url``'s path (comma-separated; ``^`` starts a regular expression)."""
    found = [t.strip() for t in url.path.split(",") if t.strip()]
    if not found:
        raise ConfigError(f"{url}: a Kafka URL needs a topic, as in kafka://HOST:9092/frames")
    return found


def servers(url: BrokerURL) -> str:
    """librdkafka's ``bootstrap.servers`` from the URL's address: ``HOST:PORT`` or a list
    of them, comma-separated (9092 where a port is missing; an IPv6 host in brackets)."""
    if not url.servers:
        raise ConfigError(
            f"{url}: a Kafka URL needs a broker address, as in kafka://HOST:9092/TOPIC "
            "(several: kafka://H1:9092,H2:9092/TOPIC)"
        )
    return ",".join(
        f"[{host}]:{port or 9092}" if ":" in host else f"{host}:{port or 9092}"
        for host, port in url.servers
    )


def _client_value(url: BrokerURL, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConfigError(
        f"{url}: librdkafka setting {key!r} must be a string, number or boolean, "
        f"got {type(value).__name__}"
    )


# -- librdkafka checks the keys that pass through --------------------------------------

COMMON_SETTINGS = (
    "acks",
    "allow.auto.create.topics",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "batch.num.messages",
    "batch.size",
    "bootstrap.servers",
    "broker.address.family",
    "client.id",
    "client.rack",
    "compression.level",
    "compression.type",
    "debug",
    "delivery.timeout.ms",
    "enable.idempotence",
    "enable.partition.eof",
    "enable.ssl.certificate.verification",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.instance.id",
    "group.protocol",
    "heartbeat.interval.ms",
    "isolation.level",
    "linger.ms",
    "max.in.flight.requests.per.connection",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.max.bytes",
    "message.send.max.retries",
    "message.timeout.ms",
    "metadata.max.age.ms",
    "partition.assignment.strategy",
    "partitioner",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "receive.message.max.bytes",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "request.timeout.ms",
    "retries",
    "retry.backoff.ms",
    "sasl.mechanisms",
    "sasl.oauthbearer.config",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "session.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.timeout.ms",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "statistics.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "transaction.timeout.ms",
)
"""librdkafka settings people use most, for "did you mean" (librdkafka checks the keys;
a unit test checks that it knows each of these)."""

_PROPERTY = re.compile(r'configuration property "(?P<key>[^"]+)"|property: "(?P<unknown>[^"]+)"')


class Collect:
    """A librdkafka ``logger`` that keeps the lines it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, msg: str, *args: Any) -> None:
        self.lines.append(msg % args if args else msg)


def _make(role: Role, config: Mapping[str, str], logger: Any) -> None:
    """Make (and at once close) a client with ``config`` and no bootstrap servers."""
    settings: dict[str, Any] = {k: v for k, v in config.items() if k != "bootstrap.servers"}
    settings["logger"] = logger
    if role == "consumer":
        settings.setdefault("group.id", "arroyo-settings-check")
        ck.Consumer(settings).close()
    else:
        ck.Producer(settings).close()


def check_settings(
    where: object, config: Mapping[str, str], role: Role, hide: Callable[[object], str]
) -> None:
    """Let librdkafka check ``config`` (a ``role`` client's settings) without connecting:
    it makes a client with them but without bootstrap servers.

    Raises ConfigError naming the setting that is unknown (with the closest known name)
    or has a bad value, or the file a ``*.location`` setting names that does not exist.
    What librdkafka only warns about (a consumer setting given to a publisher) is logged
    as a warning naming ``where``.
    """
    for key, value in config.items():
        if key.endswith(".location") and value != "probe" and not Path(value).exists():
            raise ConfigError(f"{where}: {key}: no such file: {value}")
    collect = Collect()
    try:
        _make(role, config, collect)
    except (ck.KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {hide(_problem(exc, config, role))}") from None
    for line in collect.lines:
        text = line.split("]: ", 1)[-1]
        if line.startswith("CONFWARN") and "bootstrap.servers" not in text:
            log.warning("%s: %s", where, hide(text))


def _problem(exc: BaseException, config: Mapping[str, str], role: Role) -> str:
    """The setting librdkafka refused, in words."""
    error = exc.args[0] if exc.args else None
    text = str(error.str()) if error is not None and hasattr(error, "str") else str(exc)
    text = text.strip().removeprefix(f"Failed to create {role}: ")
    found = _PROPERTY.search(text)
    if found and found["unknown"]:
        key = found["unknown"]
        close = difflib.get_close_matches(key, COMMON_SETTINGS, n=1, cutoff=0.75)
        if "_" in key and not close:
            close = [key.replace("_", ".")]
        maybe = f" (did you mean {close[0]!r}?)" if close else ""
        return f"librdkafka has no setting {key!r}{maybe}"
    named = found["key"] if found else None
    key = named if named in config else _culprit(config, role)
    if key is None:
        return f"librdkafka refused the settings: {text}"
    if named in (None, key):
        return f"setting {key!r}: {text}"
    return f"setting {key!r} (librdkafka's {named!r}): {text}"


def _culprit(config: Mapping[str, str], role: Role) -> str | None:
    """The one setting librdkafka refuses on its own (it names aliases by their real
    name: ``linger.ms`` is ``queue.buffering.max.ms``), or None."""
    for key, value in config.items():
        try:
            _make(role, {key: value}, Collect())
        except (ck.KafkaException, ValueError, TypeError):
            return key
    return None
