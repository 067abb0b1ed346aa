"""Redis: ``redis://HOST:PORT/STREAM?group=G`` (Streams) and ``redis+pubsub://HOST:PORT/CHANNEL``.

**Streams** (at-least-once). The publisher appends each message with ``XADD`` as an
entry with the encoded message under ``data`` and small readable fields for tools
(``kind``, ``stream``, ``seq``, ``id``); sends are pipelined (what accumulates while a
pipeline is in flight goes out as the next one, in order; at most ``batch`` entries
and about ``batch_bytes``, 4 MiB, per pipeline). ``maxlen=N`` trims the stream to about
N entries (``MAXLEN ~``); 0 keeps everything.

The listener reads through a consumer group (``group``, default ``arroyo``; created with
``MKSTREAM`` when missing, reading from ``start``: ``0``, the beginning of the stream, by
default, or ``$`` for new entries only). Every worker process is its own consumer
(``host-pid-random``). Entries are read in batches (``batch``, at most ``batch_bytes``
of data at a time, waiting ``block_ms`` for new ones) and acknowledged with ``XACK``
(batched) once the Block is done with them. An entry without the ``field`` (default
``data``), written by another tool, is handed to the parser as its field and value
parts (Arroyo's own parser dead-letters it).

Entries a consumer has not acknowledged for ``min_idle_ms`` (a crashed worker's) are
taken over by the others with ``XAUTOCLAIM`` (every ``claim_interval_ms``, default 5000
and at most half of ``min_idle_ms``; Redis 6.2 or later) and delivered with their
delivery count (from ``XPENDING``), so a message that keeps crashing workers reaches
the Block's ``max_deliveries`` limit and the dead letter; with the delivery journal
(``delivery_journal``, on by default: :mod:`arroyo.runtime.journal`) that count is the
number of workers (of this machine) that died while processing the entry, so the other
entries a dying worker held are not counted with it. A live listener keeps its own
unfinished entries fresh (``XCLAIM ... JUSTID``), so slow work is not taken away;
``min_idle_ms`` must still exceed the longest time the event loop can stall. On a
graceful stop, entries left unfinished are handed back at once. After a server restart
the listener reconnects by itself (XACKs wait for the server meanwhile); what survives
a restart is the server's business (``appendonly yes`` with ``appendfsync always``
loses nothing acknowledged); without persistence the group is gone and is created
again (logged). Entries read by several consumers of one group are processed in
parallel: the order of a run is not kept across workers.

**Pub/sub** (at-most-once). ``redis+pubsub://`` uses ``SUBSCRIBE``/``PUBLISH`` for
existing deployments. Redis keeps nothing: a message published while no listener is
subscribed, while a listener is disconnected, or while it is too slow (Redis cuts
subscribers that exceed its output buffer limit) is lost; acknowledging does nothing.
A publish is confirmed once the server accepted it; ``min_subscribers=N`` makes a
publish fail (and the Block retry it) until at least N subscribers received it.

**Connection settings** (both; in the URL query or the YAML block): ``password`` (or
``redis://:PASSWORD@HOST``), ``username`` (Redis ACL users), ``db``, ``timeout``
(seconds, for replies), ``connect_timeout`` (seconds, default 10: how long starting
keeps trying to reach the server before it fails with one line, see
:mod:`arroyo.brokers.connecting`; also the limit of each later reconnection attempt);
with ``rediss://``, TLS: ``ssl_ca`` (CA file), ``ssl_cert`` / ``ssl_key`` (client
certificate), ``ssl_verify`` (default true). Passwords never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

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
from arroyo.errors import ArroyoError, ConfigError, ConnectError, PermanentError, PublishError
from arroyo.message import Message
from arroyo.runtime.journal import from_option
from arroyo.runtime.listener import Intake, Listener, Raw, Received
from arroyo.runtime.logs import redact
from arroyo.runtime.ordering import not_sent
from arroyo.runtime.parser import Parser
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher, Publisher
from arroyo.runtime.retry import RetryPolicy

require("redis.asyncio", "redis", "The Redis connector (redis:// URLs)")

from redis.asyncio import Redis  # noqa: E402
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import ExponentialWithJitterBackoff  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import RedisError, ResponseError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

if TYPE_CHECKING:
    from arroyo.browse.base import Browser, Reading

log = logging.getLogger("arroyo.brokers.redis")

T = TypeVar("T")

_CONNECTION_OPTIONS: dict[str, Any] = {
    "password": None,
    "username": None,
    "db": 0,
    "timeout": 10.0,
    **CONNECT_OPTIONS,
    **TLS_OPTIONS,
}
_LISTENER_OPTIONS: dict[str, Any] = {
    "group": "arroyo",
    "start": "0",
    "batch": 100,
    "batch_bytes": 16 << 20,
    "block_ms": 1000,
    "min_idle_ms": 30000,
    "claim_interval_ms": 5000,
    "field": "data",
    "delivery_journal": "",
}
_PUBLISHER_OPTIONS: dict[str, Any] = {
    "maxlen": 0,
    "field": "data",
    "batch": 1000,
    "batch_bytes": 4 << 20,
}
_RELEASED_IDLE_MS = 10**11
"""The idle time given to entries handed back on a graceful stop: any other consumer
takes them over at its next claim."""


class RedisConnectError(ConnectError):
    """The Redis server could not be reached or refused the connection settings."""


_RECONNECTING = RetryPolicy(attempts=None, initial=0.05, maximum=1.0)
"""For what must wait for Redis to come back (acknowledgements)."""

_READING = RetryPolicy(attempts=None, initial=0.1, maximum=5.0)
"""For reads after a lost connection: until Redis is back (or the listener stops)."""


class _Refused(PublishError, PermanentError):
    """Redis refused a command for a reason retrying cannot change (e.g. WRONGTYPE)."""


# -- connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect (from the URL and the options)."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Tls | None = None
    timeout: float = 10.0
    connect_timeout: float = CONNECT_TIMEOUT

    @classmethod
    def from_url(cls, url: BrokerURL, opts: dict[str, Any]) -> RedisSettings:
        """Settings from ``url`` and the options taken by :func:`take_options`."""
        tls = Tls.from_options(url, opts, "rediss")
        if opts["timeout"] <= 0:
            raise ConfigError(f"{url}: option 'timeout' must be positive, got {opts['timeout']}")
        return cls(
            host=url.host or "localhost",
            port=url.port or 6379,
            db=opts["db"],
            username=opts["username"] or url.username or None,
            password=opts["password"] or url.password,
            tls=tls,
            timeout=float(opts["timeout"]),
            connect_timeout=connect_timeout(url, opts),
        )

    def client(self, read_timeout: float | None = None) -> Redis:
        """A client (connections are made on first use). Commands that fail on a lost
        connection are retried a few times with a short backoff, reconnecting."""
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {
                "ssl": True,
                "ssl_ca_certs": self.tls.ca,
                "ssl_certfile": self.tls.cert,
                "ssl_keyfile": self.tls.key,
                "ssl_cert_reqs": "required" if self.tls.verify else "none",
                "ssl_check_hostname": self.tls.verify,
            }
        return Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_timeout=read_timeout or self.timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries=3),
            **tls,
        )

    def hide(self, text: str) -> str:
        """``text`` without the password (for errors and logs)."""
        return redact(text, self.password)


def _location(url: BrokerURL, name: str) -> str:
    scheme = url.scheme
    return f"{scheme}://{url.host or 'localhost'}:{url.port or 6379}/{name}"


async def _connect(client: Redis, settings: RedisSettings, where: str) -> None:
    """Check that the server answers, trying for up to ``connect_timeout`` seconds.
    Raises RedisConnectError (one line naming ``where``, never the password)."""
    scheme = where.partition("://")[0]
    plain, secure = scheme.replace("rediss", "redis"), scheme.replace("redis", "rediss", 1)

    def explain(exc: BaseException) -> Failure:
        if isinstance(exc, ResponseError):  # AUTH, ACL, a server that is loading...
            return Failure(f"the server refused: {exc}", final=True)
        return socket_failure(exc, tls=settings.tls is not None, plain=plain, secure=secure)

    async def ping(seconds: float) -> None:
        await client.ping()

    try:
        await connect_within(where, settings.connect_timeout, ping, explain, settings.hide)
    except ConnectError as exc:
        await client.aclose()
        raise RedisConnectError(str(exc)) from None


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


# -- pipelining ----------------------------------------------------------------------


class _Batcher(Generic[T]):
    """Collects items and hands them to ``flush`` in batches, one batch at a time and in
    the order they were added; each item's future gets its own result.

    A batch holds at most ``limit`` items and about ``limit_bytes`` (an item larger than
    that goes alone). ``flush(items)`` returns one result per item: None for success,
    an exception for a failure. When it raises, every item of the batch fails with that
    exception.

    Fail-stop (the ordering rule of :mod:`arroyo.runtime.ordering`): when a batch fails
    (other than with a PermanentError), every item queued behind it fails at once with
    NotSent, unwritten, so none of them reaches Redis before the failed items are sent
    again, even when the connection is back by the time they would be flushed.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[BaseException | None]]],
        limit: int,
        limit_bytes: int = 1 << 62,
        where: str = "redis",
    ) -> None:
        self._flush = flush
        self._where = where
        self._limit = max(1, limit)
        self._limit_bytes = limit_bytes
        self._items: deque[tuple[T, int, asyncio.Future[None]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def add(self, item: T, size: int = 0) -> asyncio.Future[None]:
        """Queue ``item`` (of ``size`` bytes); the future completes once its batch was
        flushed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._items.append((item, size, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return done

    def _take(self) -> list[tuple[T, int, asyncio.Future[None]]]:
        batch = [self._items.popleft()]
        size = batch[0][1]
        while self._items and len(batch) < self._limit:
            size += self._items[0][1]
            if size > self._limit_bytes:
                break
            batch.append(self._items.popleft())
        return batch

    async def _run(self) -> None:
        while self._items:
            batch = self._take()
            try:
                results: Sequence[BaseException | None] = await self._flush(
                    [item for item, _, _ in batch]
                )
            except asyncio.CancelledError:
                for _, _, done in batch:
                    done.cancel()
                raise
            except Exception as exc:
                results = [exc] * len(batch)
            stop = False
            for (_, _, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if result is None:
                    done.set_result(None)
                else:
                    done.set_exception(result)
                    stop = stop or not isinstance(result, PermanentError)
            if stop:
                while self._items:
                    _, _, done = self._items.popleft()
                    if not done.done():
                        done.set_exception(not_sent(self._where))

    async def drain(self) -> None:
        """Wait until everything added so far was flushed."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Fail what is still queued (on close)."""
        if self._task is not None:
            self._task.cancel()
        for _, _, done in self._items:
            done.cancel()
        self._items.clear()


# -- Streams: listener ---------------------------------------------------------------


def consumer_name() -> str:
    """A consumer name unique to this worker process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


Entry = tuple[bytes, dict[bytes, bytes]]


class RedisStreamListener(Listener):
    """Reads a Redis stream through a consumer group (see the module docstring)."""

    def __init__(
        self,
        settings: RedisSettings,
        stream: str,
        *,
        group: str = "arroyo",
        start: str = "0",
        batch: int = 100,
        batch_bytes: int = 16 << 20,
        block_ms: int = 1000,
        min_idle_ms: int = 30000,
        claim_interval_ms: int = 5000,
        field: str = "data",
        parser: Parser | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.stream = stream
        self.group = group
        self.start_id = start
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.claim_interval = min(claim_interval_ms, max(min_idle_ms // 2, 10)) / 1000
        self.field = field.encode()
        self.consumer = consumer_name()
        self._location = location or f"redis://{settings.host}:{settings.port}/{stream}"
        self._client: Redis | None = None
        self._unacked: dict[bytes, float] = {}
        """Entries handed to this listener and not acknowledged: id -> last refreshed."""
        self._acks: _Batcher[bytes] = _Batcher(self._xack, 10000)
        self._stopping = asyncio.Event()
        self._closing = False
        self._fetching: asyncio.Future[Any] | None = None
        self._average_size = 0.0

    @property
    def name(self) -> str:
        return self._location

    # -- connecting

    async def connect(self) -> None:
        """Connect (within connect_timeout) and create the group when missing; raises
        RedisConnectError (one line) when it cannot."""
        await self._open()

    async def _open(self) -> Redis:
        if self._client is None:
            read_timeout = self.settings.timeout + self.block_ms / 1000
            client = self.settings.client(read_timeout)
            await _connect(client, self.settings, self.name)
            self._client = client
            await self._create_group()
        return self._client

    async def _create_group(self) -> bool:
        """Create the group (and the stream) when missing; True when it was created."""
        assert self._client is not None
        try:
            await self._client.xgroup_create(self.stream, self.group, self.start_id, mkstream=True)
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise RedisConnectError(
                f"{self.name}: cannot create consumer group {self.group!r}: "
                f"{self.settings.hide(str(exc))}"
            ) from None
        return True

    # -- reading

    async def start(self, intake: Intake) -> None:
        """Claim entries other consumers left idle, then read new ones, handing each over
        in the order read; reconnects by itself until :meth:`stop`."""
        await self._open()
        log.info(
            "%s: reading as consumer %s of group %s (idle entries are taken over after %d ms)",
            self.name,
            self.consumer,
            self.group,
            self.min_idle_ms,
        )
        keeper = asyncio.create_task(self._keep_fresh())
        try:
            await self._read_loop(intake)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _read_loop(self, intake: Intake) -> None:
        next_claim = 0.0  # at once: entries left by consumers that are gone
        cursor = b"0-0"
        while not self._stopping.is_set():
            claiming = time.monotonic() >= next_claim
            try:
                if claiming:
                    cursor, entries = await self._fetch(functools.partial(self._claim, cursor))
                    if cursor == b"0-0":
                        next_claim = time.monotonic() + self.claim_interval
                else:
                    wait = min(self.block_ms, int((next_claim - time.monotonic()) * 1000))
                    entries = await self._fetch(functools.partial(self._read, max(wait, 1)))
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._stopping.is_set() and (current is None or not current.cancelling()):
                    return
                raise
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise ArroyoError(f"{self.name}: {self.settings.hide(str(exc))}") from None
                if await self._recreate_group():
                    log.warning(
                        "%s: consumer group %s was missing (server restarted without "
                        "persistence?); created it again",
                        self.name,
                        self.group,
                    )
                continue
            for entry_id, fields, deliveries in entries:
                if self._stopping.is_set():
                    break  # left pending: handed back to the group by close()
                self._unacked[entry_id] = time.monotonic()
                source = {
                    "url": self.name,
                    "stream": self.stream,
                    "group": self.group,
                    "entry": entry_id.decode(),
                }
                data: Raw
                if self.field in fields:
                    data = fields[self.field]
                else:  # not written by Arroyo: the parser gets every field and value
                    data = [part for pair in fields.items() for part in pair]
                    source["fields"] = b",".join(fields).decode(errors="replace")
                await intake.put(Received(data, source, entry_id, deliveries))

    async def _fetch(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()``, again after each lost connection (waiting longer each time)
        until it gets through; :meth:`stop` interrupts it, waits included."""
        lost = 0

        def reconnecting(attempt: int, exc: BaseException) -> None:
            nonlocal lost
            lost = attempt
            if attempt == 1:
                reason = self.settings.hide(str(exc) or type(exc).__name__)
                log.warning("%s: connection lost (%s); reconnecting", self.name, reason)

        retrying = _READING.call(work, reconnecting, retry_if=_is_connection_error)
        self._fetching = fetching = asyncio.ensure_future(retrying)
        try:
            result = await fetching
        finally:
            self._fetching = None
        if lost:
            log.info("%s: reconnected after %d failed attempts", self.name, lost)
        return result

    async def _recreate_group(self) -> bool:
        try:
            return await self._create_group()
        except RedisConnectError as exc:
            log.warning("%s", exc)
            return False

    def _count(self) -> int:
        """How many entries to read at once: ``batch``, fewer when entries are large."""
        if self._average_size <= 0:
            return self.batch
        return max(1, min(self.batch, int(self.batch_bytes // self._average_size)))

    def _measure(self, entries: list[Entry]) -> None:
        sizes = [len(fields.get(self.field, b"")) for _, fields in entries]
        if sizes:
            average = sum(sizes) / len(sizes)
            self._average_size = (
                average if not self._average_size else (0.8 * self._average_size + 0.2 * average)
            )

    async def _read(self, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes], int]]:
        """New entries for this consumer (delivered for the first time)."""
        assert self._client is not None
        reply: Any = await self._client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self._count(), block=block_ms
        )
        if not reply:
            return []
        entries: list[Entry] = reply[0][1]
        self._measure(entries)
        return [(entry_id, fields, 1) for entry_id, fields in entries]

    async def _claim(
        self, cursor: bytes
    ) -> tuple[bytes, list[tuple[bytes, dict[bytes, bytes], int]]]:
        """Take over entries idle for ``min_idle_ms``, with their delivery counts."""
        assert self._client is not None
        reply: Any = await self._client.xautoclaim(
            self.stream, self.group, self.consumer, self.min_idle_ms, cursor, count=self._count()
        )
        next_cursor: bytes = reply[0]
        claimed: list[tuple[bytes, dict[bytes, bytes] | None]] = reply[1]
        deleted: list[bytes] = reply[2] if len(reply) > 2 else []
        entries: list[Entry] = [(i, f) for i, f in claimed if f is not None]
        gone = deleted + [i for i, f in claimed if f is None]
        if gone:
            log.warning(
                "%s: %d pending entries were deleted from the stream (trimmed?) before "
                "anyone acknowledged them: %s",
                self.name,
                len(gone),
                ", ".join(i.decode() for i in gone[:10]),
            )
            await self._client.xack(self.stream, self.group, *gone)
        if not entries:
            return next_cursor, []
        pipe = self._client.pipeline(transaction=False)
        for entry_id, _ in entries:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        counts = await pipe.execute(raise_on_error=False)
        result = []
        for (entry_id, fields), pending in zip(entries, counts, strict=True):
            deliveries = 2
            if isinstance(pending, list) and pending:
                deliveries = int(pending[0]["times_delivered"])
            result.append((entry_id, fields, deliveries))
        log.info(
            "%s: took over %d entries idle for more than %d ms (from a stopped or crashed "
            "consumer)",
            self.name,
            len(result),
            self.min_idle_ms,
        )
        self._measure(entries)
        return next_cursor, result

    async def _keep_fresh(self) -> None:
        """Reset the idle time of this listener's unfinished entries, so that other
        consumers do not take over work that is only slow (the delivery count stays)."""
        period = self.min_idle_ms / 4000  # so no entry of ours gets idle for half of it
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            stale: list[Any] = [i for i, last in self._unacked.items() if now - last >= period]
            if not stale or self._client is None:
                continue
            try:
                for first in range(0, len(stale), 1000):
                    await self._client.xclaim(
                        self.stream,
                        self.group,
                        self.consumer,
                        0,
                        stale[first : first + 1000],
                        justid=True,
                    )
            except (RedisError, OSError) as exc:
                log.debug("%s: could not refresh unfinished entries: %r", self.name, exc)
                continue
            for entry_id in stale:
                if entry_id in self._unacked:
                    self._unacked[entry_id] = now

    async def stop(self) -> None:
        """Stop reading: an XREADGROUP waiting for entries is interrupted."""
        self._stopping.set()
        if self._fetching is not None:
            self._fetching.cancel()

    # -- acknowledging

    async def ack(self, received: Received) -> None:
        """``XACK`` the entry (batched with others acknowledged meanwhile); returns once
        Redis replied. While the connection is lost, the XACK is retried until Redis is
        back (the entry is kept fresh meanwhile, so no other consumer takes it over)."""
        try:
            await self._acks.add(received.handle)
        finally:
            self._unacked.pop(received.handle, None)

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        """:meth:`ack` for all of ``received`` at once: one wait, one XACK per batch."""
        done = [self._acks.add(one.handle) for one in received]
        try:
            results = await asyncio.gather(*done, return_exceptions=True)
        finally:
            for one in received:
                self._unacked.pop(one.handle, None)
        return list(results)

    async def _xack(self, ids: list[bytes]) -> list[BaseException | None]:
        """XACK ``ids``; a lost connection is retried until Redis is back (or closing)."""

        async def attempt() -> None:
            client = self._client
            if client is None:
                raise _Refused(f"{self.name}: closed before XACK of {len(ids)} entries")
            try:
                await client.xack(self.stream, self.group, *ids)
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise _Refused(
                        f"{self.name}: XACK refused: {self.settings.hide(str(exc))}"
                    ) from None
                log.warning(
                    "%s: could not acknowledge %d entries: group %s is gone (server restarted "
                    "without persistence?)",
                    self.name,
                    len(ids),
                    self.group,
                )
            except (RedisError, OSError) as exc:
                if not _is_connection_error(exc) or self._closing:
                    raise _Refused(
                        f"{self.name}: XACK of {len(ids)} entries failed: "
                        f"{self.settings.hide(str(exc) or type(exc).__name__)}"
                    ) from None
                raise

        await _RECONNECTING.call(attempt)
        return [None] * len(ids)

    async def close(self) -> None:
        """Send the last acknowledgements, hand unfinished entries back to the group (so
        another consumer takes them over at once), disconnect."""
        client = self._client
        if client is None:
            return
        try:
            await asyncio.wait_for(self._acks.drain(), self.settings.timeout)
        except TimeoutError:
            self._closing = True  # no more retries: the last XACKs fail now
            log.warning("%s: last acknowledgements not sent: no answer from Redis", self.name)
        except (RedisError, OSError, ArroyoError) as exc:
            log.warning("%s: last acknowledgements failed: %r", self.name, exc)
        self._acks.cancel()
        try:
            await self._release(client)
        except (RedisError, OSError) as exc:
            log.warning(
                "%s: could not hand back unfinished entries (others take them over after "
                "%d ms): %s",
                self.name,
                self.min_idle_ms,
                self.settings.hide(str(exc)),
            )
        finally:
            self._client = None
            self._unacked.clear()
            await client.aclose()

    async def _release(self, client: Redis) -> None:
        pending = await client.xpending_range(
            self.stream, self.group, "-", "+", 100000, consumername=self.consumer
        )
        ids: list[Any] = [p["message_id"] for p in pending]
        if not ids:
            await client.xgroup_delconsumer(self.stream, self.group, self.consumer)
            return
        for first in range(0, len(ids), 1000):
            await client.xclaim(
                self.stream,
                self.group,
                self.consumer,
                0,
                ids[first : first + 1000],
                idle=_RELEASED_IDLE_MS,
                justid=True,
            )
        log.info(
            "%s: handed %d unfinished entries back to group %s", self.name, len(ids), self.group
        )


# -- Streams: publisher --------------------------------------------------------------


class _RedisPublisher(PipelinedPublisher, Generic[T]):
    """What both Redis publishers share: a connection, and commands queued in order and
    sent as one pipeline per batch; a command is confirmed by its reply."""

    def __init__(
        self, settings: RedisSettings, location: str, batch: int, batch_bytes: int
    ) -> None:
        self.settings = settings
        self._location = location
        self._client: Redis | None = None
        self._batcher: _Batcher[T] = _Batcher(self._flush, batch, batch_bytes, location)

    @property
    def name(self) -> str:
        return self._location

    async def start(self) -> None:
        """Connect (raises RedisConnectError, without the password, when it cannot)."""
        client = self.settings.client()
        await _connect(client, self.settings, self.name)
        self._client = client

    def _queue(self, item: T, size: int) -> asyncio.Future[None]:
        """Queue the command for ``item`` (of ``size`` bytes) behind those queued before."""
        if self._client is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        return self._batcher.add(item, size)

    @abstractmethod
    def _command(self, pipe: Any, item: T) -> None:
        """Add the command that sends ``item`` to ``pipe``."""

    def _result(self, reply: Any) -> BaseException | None:
        """None when ``reply`` confirms its command, else the error to report."""
        return _publish_error(self.name, self.settings, reply)

    async def _flush(self, batch: list[T]) -> list[BaseException | None]:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for item in batch:
            self._command(pipe, item)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise PublishError(
                f"{self.name}: not confirmed: {self.settings.hide(str(exc) or repr(exc))}"
            ) from None
        return [self._result(reply) for reply in replies]

    async def close(self) -> None:
        """Wait for what was sent, disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(self._batcher.drain(), self.settings.timeout)
        except (TimeoutError, PublishError) as exc:
            log.warning("%s: last messages not confirmed: %s", self.name, exc)
        self._batcher.cancel()
        await client.aclose()


class RedisStreamPublisher(_RedisPublisher[dict[Any, Any]]):
    """Appends messages to a Redis stream with pipelined ``XADD`` (see the module
    docstring). A message is confirmed once Redis replied with its entry id."""

    def __init__(
        self,
        settings: RedisSettings,
        stream: str,
        codec: Codec,
        *,
        maxlen: int = 0,
        field: str = "data",
        batch: int = 1000,
        batch_bytes: int = 4 << 20,
        location: str | None = None,
    ) -> None:
        where = location or f"redis://{settings.host}:{settings.port}/{stream}"
        super().__init__(settings, where, batch, batch_bytes)
        self.stream = stream
        self.codec = codec
        self.maxlen = maxlen or None
        self.field = field

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode now and queue the XADD; messages reach the stream in send() order."""
        data = self.codec.encode(message, wire)
        fields: dict[Any, Any] = {
            "kind": message.kind,
            "stream": message.stream,
            "seq": message.seq,
            "id": message.id,
            self.field: data,
        }
        return self._queue(fields, len(data))

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Append the original bytes (under ``data``; the parts of a multipart message
        under ``data.0``, ``data.1``...) with the reason and source as fields
        (``arroyo.dead-letter.reason``, ``arroyo.source.entry``...)."""
        fields: dict[Any, Any] = dict(letter.headers())
        if isinstance(letter.data, list):
            for index, part in enumerate(letter.data):
                fields[f"{self.field}.{index}"] = part
        else:
            fields[self.field] = letter.data
        size = sum(map(len, letter.data)) if isinstance(letter.data, list) else len(letter.data)
        await self._queue(fields, size)

    def _command(self, pipe: Any, item: dict[Any, Any]) -> None:
        pipe.xadd(self.stream, item, maxlen=self.maxlen, approximate=True)


def _publish_error(where: str, settings: RedisSettings, reply: Any) -> BaseException | None:
    if not isinstance(reply, BaseException):
        return None
    text = settings.hide(str(reply) or repr(reply))
    if isinstance(reply, ResponseError) and str(reply).startswith(("WRONGTYPE", "NOPERM")):
        return _Refused(f"{where}: refused: {text}")
    return PublishError(f"{where}: not confirmed: {text}")


# -- pub/sub -------------------------------------------------------------------------


class RedisPubSubListener(Listener):
    """Subscribes to a Redis pub/sub channel.

    at-most-once: a message published while this listener is not subscribed, is
    disconnected, or is too slow (Redis cuts it off past its output buffer limit) is
    lost, and acknowledging does nothing. Use Redis Streams where that matters.
    """

    def __init__(
        self,
        settings: RedisSettings,
        channel: str,
        parser: Parser | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.channel = channel
        self._location = location or f"redis+pubsub://{settings.host}:{settings.port}/{channel}"
        self._client: Redis | None = None
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._session: asyncio.Future[None] | None = None
        self._lost = False

    @property
    def name(self) -> str:
        return self._location

    @property
    def subscribed(self) -> asyncio.Event:
        """Set once the subscription is active (messages published before are not seen)."""
        return self._subscribed

    async def connect(self) -> None:
        """Connect (within connect_timeout); raises RedisConnectError (one line) when it
        cannot."""
        if self._client is None:
            client = self.settings.client()
            await _connect(client, self.settings, self.name)
            self._client = client

    async def start(self, intake: Intake) -> None:
        """Subscribe and hand each message over until :meth:`stop`; resubscribes after a
        lost connection (what was published meanwhile is lost)."""
        await self.connect()
        client = self._client
        assert client is not None
        log.info(
            "%s: subscribed; pub/sub is at-most-once: messages published while this "
            "listener is not subscribed, disconnected or too slow are lost",
            self.name,
        )

        def lost(attempt: int, exc: BaseException) -> None:
            self._subscribed.clear()
            self._lost = True
            if attempt == 1:
                log.warning(
                    "%s: connection lost (%s); messages published until it is back are lost",
                    self.name,
                    self.settings.hide(str(exc) or type(exc).__name__),
                )

        receiving = _READING.call(
            functools.partial(self._receive, client, intake), lost, retry_if=_is_connection_error
        )
        self._session = session = asyncio.ensure_future(receiving)
        try:
            await session
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._stopping.is_set() or (current is not None and current.cancelling()):
                raise
        finally:
            self._session = None

    async def _receive(self, client: Redis, intake: Intake) -> None:
        """One subscription: hand messages over until stopped; raises when the connection
        is lost (RedisConnectError for what a reconnection cannot mend)."""
        source = {"url": self.name, "channel": self.channel}
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self._subscribed.set()
            if self._lost:
                log.warning(
                    "%s: subscribed again after a lost connection; messages published "
                    "meanwhile are lost",
                    self.name,
                )
                self._lost = False
            while not self._stopping.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None and message["type"] == "message":
                    await intake.put(Received(message["data"], source))
        except (RedisError, OSError) as exc:
            if not _is_connection_error(exc):
                raise RedisConnectError(f"{self.name}: {self.settings.hide(str(exc))}") from None
            raise
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        """Stop receiving (within about 0.2 s; at once while waiting to reconnect)."""
        self._stopping.set()
        if self._session is not None and not self._subscribed.is_set():
            self._session.cancel()

    async def ack(self, received: Received) -> None:
        """Nothing to acknowledge: pub/sub has no acknowledgements."""

    async def close(self) -> None:
        """Disconnect."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class RedisPubSubPublisher(_RedisPublisher[bytes]):
    """Publishes to a Redis pub/sub channel with pipelined ``PUBLISH``. Confirmed once
    the server accepted it; subscribers that are not listening miss it (at-most-once)."""

    def __init__(
        self,
        settings: RedisSettings,
        channel: str,
        codec: Codec,
        *,
        min_subscribers: int = 0,
        location: str | None = None,
    ) -> None:
        where = location or f"redis+pubsub://{settings.host}:{settings.port}/{channel}"
        super().__init__(settings, where, 1000, 4 << 20)
        self.channel = channel
        self.codec = codec
        self.min_subscribers = min_subscribers
        self.receivers = 0
        """How many subscribers received the last confirmed message."""

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode now and queue the PUBLISH; messages go out in send() order."""
        data = self.codec.encode(message, wire)
        return self._queue(data, len(data))

    def _command(self, pipe: Any, item: bytes) -> None:
        pipe.publish(self.channel, item)

    def _result(self, reply: Any) -> BaseException | None:
        error = super()._result(reply)
        if error is None:
            self.receivers = int(reply)
            if self.receivers < self.min_subscribers:
                error = PublishError(
                    f"{self.name}: {self.receivers} subscribers received it, fewer than "
                    f"min_subscribers={self.min_subscribers}"
                )
        return error


# -- factories -----------------------------------------------------------------------


def _name(url: BrokerURL, what: str) -> str:
    if not url.path:
        kind = "channel" if url.scheme.endswith("+pubsub") else "stream"
        raise ConfigError(
            f"{url}: a Redis URL needs a {kind} name, as in {url.scheme}://127.0.0.1:6379/{what}"
        )
    return url.path


def _positive(url: BrokerURL, opts: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if opts[key] < 1:
            raise ConfigError(f"{url}: option {key!r} must be at least 1, got {opts[key]}")


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> Listener:
    """``redis://HOST:PORT/STREAM?group=G`` or ``redis+pubsub://HOST:PORT/CHANNEL``."""
    if url.scheme.endswith("+pubsub"):
        opts = take_options(url, options, _CONNECTION_OPTIONS)
        settings = RedisSettings.from_url(url, opts)
        channel = _name(url, "frames")
        return RedisPubSubListener(settings, channel, parser, _location(url, channel))
    opts = take_options(url, options, {**_CONNECTION_OPTIONS, **_LISTENER_OPTIONS})
    settings = RedisSettings.from_url(url, opts)
    stream = _name(url, "frames?group=workers")
    _positive(url, opts, "batch", "batch_bytes", "block_ms", "min_idle_ms", "claim_interval_ms")
    if not opts["group"]:
        raise ConfigError(f"{url}: option 'group' must not be empty")
    made = RedisStreamListener(
        settings,
        stream,
        group=opts["group"],
        start=opts["start"],
        batch=opts["batch"],
        batch_bytes=opts["batch_bytes"],
        block_ms=opts["block_ms"],
        min_idle_ms=opts["min_idle_ms"],
        claim_interval_ms=opts["claim_interval_ms"],
        field=opts["field"],
        parser=parser,
        location=_location(url, stream),
    )
    scope = f"redis {settings.host}:{settings.port}/{settings.db} {stream} {opts['group']}"
    made.journal = from_option(opts["delivery_journal"], str(url), scope, _entry_key)
    return made


def _entry_key(received: Received) -> str:
    """A stream entry's key in the delivery journal: its id."""
    return received.handle.decode()  # type: ignore[no-any-return]


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> Publisher:
    """``redis://HOST:PORT/STREAM?maxlen=N`` or ``redis+pubsub://HOST:PORT/CHANNEL``."""
    if url.scheme.endswith("+pubsub"):
        opts = take_options(url, options, {**_CONNECTION_OPTIONS, "min_subscribers": 0})
        settings = RedisSettings.from_url(url, opts)
        channel = _name(url, "frames")
        return RedisPubSubPublisher(
            settings,
            channel,
            codec,
            min_subscribers=opts["min_subscribers"],
            location=_location(url, channel),
        )
    opts = take_options(url, options, {**_CONNECTION_OPTIONS, **_PUBLISHER_OPTIONS})
    settings = RedisSettings.from_url(url, opts)
    stream = _name(url, "results")
    _positive(url, opts, "batch", "batch_bytes")
    if opts["maxlen"] < 0:
        raise ConfigError(f"{url}: option 'maxlen' must be 0 (no limit) or more")
    return RedisStreamPublisher(
        settings,
        stream,
        codec,
        maxlen=opts["maxlen"],
        field=opts["field"],
        batch=opts["batch"],
        batch_bytes=opts["batch_bytes"],
        location=_location(url, stream),
    )


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """PING the server within ``seconds`` (``arroyo check --connect``): no group is
    created, nothing read or written."""
    settings = dataclasses.replace(endpoint.settings, connect_timeout=seconds)
    client = settings.client()
    await _connect(client, settings, endpoint.name)  # closes the client when it fails
    await client.aclose()
    return "ok", "the server answers"


def _browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    from arroyo.browse import redis as browse

    return browse.browser(url, options, reading)


CONNECTOR = Connector(
    name="redis",
    schemes=("redis", "rediss", "redis+pubsub", "rediss+pubsub"),
    extra="redis",
    listener=listener,
    publisher=publisher,
    browser=_browser,
    probe=probe,
    notes={"redis+pubsub": "at-most-once", "rediss+pubsub": "at-most-once"},
)
