"""The Kafka listener: a consumer group member that hands batches to a Block.

Every consumer call (and so every rebalance callback) runs in one thread of the
listener; a whole batch (``batch_size``, taken with ``consume()``) comes over to the
event loop per call, and commits ride along with the next call. Payloads are not copied
beyond what confluent-kafka does (``Received.data`` is ``msg.value()``). What the
listener owns and commits, and how it handles rebalances, is in
:mod:`arroyo.brokers.kafka.partitions`; the consumer and the calls made on it, in
:mod:`arroyo.brokers.kafka.consumer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import confluent_kafka as ck

from arroyo.brokers import BrokerURL
from arroyo.brokers.kafka.connection import (
    Key,
    error_text,
    hider,
)
from arroyo.brokers.kafka.consumer import Consumer
from arroyo.brokers.kafka.lag import LagReader
from arroyo.brokers.kafka.partitions import Partitions
from arroyo.brokers.kafka.settings import KafkaListenerSettings, check_settings, topics
from arroyo.errors import ArroyoError
from arroyo.runtime import tracing
from arroyo.runtime.journal import from_option
from arroyo.runtime.lag import Source, source
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.parser import AvroParser, Parser

log = logging.getLogger("arroyo.brokers.kafka")

T = TypeVar("T")


class KafkaListener(Listener):
    """Reads topics in a consumer group and commits offsets of acknowledged messages.

    All consumer calls run in one dedicated thread (rebalance callbacks too); messages
    come over to the event loop a batch at a time. See the package docstring for the
    guarantees.
    """

    def __init__(
        self,
        url: BrokerURL,
        topics: list[str],
        settings: KafkaListenerSettings,
        config: dict[str, str],
        parser: Parser | None = None,
    ) -> None:
        super().__init__(parser)
        self.url = url
        self.topics = topics
        self.settings = settings
        self.group = settings.group
        self.config = config
        """The consumer's librdkafka settings."""
        self.hide = hider(config, url.password)
        self.batch_size = max(1, settings.batch_size)
        self.poll_timeout = settings.poll_timeout_ms / 1000
        self.pause_after = settings.pause_after_ms / 1000
        self.connect_timeout = settings.connect_timeout
        self._name = str(url)
        self.partitions = Partitions(
            self._name,
            self.hide,
            commit_interval=settings.commit_interval_ms / 1000,
            commit_every=max(1, settings.commit_every),
            drain_timeout=settings.drain_timeout_ms / 1000,
            group_metadata=lambda: self._call(self.consumer.group_metadata),
            acknowledged=self._acknowledged,
        )
        self.consumer = Consumer(
            self._name,
            topics,
            config,
            self.hide,
            batch_size=self.batch_size,
            poll_timeout=self.poll_timeout,
            connect_timeout=self.connect_timeout,
            on_commit=self.partitions.on_commit,
            assigned=self._on_assigned,
            revoked=self._on_revoked,
        )
        """The consumer, all of whose calls run in :attr:`_executor`'s one thread."""
        # loop-thread state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._intake: Intake | None = None
        self._backlog: deque[tuple[list[Any], dict[Key, int]]] = deque()
        self._blocked: tuple[asyncio.Task[None], Key] | None = None
        """A put waiting for room in the Block, and the partition of its message."""
        self._stopping = False
        # the lag's own thread (lag.py)
        self._lag = LagReader(self.connect_timeout, config.get("auto.offset.reset", "earliest"))
        self._lag_executor: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def servers(self) -> str:
        return self.config["bootstrap.servers"]

    @property
    def connected(self) -> bool:
        """False while the consumer reaches no broker of the cluster (librdkafka's
        statistics, every second; the consumer keeps polling while the Block is full)."""
        return self.consumer.reachability.up

    # -- running (event loop) ----------------------------------------------------------

    def _call(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        assert self._loop is not None
        return self._loop.run_in_executor(self._executor, func, *args)

    async def _acknowledged(self) -> None:
        if self._intake is not None:
            await self._intake.acknowledged()

    async def connect(self) -> None:
        """Make the consumer and wait (up to connect_timeout) until the cluster answers;
        raises ConnectError saying why it did not. Subscribes, but joins the group only
        once :meth:`start` polls."""
        if self.consumer.client is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-kafka-consumer")
        try:
            await self._call(self.consumer.open)
        except ck.KafkaException as exc:
            raise ArroyoError(f"{self.name}: {self.hide(error_text(exc))}") from None

    async def lag(self) -> dict[Source, int] | None:
        """Log end offset minus the group's committed offset of each partition assigned
        to this consumer, read in a thread of its own (:mod:`arroyo.brokers.kafka.lag`)."""
        if self.consumer.client is None or self._loop is None:
            return None
        if self._lag_executor is None:
            self._lag_executor = ThreadPoolExecutor(1, thread_name_prefix="arroyo-kafka-lag")
        keys = list(self.partitions.owned)
        read = self._lag.read
        client = self.consumer.client
        lag = await self._loop.run_in_executor(self._lag_executor, read, client, keys)
        if lag is None:
            return None
        return {source(topic=t, partition=p): n for (t, p), n in lag.items()}

    async def start(self, intake: Intake) -> None:
        """Join the group and hand messages over, in partition order, until stop().

        Raises ConnectError when the cluster does not answer within connect_timeout at
        start, and for what the consumer cannot recover from (a fatal librdkafka error,
        bad settings, an aborted transaction); later broker outages are waited out.
        """
        await self.connect()
        assert self._loop is not None
        self._intake = intake
        self.partitions.start()
        try:
            log.info("%s: joining group %r", self.name, self.group)
            idle = False
            while not self._stopping:
                self._check()
                batch = await self._call(self.consumer.fetch, self.partitions.due(idle))
                idle = not batch
                if batch:
                    self._backlog.append((batch, self.partitions.owned))
                    await self._hand_over(intake)
            self._check()
        except ck.KafkaException as exc:
            raise ArroyoError(f"{self.name}: {self.hide(error_text(exc))}") from None

    def _check(self) -> None:
        fatal = self.consumer.fatal
        if fatal is not None:
            raise ArroyoError(f"{self.name}: fatal Kafka error: {self.hide(fatal.str())}")
        if self.partitions.failure is not None:
            raise self.partitions.failure
        txn = self.partitions.txn
        if txn is not None and txn.failure is not None:
            raise txn.failure

    async def _hand_over(self, intake: Intake) -> None:
        """Hand the fetched messages to the Block, in order, skipping those of partitions
        revoked since they were fetched; wait (polling) while the Block is full."""
        mine = self.partitions
        tracker, url, traced = mine.tracker, self.name, tracing.on
        backlog = self._backlog
        while backlog and not self._stopping:
            batch, owned = backlog.popleft()
            stale = mine.owned is not owned  # (re)assignments happen only while we await
            items: list[Received] = []
            for msg in batch:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                key = (topic, partition)
                if stale and mine.owned.get(key) != owned.get(key):
                    continue  # its partition was revoked since: its new owner reads it
                value = msg.value()
                received = Received(
                    b"" if value is None else value,
                    {"url": url, "topic": topic, "partition": partition, "offset": offset},
                    (key, offset),
                )
                if traced:
                    received.trace = tracing.carrier(msg.headers())
                items.append(received)
            while items:
                # In flight from here on: nothing acknowledges them before we await.
                taken = intake.offer_many(items)
                tracker.started_many([r.handle for r in items[:taken]])
                if taken == len(items):
                    break
                waiting = items[taken]
                tracker.started(*waiting.handle)
                if not await self._wait(intake, waiting):
                    return
                items = items[taken + 1 :]
                if mine.owned is not owned:  # revoked while we waited: their owner reads them
                    items = [
                        r for r in items if mine.owned.get(r.handle[0]) == owned.get(r.handle[0])
                    ]

    async def _wait(self, intake: Intake, received: Received) -> bool:
        """put() ``received``; if that takes longer than pause_after, pause the partitions
        and keep polling until it is in. False when stopping."""
        put = asyncio.ensure_future(intake.put(received))
        self._blocked = (put, received.handle[0])
        try:
            timeout = self.pause_after
            while True:
                await asyncio.wait((put,), timeout=timeout)
                if self._stopping:
                    put.cancel()
                    return False
                if put.done():
                    return True
                batch = await self._call(self.consumer.hold, self.partitions.due())
                if batch:
                    self._backlog.append((batch, self.partitions.owned))
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
        self.partitions.acked(key, offset)

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        """:meth:`ack` each, at once (nothing here waits for the broker)."""
        self.partitions.acked_many([one.handle for one in received])
        return [None] * len(received)

    async def _assigned(self, keys: list[Key]) -> None:
        self.partitions.assigned(keys)
        if self.journal is not None:
            self.journal.look_again()  # their messages may have killed another worker

    async def _revoked(self, keys: list[Key], lost: bool, metadata: Any) -> dict[Key, int]:
        """Stop taking from ``keys`` (cancelling a hand-over that waits for room), take
        back their messages that wait in the Block unprocessed (the new owner reads them
        from the commit), then let :meth:`Partitions.revoked` finish the work under way
        and commit."""
        self.partitions.revoke(keys)
        blocked = self._blocked
        if blocked is not None and blocked[1] in keys and not blocked[0].done():
            blocked[0].cancel()
            self.partitions.handed_back([blocked[1]])
        if self._intake is not None:
            revoked = set(keys)
            back = self._intake.hand_back(lambda received: received.handle[0] in revoked)
            self.partitions.handed_back([received.handle[0] for received in back])
        return await self.partitions.revoked(keys, lost, metadata)

    async def close(self) -> None:
        """Commit every acknowledged offset (or the last transaction), leave the group."""
        if self.consumer.client is None:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            return

        async def commit(offsets: dict[Key, int]) -> None:
            await self._call(self.partitions.commit_now, self.consumer.client, offsets)

        try:
            await self.partitions.close(commit)
        finally:
            try:
                await self._call(self._close_consumer)
            finally:
                assert self._executor is not None
                self._executor.shutdown(wait=False)
                if self._lag_executor is not None:
                    self._lag_executor.shutdown(wait=False)

    # -- the consumer thread -----------------------------------------------------------

    def _run_on_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def _on_assigned(self, consumer: Any, keys: list[Key]) -> None:
        """(Consumer thread) ``keys`` were assigned: :meth:`_assigned` on the loop."""
        try:
            self._run_on_loop(self._assigned(keys), 30)
        except Exception as exc:
            log.error("%s: handling the assignment failed: %s", self.name, self.hide(repr(exc)))

    def _on_revoked(self, consumer: Any, keys: list[Key], lost: bool) -> None:
        """(Consumer thread) ``keys`` were revoked (or lost): :meth:`_revoked` on the
        loop, then commit what it says."""
        txn = self.partitions.txn
        metadata = None
        if txn is not None and not lost and not self.partitions.closing:
            metadata = consumer.consumer_group_metadata()
        limit = self.partitions.drain_timeout + (txn.timeout if txn is not None else 0) + 30
        try:
            offsets = self._run_on_loop(self._revoked(keys, lost, metadata), limit)
        except Exception as exc:
            log.error("%s: handling the revocation failed: %s", self.name, self.hide(repr(exc)))
            return
        if offsets:
            self.partitions.commit_now(consumer, offsets)

    def _close_consumer(self) -> None:
        self._lag.closing()
        self.consumer.close()


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> KafkaListener:
    """``kafka://HOST:PORT/TOPIC[,TOPIC...|^REGEX]?group=G`` plus the options of
    :class:`~arroyo.brokers.kafka.settings.KafkaListenerSettings` and any librdkafka
    consumer setting (checked by librdkafka now)."""
    settings, passing = KafkaListenerSettings.parse(url, options)
    config = settings.consumer_config(url, passing)
    made = KafkaListener(url, topics(url), settings, config, parser or AvroParser())
    check_settings(url, made.config, "consumer", made.hide)
    cluster = ",".join(sorted(made.servers.split(",")))
    scope = f"kafka {cluster} {settings.group}"
    made.journal = from_option(settings.delivery_journal, str(url), scope, _offset_key)
    return made


def _offset_key(received: Received) -> str:
    """A Kafka message's key in the delivery journal: ``topic:partition:offset``."""
    (topic, partition), offset = received.handle
    return f"{topic}:{partition}:{offset}"
