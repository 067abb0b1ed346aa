"""Kafka topics: created when ``create:`` asks, counted, and checked to fit the messages.

``create: {partitions: N, replication: R, config: {...}}`` next to a Kafka URL (listener,
publisher or dead letter; its model is ``TopicSettings`` in ``arroyo/config.py``) makes
Arroyo create the topic when it does not exist, before any block starts (AdminClient
``create_topics``). An existing topic is left as it is (a warning says so when it has
fewer partitions than asked for). Without ``partitions`` or ``replication`` the broker's
defaults (``num.partitions``, ``default.replication.factor``) apply; ``config`` holds
topic settings such as ``max.message.bytes`` or ``retention.ms``.

:func:`warn_idle_workers` tells, once, when a consumer group's topic has fewer partitions
than there are workers: Kafka gives each partition to one worker of a group, so the
others get nothing to do.

:func:`fit_topic` checks, when a publisher starts, the size limit of its topic: a topic
smaller than the publisher's ``message.max.bytes`` gets one warning naming the setting
to change, and a topic that does not exist yet, which the broker would create with its
smaller default, is created with a ``max.message.bytes`` that fits (so large frames work
against a stock broker, whose default is 1 MiB).

The admin client uses the endpoint's connection settings (``bootstrap.servers``,
``security.protocol``, ``ssl.*``, ``sasl.*``...), never its consumer or producer ones.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import ClientLog, Hide, hider
from arroyo.brokers.kafka.settings import Collect
from arroyo.errors import ArroyoError, ConfigError, ConnectError

log = logging.getLogger("arroyo.brokers.kafka")

_CONNECTION_PREFIXES = (
    "bootstrap.servers",
    "security.protocol",
    "ssl.",
    "sasl.",
    "client.id",
    "client.dns.lookup",
    "socket.",
    "broker.",
    "enable.ssl.",
    "metadata.",
    "reconnect.",
    "api.version.",
    "oauthbearer.",
)
"""librdkafka settings about the connection (shared by consumers, producers and the admin
client); the others are left out of an admin client's config."""


class TopicAdminError(ArroyoError):
    """A topic could not be created or described (the broker's reason included)."""


@dataclass(frozen=True)
class TopicRequest:
    """A topic to create: where (``config``: the endpoint's client settings) and how."""

    where: str
    """The endpoint, for messages: ``file: blocks[0] (name).publishers[1]``."""
    config: Mapping[str, str]
    topic: str
    partitions: int | None
    replication: int | None
    settings: Mapping[str, str]


def admin_config(client_config: Mapping[str, str]) -> dict[str, str]:
    """The connection settings of a consumer's or producer's ``client_config``."""
    return {
        key: value
        for key, value in client_config.items()
        if any(key == p or key.startswith(p) for p in _CONNECTION_PREFIXES)
    }


def _admin(config: Mapping[str, str]) -> Any:
    """An admin client with the connection settings of ``config``."""
    from confluent_kafka.admin import AdminClient

    settings: dict[str, Any] = admin_config(config)
    said = ClientLog("admin client", hider(config))
    settings["logger"] = said
    settings["error_cb"] = lambda error: said.log(logging.DEBUG, "%s", error)
    return AdminClient(settings)


def partitions(config: Mapping[str, str], timeout: float = 10.0) -> dict[str, int]:
    """Every topic of the cluster and its number of partitions.

    Raises ConnectError when the cluster does not answer within ``timeout`` seconds.
    """
    try:
        metadata = _admin(config).list_topics(timeout=timeout)
    except ck.KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise ConnectError(
            f"cannot reach the Kafka cluster at {config.get('bootstrap.servers')} within "
            f"{timeout:g} s: {hider(config)(reason)}"
        ) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def create(requests: Sequence[TopicRequest], timeout: float = 30.0) -> list[str]:
    """Create the requested topics that do not exist; the names of those created.

    Raises TopicAdminError naming the endpoint and the broker's reason, ConnectError when
    the cluster does not answer.
    """
    if not requests:
        return []
    from confluent_kafka.cimpl import NewTopic

    created: list[str] = []
    for config, group in _by_cluster(requests):
        existing = partitions(config, timeout)
        missing: dict[str, TopicRequest] = {}
        for request in group:
            have = existing.get(request.topic)
            if have is None:
                missing.setdefault(request.topic, request)
            elif request.partitions is not None and have < request.partitions:
                log.warning(
                    "%s: topic %r exists with %d partition(s), fewer than create: asks for "
                    "(%d); Arroyo does not change existing topics (kafka-topics.sh --alter "
                    "--topic %s --partitions %d adds them)",
                    request.where,
                    request.topic,
                    have,
                    request.partitions,
                    request.topic,
                    request.partitions,
                )
        if not missing:
            continue
        new = [
            NewTopic(
                r.topic,
                num_partitions=r.partitions or -1,
                replication_factor=r.replication or -1,
                config=dict(r.settings),
            )
            for r in missing.values()
        ]
        admin = _admin(config)  # kept until the futures are done (its end cancels them)
        futures = admin.create_topics(new, request_timeout=timeout)
        for topic, future in futures.items():
            request = missing[topic]
            try:
                future.result(timeout)
            except ck.KafkaException as exc:
                error = exc.args[0]
                if getattr(error, "code", lambda: None)() == ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another worker or process was first
                raise TopicAdminError(
                    f"{request.where}: cannot create topic {topic!r}: {error.str()}"
                ) from None
            created.append(topic)
            log.info(
                "%s: created topic %r (%s partition(s), replication %s%s)",
                request.where,
                topic,
                request.partitions or "the broker's default number of",
                request.replication or "the broker's default",
                f", {dict(request.settings)}" if request.settings else "",
            )
    return created


def _by_cluster(
    requests: Sequence[TopicRequest],
) -> Iterator[tuple[Mapping[str, str], list[TopicRequest]]]:
    groups: dict[tuple[tuple[str, str], ...], list[TopicRequest]] = {}
    for request in requests:
        key = tuple(sorted(admin_config(request.config).items()))
        groups.setdefault(key, []).append(request)
    for key, group in groups.items():
        yield dict(key), group


def request(
    where: str, config: Mapping[str, str], topics: Sequence[str], create: Mapping[str, Any]
) -> list[TopicRequest]:
    """The topics an endpoint's ``create:`` asks for (``topics`` from its URL).

    ``create`` holds ``partitions``, ``replication`` and ``config`` (already validated).
    Raises ConfigError for a topic pattern (``^frames-.*``), which names no topic.
    """
    if any(topic.startswith("^") for topic in topics):
        raise ConfigError(f"{where}.create: a topic pattern names no topic to create")
    settings = {str(k): _text(v) for k, v in (create.get("config") or {}).items()}
    return [
        TopicRequest(
            where, config, topic, create.get("partitions"), create.get("replication"), settings
        )
        for topic in topics
    ]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def warn_idle_workers(
    where: str, config: Mapping[str, str], topics: Sequence[str], group: str, workers: int
) -> None:
    """Log one warning per topic of a consumer group that has fewer partitions than
    ``workers`` (or does not exist yet). A cluster that does not answer is logged too:
    the workers will say more when they start."""
    names = [t for t in topics if not t.startswith("^")]
    if workers < 2 or not names:
        return
    try:
        counts = partitions(config, timeout=10.0)
    except ConnectError as exc:
        log.warning("%s: cannot check partitions against %d workers: %s", where, workers, exc)
        return
    for topic in names:
        count = counts.get(topic)
        if count is None:
            log.warning(
                "%s: topic %r does not exist yet: when it is created with the broker's "
                "default number of partitions, fewer than %d workers may get work (give it "
                "at least %d partitions, or add create: {partitions: %d} to the listener)",
                where,
                topic,
                workers,
                workers,
                workers,
            )
        elif count < workers:
            log.warning(
                "%s: topic %r has %d partition(s) for %d workers in group %r: at most %d "
                "worker(s) get work from it, the others sit idle (add partitions: "
                "kafka-topics.sh --bootstrap-server %s --alter --topic %s --partitions %d)",
                where,
                topic,
                count,
                workers,
                group,
                count,
                config.get("bootstrap.servers"),
                topic,
                workers,
            )


# -- the topic's size limit ------------------------------------------------------------


def fit_topic(
    where: str,
    admin_config: Mapping[str, str],
    topic: str,
    limit: int,
    timeout: float,
    hide: Hide,
) -> None:
    """(Blocking) Make sure ``topic`` takes messages of ``limit`` bytes, or say it does not.

    An existing topic whose ``max.message.bytes`` is smaller gets one warning naming the
    topic, both limits and the command that raises it. A topic that does not exist yet
    and that the broker would create (``auto.create.topics.enable``) with a smaller
    default (its ``message.max.bytes``) is created now, with the broker's default
    partitions and replication and ``max.message.bytes=limit``. What cannot be read (no
    permission, an old broker) is logged at debug level only.
    """
    admin_api = importlib.import_module("confluent_kafka.admin")
    ConfigResource, NewTopic = admin_api.ConfigResource, admin_api.NewTopic
    producer_only = ("transactional.id", "enable.idempotence")  # no producer id needed
    config: dict[str, Any] = {k: v for k, v in admin_config.items() if k not in producer_only}
    config["logger"] = Collect()
    admin = admin_api.AdminClient(config)
    servers = admin_config.get("bootstrap.servers", "HOST:9092")
    try:
        size = _topic_limit(admin, ConfigResource, topic, timeout)
        if size is None:
            broker = _broker_config(admin, ConfigResource, timeout)
            default = int(broker.get("message.max.bytes", "1048588"))
            if default >= limit:
                return
            if broker.get("auto.create.topics.enable", "true") != "true":
                log.warning(
                    "%s: topic %r does not exist and the broker does not create topics "
                    "(auto.create.topics.enable=false): create it, with "
                    "max.message.bytes=%d for messages up to this publisher's "
                    "message.max.bytes",
                    where,
                    topic,
                    limit,
                )
                return
            new = NewTopic(topic, -1, -1, config={"max.message.bytes": str(limit)})
            try:
                admin.create_topics([new], request_timeout=timeout)[topic].result(timeout)
            except ck.KafkaException as exc:
                if exc.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    log.warning(
                        "%s: could not create topic %r with max.message.bytes=%d (%s); the "
                        "broker will create it on the first message with its default, "
                        "message.max.bytes=%d, and refuse larger messages: create it with "
                        "kafka-topics.sh --bootstrap-server %s --create --topic %s --config "
                        "max.message.bytes=%d, or raise the broker's message.max.bytes",
                        where,
                        topic,
                        limit,
                        hide(exc.args[0].str()),
                        default,
                        servers,
                        topic,
                        limit,
                    )
                    return
                size = _topic_limit(admin, ConfigResource, topic, timeout)
            else:
                log.info(
                    "%s: created topic %r with max.message.bytes=%d (the broker's default, "
                    "message.max.bytes=%d, is smaller than this publisher's limit)",
                    where,
                    topic,
                    limit,
                    default,
                )
                return
        if size is not None and size < limit:
            log.warning(
                "%s: topic %r takes messages up to %d bytes (its max.message.bytes), fewer "
                "than this publisher's message.max.bytes=%d: the broker refuses larger ones. "
                "Raise it with: kafka-configs.sh --bootstrap-server %s --alter --entity-type "
                "topics --entity-name %s --add-config max.message.bytes=%d (or set "
                "message.max.bytes=%d next to the publisher's URL to refuse them before "
                "sending)",
                where,
                topic,
                size,
                limit,
                servers,
                topic,
                limit,
                size,
            )
    except (ck.KafkaException, ValueError, LookupError) as exc:
        log.debug("%s: could not check the size limit of topic %r: %s", where, topic, hide(exc))


def _topic_limit(admin: Any, resource: Any, topic: str, timeout: float) -> int | None:
    """The topic's effective max.message.bytes; None when the topic does not exist."""
    wanted = resource("topic", topic)
    try:
        entries = admin.describe_configs([wanted], request_timeout=timeout)[wanted].result(timeout)
    except ck.KafkaException as exc:
        if exc.args[0].code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise
    return int(entries["max.message.bytes"].value)


def _broker_config(admin: Any, resource: Any, timeout: float) -> dict[str, str]:
    """The settings of one broker of the cluster (the defaults of new topics)."""
    brokers = admin.list_topics(timeout=timeout).brokers
    wanted = resource("broker", str(min(brokers)))
    entries = admin.describe_configs([wanted], request_timeout=timeout)[wanted].result(timeout)
    return {name: entry.value for name, entry in entries.items() if entry.value is not None}


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """Reach the cluster without joining a group or producing (``arroyo check
    --connect``): a publisher (an endpoint with one ``topic``) starts and closes its
    producer; both say how many partitions their topics have."""
    listening = getattr(endpoint, "topics", None)
    if listening is None:
        endpoint.connect_timeout = min(endpoint.connect_timeout, seconds)
        await endpoint.start()
        await endpoint.close()
        topics, prefix = [endpoint.topic], "producer connected; "
    else:
        topics, prefix = list(listening), ""
    counts = await asyncio.to_thread(partitions, endpoint.config, seconds)
    parts = []
    for topic in topics:
        if topic.startswith("^"):
            matching = [t for t in counts if re.match(topic, t)]
            parts.append(f"pattern {topic!r} matches {len(matching)} topic(s)")
        elif topic in counts:
            parts.append(f"topic {topic!r} has {counts[topic]} partition(s)")
        else:
            parts.append(f"topic {topic!r} does not exist (yet)")
    return "ok", prefix + "; ".join(parts)
