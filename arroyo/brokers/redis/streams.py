"""Redis Streams: :class:`RedisStreamListener` reads a stream through a consumer group
(the group's commands: ``group.py``), :class:`RedisStreamPublisher` appends to one with
pipelined ``XADD`` (``pipeline.py``). What they promise: the package documentation."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError, ResponseError

from arroyo.brokers import BrokerURL
from arroyo.brokers.redis.connection import (
    READING,
    RECONNECTING,
    RedisServer,
    is_connection_error,
    target,
)
from arroyo.brokers.redis.group import ConsumerGroup, Delivery
from arroyo.brokers.redis.pipeline import Batcher, Command, RedisPublisher, Refused
from arroyo.brokers.redis.settings import RedisStreamListenerSettings, RedisStreamPublisherSettings
from arroyo.codec import Codec
from arroyo.errors import ArroyoError, ConnectError
from arroyo.message import Message
from arroyo.runtime import tracing
from arroyo.runtime.lag import Source, source
from arroyo.runtime.listener import Intake, Listener, Raw, Received, hand_over
from arroyo.runtime.parser import Parser
from arroyo.runtime.publisher import DeadLetter, send_runs

log = logging.getLogger("arroyo.brokers.redis")

ACK_BATCH = 10000
"""Entry ids acknowledged by one XACK at most (a batch handed over at once is never
split)."""

T = TypeVar("T")


class RedisStreamListener(Listener):
    """Reads a Redis stream through a consumer group (see the package documentation)."""

    def __init__(
        self, url: BrokerURL, settings: RedisStreamListenerSettings, parser: Parser | None = None
    ) -> None:
        super().__init__(parser)
        self.settings = settings
        self.server = RedisServer.from_url(url, settings)
        self.stream = target(url, "frames?group=workers")
        self.group = settings.group
        self.start_id = settings.start
        self.batch = settings.batch
        self.batch_bytes = settings.batch_bytes
        self.block_ms = settings.block_ms
        self.min_idle_ms = settings.min_idle_ms
        self.claim_interval = (
            min(settings.claim_interval_ms, max(settings.min_idle_ms // 2, 10)) / 1000
        )
        self.field = settings.field.encode()
        self._location = self.server.location(url, self.stream)
        self._group = ConsumerGroup(
            self.server, self.stream, self.group, self.start_id, self._location
        )
        """This worker's membership of the group (its commands)."""
        self._unacked: dict[bytes, float] = {}
        """Entries handed to this listener and not acknowledged: id -> last refreshed."""
        self._acks: Batcher[list[bytes]] = Batcher(self._xack, ACK_BATCH, ACK_BATCH)
        """XACKs: an item is the entry ids of one acknowledgement, its size how many
        they are, so a batch of entries is one item with one future."""
        self._stopping = asyncio.Event()
        self._closing = False
        self._fetching: asyncio.Future[Any] | None = None
        self._average_size = 0.0
        self._lost = False
        """A read failed for a lost connection and has not got through since."""

    @property
    def name(self) -> str:
        return self._location

    @property
    def connected(self) -> bool:
        """False from a read that failed for a lost connection until one gets through."""
        return not self._lost

    @property
    def consumer(self) -> str:
        """This worker's consumer name in the group (``host-pid-random``)."""
        return self._group.consumer

    # -- connecting

    async def connect(self) -> None:
        """Connect (within connect_timeout) and create the group when missing; raises
        ConnectError (one line) when it cannot."""
        await self._group.connect(self.server.timeout + self.block_ms / 1000)

    async def lag(self) -> dict[Source, int] | None:
        """Entries of the stream the group has not acknowledged (never delivered, plus
        pending: :meth:`ConsumerGroup.lag`), asked on a connection of the client's pool
        (not the one a blocking read holds)."""
        if self._group.client is None:
            return None
        lag = await self._group.lag()
        return None if lag is None else {source(stream=self.stream, group=self.group): lag}

    # -- reading

    async def start(self, intake: Intake) -> None:
        """Claim entries other consumers left idle, then read new ones, handing each read's
        entries over together, in the order read (:func:`hand_over`); reconnects by
        itself until :meth:`stop`."""
        await self.connect()
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
                    raise ArroyoError(f"{self.name}: {self.server.hide(str(exc))}") from None
                if await self._recreate_group():
                    log.warning(
                        "%s: consumer group %s was missing (server restarted without "
                        "persistence?); created it again",
                        self.name,
                        self.group,
                    )
                continue
            batch: list[Received] = []
            url, stream, group, field = self.name, self.stream, self.group, self.field
            for entry_id, fields, deliveries in entries:
                if entry_id in self._unacked:
                    # Our own unfinished entry, gone idle while the loop stalled and
                    # claimed back by us: already handed over, not to be processed twice.
                    self._unacked[entry_id] = time.monotonic()
                    continue
                self._unacked[entry_id] = time.monotonic()
                source = {"url": url, "stream": stream, "group": group, "entry": entry_id.decode()}
                data: Raw
                if field in fields:
                    data = fields[field]
                else:  # not written by Arroyo: the parser gets every field and value
                    data = [part for pair in fields.items() for part in pair]
                    source["fields"] = b",".join(fields).decode(errors="replace")
                received = Received(data, source, entry_id, deliveries)
                if tracing.on:
                    received.trace = tracing.carrier(fields)
                batch.append(received)
            taken = await hand_over(intake, batch, self._stopping.is_set)
            for left in batch[taken:]:  # stopping: left pending, handed back by close()
                self._unacked.pop(left.handle, None)

    async def _fetch(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()``, again after each lost connection (waiting longer each time)
        until it gets through; :meth:`stop` interrupts it, waits included."""
        lost = 0

        def reconnecting(attempt: int, exc: BaseException) -> None:
            nonlocal lost
            lost = attempt
            if attempt == 1:
                self._lost = True
                reason = self.server.hide(str(exc) or type(exc).__name__)
                log.warning("%s: connection lost (%s); reconnecting", self.name, reason)

        retrying = READING.call(work, reconnecting, retry_if=is_connection_error)
        self._fetching = fetching = asyncio.ensure_future(retrying)
        try:
            result = await fetching
        finally:
            self._fetching = None
        if lost:
            self._lost = False
            log.info("%s: reconnected after %d failed attempts", self.name, lost)
        return result

    async def _recreate_group(self) -> bool:
        try:
            return await self._group.create()
        except ConnectError as exc:
            log.warning("%s", exc)
            return False

    def _count(self) -> int:
        """How many entries to read at once: ``batch``, fewer when entries are large."""
        if self._average_size <= 0:
            return self.batch
        return max(1, min(self.batch, int(self.batch_bytes // self._average_size)))

    def _measure(self, entries: Sequence[Delivery]) -> None:
        sizes = [len(fields.get(self.field, b"")) for _, fields, _ in entries]
        if sizes:
            average = sum(sizes) / len(sizes)
            self._average_size = (
                average if not self._average_size else (0.8 * self._average_size + 0.2 * average)
            )

    async def _read(self, block_ms: int) -> list[Delivery]:
        """New entries for this consumer (delivered for the first time)."""
        entries = [(i, fields, 1) for i, fields in await self._group.read(self._count(), block_ms)]
        self._measure(entries)
        return entries

    async def _claim(self, cursor: bytes) -> tuple[bytes, list[Delivery]]:
        """Take over entries idle for ``min_idle_ms``, with their delivery counts."""
        next_cursor, entries = await self._group.claim(cursor, self.min_idle_ms, self._count())
        self._measure(entries)
        return next_cursor, entries

    async def _keep_fresh(self) -> None:
        """Reset the idle time of this listener's unfinished entries, so that other
        consumers do not take over work that is only slow (the delivery count stays)."""
        period = self.min_idle_ms / 4000  # so no entry of ours gets idle for half of it
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            stale: list[Any] = [i for i, last in self._unacked.items() if now - last >= period]
            if not stale or self._group.client is None:
                continue
            try:
                await self._group.refresh(stale)
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
            await self._acks.add([received.handle], 1)
        finally:
            self._unacked.pop(received.handle, None)

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        """:meth:`ack` for all of ``received`` at once: one wait, in one XACK (with
        entries acknowledged meanwhile); they succeed or fail together."""
        ids = [one.handle for one in received]
        try:
            await self._acks.add(ids, len(ids))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return [exc] * len(ids)
        finally:
            for entry_id in ids:
                self._unacked.pop(entry_id, None)
        return [None] * len(ids)

    async def _xack(self, acks: list[list[bytes]]) -> list[BaseException | None]:
        """XACK the ids of ``acks``; a lost connection is retried until Redis is back (or
        closing)."""
        ids = [one for ack in acks for one in ack]

        async def attempt() -> None:
            if self._group.client is None:
                raise Refused(f"{self.name}: closed before XACK of {len(ids)} entries")
            try:
                await self._group.ack(ids)
            except (RedisError, OSError) as exc:
                if not is_connection_error(exc) or self._closing:
                    raise Refused(
                        f"{self.name}: XACK of {len(ids)} entries failed: "
                        f"{self.server.hide(str(exc) or type(exc).__name__)}"
                    ) from None
                raise

        await RECONNECTING.call(attempt)
        return [None] * len(acks)

    async def close(self) -> None:
        """Send the last acknowledgements, hand unfinished entries back to the group (so
        another consumer takes them over at once), disconnect."""
        if self._group.client is None:
            return
        try:
            async with asyncio.timeout(self.server.timeout):
                await self._acks.drain()
        except TimeoutError:
            self._closing = True  # no more retries: the last XACKs fail now
            log.warning("%s: last acknowledgements not sent: no answer from Redis", self.name)
        except (RedisError, OSError, ArroyoError) as exc:
            log.warning("%s: last acknowledgements failed: %r", self.name, exc)
        self._acks.cancel()
        try:
            released = await self._group.release()
            if released:
                log.info(
                    "%s: handed %d unfinished entries back to group %s",
                    self.name,
                    released,
                    self.group,
                )
        except (RedisError, OSError) as exc:
            log.warning(
                "%s: could not hand back unfinished entries (others take them over after "
                "%d ms): %s",
                self.name,
                self.min_idle_ms,
                self.server.hide(str(exc)),
            )
        finally:
            self._unacked.clear()
            await self._group.disconnect()


class RedisStreamPublisher(RedisPublisher):
    """Appends messages to a Redis stream with pipelined ``XADD`` (see the package
    documentation). A message is confirmed once Redis replied with its entry id."""

    def __init__(
        self, url: BrokerURL, settings: RedisStreamPublisherSettings, codec: Codec
    ) -> None:
        server = RedisServer.from_url(url, settings)
        self.stream = target(url, "results")
        super().__init__(
            server, server.location(url, self.stream), settings.batch, settings.batch_bytes
        )
        self.settings = settings
        self.codec = codec
        self.maxlen = settings.maxlen or None
        self.field = settings.field
        trim = ("MAXLEN", "~", self.maxlen) if self.maxlen is not None else ()
        self._xadd = ("XADD", self.stream, *trim, "*")
        """The command up to its fields (as redis-py writes ``xadd(maxlen=...,
        approximate=True)``)."""

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Encode now and queue the XADD; messages reach the stream in send() order."""
        return self._queue(*self._xadd_of(message, wire))

    def send_many(
        self, messages: Sequence[Message], wires: Sequence[bytes | None]
    ) -> list[asyncio.Future[None]]:
        """:meth:`send` each, as :meth:`Publisher.send_many` says: the XADDs of the
        messages between two that cannot be encoded are queued in one call."""
        if self._client is None:
            return super().send_many(messages, wires)  # fails each: not started
        return send_runs(messages, wires, self._xadd_of, self._queue_many)

    def _xadd_of(self, message: Message, wire: bytes | None) -> tuple[Command, int]:
        """The XADD of ``message`` and the bytes of its data; raises EncodeError."""
        data = self.codec.encode(message, wire)
        command: Command = (
            *self._xadd,
            "kind",
            message.kind,
            "stream",
            message.stream,
            "seq",
            message.seq,
            "id",
            message.id,
            self.field,
            data,
        )
        if message.trace:
            command += _flat(message.trace)
        return command, len(data)

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
        await self._queue(self._xadd + _flat(fields), size)


def _flat(fields: Mapping[Any, Any]) -> Command:
    """``fields`` as the arguments of a command: name, value, name, value..."""
    return tuple(part for pair in fields.items() for part in pair)
