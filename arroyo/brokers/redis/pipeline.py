"""Redis commands sent in order, as pipelines, each confirmed by its reply.

:class:`Batcher` queues items and flushes them one batch (one pipeline) at a time, in
the order they were added, fail-stop (rule 2 of ``arroyo/runtime/ordering.py``); the
Streams listener sends its ``XACK`` through one, and :class:`RedisPublisher`, the base
of both Redis publishers (``XADD``, ``PUBLISH``), its commands.

A publisher's pipeline is written on one of the client's connections as one packed
write, and its replies read from it one by one (:meth:`RedisPublisher._flush`), not
through redis-py's ``Pipeline``: that one runs each reply through the client's parsing
and callbacks (about 1.7 us more per ``XADD`` of 1 KiB), for values a publisher does not
use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from arroyo.brokers.redis.connection import RedisServer, connect
from arroyo.errors import PermanentError, PublishError
from arroyo.runtime.ordering import not_sent
from arroyo.runtime.publisher import PipelinedPublisher
from arroyo.runtime.tasks import cancel_and_wait

log = logging.getLogger("arroyo.brokers.redis")

T = TypeVar("T")

PING_EVERY = 1.0
"""Seconds between the PINGs by which a Redis publisher tells whether Redis answers
while it has nothing to send (:attr:`RedisPublisher.connected`)."""


class Refused(PublishError, PermanentError):
    """Redis refused a command for a reason retrying cannot change (e.g. WRONGTYPE)."""


def reply_error(where: str, server: RedisServer, reply: Any) -> BaseException | None:
    """None when ``reply`` confirms its command; else the error to report: Refused
    (permanent) for WRONGTYPE and NOPERM, PublishError (retried) for the rest."""
    if not isinstance(reply, BaseException):
        return None
    text = server.hide(str(reply) or repr(reply))
    if isinstance(reply, ResponseError) and str(reply).startswith(("WRONGTYPE", "NOPERM")):
        return Refused(f"{where}: refused: {text}")
    return PublishError(f"{where}: not confirmed: {text}")


class Batcher(Generic[T]):
    """Collects items and hands them to ``flush`` in batches, one batch at a time and in
    the order they were added; each item's future gets its own result.

    A batch holds at most ``limit`` items and about ``limit_bytes`` (an item larger than
    that goes alone). ``flush(items)`` returns one result per item: None for success,
    an exception for a failure. When it raises, every item of the batch fails with that
    exception.

    Fail-stop (the ordering rule of ``arroyo/runtime/ordering.py``): when a batch fails
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
        return self.add_many(((item, size),))[0]

    def add_many(self, items: Iterable[tuple[T, int]]) -> list[asyncio.Future[None]]:
        """:meth:`add` each ``(item, size)`` of ``items``, in order; a future each."""
        loop = asyncio.get_running_loop()
        queue, future = self._items, asyncio.Future
        added: list[asyncio.Future[None]] = []
        for item, size in items:
            done: asyncio.Future[None] = future(loop=loop)  # loop.create_future, inlined
            queue.append((item, size, done))
            added.append(done)
        if added and (self._task is None or self._task.done()):
            self._task = loop.create_task(self._run())
        return added

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


Command = tuple[Any, ...]
"""A Redis command as its arguments (``("XADD", stream, "*", field, value...)``)."""


class RedisPublisher(PipelinedPublisher):
    """What both Redis publishers share: a connection, and commands queued in order and
    sent as one pipeline per batch (of at most ``batch`` commands and about
    ``batch_bytes``); a command is confirmed by its reply."""

    def __init__(self, server: RedisServer, location: str, batch: int, batch_bytes: int) -> None:
        self.server = server
        self._location = location
        self._client: Redis | None = None
        self._batcher: Batcher[Command] = Batcher(self._flush, batch, batch_bytes, location)
        self._answers = True
        self._pinging: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._location

    @property
    def connected(self) -> bool:
        """False from the moment Redis did not answer (a pipeline failed to reach it, or
        the PING sent every :data:`PING_EVERY` seconds did) until it answers again: a
        destination that went away is seen while there is nothing to send, too."""
        return self._client is not None and self._answers

    async def start(self) -> None:
        """Connect within connect_timeout (raises ConnectError, without the password,
        when it cannot)."""
        self._client = await connect(self.server, self.name, each_reply=False)
        self._answers = True
        self._pinging = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        """Ask Redis every :data:`PING_EVERY` seconds whether it answers (``connected``;
        the runtime logs when that changes)."""
        while (client := self._client) is not None:
            await asyncio.sleep(PING_EVERY)
            try:
                async with asyncio.timeout(2 * PING_EVERY):
                    await client.ping()
            except Exception:  # no PONG, whatever the reason: it does not answer
                self._answers = False
            else:
                self._answers = True

    def _queue(self, command: Command, size: int) -> asyncio.Future[None]:
        """Queue ``command`` (sending ``size`` bytes) behind those queued before."""
        return self._queue_many([(command, size)])[0]

    def _queue_many(self, commands: list[tuple[Command, int]]) -> list[asyncio.Future[None]]:
        """:meth:`_queue` each ``(command, size)``, in order, in one call."""
        if self._client is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        return self._batcher.add_many(commands)

    def _result(self, reply: Any) -> BaseException | None:
        """None when ``reply`` confirms its command, else the error to report."""
        return reply_error(self.name, self.server, reply)

    async def _flush(self, batch: list[Command]) -> list[BaseException | None]:
        """Send ``batch`` as one pipeline on a connection of the client's pool and read
        its replies. A connection whose write or read fails or is cut short (timeout,
        cancellation) is closed by redis-py itself, so no reply of this pipeline is read
        as another's."""
        assert self._client is not None
        pool = self._client.connection_pool
        replies: list[Any] = []
        try:
            # One timer for the whole pipeline, connecting included (the client sets
            # none per reply). A TimeoutError is an OSError.
            async with asyncio.timeout(self.server.timeout):
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
                try:
                    await connection.send_packed_command(
                        connection.pack_commands(batch), check_health=False
                    )
                    for _ in batch:
                        try:
                            replies.append(await connection.read_response())
                        except ResponseError as exc:  # this command's error reply
                            replies.append(exc)
                finally:
                    await pool.release(connection)
        except (RedisError, OSError) as exc:
            self._answers = False
            raise PublishError(
                f"{self.name}: not confirmed: {self.server.hide(str(exc) or repr(exc))}"
            ) from None
        self._answers = True
        return [self._result(reply) for reply in replies]

    async def close(self) -> None:
        """Wait for what was sent, disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._pinging is not None:
            await cancel_and_wait(self._pinging)
            self._pinging = None
        try:
            async with asyncio.timeout(self.server.timeout):
                await self._batcher.drain()
        except (TimeoutError, PublishError) as exc:
            log.warning("%s: last messages not confirmed: %s", self.name, exc)
        self._batcher.cancel()
        await client.aclose()
