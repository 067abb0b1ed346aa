"""What the Kafka connector checks before it moves data.

- Its librdkafka settings, when a listener or publisher is made (so when a config is
  built, before anything starts): :func:`check_settings` makes a client with them but
  without bootstrap servers, so librdkafka checks every key and value and connects to
  nothing; a mistake is a ConfigError naming the setting.
- The cluster, when it starts: :func:`failure` says in words why it could not connect,
  from what librdkafka reported, with a hint (``security.protocol=SSL`` for a plaintext
  client on a TLS port...).
- The size limit of the topic a publisher writes to, when it starts: :func:`fit_topic`
  reads it with the admin API; a topic smaller than the publisher's
  ``message.max.bytes`` gets one warning naming the setting to change, and a topic that
  does not exist yet, which the broker would create with its smaller default, is
  created with a ``max.message.bytes`` that fits (so large frames work against a stock
  broker, whose default is 1 MiB).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from arroyo._optional import require
from arroyo.brokers.connecting import Failure
from arroyo.errors import ConfigError

ck = require("confluent_kafka", "kafka", "The Kafka connector (kafka:// URLs)")

log = logging.getLogger("arroyo.kafka")

Role = Literal["producer", "consumer"]

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
    "ssl.endpoint.identification.algorithm",
    "ssl.key.location",
    "ssl.key.password",
    "statistics.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "transaction.timeout.ms",
)
"""librdkafka settings people use most, for "did you mean" (librdkafka checks the keys;
a unit test checks that it knows each of these)."""

_PROPERTY = re.compile(r'configuration property "(?P<key>[^"]+)"|property: "(?P<unknown>[^"]+)"')


class _Collect:
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
    where: object, config: Mapping[str, str], role: Role, scrub: Callable[[object], str]
) -> None:
    """Let librdkafka check ``config`` (a ``role`` client's settings) without connecting.

    Raises ConfigError naming the setting that is unknown (with the closest known name)
    or has a bad value, or the file a ``*.location`` setting names that does not exist.
    What librdkafka only warns about (a consumer setting given to a publisher) is logged
    as a warning naming ``where``.
    """
    for key, value in config.items():
        if key.endswith(".location") and value != "probe" and not Path(value).exists():
            raise ConfigError(f"{where}: {key}: no such file: {value}")
    collect = _Collect()
    try:
        _make(role, config, collect)
    except (ck.KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {scrub(_problem(exc, config, role))}") from None
    for line in collect.lines:
        text = line.split("]: ", 1)[-1]
        if line.startswith("CONFWARN") and "bootstrap.servers" not in text:
            log.warning("%s: %s", where, scrub(text))


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
            _make(role, {key: value}, _Collect())
        except (ck.KafkaException, ValueError, TypeError):
            return key
    return None


# -- connecting ------------------------------------------------------------------------


def unreachable(name: str, config: Mapping[str, str], reports: list[str], timeout: float) -> str:
    """One line: why a client could not reach the cluster at start (see :func:`failure`)."""
    why = failure(reports, config)
    servers = config["bootstrap.servers"]
    if why.final:
        return f"{name}: cannot connect to the Kafka cluster at {servers}: {why}"
    return f"{name}: cannot reach the Kafka cluster at {servers} within {timeout:g} s: {why}"


def failure(reports: list[str], config: Mapping[str, str]) -> Failure:
    """Why the client could not reach the cluster, from what librdkafka reported while it
    tried (error callbacks and its FAIL log lines, latest last). ``final``: trying
    longer cannot help."""
    protocol = config.get("security.protocol", "plaintext").lower()
    text = " | ".join(reports[-5:])
    last = reports[-1] if reports else ""
    if "certificate verify failed" in text:
        return Failure(
            "the broker's TLS certificate is not trusted (certificate verify failed)",
            "give the CA that signed it with ssl.ca.location (or ssl_ca)",
            final=True,
        )
    if "connecting to a PLAINTEXT broker listener" in text:
        return Failure(
            "the TLS handshake failed: the port does not speak TLS",
            f"remove security.protocol={config.get('security.protocol')} for a plaintext "
            "port, or use the broker's TLS port",
            final=True,
        )
    if "APIVERSION_QUERY" in text and "ssl" not in protocol:
        return Failure(
            "the broker closed the connection before answering",
            "if this is a TLS port, set security.protocol=SSL (with ssl.ca.location, or "
            "ssl_ca=CA_FILE)",
        )
    if "Connection refused" in text:
        return Failure("connection refused", "is the broker running, and is this its port?")
    if "Failed to resolve" in text:
        return Failure(f"the host name does not resolve ({_detail(last, 'Failed to resolve')})")
    if last:
        return Failure(last)
    return Failure("no answer", "is the address right, and does a firewall let it through?")


def _detail(text: str, word: str) -> str:
    for part in text.split(" | "):
        if word in part:
            return part.split(": ", 1)[-1].split(" (after ")[0]
    return word


# -- the topic's size limit ------------------------------------------------------------


def fit_topic(
    where: str,
    admin_config: Mapping[str, str],
    topic: str,
    limit: int,
    timeout: float,
    scrub: Callable[[object], str],
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
    config["logger"] = _Collect()
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
                        scrub(exc.args[0].str()),
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
        log.debug("%s: could not check the size limit of topic %r: %s", where, topic, scrub(exc))


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
