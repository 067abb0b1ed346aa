"""``kafka://HOST:PORT/TOPIC?group=G``: Apache Kafka through confluent-kafka (librdkafka).

Listener (consumer group)
    ``kafka://HOST:PORT/TOPIC?group=G`` reads ``TOPIC`` in the consumer group ``G``
    (required). Several topics: ``kafka://h:p/a,b``; a regular expression (librdkafka's):
    ``kafka://h:p/^frames-.*``. A new group starts at the **earliest** offset
    (``auto.offset.reset=earliest``) and reads only committed transactional data
    (``isolation.level=read_committed``); both can be overridden. Auto-commit is off:
    offsets are committed in batches (every ``commit_interval_ms`` or ``commit_every``
    acknowledged messages, whichever comes first), and only below the lowest message of
    each partition that is not yet acknowledged, so a commit never skips unfinished work.
    On a rebalance, the revoked partitions stop being read, their in-flight messages get
    up to ``drain_timeout_ms`` to be acknowledged, their offsets are committed, and only
    then are they let go. When the Block is full for longer than ``pause_after_ms``, the
    assigned partitions are paused and the consumer keeps polling (so it stays in the
    group) until there is room again. Kafka keeps no delivery count: the listener's
    delivery journal (``delivery_journal``, on by default) counts, per
    topic/partition/offset, the workers that died while processing a message, so a
    message that keeps killing workers reaches the Block's ``max_deliveries`` and goes
    to the dead letter (:mod:`arroyo.runtime.journal`; the folder is shared by the
    workers of one machine: ``$XDG_STATE_HOME/arroyo/deliveries`` by default, a folder
    of your choice, or ``false`` to turn it off).

Publisher
    ``kafka://HOST:PORT/TOPIC`` produces with the idempotent producer
    (``enable.idempotence=true``) and the Java client's partitioner
    (``partitioner=murmur2_random``). The key is the message's ``stream``, so a run stays
    in order in one partition (an empty stream: no key). Headers ``arroyo.kind``
    (start/event/stop), ``arroyo.schema`` (the writer schema's CRC-64-AVRO fingerprint in
    hex, or the registry's schema id in decimal) and ``arroyo.id`` let tools route
    without decoding Avro. The producer takes messages up to ``message.max.bytes``,
    64 MiB unless set (librdkafka's own default is 1 MB: less than one detector frame);
    a larger one fails with :class:`~arroyo.errors.MessageTooLargeError` naming the
    settings to raise. On start the publisher reads the topic's ``max.message.bytes``
    with the admin API: a smaller topic gets one warning naming the command that raises
    it, and a topic that does not exist yet, which the broker would create with a
    smaller default (a stock broker's is 1 MiB), is created with a
    ``max.message.bytes`` that fits (see :mod:`arroyo.brokers.kafka_checks`). Listeners
    read messages up to librdkafka's ``receive.message.max.bytes`` (100 MB) as they are.

Dead letters
    ``publish_dead_letter`` produces the ORIGINAL bytes as the value, with the reason,
    error, attempts, block and source topic/partition/offset in ``arroyo.dead-letter.*``
    and ``arroyo.source.*`` headers. A multipart message: the first part is the value,
    ``arroyo.dead-letter.parts`` says how many parts there were, and the other parts
    are the headers ``arroyo.dead-letter.part.1``, ``.2``, ... (raw bytes).

Settings
    Every key with a dot is a librdkafka setting, passed through to the client as is
    (TLS, SASL, timeouts, batching: ``security.protocol``, ``ssl.ca.location``,
    ``sasl.password``, ``linger.ms``...), given in the YAML block next to the URL or in
    the URL query, and checked by librdkafka when the listener or publisher is made
    (before anything starts: a misspelled key is a ConfigError naming it). ``ssl_ca``,
    ``ssl_cert`` and ``ssl_key`` (the names every Arroyo
    connector takes) stand for ``ssl.ca.location``, ``ssl.certificate.location`` and
    ``ssl.key.location`` and imply ``security.protocol=SSL``. A TLS handshake failure (a
    wrong CA) is an error, not an outage to wait for: it stops the worker with librdkafka's
    reason. ``bootstrap.servers`` (several brokers, comma-separated) replaces the
    URL's one address. Keys without a dot are Arroyo's own and are checked; both
    listeners and publishers take ``connect_timeout`` (seconds, default 10): how long
    starting waits for the cluster to answer before it fails with one line saying why
    (see :mod:`arroyo.brokers.connecting`); later outages are waited out. Secret values
    never appear in logs or errors; librdkafka's own log lines go to the logger
    ``arroyo.kafka.client`` at debug level, its errors to ``arroyo.kafka`` (a repeated
    one at most every 30 s).

Exactly-once (``guarantee: exactly-once`` in a Kafka -> Kafka block)
    See :func:`exactly_once`.

Threads and throughput
    confluent-kafka is synchronous. Every consumer call (and so every rebalance callback)
    runs in one thread of the listener; a whole batch (``batch_size``, taken with
    ``consume()``) comes over to the event loop per call, and commits ride along with the
    next call. Producers are polled by a thread of their own, which hands delivery reports
    to the event loop a batch at a time. Payloads are not copied beyond what
    confluent-kafka does (``Received.data`` is ``msg.value()``). The listener sets
    ``fetch.queue.backoff.ms=10`` (librdkafka's default of 1 s lets a fast consumer run
    dry whenever the prefetch queue was full).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from arroyo._optional import require
from arroyo.brokers import BrokerURL, kafka_checks, take_options
from arroyo.brokers.connecting import CONNECT_OPTIONS, CONNECT_TIMEOUT, connect_timeout
from arroyo.brokers.connector import Connector
from arroyo.codec import Codec, default_codec
from arroyo.errors import (
    ArroyoError,
    ConfigError,
    ConnectError,
    MessageTooLargeError,
    PublishError,
)
from arroyo.message import Message
from arroyo.runtime.journal import from_option
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.logs import Throttle, redact
from arroyo.runtime.offsets import OffsetTracker
from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher, Publisher

if TYPE_CHECKING:
    from arroyo.browse.base import Browser, Reading

ck = require("confluent_kafka", "kafka", "The Kafka connector (kafka:// URLs)")

__all__ = [
    "KafkaListener",
    "KafkaPublisher",
    "TransactionError",
    "exactly_once",
    "listener",
    "publisher",
]

log = logging.getLogger("arroyo.kafka")
_client_log = logging.getLogger("arroyo.kafka.client")

T = TypeVar("T")
Key = tuple[str, int]
"""A partition: (topic, partition number)."""

_SETTLE_ITERATIONS = 3
"""Event-loop turns given to the Block, after the last delivery report of a transaction,
to record the acknowledgements those reports complete (it does so in the next turn)."""

MESSAGE_MAX_BYTES = 64 << 20
"""The producer's ``message.max.bytes`` unless set: detector frames of several MiB fit
(librdkafka's default, 1 MB, does not take one 1024x1024 frame of 16-bit pixels)."""

_SECRET_KEY = re.compile(r"password|secret|token|key\.pem|oauthbearer\.config", re.IGNORECASE)


class TransactionError(ArroyoError):
    """A Kafka transaction could not be committed and was aborted (exactly-once mode).

    The worker stops: the outputs of the aborted transaction are discarded and its input
    offsets were not committed, so whoever gets the partitions next (another worker of
    the group, or this one after a restart) processes them again from the last commit.
    """


# -- settings --------------------------------------------------------------------------


class _Scrub:
    """Hides secret setting values (and URL passwords) in text that may echo settings."""

    def __init__(self, config: Mapping[str, str], password: str | None = None) -> None:
        values = {v for k, v in config.items() if _SECRET_KEY.search(k) and len(v) >= 3}
        if password:
            values.add(password)
        self._values = values

    def __call__(self, text: object) -> str:
        return redact(str(text), *self._values)


def _client_value(url: BrokerURL, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConfigError(
        f"{url}: librdkafka setting {key!r} must be a string, number or boolean, "
        f"got {type(value).__name__}"
    )


_TLS_ALIASES = {
    "ssl_ca": "ssl.ca.location",
    "ssl_cert": "ssl.certificate.location",
    "ssl_key": "ssl.key.location",
}
"""The TLS settings every Arroyo connector takes, as librdkafka names them (giving one
also sets ``security.protocol=SSL`` unless it is set)."""


def _split(
    url: BrokerURL, options: Mapping[str, Any], known: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Arroyo's options (checked, with defaults) and librdkafka's settings (keys with a
    dot, from the URL query and the YAML options; the YAML wins)."""
    client: dict[str, str] = {}
    for source in (url.query, options):
        for key, value in source.items():
            if "." in key:
                client[key] = _client_value(url, key, value)
            elif key in _TLS_ALIASES:
                client[_TLS_ALIASES[key]] = _client_value(url, key, value)
                client.setdefault("security.protocol", "SSL")
    options = {k: v for k, v in options.items() if k not in _TLS_ALIASES}
    url = dataclasses.replace(
        url, query={k: v for k, v in url.query.items() if k not in _TLS_ALIASES}
    )
    own_query = {k: v for k, v in url.query.items() if "." not in k}
    own = take_options(
        dataclasses.replace(url, query=own_query),
        {k: v for k, v in options.items() if "." not in k},
        known,
    )
    for key, value in own.items():
        default = known[key]
        if isinstance(default, int) and not isinstance(default, bool) and value < 0:
            raise ConfigError(f"{url}: option {key!r} must not be negative, got {value}")
    client.setdefault("bootstrap.servers", _servers(url))
    return own, client


def _servers(url: BrokerURL) -> str:
    if not url.host:
        raise ConfigError(
            f"{url}: a Kafka URL needs a broker address, as in kafka://HOST:9092/TOPIC"
        )
    return f"{url.host}:{url.port or 9092}"


def _error_text(exc: BaseException) -> str:
    """The message of a KafkaException (or of any exception)."""
    error = exc.args[0] if exc.args else None
    if error is not None and hasattr(error, "str"):
        return f"{error.name()}: {error.str()}"
    return str(exc) or type(exc).__name__


class _ClientLog:
    """Receives librdkafka's own log lines (the ``logger`` setting) and logs them at debug
    level, without secrets: the errors among them also come through ``error_cb``.
    ``reports`` keeps the last connection failures (its FAIL lines and the errors), from
    which a failed start says why (:func:`~arroyo.brokers.kafka_checks.failure`); while
    ``connecting`` (the start-up check), errors are only kept, not logged."""

    def __init__(self, name: str, scrub: _Scrub) -> None:
        self._name = name
        self._scrub = scrub
        self.reports: deque[str] = deque(maxlen=10)
        self.connecting = False

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if text.startswith("FAIL"):
            self.reports.append(self._scrub(text.split("]: ", 1)[-1]))
        if _client_log.isEnabledFor(logging.DEBUG):
            _client_log.debug("%s: %s", self._name, self._scrub(text))


def _tls_failure(error: Any) -> bool:
    """True for a TLS handshake failure (a wrong CA, an untrusted or expired certificate):
    a setting to fix, not an outage to wait out."""
    text = str(error.str())
    return bool(error.code() == ck.KafkaError._SSL or "certificate verify failed" in text)


def _callbacks(
    name: str, scrub: _Scrub, fatal: Callable[[Any], None], repeats: Throttle
) -> dict[str, Any]:
    client_log = _ClientLog(name, scrub)

    def on_error(error: Any) -> None:
        client_log.reports.append(scrub(error.str()))
        if client_log.connecting:  # a failed start says why, in one line of its own
            if error.fatal() or _tls_failure(error):
                fatal(error)
            return
        if error.fatal():
            log.error("%s: fatal Kafka error: %s", name, scrub(error.str()))
            fatal(error)
        elif _tls_failure(error):
            text = scrub(error.str())
            repeats(log, logging.ERROR, text, "%s: %s", name, text)
            fatal(error)
        else:
            text = scrub(error.str())
            repeats(log, logging.WARNING, text, "%s: %s", name, text)

    return {"error_cb": on_error, "logger": client_log}


def _reach(
    client: Any, timeout: float, fatal: Callable[[], bool], client_log: _ClientLog, config: Any
) -> None:
    """(Client thread) Wait up to ``timeout`` seconds until the cluster answers a metadata
    request, serving callbacks meanwhile (their errors kept in ``client_log``, not
    logged); stop at once on a fatal error or a failure that waiting cannot mend (see
    :func:`kafka_checks.failure`). Raises KafkaException."""
    deadline = time.monotonic() + timeout
    client_log.connecting = True
    try:
        while True:
            try:
                client.list_topics(None, min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except ck.KafkaException:
                client.poll(0)
                if (
                    fatal()
                    or time.monotonic() >= deadline
                    or kafka_checks.failure(list(client_log.reports), config).final
                ):
                    raise
    finally:
        client_log.connecting = False


def _partitions(keys: Iterable[Key]) -> str:
    """``frames[0,1] results[2]`` for logs."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in keys:
        by_topic.setdefault(topic, []).append(partition)
    return (
        " ".join(f"{t}[{','.join(map(str, sorted(p)))}]" for t, p in sorted(by_topic.items()))
        or "(none)"
    )


def _offsets_list(offsets: Mapping[Key, int]) -> list[Any]:
    return [ck.TopicPartition(topic, part, offset) for (topic, part), offset in offsets.items()]


# -- the producer shared by publishers -------------------------------------------------


class _Producer:
    """A confluent-kafka Producer whose delivery reports complete asyncio futures.

    A background thread polls the producer and hands each batch of delivery reports to
    the event loop in one call. ``produce`` enqueues at once (so the order of calls is
    the order in the partition); when librdkafka's queue is full (BufferError), the
    message and every later one wait in order in a backlog, which is retried as delivery
    reports free room. Nothing is ever dropped.
    """

    def __init__(self, name: str, config: dict[str, str], scrub: _Scrub) -> None:
        self.name = name
        self.config = config
        self.scrub = scrub
        self.producer: Any = None
        self.fatal: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reports: deque[tuple[asyncio.Future[None], Any, Any]] = deque()
        self._scheduled = False
        self._backlog: deque[tuple[str, bytes, bytes | None, list[Any], asyncio.Future[None]]]
        self._backlog = deque()
        self._outstanding = 0
        self._idle: asyncio.Future[None] | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[PublishError], None] | None = None
        """When set (transactions), a failed delivery cancels its future and calls this,
        and so does a fatal error (instead of replacing the producer)."""
        self._restarting: asyncio.Future[None] | None = None
        self._started = False
        """Set once start() succeeded: before that a fatal error (a TLS failure) is only
        recorded in ``fatal`` for start() to report; it never replaces the producer."""
        self._repeats = Throttle(30.0)
        self._log = _ClientLog(name, scrub)

    @property
    def limit(self) -> str:
        return self.config.get("message.max.bytes", "1000000")

    async def start(self, connect_timeout: float, transactional: bool = False) -> None:
        """Create the producer, check the cluster answers, start polling."""
        self._loop = asyncio.get_running_loop()
        self.producer = self._new_producer()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-kafka-producer")
        try:
            await self.call(self._connect, connect_timeout)
        except ck.KafkaException:
            reports = list(self._log.reports)
            await self.close(0)
            raise ConnectError(
                self.scrub(
                    kafka_checks.unreachable(self.name, self.config, reports, connect_timeout)
                )
            ) from None
        self._start_polling()
        if transactional:
            try:
                await self.call(self.producer.init_transactions, connect_timeout)
            except ck.KafkaException as exc:
                cause = self.fatal.str() if self.fatal is not None else _error_text(exc)
                await self.close(0)
                raise PublishError(
                    f"{self.name}: cannot initialise transactions: {self.scrub(cause)}"
                ) from None
        self._started = True
        if self.fatal is not None:  # it failed between the checks above and now
            self._fatal_on_loop(self.fatal)

    def _connect(self, timeout: float) -> None:
        """(Producer thread) Wait until the cluster answers a metadata request, serving
        error callbacks meanwhile, so that a TLS failure ends the wait at once."""
        _reach(self.producer, timeout, lambda: self.fatal is not None, self._log, self.config)

    def call(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a blocking producer call (flush, transactions) in the producer's thread."""
        assert self._loop is not None
        return self._loop.run_in_executor(self._executor, func, *args)

    def _on_fatal(self, error: Any) -> None:
        """librdkafka's producer is unusable (poll thread): replace it (or, in a
        transaction, abort)."""
        self.fatal = error
        if self._started and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._fatal_on_loop, error)

    def _fatal_on_loop(self, error: Any) -> None:
        failure = PublishError(f"{self.name}: fatal producer error: {self.scrub(error.str())}")
        if self.on_failure is not None:
            self.on_failure(failure)
        elif self._restarting is None and self.producer is not None:
            self._restarting = asyncio.ensure_future(self._restart(failure))

    async def _restart(self, cause: PublishError) -> None:
        """A new producer in place of a broken one; what the old one had not confirmed
        fails (retryable), so the Block sends it again through the new one."""
        log.error("%s: %s; starting a new producer", self.name, cause)
        old, self.producer = self.producer, None  # produce() fails (retryable) meanwhile
        try:
            await self._stop_polling()
            with contextlib.suppress(ck.KafkaException):
                await self.call(old.purge)
                await self.call(old.flush, 5)
            self._resolve()
            self.producer = self._new_producer()
            self.fatal = None
            self._start_polling()
            self._retry_backlog()
        finally:
            self._restarting = None

    def _new_producer(self) -> Any:
        config: dict[str, Any] = {
            **self.config,
            **_callbacks(self.name, self.scrub, self._on_fatal, self._repeats),
        }
        self._log = config["logger"]
        try:
            return ck.Producer(config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self.scrub(_error_text(exc))}") from None

    def _start_polling(self) -> None:
        self._running = True
        self._thread = threading.Thread(
            target=self._poll, name="arroyo-kafka-producer-poll", daemon=True
        )
        self._thread.start()

    async def _stop_polling(self) -> None:
        self._running = False
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    def _poll(self) -> None:
        producer, loop = self.producer, self._loop
        assert loop is not None and producer is not None
        while self._running:
            producer.poll(0.1)
            if self._reports and not self._scheduled:
                self._scheduled = True
                try:
                    loop.call_soon_threadsafe(self._resolve)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[Any],
        what: str,
        done: asyncio.Future[None] | None = None,
    ) -> asyncio.Future[None]:
        """Enqueue now; the future (``done``, or a new one) completes with the delivery
        report. Raises MessageTooLargeError / PublishError when librdkafka refuses the
        message at once."""
        if self.producer is None or self._loop is None:
            raise PublishError(f"{self.name}: not started (or already closed)")
        if done is None:
            done = self._loop.create_future()
        if self._backlog or not self._produce(topic, value, key, headers, done, what):
            self._backlog.append((topic, value, key, headers, done))
        return done

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[Any],
        done: asyncio.Future[None],
        what: str,
    ) -> bool:
        """Hand one message to librdkafka; False when its queue is full."""
        reports = self._reports

        def report(error: Any, msg: Any) -> None:
            reports.append((done, error, msg if error is not None else None))

        try:
            self.producer.produce(topic, value, key, headers=headers, on_delivery=report)
        except BufferError:
            return False
        except ck.KafkaException as exc:
            raise self._refused(exc, len(value), what) from None
        self._outstanding += 1
        return True

    def _refused(self, exc: BaseException, size: int, what: str) -> PublishError:
        error = exc.args[0] if exc.args else None
        if error is not None and error.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE:
            return MessageTooLargeError(
                f"{self.name}: {what} is {size} bytes, more than the producer allows "
                f"(message.max.bytes={self.limit}). To send it, raise the producer's "
                "message.max.bytes (a setting next to the publisher's URL) and the topic's "
                "max.message.bytes (or the broker's message.max.bytes); consumers of large "
                "messages may need a larger fetch.max.bytes too"
            )
        return PublishError(f"{self.name}: cannot produce {what}: {self.scrub(_error_text(exc))}")

    def _delivery_error(self, error: Any, msg: Any) -> PublishError:
        where = f"{msg.topic()}[{msg.partition()}]" if msg is not None else self.name
        if error.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE:
            size = len(msg) if msg is not None else "?"
            return MessageTooLargeError(
                f"{self.name}: the broker refused a message of {size} bytes for {where} as "
                "too large: raise the topic's max.message.bytes (or the broker's "
                f"message.max.bytes); the producer's message.max.bytes is {self.limit}"
            )
        return PublishError(
            f"{self.name}: delivery to {where} failed: {error.name()}: {self.scrub(error.str())}"
        )

    def _resolve(self) -> None:
        """Complete the futures of the delivery reports received so far (loop thread)."""
        self._scheduled = False
        reports = self._reports
        while reports:
            done, error, msg = reports.popleft()
            self._outstanding -= 1
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            elif self.on_failure is not None:
                done.cancel()
                self.on_failure(self._delivery_error(error, msg))
            else:
                done.set_exception(self._delivery_error(error, msg))
        self._retry_backlog()
        if self._outstanding == 0 and not self._backlog and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    def _retry_backlog(self) -> None:
        """Hand the backlog to librdkafka, in order, as far as its queue has room."""
        backlog = self._backlog
        while backlog and self.producer is not None:
            topic, value, key, headers, done = backlog[0]
            if not done.done():
                try:
                    if not self._produce(topic, value, key, headers, done, "a message"):
                        return
                except PublishError as exc:
                    done.set_exception(exc)
            backlog.popleft()

    async def idle(self) -> None:
        """Wait until every produced message has its delivery report."""
        while self._outstanding > 0 or self._backlog:
            if self._idle is None:
                assert self._loop is not None
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)

    def cancel_all(self) -> None:
        """Cancel the futures of what librdkafka does not have yet (abandoned work)."""
        while self._backlog:
            self._backlog.popleft()[-1].cancel()

    @property
    def outstanding(self) -> int:
        return self._outstanding + len(self._backlog)

    async def close(self, grace: float = 30.0) -> None:
        """Send what is queued (up to ``grace`` seconds), then stop."""
        if self._restarting is not None:
            await asyncio.gather(self._restarting, return_exceptions=True)
        self._started = False
        await self._stop_polling()
        if self.producer is not None and self._executor is not None:
            deadline = asyncio.get_running_loop().time() + grace
            while self.outstanding and asyncio.get_running_loop().time() < deadline:
                if self._backlog:
                    self._retry_backlog()
                await self.call(self.producer.flush, 0.5)
                self._resolve()
            if self.outstanding:
                log.error(
                    "%s: %d messages were not confirmed within %g s of closing",
                    self.name,
                    self.outstanding,
                    grace,
                )
                self.cancel_all()
        self.producer = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


# -- exactly-once ----------------------------------------------------------------------


class _Transactions:
    """One transactional producer shared by the publishers (and the dead letter) of an
    exactly-once block, committed together with the listener's offsets."""

    def __init__(self, name: str, config: dict[str, str], scrub: _Scrub, group: str) -> None:
        txn_id = f"arroyo-{group}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        config = {**config, "transactional.id": txn_id, "enable.idempotence": "true"}
        self.core = _Producer(name, config, scrub)
        self.failure: BaseException | None = None
        self._users = 0
        self._started = False
        self._in_transaction = False
        self._gate = False
        self._held: deque[tuple[str, bytes, bytes | None, list[Any], asyncio.Future[None]]]
        self._held = deque()
        self._lock: asyncio.Lock | None = None
        self._aborting: asyncio.Task[None] | None = None
        """The background abort (referenced so that it is not garbage-collected)."""
        self.core.on_failure = self._fail
        self.timeout = float(config.get("transaction.timeout.ms", "60000")) / 1000

    async def start(self, connect_timeout: float) -> None:
        self._users += 1
        if not self._started:
            self._started = True
            self._lock = asyncio.Lock()
            await self.core.start(connect_timeout, transactional=True)
            log.info("%s: transactional producer %s ready", self.core.name, self.txn_id)

    @property
    def txn_id(self) -> str:
        return self.core.config["transactional.id"]

    def send(
        self, topic: str, value: bytes, key: bytes | None, headers: list[Any], what: str
    ) -> asyncio.Future[None]:
        """Produce inside the open transaction (begun when needed); while a commit is
        under way, hold the message (in order) for the next transaction. After a failure
        the future is cancelled: the work is abandoned, for redelivery elsewhere."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            done.cancel()
        elif self._gate or self._held:
            self._held.append((topic, value, key, headers, done))
        elif self._begin():
            self.core.produce(topic, value, key, headers, what, done)
        else:
            done.cancel()
        return done

    def _begin(self) -> bool:
        """Open a transaction unless one is open; False (and aborting) if that fails."""
        if self._in_transaction:
            return True
        try:
            self.core.producer.begin_transaction()
        except ck.KafkaException as exc:
            self._fail(exc)
            return False
        self._in_transaction = True
        return True

    def _fail(self, cause: BaseException) -> None:
        """Abort in the background (from a callback that cannot await)."""
        if self.failure is None:
            task = asyncio.ensure_future(self.abort(cause))
            self._aborting = task

    def _release(self) -> None:
        """Produce what was held during a commit, in order, in a new transaction."""
        while self._held and not self._gate and self.failure is None:
            topic, value, key, headers, done = self._held.popleft()
            if done.done():
                continue
            if not self._begin():
                done.cancel()
                continue
            try:
                self.core.produce(topic, value, key, headers, "a message", done)
            except PublishError as exc:
                done.set_exception(exc)

    async def commit(
        self, offsets: Callable[[], dict[Key, int]], group_metadata: Any
    ) -> dict[Key, int]:
        """Commit the open transaction with ``offsets()`` (called once every output of it
        is delivered and the Block has recorded the acknowledgements that completes).
        Returns the offsets committed. Raises TransactionError after aborting."""
        assert self._lock is not None
        async with self._lock:
            if self.failure is not None:
                raise TransactionError(f"{self.core.name}: {self.failure}")
            self._gate = True
            try:
                await self.core.idle()
                for _ in range(_SETTLE_ITERATIONS):
                    await asyncio.sleep(0)
                committed = offsets()
                if not self._in_transaction and not committed:
                    return {}
                self._begin()
                if committed:
                    await self._retrying(
                        self.core.producer.send_offsets_to_transaction,
                        _offsets_list(committed),
                        group_metadata,
                        self.timeout,
                    )
                await self._retrying(self.core.producer.commit_transaction, self.timeout)
                self._in_transaction = False
                return committed
            except Exception as exc:
                await self.abort(exc)
                raise TransactionError(f"{self.core.name}: {self.failure}") from None
            finally:
                self._gate = False
                self._release()

    async def _retrying(self, func: Callable[..., Any], *args: Any) -> None:
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                await self.core.call(func, *args)
                return
            except ck.KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("%s: retrying: %s", self.core.name, self.core.scrub(error.str()))

    async def abort(self, cause: BaseException) -> None:
        """Abort the open transaction and fail everything after it (the worker stops)."""
        if self.failure is not None:
            return
        text = self.core.scrub(_error_text(cause))
        self.failure = TransactionError(f"transaction aborted: {text}")
        log.error(
            "%s: aborting the transaction and stopping (the partitions are processed again "
            "from the last commit): %s",
            self.core.name,
            text,
        )
        while self._held:
            self._held.popleft()[-1].cancel()
        self.core.cancel_all()
        if self._in_transaction and self.core.producer is not None:
            try:
                await self.core.call(self.core.producer.abort_transaction, self.timeout)
            except ck.KafkaException as exc:
                log.error("%s: abort failed: %s", self.core.name, self.core.scrub(exc))
            self._in_transaction = False

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self.core.producer is None:
            return
        if self._in_transaction and self.failure is None:
            # Outputs nobody committed offsets for: drop them (they are produced again).
            try:
                await self.core.call(self.core.producer.abort_transaction, self.timeout)
            except ck.KafkaException as exc:
                log.warning("%s: abort at close failed: %s", self.core.name, self.core.scrub(exc))
            self._in_transaction = False
        await self.core.close(self.timeout)


# -- listener --------------------------------------------------------------------------

_LISTENER_OPTIONS: dict[str, Any] = {
    "group": "",
    "commit_interval_ms": 1000,
    "commit_every": 1000,
    "batch_size": 1000,
    "poll_timeout_ms": 100,
    "drain_timeout_ms": 10000,
    "pause_after_ms": 200,
    "delivery_journal": "",
    **CONNECT_OPTIONS,
}


class KafkaListener(Listener):
    """Reads topics in a consumer group and commits offsets of acknowledged messages.

    All consumer calls run in one dedicated thread (rebalance callbacks too); messages
    come over to the event loop a batch at a time. See the module docstring for the
    guarantees.
    """

    def __init__(
        self,
        url: BrokerURL,
        topics: list[str],
        group: str,
        config: dict[str, str],
        parser: Parser | None = None,
        *,
        commit_interval_ms: int = 1000,
        commit_every: int = 1000,
        batch_size: int = 1000,
        poll_timeout_ms: int = 100,
        drain_timeout_ms: int = 10000,
        pause_after_ms: int = 200,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__(parser)
        self.url = url
        self.topics = topics
        self.group = group
        self.scrub = _Scrub(config, url.password)
        self.config: dict[str, str] = {
            "group.id": group,
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": "false",
            # librdkafka stops prefetching when its queue is full and by default looks
            # again only after 1 s: a fast Block would drain the queue and wait.
            "fetch.queue.backoff.ms": "10",
            **config,
        }
        self.commit_interval = commit_interval_ms / 1000
        self.commit_every = max(1, commit_every)
        self.batch_size = max(1, batch_size)
        self.poll_timeout = poll_timeout_ms / 1000
        self.drain_timeout = drain_timeout_ms / 1000
        self.pause_after = pause_after_ms / 1000
        self.connect_timeout = connect_timeout
        self._name = str(url)
        self._txn: _Transactions | None = None
        # loop-thread state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._consumer: Any = None
        self._tracker: OffsetTracker[Key] = OffsetTracker()
        self._owned: dict[Key, int] = {}
        self._generation = 0
        self._acked = 0
        self._next_commit = 0.0
        self._backlog: deque[tuple[list[Any], dict[Key, int]]] = deque()
        self._blocked: tuple[asyncio.Task[None], Key, int] | None = None
        self._cancelled_put: tuple[Key, int] | None = None
        self._progress: asyncio.Future[None] | None = None
        self._stopping = False
        self._closing = False
        self._commit_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # consumer-thread state
        self._paused = False
        self._revoked_during: set[Key] = set()
        self._fatal: Any = None
        self._commit_failures = 0
        self._commit_failures_seen = 0
        self._repeats = Throttle(30.0)

    @property
    def name(self) -> str:
        return self._name

    @property
    def servers(self) -> str:
        return self.config["bootstrap.servers"]

    # -- running (event loop) ----------------------------------------------------------

    def _call(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        assert self._loop is not None
        return self._loop.run_in_executor(self._executor, func, *args)

    async def connect(self) -> None:
        """Make the consumer and wait (up to connect_timeout) until the cluster answers;
        raises ConnectError saying why it did not. Subscribes, but joins the group only
        once :meth:`start` polls."""
        if self._consumer is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-kafka-consumer")
        try:
            await self._call(self._open)
        except ck.KafkaException as exc:
            raise ArroyoError(f"{self.name}: {self.scrub(_error_text(exc))}") from None

    async def start(self, intake: Intake) -> None:
        """Join the group and hand messages over, in partition order, until stop().

        Raises ConnectError when the cluster does not answer within connect_timeout at
        start, and for what the consumer cannot recover from (a fatal librdkafka error,
        bad settings, an aborted transaction); later broker outages are waited out.
        """
        await self.connect()
        assert self._loop is not None
        self._next_commit = self._loop.time() + self.commit_interval
        try:
            log.info("%s: joining group %r", self.name, self.group)
            while not self._stopping:
                self._check()
                batch = await self._call(self._fetch, self._due_commit())
                if batch:
                    self._backlog.append((batch, self._owned))
                    await self._hand_over(intake)
            self._check()
        except ck.KafkaException as exc:
            raise ArroyoError(f"{self.name}: {self.scrub(_error_text(exc))}") from None

    def _check(self) -> None:
        if self._fatal is not None:
            raise ArroyoError(f"{self.name}: fatal Kafka error: {self.scrub(self._fatal.str())}")
        if self._failure is not None:
            raise self._failure
        if self._txn is not None and self._txn.failure is not None:
            raise self._txn.failure

    async def _hand_over(self, intake: Intake) -> None:
        """Hand the fetched messages to the Block, in order, skipping those of partitions
        revoked since they were fetched; wait (polling) while the Block is full."""
        started, offer, url = self._tracker.started, intake.offer, self.name
        backlog = self._backlog
        while backlog and not self._stopping:
            batch, owned = backlog.popleft()
            stale = self._owned is not owned  # (re)assignments happen only while we await
            for msg in batch:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                key = (topic, partition)
                if stale and self._owned.get(key) != owned.get(key):
                    continue  # its partition was revoked since: its new owner reads it
                value = msg.value()
                received = Received(
                    b"" if value is None else value,
                    {"url": url, "topic": topic, "partition": partition, "offset": offset},
                    (key, offset),
                )
                started(key, offset)
                if not offer(received):
                    if not await self._wait(intake, received):
                        return
                    stale = self._owned is not owned

    async def _wait(self, intake: Intake, received: Received) -> bool:
        """put() ``received``; if that takes longer than pause_after, pause the partitions
        and keep polling until it is in. False when stopping."""
        key, offset = received.handle
        put = asyncio.ensure_future(intake.put(received))
        self._blocked = (put, key, offset)
        try:
            timeout = self.pause_after
            while True:
                await asyncio.wait((put,), timeout=timeout)
                if self._stopping:
                    put.cancel()
                    return False
                if put.done():
                    return True
                batch = await self._call(self._hold, self._due_commit())
                if batch:
                    self._backlog.append((batch, self._owned))
                timeout = max(self.poll_timeout, 0.05)
        finally:
            self._blocked = None

    async def stop(self) -> None:
        """Stop handing messages over; start() returns within about poll_timeout_ms."""
        self._stopping = True
        if self._blocked is not None:
            self._blocked[0].cancel()

    async def ack(self, received: Received) -> None:
        """Mark the message done; its offset is committed (in a batch) once every earlier
        message of its partition is done too. Acks of revoked partitions are ignored."""
        key, offset = received.handle
        self._tracker.finished(key, offset)
        self._acked += 1
        progress = self._progress
        if progress is not None and not progress.done():
            progress.set_result(None)

    def _due_commit(self) -> list[Any] | None:
        """Offsets to commit now (at-least-once), or None; in exactly-once mode, start a
        transaction commit instead when one is due."""
        assert self._loop is not None
        now = self._loop.time()
        if self._acked < self.commit_every and now < self._next_commit:
            return None
        if self._txn is not None:
            if self._commit_task is None or self._commit_task.done():
                self._next_commit = now + self.commit_interval
                if self._acked or self._txn._in_transaction:
                    self._acked = 0
                    self._commit_task = asyncio.ensure_future(self._commit_transaction())
            return None
        self._next_commit = now + self.commit_interval
        if not self._acked and self._commit_failures == self._commit_failures_seen:
            return None
        self._acked = 0
        full = self._commit_failures != self._commit_failures_seen
        self._commit_failures_seen = self._commit_failures
        offsets = self._tracker.to_commit(full=full)
        if not offsets:
            return None
        self._tracker.committed(offsets)
        return _offsets_list(offsets)

    async def _commit_transaction(self) -> None:
        assert self._txn is not None
        try:
            metadata = await self._call(self._group_metadata)
            committed = await self._txn.commit(self._tracker.to_commit, metadata)
            self._tracker.committed(committed)
        except Exception as exc:
            if self._failure is None:
                self._failure = (
                    exc if isinstance(exc, ArroyoError) else TransactionError(self.scrub(exc))
                )

    async def _drain(self, keys: list[Key]) -> bool:
        """Wait (up to drain_timeout) until the in-flight messages of ``keys`` are acked."""
        assert self._loop is not None
        deadline = self._loop.time() + self.drain_timeout
        while self._in_flight(keys) > 0:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            self._progress = self._loop.create_future()
            try:
                await asyncio.wait_for(self._progress, remaining)
            except TimeoutError:
                return False
        return True

    def _in_flight(self, keys: list[Key]) -> int:
        count = self._tracker.in_flight(keys)
        if self._cancelled_put is not None and self._cancelled_put[0] in keys:
            count -= 1  # handed to nobody: it stays uncommitted, for the new owner
        return count

    async def _assigned(self, keys: list[Key]) -> None:
        owned = dict(self._owned)
        for key in keys:
            self._generation += 1
            owned[key] = self._generation
        self._owned = owned
        if self.journal is not None:
            self.journal.look_again()  # their messages may have killed another worker
        log.info("%s: assigned %s", self.name, _partitions(keys))

    async def _revoked(self, keys: list[Key], lost: bool, metadata: Any) -> dict[Key, int]:
        """Stop taking from ``keys``, let their in-flight work finish (bounded), commit.
        Returns the offsets the consumer thread must commit (at-least-once)."""
        owned = dict(self._owned)
        for key in keys:
            owned.pop(key, None)
        self._owned = owned
        blocked = self._blocked
        if blocked is not None and blocked[1] in keys and not blocked[0].done():
            blocked[0].cancel()
            self._cancelled_put = (blocked[1], blocked[2])
        try:
            if self._closing:
                return {}
            if lost:
                log.warning(
                    "%s: lost %s (the group moved on without this consumer); their "
                    "unfinished messages will be processed again by their new owner",
                    self.name,
                    _partitions(keys),
                )
                if self._txn is not None:
                    await self._txn.abort(TransactionError("partitions lost"))
                return {}
            drained = await self._drain(keys)
            if not drained:
                log.warning(
                    "%s: %d messages of revoked %s still unfinished after %.1f s; their new "
                    "owner will process them again",
                    self.name,
                    self._in_flight(keys),
                    _partitions(keys),
                    self.drain_timeout,
                )
            if self._txn is not None:
                if not drained:
                    # Their outputs would land in a later transaction than their offsets.
                    await self._txn.abort(
                        TransactionError("revoked partitions did not drain in time")
                    )
                    return {}
                committed = await self._txn.commit(self._tracker.to_commit, metadata)
                self._tracker.committed(committed)
                return {}
            return self._tracker.to_commit(keys, full=True)
        finally:
            self._tracker.forget(keys)
            if self._cancelled_put is not None and self._cancelled_put[0] in keys:
                self._cancelled_put = None
            log.info("%s: revoked %s", self.name, _partitions(keys))

    async def close(self) -> None:
        """Commit every acknowledged offset (or the last transaction), leave the group."""
        if self._consumer is None:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            return
        try:
            if self._commit_task is not None:
                await asyncio.gather(self._commit_task, return_exceptions=True)
            if self._txn is not None:
                if self._txn.failure is None and self._failure is None:
                    metadata = await self._call(self._group_metadata)
                    committed = await self._txn.commit(self._tracker.to_commit, metadata)
                    self._tracker.committed(committed)
            else:
                offsets = self._tracker.to_commit(full=True)
                if offsets:
                    await self._call(self._commit_now, offsets)
        except Exception as exc:
            log.error("%s: final commit failed: %s", self.name, self.scrub(exc))
        finally:
            self._closing = True
            try:
                await self._call(self._close_consumer)
            finally:
                assert self._executor is not None
                self._executor.shutdown(wait=False)

    # -- the consumer thread -----------------------------------------------------------

    def _open(self) -> None:
        config: dict[str, Any] = {
            **self.config,
            **_callbacks(self.name, self.scrub, self._on_fatal, self._repeats),
            "on_commit": self._on_commit,
        }
        try:
            consumer = ck.Consumer(config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self.scrub(_error_text(exc))}") from None
        client_log = config["logger"]
        try:
            _reach(
                consumer, self.connect_timeout, lambda: self._fatal is not None, client_log, config
            )
        except ck.KafkaException:
            consumer.close()
            reports = list(client_log.reports)
            raise ConnectError(
                self.scrub(
                    kafka_checks.unreachable(self.name, self.config, reports, self.connect_timeout)
                )
            ) from None
        consumer.subscribe(
            list(self.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._consumer = consumer

    def _on_fatal(self, error: Any) -> None:
        self._fatal = error

    def _fetch(self, commit: list[Any] | None) -> list[Any]:
        """Commit (asynchronously) what is due, then take what is there, or wait up to
        poll_timeout for the first message and take what came with it."""
        consumer = self._consumer
        if commit:
            consumer.commit(offsets=commit, asynchronous=True)
        if self._paused:
            consumer.resume(consumer.assignment())
            self._paused = False
        msgs = consumer.consume(self.batch_size, 0)
        if not msgs:
            first = consumer.poll(self.poll_timeout)
            if first is None:
                return []
            msgs = [first]
            if self.batch_size > 1:
                # Only a revocation served by the next call makes ``first`` stale. One
                # served by the calls above came before it: ``first`` is then the first
                # message of the new assignment, and dropping it would skip it for good
                # (the offsets after it get committed).
                self._revoked_during.clear()
                more = consumer.consume(self.batch_size - 1, 0)
                if self._revoked_during:  # a rebalance between poll and consume
                    revoked = self._revoked_during
                    msgs = [m for m in msgs if (m.topic(), m.partition()) not in revoked]
                msgs += more
        return self._good(msgs)

    def _hold(self, commit: list[Any] | None) -> list[Any]:
        """Pause the assigned partitions and poll (serves rebalances, keeps membership)."""
        consumer = self._consumer
        if commit:
            consumer.commit(offsets=commit, asynchronous=True)
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        self._paused = True
        return self._good(consumer.consume(self.batch_size, 0))

    def _good(self, msgs: list[Any]) -> list[Any]:
        bad = [m for m in msgs if m.error() is not None]
        if not bad:
            return msgs
        for msg in bad:
            error = msg.error()
            if error.code() == ck.KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise ck.KafkaException(error)
            # e.g. a topic that does not exist yet
            text = self.scrub(error.str())
            self._repeats(log, logging.WARNING, text, "%s: %s", self.name, text)
        return [m for m in msgs if m.error() is None]

    def _group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def _run_on_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        # librdkafka keeps a partition paused across a rebalance: one that _hold paused
        # and that was revoked before _fetch resumed the assignment would never be read
        # again once assigned back. A new assignment starts unpaused (_hold pauses it
        # again while the Block is full).
        consumer.resume(partitions)
        keys = [(p.topic, p.partition) for p in partitions]
        try:
            self._run_on_loop(self._assigned(keys), 30)
        except Exception as exc:
            log.error("%s: handling the assignment failed: %s", self.name, self.scrub(repr(exc)))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Any, partitions: list[Any], lost: bool) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        self._revoked_during.update(keys)
        metadata = None
        if self._txn is not None and not lost and not self._closing:
            metadata = consumer.consumer_group_metadata()
        limit = self.drain_timeout + (self._txn.timeout if self._txn is not None else 0) + 30
        try:
            offsets = self._run_on_loop(self._revoked(keys, lost, metadata), limit)
        except Exception as exc:
            log.error("%s: handling the revocation failed: %s", self.name, self.scrub(exc))
            return
        if offsets:
            self._commit_now(offsets)

    def _commit_now(self, offsets: dict[Key, int]) -> None:
        """Synchronous commit (revocation, close); failures are logged."""
        try:
            result = self._consumer.commit(offsets=_offsets_list(offsets), asynchronous=False)
        except ck.KafkaException as exc:
            log.warning(
                "%s: could not commit offsets %s: %s",
                self.name,
                offsets,
                self.scrub(_error_text(exc)),
            )
            return
        failed = [p for p in result or () if p.error is not None]
        if failed:
            log.warning("%s: could not commit offsets: %s", self.name, failed)

    def _on_commit(self, error: Any, partitions: list[Any]) -> None:
        failed = [p for p in partitions if p.error is not None]
        if error is not None or failed:
            self._commit_failures += 1
            text = self.scrub(error.str()) if error is not None else str(failed)
            self._repeats(
                log,
                logging.WARNING,
                text,
                "%s: committing offsets failed (retried): %s",
                self.name,
                text,
            )

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()


# -- publisher -------------------------------------------------------------------------

_PUBLISHER_OPTIONS: dict[str, Any] = {**CONNECT_OPTIONS}


class KafkaPublisher(PipelinedPublisher):
    """Produces to one topic; confirmed by the delivery report (all in-sync replicas)."""

    def __init__(
        self,
        url: BrokerURL,
        topic: str,
        config: dict[str, str],
        codec: Codec | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.url = url
        self.topic = topic
        self.codec = codec or default_codec()
        self.config: dict[str, str] = {
            "enable.idempotence": "true",
            "partitioner": "murmur2_random",
            "message.max.bytes": str(MESSAGE_MAX_BYTES),
            **config,
        }
        self.scrub = _Scrub(self.config, url.password)
        self.connect_timeout = connect_timeout
        self._name = str(url)
        self._core: _Producer | None = None
        self._txn: _Transactions | None = None
        self._headers: dict[tuple[str, bytes], list[tuple[str, str]]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def servers(self) -> str:
        return self.config["bootstrap.servers"]

    async def start(self) -> None:
        """Create the producer, check that the cluster answers (within connect_timeout,
        else ConnectError), then check the topic's size limit (see the module docstring)."""
        if self._txn is not None:
            await self._txn.start(self.connect_timeout)
        else:
            self._core = _Producer(self.name, self.config, self.scrub)
            await self._core.start(self.connect_timeout)
        await asyncio.to_thread(
            kafka_checks.fit_topic,
            self.name,
            self.config,
            self.topic,
            int(self.config["message.max.bytes"]),
            self.connect_timeout,
            self.scrub,
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
        if self._txn is not None:
            return self._txn.send(self.topic, value, key, headers, what)
        if self._core is None:
            raise PublishError(f"{self.name}: start() was not called")
        return self._core.produce(self.topic, value, key, headers, what)

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode and enqueue ``message`` now (so send order is partition order); the
        future completes with its delivery report. Raises EncodeError, or
        MessageTooLargeError when it exceeds the producer's message.max.bytes."""
        value = self.codec.encode(message, wire)
        headers = [*self._schema_headers(message.kind, value), ("arroyo.id", message.id)]
        key = message.stream.encode() if message.stream else None
        return self._produce(value, key, headers, f"{message.kind} {message.id}")

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Produce the original bytes with the reason and source in headers (see the
        module docstring for multipart messages). When they exceed message.max.bytes, the
        dead letter is sent without them (header ``arroyo.dead-letter.omitted``)."""
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
        if self._txn is not None:
            await self._txn.close()
        elif self._core is not None:
            await self._core.close()
            self._core = None


# -- factories -------------------------------------------------------------------------


def _topics(url: BrokerURL) -> list[str]:
    topics = [t.strip() for t in url.path.split(",") if t.strip()]
    if not topics:
        raise ConfigError(f"{url}: a Kafka URL needs a topic, as in kafka://HOST:9092/frames")
    return topics


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> KafkaListener:
    """``kafka://HOST:PORT/TOPIC[,TOPIC...|^REGEX]?group=G`` plus options:
    ``commit_interval_ms`` (1000), ``commit_every`` (1000), ``batch_size`` (1000 messages
    per consume call), ``poll_timeout_ms`` (100), ``drain_timeout_ms`` (10000, for a
    revocation), ``pause_after_ms`` (200), ``delivery_journal`` (the default folder; a
    folder, or ``false``), ``connect_timeout`` (seconds, 10), and any librdkafka consumer
    setting (checked by librdkafka now)."""
    own, client = _split(url, options, _LISTENER_OPTIONS)
    if not own["group"]:
        raise ConfigError(f"{url}: a Kafka listener needs a consumer group: add ?group=NAME")
    if "group.id" in client:
        raise ConfigError(f"{url}: set the consumer group with 'group', not 'group.id'")
    if client.get("enable.auto.commit", "false").lower() in ("true", "1"):
        raise ConfigError(
            f"{url}: enable.auto.commit must stay false: Arroyo commits offsets itself, "
            "only once messages are done"
        )
    group, journal = own.pop("group"), own.pop("delivery_journal")
    own["connect_timeout"] = connect_timeout(url, own)
    made = KafkaListener(url, _topics(url), group, client, parser or AvroParser(), **own)
    kafka_checks.check_settings(url, made.config, "consumer", made.scrub)
    cluster = ",".join(sorted(made.servers.split(",")))
    made.journal = from_option(journal, str(url), f"kafka {cluster} {group}", _offset_key)
    return made


def _offset_key(received: Received) -> str:
    """A Kafka message's key in the delivery journal: ``topic:partition:offset``."""
    (topic, partition), offset = received.handle
    return f"{topic}:{partition}:{offset}"


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> KafkaPublisher:
    """``kafka://HOST:PORT/TOPIC`` plus ``connect_timeout`` (seconds, 10) and any
    librdkafka producer setting (``linger.ms``, ``compression.type``,
    ``message.max.bytes``...), checked by librdkafka now."""
    own, client = _split(url, options, _PUBLISHER_OPTIONS)
    own["connect_timeout"] = connect_timeout(url, own)
    topics = _topics(url)
    if len(topics) > 1 or topics[0].startswith("^"):
        raise ConfigError(f"{url}: a Kafka publisher writes to exactly one topic")
    if "transactional.id" in client:
        raise ConfigError(
            f"{url}: transactional.id is managed by Arroyo: use 'guarantee: exactly-once' "
            "on the block instead"
        )
    made = KafkaPublisher(url, topics[0], client, codec or default_codec(), **own)
    kafka_checks.check_settings(url, made.config, "producer", made.scrub)
    return made


def exactly_once(
    listener: Listener, publishers: list[Publisher], dead_letter: Publisher | None
) -> None:
    """Make a Kafka -> Kafka block exactly-once with Kafka transactions.

    The publishers share one transactional producer (``transactional.id`` unique per
    worker process, as KIP-447 allows: zombies are fenced by the consumer group's
    generation). Outputs are produced inside a transaction; every ``commit_interval_ms``
    (or ``commit_every`` acknowledgements), new outputs are held back, the delivery of
    those already produced is awaited (all outputs of one input are sent together, so
    an input is never split across transactions), the listener's offsets go into the
    transaction (``send_offsets_to_transaction``) and it is committed; then the held
    outputs open the next one. The listener commits no offsets of its own. Readers must
    use ``isolation.level=read_committed`` (Arroyo's Kafka listener does by default).

    On a revocation the open transaction is committed first (after the revoked
    partitions' in-flight work finished). On any transaction error (an abortable error,
    a failed delivery, partitions lost, or revoked work that did not finish within
    ``drain_timeout_ms``) the transaction is aborted and the worker stops with
    :class:`TransactionError`: restarting from the committed offsets is the one way that
    loses nothing and duplicates nothing, and the group hands the partitions to the
    other workers meanwhile.

    The dead-letter destination joins the transaction when it is a Kafka publisher on
    the same cluster with the same settings; otherwise dead letters stay at-least-once.

    Raises ConfigError when the listener or a publisher is not Kafka, or a publisher is
    on another cluster or has other settings than the first.
    """
    if not isinstance(listener, KafkaListener):
        raise ConfigError(f"exactly-once needs a Kafka listener; {listener.name} is not Kafka")
    if not publishers:
        raise ConfigError("exactly-once needs at least one Kafka publisher")
    others = [p.name for p in publishers if not isinstance(p, KafkaPublisher)]
    if others:
        raise ConfigError(
            "exactly-once works through Kafka transactions, so every publisher must be "
            f"Kafka; not Kafka: {', '.join(others)}"
        )
    kafka = [p for p in publishers if isinstance(p, KafkaPublisher)]
    first = kafka[0]
    for p in kafka:
        if p.servers != listener.servers:
            raise ConfigError(
                f"exactly-once: {p.name} is on another cluster ({p.servers}) than the "
                f"listener ({listener.servers}); a transaction spans one cluster"
            )
        if p.config != first.config:
            keys = sorted(
                k
                for k in set(p.config) | set(first.config)
                if p.config.get(k) != first.config.get(k)
            )
            raise ConfigError(
                f"exactly-once: the publishers share one transactional producer, so their "
                f"settings must be the same; {p.name} differs from {first.name} in: "
                f"{', '.join(keys)}"
            )
    txn = _Transactions(first.name, first.config, first.scrub, listener.group)
    listener._txn = txn
    for p in kafka:
        p._txn = txn
    if (
        isinstance(dead_letter, KafkaPublisher)
        and dead_letter.servers == listener.servers
        and dead_letter.config == first.config
    ):
        dead_letter._txn = txn


async def probe(endpoint: KafkaListener | KafkaPublisher, seconds: float) -> tuple[str, str]:
    """Reach the cluster without joining a group or producing (``arroyo check
    --connect``): a publisher starts and closes its producer; both say how many
    partitions their topics have."""
    from arroyo.brokers import kafka_admin

    if isinstance(endpoint, KafkaPublisher):
        endpoint.connect_timeout = min(endpoint.connect_timeout, seconds)
        await endpoint.start()
        await endpoint.close()
        topics, prefix = [endpoint.topic], "producer connected; "
    else:
        topics, prefix = list(endpoint.topics), ""
    counts = await asyncio.to_thread(kafka_admin.partitions, endpoint.config, seconds)
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


def _browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    from arroyo.browse import kafka as browse

    return browse.browser(url, options, reading)


CONNECTOR = Connector(
    name="kafka",
    schemes=("kafka",),
    extra="kafka",
    listener=listener,
    publisher=publisher,
    browser=_browser,
    probe=probe,
    exactly_once=exactly_once,
)
