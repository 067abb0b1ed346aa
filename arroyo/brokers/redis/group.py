"""This worker as one consumer of a Redis consumer group: the commands the Streams
listener (``streams.py``) sends to read, take over, keep, acknowledge and hand back
entries. When to send them (and what to do when the connection is lost) is the
listener's business."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from arroyo.brokers.redis.connection import RedisServer, connect
from arroyo.brokers.redis.pipeline import Refused
from arroyo.errors import ConnectError

log = logging.getLogger("arroyo.brokers.redis")

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and its fields."""

Delivery = tuple[bytes, dict[bytes, bytes], int]
"""An entry handed to this consumer, with the number of times it was delivered."""

RELEASED_IDLE_MS = 10**11
"""The idle time given to entries handed back on a graceful stop: any other consumer
takes them over at its next claim."""

CHUNK = 1000
"""Entry ids per XCLAIM."""


def consumer_name() -> str:
    """A consumer name unique to this worker process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class ConsumerGroup:
    """Consumer :attr:`consumer` (unique to this process) of group ``group`` of
    ``stream``, created reading from ``start`` when missing. ``where`` names the stream
    in errors and logs."""

    def __init__(
        self, server: RedisServer, stream: str, group: str, start: str, where: str
    ) -> None:
        self.server = server
        self.stream = stream
        self.group = group
        self.start = start
        self.where = where
        self.consumer = consumer_name()
        self.client: Redis | None = None
        """The connection (None until :meth:`connect`, and after :meth:`disconnect`)."""

    async def connect(self, read_timeout: float) -> None:
        """Connect (within connect_timeout) and create the group when missing; raises
        ConnectError (one line) when either fails."""
        if self.client is None:
            self.client = await connect(self.server, self.where, read_timeout)
            await self.create()

    async def disconnect(self) -> None:
        """Close the connection."""
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def _connected(self) -> Redis:
        if self.client is None:
            raise RuntimeError(f"{self.where}: not connected")
        return self.client

    async def create(self) -> bool:
        """Create the group (and the stream) when missing; True when it was created.
        ConnectError when Redis refuses."""
        try:
            await self._connected().xgroup_create(
                self.stream, self.group, self.start, mkstream=True
            )
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise ConnectError(
                f"{self.where}: cannot create consumer group {self.group!r}: "
                f"{self.server.hide(str(exc))}"
            ) from None
        return True

    async def lag(self) -> int | None:
        """Entries of the stream the group has not acknowledged: those never delivered
        (the group's ``lag`` in ``XINFO GROUPS``, Redis 7+; counted with ``XRANGE``
        after its last delivered id where Redis does not tell) plus those pending.
        None when the group does not exist."""
        client = self._connected()
        groups: Any = await client.xinfo_groups(self.stream)
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) != self.group:
                continue
            unread = group.get("lag")
            if unread is None:  # Redis < 7, or entries deleted: count them
                last = group["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else last
                unread = len(await client.xrange(self.stream, min=f"({last}", max="+") or [])
            return int(unread) + int(group["pending"])
        return None

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """Up to ``count`` new entries (delivered for the first time), waiting up to
        ``block_ms`` for some."""
        reply: Any = await self._connected().xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return reply[0][1] if reply else []

    async def claim(
        self, cursor: bytes, min_idle_ms: int, count: int
    ) -> tuple[bytes, list[Delivery]]:
        """Take over up to ``count`` entries idle for ``min_idle_ms``, from ``cursor``
        on: the next cursor (``0-0`` once through) and the entries, with their delivery
        counts. Entries deleted from the stream before anyone acknowledged them are
        acknowledged (and logged)."""
        client = self._connected()
        reply: Any = await client.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, cursor, count=count
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
                self.where,
                len(gone),
                ", ".join(i.decode() for i in gone[:10]),
            )
            await client.xack(self.stream, self.group, *gone)
        if not entries:
            return next_cursor, []
        pipe = client.pipeline(transaction=False)
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
            self.where,
            len(result),
            min_idle_ms,
        )
        return next_cursor, result

    async def refresh(self, ids: list[Any]) -> None:
        """Reset the idle time of entries this consumer holds (``XCLAIM ... JUSTID``: the
        delivery count stays), so that no other consumer takes them over."""
        client = self._connected()
        for first in range(0, len(ids), CHUNK):
            await client.xclaim(
                self.stream, self.group, self.consumer, 0, ids[first : first + CHUNK], justid=True
            )

    async def ack(self, ids: list[bytes]) -> None:
        """``XACK`` ``ids``. A group that is gone is logged (there is nothing left to
        acknowledge); another refusal is Refused. A lost connection raises what
        redis-py raised."""
        try:
            await self._connected().xack(self.stream, self.group, *ids)
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise Refused(f"{self.where}: XACK refused: {self.server.hide(str(exc))}") from None
            log.warning(
                "%s: could not acknowledge %d entries: group %s is gone (server restarted "
                "without persistence?)",
                self.where,
                len(ids),
                self.group,
            )

    async def release(self) -> int:
        """Hand the entries this consumer holds back to the group, idle for so long that
        the next claim of any other consumer takes them over; without any, delete this
        consumer from the group. Returns how many were handed back."""
        client = self._connected()
        pending = await client.xpending_range(
            self.stream, self.group, "-", "+", 100000, consumername=self.consumer
        )
        ids: list[Any] = [p["message_id"] for p in pending]
        if not ids:
            await client.xgroup_delconsumer(self.stream, self.group, self.consumer)
            return 0
        for first in range(0, len(ids), CHUNK):
            await client.xclaim(
                self.stream,
                self.group,
                self.consumer,
                0,
                ids[first : first + CHUNK],
                idle=RELEASED_IDLE_MS,
                justid=True,
            )
        return len(ids)
