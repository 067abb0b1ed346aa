"""Exactly-once Kafka -> Kafka blocks: one transactional producer, committed with the
listener's offsets (see :func:`exactly_once`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import Hide, Key, error_text, offsets_list
from arroyo.brokers.kafka.producer import Entry, Producer
from arroyo.errors import ArroyoError, PublishError

log = logging.getLogger("arroyo.brokers.kafka")

_Held = tuple[str, bytes, bytes | None, list[Any], str, asyncio.Future[None]]
"""A message held during a commit: topic, value, key, headers, what it is, its future."""

STUCK_GRACE = 5.0
"""Seconds a transaction call may overrun its own timeout before it counts as stuck."""


class TransactionError(ArroyoError):
    """A Kafka transaction could not be committed and was aborted (exactly-once mode).

    The worker stops: the outputs of the aborted transaction are discarded and its input
    offsets were not committed, so whoever gets the partitions next (another worker of
    the group, or this one after a restart) processes them again from the last commit.
    """


class Transactions:
    """One transactional producer shared by the publishers (and the dead letter) of an
    exactly-once block, committed together with the listener's offsets."""

    def __init__(self, name: str, config: dict[str, str], hide: Hide, group: str) -> None:
        txn_id = f"arroyo-{group}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        config = {**config, "transactional.id": txn_id, "enable.idempotence": "true"}
        self.core = Producer(name, config, hide)
        self.failure: BaseException | None = None
        self._users = 0
        self._started = False
        self.in_transaction = False
        self._gate = False
        self._held: deque[_Held] = deque()
        self._lock: asyncio.Lock | None = None
        self._aborting: asyncio.Task[None] | None = None
        """The background abort (referenced so that it is not garbage-collected)."""
        self.core.on_failure = self._fail
        self.timeout = float(config.get("transaction.timeout.ms", "60000")) / 1000
        self.stuck = False
        """A call into librdkafka did not return (its thread is lost): call no more."""

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
            self._held.append((topic, value, key, headers, what, done))
        elif self._begin():
            self.core.produce(topic, value, key, headers, what, done)
        else:
            done.cancel()
        return done

    def send_many(self, topic: str, entries: list[Entry]) -> list[asyncio.Future[None]]:
        """:meth:`send` each ``(value, key, headers, what)``, in order; in one call of
        :meth:`Producer.produce_many` while a transaction is open for them (which stops
        as it says: the list may be shorter)."""
        if self.failure is None and not self._gate and not self._held and self._begin():
            return self.core.produce_many(topic, entries)
        return [self.send(topic, *entry) for entry in entries]

    def _begin(self) -> bool:
        """Open a transaction unless one is open; False (and aborting) if that fails."""
        if self.in_transaction:
            return True
        try:
            self.core.producer.begin_transaction()
        except ck.KafkaException as exc:
            self._fail(exc)
            return False
        self.in_transaction = True
        return True

    def _fail(self, cause: BaseException) -> None:
        """Abort in the background (from a callback that cannot await)."""
        if self.failure is None:
            task = asyncio.ensure_future(self.abort(cause))
            self._aborting = task

    def _release(self) -> None:
        """Produce what was held during a commit, in order, in a new transaction."""
        while self._held and not self._gate and self.failure is None:
            topic, value, key, headers, what, done = self._held.popleft()
            if done.done():
                continue
            if not self._begin():
                done.cancel()
                continue
            try:
                self.core.produce(topic, value, key, headers, what, done)
            except PublishError as exc:  # refused at once: ``done`` failed with it
                if not done.done():
                    done.set_exception(exc)

    async def commit(
        self,
        offsets: Callable[[], dict[Key, int]],
        group_metadata: Any,
        acknowledged: Callable[[], Awaitable[None]],
    ) -> dict[Key, int]:
        """Commit the open transaction with ``offsets()``. Returns the offsets committed.
        Raises TransactionError after aborting.

        New outputs are held back for the next transaction meanwhile; once every output
        of this one is delivered, ``acknowledged()`` (the listener's intake, see
        :class:`~arroyo.runtime.listener.Intake`) returns when the Block has acknowledged
        every message whose outputs are all confirmed by then, so ``offsets()`` covers
        the inputs of those outputs. It waits for nothing held back by this commit."""
        assert self._lock is not None
        async with self._lock:
            if self.failure is not None:
                raise TransactionError(f"{self.core.name}: {self.failure}")
            self._gate = True
            try:
                await self.core.idle()
                await acknowledged()
                committed = offsets()
                if not self.in_transaction and not committed:
                    return {}
                self._begin()
                if committed:
                    await self._retrying(
                        self.core.producer.send_offsets_to_transaction,
                        offsets_list(committed),
                        group_metadata,
                        self.timeout,
                    )
                await self._retrying(self.core.producer.commit_transaction, self.timeout)
                self.in_transaction = False
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
                await self._bounded(func, *args)
                return
            except ck.KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("%s: retrying: %s", self.core.name, self.core.hide(error.str()))

    async def _bounded(self, func: Callable[..., Any], *args: Any) -> None:
        """Run a transaction call (given ``self.timeout``) in the producer's thread; fail
        when it overruns that by STUCK_GRACE. librdkafka does not always keep the
        timeout: send_offsets_to_transaction can wait for ever for a group coordinator
        that died with its broker (confluentinc/librdkafka#5456, #5511). The thread stays
        blocked, so the producer is not called again (``stuck``)."""
        limit = self.timeout + STUCK_GRACE
        try:
            async with asyncio.timeout(limit):
                await self.core.call(func, *args)
        except TimeoutError:
            self.stuck = True
            name = getattr(func, "__name__", "a transaction call")
            raise TransactionError(
                f"{self.core.name}: {name} did not return within {limit:g} s (librdkafka "
                "lost the coordinator; a new producer finds it: the worker stops)"
            ) from None

    async def abort(self, cause: BaseException) -> None:
        """Abort the open transaction and fail everything after it (the worker stops)."""
        if self.failure is not None:
            return
        text = self.core.hide(error_text(cause))
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
        if self.stuck:
            log.error(
                "%s: not aborting (the producer is stuck): the broker aborts the "
                "transaction after transaction.timeout.ms (%g s)",
                self.core.name,
                self.timeout,
            )
        elif self.in_transaction and self.core.producer is not None:
            try:
                await self._bounded(self.core.producer.abort_transaction, self.timeout)
            except (ck.KafkaException, TransactionError) as exc:
                log.error("%s: abort failed: %s", self.core.name, self.core.hide(exc))
        self.in_transaction = False

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self.core.producer is None:
            return
        if self.in_transaction and self.failure is None and not self.stuck:
            # Outputs nobody committed offsets for: drop them (they are produced again).
            try:
                await self._bounded(self.core.producer.abort_transaction, self.timeout)
            except (ck.KafkaException, TransactionError) as exc:
                log.warning("%s: abort at close failed: %s", self.core.name, self.core.hide(exc))
            self.in_transaction = False
        await self.core.close(0 if self.stuck else self.timeout)
