"""How the Kafka connector reaches the cluster, and says why it could not.

librdkafka is synchronous and connects in the background: a client made from the
settings (:mod:`arroyo.brokers.kafka.settings`) is asked for the cluster's metadata in
its own thread, for at most ``connect_timeout`` seconds (:func:`reach`), serving its
callbacks meanwhile. What librdkafka reported while it tried (its error callbacks and its
``FAIL`` log lines) is put in words by :func:`failure` (a
:class:`~arroyo.brokers.connecting.Failure`); a failure that waiting cannot mend (an
untrusted certificate, TLS against a plaintext port) ends the wait at once. The start
then fails with one :class:`~arroyo.errors.ConnectError` line (:func:`unreachable`).
Connections lost later are waited out, as librdkafka does.

Secrets (setting values whose key names a password, secret, token or key file, and the
URL's password) never appear in logs or errors: :func:`hider` gives the one function
that hides them, over :func:`arroyo.runtime.logs.redact`. librdkafka's own log lines go
to the logger ``arroyo.brokers.kafka.client`` at debug level; its errors to
``arroyo.brokers.kafka`` (a repeated one at most every 30 s).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.connecting import Failure
from arroyo.runtime.logs import Throttle, redact

log = logging.getLogger("arroyo.brokers.kafka")
client_log = logging.getLogger("arroyo.brokers.kafka.client")

Key = tuple[str, int]
"""A partition: (topic, partition number)."""

Hide = Callable[[object], str]
"""Text without the secrets of one endpoint (see :func:`hider`)."""

_SECRET_KEY = re.compile(r"password|secret|token|key\.pem|oauthbearer\.config", re.IGNORECASE)


def hider(config: Mapping[str, str], password: str | None = None) -> Hide:
    """The function that hides ``config``'s secret values (and the URL's ``password``)
    in a text: :func:`~arroyo.runtime.logs.redact` with them."""
    secrets = [v for k, v in config.items() if _SECRET_KEY.search(k) and len(v) >= 3]
    if password:
        secrets.append(password)
    return functools.partial(_hide, tuple(secrets))


def _hide(secrets: tuple[str, ...], text: object) -> str:
    return redact(str(text), *secrets)


def error_text(exc: BaseException) -> str:
    """The message of a KafkaException (or of any exception)."""
    error = exc.args[0] if exc.args else None
    if error is not None and hasattr(error, "str"):
        return f"{error.name()}: {error.str()}"
    return str(exc) or type(exc).__name__


def partitions_text(keys: Iterable[Key]) -> str:
    """``frames[0,1] results[2]`` for logs."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in keys:
        by_topic.setdefault(topic, []).append(partition)
    return (
        " ".join(f"{t}[{','.join(map(str, sorted(p)))}]" for t, p in sorted(by_topic.items()))
        or "(none)"
    )


def offsets_list(offsets: Mapping[Key, int]) -> list[Any]:
    """``offsets`` as librdkafka's TopicPartition list."""
    return [ck.TopicPartition(topic, part, offset) for (topic, part), offset in offsets.items()]


class ClientLog:
    """Receives librdkafka's own log lines (the ``logger`` setting) and logs them at debug
    level, without secrets: the errors among them also come through ``error_cb``.
    ``reports`` keeps the last connection failures (its FAIL lines and the errors), from
    which a failed start says why (:func:`failure`); while ``connecting`` (the start-up
    check), errors are only kept, not logged."""

    def __init__(self, name: str, hide: Hide) -> None:
        self._name = name
        self._hide = hide
        self.reports: deque[str] = deque(maxlen=10)
        self.connecting = False

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if text.startswith("FAIL"):
            self.reports.append(self._hide(text.split("]: ", 1)[-1]))
        if client_log.isEnabledFor(logging.DEBUG):
            client_log.debug("%s: %s", self._name, self._hide(text))


def tls_failure(error: Any) -> bool:
    """True for a TLS handshake failure (a wrong CA, an untrusted or expired certificate):
    a setting to fix, not an outage to wait out."""
    text = str(error.str())
    return bool(error.code() == ck.KafkaError._SSL or "certificate verify failed" in text)


class Reachability:
    """Whether a client reaches its brokers now: False from librdkafka's "all brokers
    down" error, or statistics (every :data:`STATS_INTERVAL_MS`) in which no broker is
    ``UP``, until statistics say one is. True until the first of them."""

    def __init__(self) -> None:
        self.up = True

    def on_stats(self, text: str) -> None:
        """The ``stats_cb``: note the brokers' states (on the client's polling thread)."""
        try:
            brokers = json.loads(text).get("brokers") or {}
        except (ValueError, AttributeError):
            return
        if brokers:  # with every broker down only the bootstrap entries are left
            self.up = any(broker.get("state") == "UP" for broker in brokers.values())

    def on_error(self, error: Any) -> None:
        """An error of the client: all its brokers down means not connected."""
        if error.code() == ck.KafkaError._ALL_BROKERS_DOWN:
            self.up = False


STATS_INTERVAL_MS = 1000
"""How often librdkafka reports the brokers' states to a :class:`Reachability`."""


def callbacks(
    name: str,
    hide: Hide,
    fatal: Callable[[Any], None],
    repeats: Throttle,
    reachability: Reachability | None = None,
) -> dict[str, Any]:
    """librdkafka's ``error_cb`` and ``logger`` for a client of ``name``: errors are
    logged (throttled, without secrets); a fatal one, or a TLS failure, calls ``fatal``.
    With ``reachability``, also the ``stats_cb`` (every :data:`STATS_INTERVAL_MS`) that
    keeps it up to date."""
    client = ClientLog(name, hide)

    def on_error(error: Any) -> None:
        if reachability is not None:
            reachability.on_error(error)
        client.reports.append(hide(error.str()))
        if client.connecting:  # a failed start says why, in one line of its own
            if error.fatal() or tls_failure(error):
                fatal(error)
            return
        if error.fatal():
            log.error("%s: fatal Kafka error: %s", name, hide(error.str()))
            fatal(error)
        elif tls_failure(error):
            text = hide(error.str())
            repeats(log, logging.ERROR, text, "%s: %s", name, text)
            fatal(error)
        else:
            text = hide(error.str())
            repeats(log, logging.WARNING, text, "%s: %s", name, text)

    made: dict[str, Any] = {"error_cb": on_error, "logger": client}
    if reachability is not None:
        made["stats_cb"] = reachability.on_stats
        made["statistics.interval.ms"] = STATS_INTERVAL_MS
    return made


def reach(
    client: Any, timeout: float, fatal: Callable[[], bool], said: ClientLog, config: Any
) -> Any:
    """(Client thread) Wait up to ``timeout`` seconds until the cluster answers a metadata
    request, serving callbacks meanwhile (their errors kept in ``said``, not logged);
    stop at once on a fatal error or a failure that waiting cannot mend (see
    :func:`failure`). Returns the cluster's metadata; raises KafkaException."""
    deadline = time.monotonic() + timeout
    said.connecting = True
    try:
        while True:
            try:
                return client.list_topics(None, min(1.0, max(0.1, deadline - time.monotonic())))
            except ck.KafkaException:
                client.poll(0)
                if (
                    fatal()
                    or time.monotonic() >= deadline
                    or failure(list(said.reports), config).final
                ):
                    raise
    finally:
        said.connecting = False


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
