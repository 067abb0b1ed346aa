"""The producer a Kafka publisher (or an exactly-once block's publishers) sends through.

A confluent-kafka Producer whose delivery reports complete asyncio futures: a thread of
its own polls it and hands each batch of delivery reports to the event loop in one call.
``produce`` enqueues at once (so the order of calls is the order in the partition); when
librdkafka's queue is full (BufferError), the message and every later one wait in order
in a backlog, which is retried as delivery reports free room. Nothing is ever dropped.

Order after a failure (rule 2 of :mod:`arroyo.runtime.ordering`): librdkafka retries a
message in order until ``message.timeout.ms``, so short outages never reach Arroyo. A
message that fails after that leaves a gap: what was queued behind it would still be
delivered, ahead of its re-publication. So the first failed delivery report purges
librdkafka's queue at once (in the thread that serves the report, before anything else
is sent): what was queued behind fails with :class:`~arroyo.runtime.ordering.NotSent`,
unwritten, and so do the sends given before the loop has seen the failure and while
sends given before it are outstanding (:class:`~arroyo.runtime.ordering.FailStop`). The
runtime then publishes them again, in order. What librdkafka had already put in a
produce request when the failure was reported can still be written (a purge cannot take
back a request on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import (
    ClientLog,
    Hide,
    Reachability,
    callbacks,
    error_text,
    reach,
    unreachable,
)
from arroyo.brokers.kafka.delivery import breaks, failure, purged, refusal
from arroyo.errors import (
    ConfigError,
    ConnectError,
    PermanentError,
    PublishError,
)
from arroyo.runtime.logs import Throttle
from arroyo.runtime.ordering import FailStop, NotSent

log = logging.getLogger("arroyo.brokers.kafka")

T = TypeVar("T")

Entry = tuple[bytes, bytes | None, list[Any], str]
"""What the producer is given for one message: value, key, headers, and what it is
(for errors)."""

_Queued = tuple[str, bytes, bytes | None, list[Any], asyncio.Future[None]]
"""A message waiting to be handed to librdkafka: topic, value, key, headers, its future."""


class Producer:
    """A confluent-kafka Producer whose delivery reports complete asyncio futures (see
    the module docstring)."""

    def __init__(self, name: str, config: dict[str, str], hide: Hide) -> None:
        self.name = name
        self.config = config
        self.hide = hide
        self.producer: Any = None
        self.fatal: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reports: deque[tuple[asyncio.Future[None], Any, Any]] = deque()
        self._scheduled = False
        self._backlog: deque[_Queued] = deque()
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
        self.reachability = Reachability()
        """Whether the producer reaches a broker now (librdkafka's statistics)."""
        self._log = ClientLog(name, hide)
        self._fail_stop = FailStop(name)
        self._halts = 0
        """Failed deliveries seen by the thread serving reports (each purged the queue)."""
        self._halts_seen = 0
        """The same, as far as the event loop has taken them into account."""
        self._halting = threading.Lock()
        """Makes purging the queue and handing a message over exclusive."""

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
            line = unreachable(self.name, self.config, reports, connect_timeout)
            raise ConnectError(self.hide(line)) from None
        self._start_polling()
        if transactional:
            try:
                await self.call(self.producer.init_transactions, connect_timeout)
            except ck.KafkaException as exc:
                cause = self.fatal.str() if self.fatal is not None else error_text(exc)
                await self.close(0)
                raise PublishError(
                    f"{self.name}: cannot initialise transactions: {self.hide(cause)}"
                ) from None
        self._started = True
        if self.fatal is not None:  # it failed between the checks above and now
            self._fatal_on_loop(self.fatal)

    def _connect(self, timeout: float) -> None:
        """(Producer thread) Wait until the cluster answers a metadata request, serving
        error callbacks meanwhile, so that a TLS failure ends the wait at once."""
        reach(self.producer, timeout, lambda: self.fatal is not None, self._log, self.config)

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
        failure = PublishError(f"{self.name}: fatal producer error: {self.hide(error.str())}")
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
            **callbacks(self.name, self.hide, self._on_fatal, self._repeats, self.reachability),
        }
        self._log = config["logger"]
        try:
            return ck.Producer(config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self.hide(error_text(exc))}") from None

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
            try:
                producer.poll(0.1)
            except ck.KafkaException as exc:
                # A fatal error (a transactional producer fenced) comes out of poll too:
                # the loop is told once, and this thread goes on serving the reports.
                error = exc.args[0] if exc.args else None
                if not isinstance(error, ck.KafkaError) or error.fatal():
                    if self.fatal is None:
                        self._on_fatal(error or ck.KafkaError(ck.KafkaError._FATAL, str(exc)))
                else:
                    text = self.hide(error.str())
                    self._repeats(log, logging.WARNING, text, "%s: %s", self.name, text)
                time.sleep(0.1)  # poll raises at once while the error stands
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
        """Enqueue now, as :meth:`produce_many` does one entry; the future (``done``, or a
        new one) completes with the delivery report, or fails with NotSent when an
        earlier message failed and must be sent again first (see the module docstring).
        Raises MessageTooLargeError / PublishError when librdkafka refuses the message
        at once (the future has failed with it too)."""
        if self.producer is None or self._loop is None:
            raise PublishError(f"{self.name}: not started (or already closed)")
        (sent,) = self._produce_many(topic, ((value, key, headers, what),), done)
        if sent.done() and not sent.cancelled():
            refused = sent.exception()
            if refused is not None and not isinstance(refused, NotSent):
                raise refused
        return sent

    def produce_many(self, topic: str, entries: Iterable[Entry]) -> list[asyncio.Future[None]]:
        """:meth:`produce` each ``(value, key, headers, what)`` of ``entries``, in order,
        as one call (one lock, no call per message but librdkafka's); a future per
        entry taken.

        Never raises: what librdkafka refuses at once fails its future. Stops after a
        future that failed at once with an error a retry may cure (NotSent, a
        PublishError that is not a PermanentError): the later entries are not taken.
        """
        return self._produce_many(topic, entries, None)

    def _produce_many(
        self, topic: str, entries: Iterable[Entry], first: asyncio.Future[None] | None
    ) -> list[asyncio.Future[None]]:
        """:meth:`produce_many`, with ``first`` (when given) as the first entry's future."""
        sent: list[asyncio.Future[None]] = []
        producer, loop = self.producer, self._loop
        if producer is None or loop is None:
            if loop is None:
                loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future() if first is None else first
            done.set_exception(PublishError(f"{self.name}: not started (or already closed)"))
            return [done]
        backlog, fail_stop, future = self._backlog, self._fail_stop, asyncio.Future
        stops = self.on_failure is None
        report = functools.partial(self._report, self._reports, producer, stops)
        with self._halting:  # as _produce: no purge between a check and its produce
            for value, key, headers, what in entries:
                if first is None:
                    done = future(loop=loop)  # loop.create_future, inlined
                else:
                    done, first = first, None
                sent.append(done)
                if stops and (self._halts != self._halts_seen or not fail_stop.given()):
                    done.set_exception(fail_stop.not_sent())
                    break
                if not backlog:
                    try:
                        producer.produce(
                            topic,
                            value,
                            key,
                            headers=headers,
                            on_delivery=functools.partial(report, done),
                        )
                    except BufferError:
                        pass  # librdkafka's queue is full: it and what follows wait
                    except ck.KafkaException as exc:
                        refused = self._refused(exc, len(value), what)
                        self._completed(refused)
                        done.set_exception(refused)
                        if isinstance(refused, PermanentError):
                            continue
                        break
                    else:
                        self._outstanding += 1
                        continue
                backlog.append((topic, value, key, headers, done))
        return sent

    def _report(
        self,
        reports: deque[tuple[asyncio.Future[None], Any, Any]],
        producer: Any,
        stops: bool,
        done: asyncio.Future[None],
        error: Any,
        msg: Any,
    ) -> None:
        """(The thread serving delivery reports) The delivery report of ``done``'s
        message: purge at once after a failure (fail-stop), queue it for the loop."""
        if error is not None and stops and breaks(error):
            self._halt(producer)
        reports.append((done, error, msg if error is not None else None))

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[Any],
        done: asyncio.Future[None],
        what: str,
    ) -> bool:
        """Hand one message of the backlog to librdkafka; False when its queue is full.
        Raises NotSent instead of writing it after a failure (fail-stop), or what
        librdkafka refused."""
        reports, producer, stops = self._reports, self.producer, self.on_failure is None
        report = functools.partial(self._report, reports, producer, stops, done)
        try:
            with self._halting:
                if stops and (self._halts != self._halts_seen or not self._fail_stop.writable()):
                    raise self._fail_stop.not_sent()
                producer.produce(topic, value, key, headers=headers, on_delivery=report)
        except BufferError:
            return False
        except NotSent as exc:
            self._completed(exc)
            raise
        except ck.KafkaException as exc:
            refused = self._refused(exc, len(value), what)
            self._completed(refused)
            raise refused from None
        self._outstanding += 1
        return True

    def _halt(self, producer: Any) -> None:
        """(The thread serving delivery reports) A delivery failed: purge what librdkafka
        has queued, before it is sent (its reports say ``_PURGE_QUEUE``: not sent)."""
        with self._halting:
            self._halts += 1
            with contextlib.suppress(ck.KafkaException, RuntimeError):
                producer.purge(in_queue=True, in_flight=False, blocking=False)

    def _completed(self, error: BaseException | None) -> None:
        """A send that was given has its outcome (for fail-stop)."""
        if self.on_failure is None:
            self._fail_stop.completed(error)

    def _refused(self, exc: BaseException, size: int, what: str) -> PublishError:
        return refusal(self.name, self.limit, self.hide, exc, size, what)

    def _delivery_error(self, error: Any, msg: Any) -> PublishError:
        if self.on_failure is None and purged(error):
            return self._fail_stop.not_sent()
        return failure(self.name, self.limit, self.hide, error, msg)

    def _resolve(self) -> None:
        """Complete the futures of the delivery reports received so far (loop thread)."""
        self._scheduled = False
        reports, stops = self._reports, self.on_failure is None
        while reports:
            done, error, msg = reports.popleft()
            self._outstanding -= 1
            failure = None if error is None else self._delivery_error(error, msg)
            if stops:
                self._fail_stop.completed(failure)
                if error is not None and breaks(error):
                    self._halts_seen += 1
            if done.done():
                continue
            if failure is None:
                done.set_result(None)
            elif self.on_failure is not None:
                done.cancel()
                self.on_failure(failure)
            else:
                done.set_exception(failure)
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
            if done.done():
                self._completed(None)  # abandoned: never written
            else:
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
            self._completed(None)

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
