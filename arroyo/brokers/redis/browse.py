"""What ``arroyo tail`` reads on Redis, changing nothing: ``redis://HOST:PORT/STREAM``
(Streams) and ``redis+pubsub://HOST:PORT/CHANNEL``.

**Streams** are read with ``XRANGE`` (up to what was there at the start) and ``XREAD``
(what comes after), never through a consumer group: no group is created, no entry
becomes pending, nothing is acknowledged or trimmed. From the beginning starts at the
stream's first entry, from the end after its last-generated id (as ``$``). A stream that
does not exist yet is empty (and waited for, unless stopping at the end). An entry
written by Arroyo has the encoded message in its ``data`` field (``field`` option); its
other fields are shown as headers; the parts of a multipart dead letter are its
``data.0``, ``data.1``... fields.

**Pub/sub** keeps nothing: the browser subscribes and shows what is published from then
on, so it can only start at the end, and stopping at the end stops at once.

Options (URL query or YAML): those that reach the server, as for the connector
(``RedisSettings``); for Streams also ``field``, ``batch`` (entries per read) and
``block_ms`` (how long one read waits for new entries): ``RedisStreamReadSettings``,
both in ``settings.py``. The other options of a listener or publisher (``group``,
``start``, the claim options...) are ignored, with a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from arroyo.brokers import BrokerURL
from arroyo.brokers.redis.connection import RedisServer, connect, target
from arroyo.brokers.redis.settings import (
    RedisPubSubListenerSettings,
    RedisSettings,
    RedisStreamListenerSettings,
    RedisStreamPublisherSettings,
    RedisStreamReadSettings,
)
from arroyo.browse.base import Browser, Reading, Record, browse_settings
from arroyo.errors import ArroyoError, ConfigError

IGNORED = sorted(
    (set(RedisStreamListenerSettings.known()) | set(RedisStreamPublisherSettings.known()))
    - set(RedisStreamReadSettings.known())
)
"""The options of a Streams listener or publisher that tail ignores (``group``,
``start``, ``maxlen``...), with a warning, so their URL can be pasted as it is."""


def _entry_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _RedisBrowser(Browser):
    def __init__(
        self, url: BrokerURL, settings: RedisSettings, name: str, reading: Reading
    ) -> None:
        self.settings = settings
        self.server = RedisServer.from_url(url, settings)
        self.reading = reading
        self._location = self.server.location(url, name)
        self._client: Redis | None = None

    @property
    def name(self) -> str:
        return self._location

    def _error(self, exc: BaseException) -> ArroyoError:
        return ArroyoError(f"{self.name}: {self.server.hide(str(exc) or type(exc).__name__)}")

    async def _connect(self) -> Redis:
        """Connect within connect_timeout (ConnectError, one line, when it cannot)."""
        self._client = await connect(self.server, self.name)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


class RedisStreamBrowser(_RedisBrowser):
    """Reads a stream with XRANGE / XREAD and no consumer group (see the module docstring)."""

    def __init__(self, url: BrokerURL, settings: RedisStreamReadSettings, reading: Reading) -> None:
        self.stream = target(url, "frames")
        super().__init__(url, settings, self.stream, reading)
        self.field = settings.field
        self.batch = settings.batch
        self.block_ms = settings.block_ms
        self._start = "0-0"
        self._end: str | None = None

    async def open(self) -> None:
        """Connect; note the stream's last-generated id (its end at the start)."""
        client = await self._connect()
        try:
            kind = await client.type(self.stream)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "none":
                return
            if kind != "stream":
                raise ArroyoError(f"{self.name}: {self.stream!r} is a Redis {kind}, not a stream")
            info = await client.xinfo_stream(self.stream)
        except (RedisError, OSError) as exc:
            raise self._error(exc) from None
        last = info["last-generated-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        if int(info["length"]) > 0:
            self._end = last
        if self.reading.from_end:
            self._start = last

    async def records(self) -> AsyncGenerator[Record, None]:
        client, position = self._client, self._start
        assert client is not None
        exit_at_end = self.reading.exit_at_end
        while True:
            entries: Any
            try:
                if exit_at_end:
                    if self._end is None or _entry_id(position) >= _entry_id(self._end):
                        return
                    entries = await client.xrange(
                        self.stream, min=f"({position}", max=self._end, count=self.batch
                    )
                    if not entries:
                        return
                else:
                    reply: Any = await client.xread(
                        {self.stream: position}, count=self.batch, block=self.block_ms
                    )
                    entries = reply[0][1] if reply else []
            except (RedisError, OSError) as exc:
                raise self._error(exc) from None
            for entry_id, fields in entries:
                position = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                yield self._record(position, fields)

    def _record(self, entry_id: str, fields: dict[bytes, bytes]) -> Record:
        source = {"url": self.name, "stream": self.stream, "id": entry_id}
        named = {k.decode(errors="replace"): v for k, v in fields.items()}
        data = named.pop(self.field, None)
        if data is not None:
            return Record(data, source, named)
        parts: list[bytes | memoryview] = []
        while f"{self.field}.{len(parts)}" in named:
            parts.append(named.pop(f"{self.field}.{len(parts)}"))
        if parts:
            return Record(parts, source, named)
        return Record(
            b"",
            source,
            named,
            problem=f"the entry has no {self.field!r} field (fields: {', '.join(named)})",
        )


class RedisPubSubBrowser(_RedisBrowser):
    """Subscribes to a channel: shows what is published from now on."""

    def __init__(
        self, url: BrokerURL, settings: RedisPubSubListenerSettings, reading: Reading
    ) -> None:
        self.channel = target(url, "frames")
        super().__init__(url, settings, self.channel, reading)
        self._pubsub: PubSub | None = None

    async def open(self) -> None:
        """Connect and subscribe."""
        client = await self._connect()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(self.channel)
        except (RedisError, OSError) as exc:
            raise self._error(exc) from None

    async def records(self) -> AsyncGenerator[Record, None]:
        if self.reading.exit_at_end:
            return  # pub/sub keeps nothing: nothing was there at the start
        pubsub = self._pubsub
        assert pubsub is not None
        source = {"url": self.name, "channel": self.channel}
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            except (RedisError, OSError) as exc:
                raise self._error(exc) from None
            if message is not None and message["type"] == "message":
                yield Record(message["data"], source)

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        await super().close()


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    """``redis://HOST:PORT/STREAM`` or ``redis+pubsub://HOST:PORT/CHANNEL``."""
    if not url.scheme.endswith("+pubsub"):
        settings = browse_settings(RedisStreamReadSettings, url, options, IGNORED)
        return RedisStreamBrowser(url, settings, reading)
    pubsub = browse_settings(RedisPubSubListenerSettings, url, options, IGNORED)
    made = RedisPubSubBrowser(url, pubsub, reading)
    if reading.from_end is False:
        raise ConfigError(
            f"{url}: pub/sub keeps nothing, so there is no beginning to read from: "
            "tail shows what is published from now on (leave out --from-beginning)"
        )
    return made
