"""Browse Redis: ``redis://HOST:PORT/STREAM`` (Streams) and ``redis+pubsub://HOST:PORT/CHANNEL``.

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

Options (URL query or YAML): ``password``, ``username``, ``db``, ``timeout`` (seconds),
``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify`` (``rediss://``) as for the
connector; for Streams also ``field`` (default ``data``), ``batch`` (entries per read,
default 100) and ``block_ms`` (how long one read waits for new entries, default 1000).
A listener's ``group``, ``start`` and claim options are ignored (with a warning).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from arroyo._optional import require
from arroyo.brokers import TLS_OPTIONS, BrokerURL
from arroyo.brokers.connecting import CONNECT_OPTIONS
from arroyo.browse.base import Browser, Reading, Record, browse_options
from arroyo.errors import ArroyoError, ConfigError

_PURPOSE = "Browsing Redis (redis:// URLs)"
_CONNECTION: dict[str, Any] = {
    "password": None,
    "username": None,
    "db": 0,
    "timeout": 10.0,
    **TLS_OPTIONS,
    **CONNECT_OPTIONS,
}
_STREAM: dict[str, Any] = {"field": "data", "batch": 100, "block_ms": 1000}
_IGNORED = (
    "group",
    "delivery_journal",
    "start",
    "batch_bytes",
    "min_idle_ms",
    "claim_interval_ms",
    "maxlen",
)


def _entry_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _RedisBrowser(Browser):
    def __init__(self, settings: Any, location: str, reading: Reading) -> None:
        self.settings = settings
        self.reading = reading
        self._location = location
        self._client: Any = None

    @property
    def name(self) -> str:
        return self._location

    def _error(self, exc: BaseException, doing: str = "") -> ArroyoError:
        text = self.settings.hide(str(exc) or type(exc).__name__)
        return ArroyoError(f"{self.name}: {doing}{text}")

    async def _connect(self) -> Any:
        redis = require("redis.exceptions", "redis", _PURPOSE)
        client = self.settings.client()
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            await client.aclose()
            raise self._error(exc, "cannot connect: ") from None
        self._client = client
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


class RedisStreamBrowser(_RedisBrowser):
    """Reads a stream with XRANGE / XREAD and no consumer group (see the module docstring)."""

    def __init__(
        self,
        settings: Any,
        stream: str,
        location: str,
        reading: Reading,
        *,
        field: str = "data",
        batch: int = 100,
        block_ms: int = 1000,
    ) -> None:
        super().__init__(settings, location, reading)
        self.stream = stream
        self.field = field
        self.batch = batch
        self.block_ms = block_ms
        self._start = "0-0"
        self._end: str | None = None

    async def open(self) -> None:
        """Connect; note the stream's last-generated id (its end at the start)."""
        redis = require("redis.exceptions", "redis", _PURPOSE)
        client = await self._connect()
        try:
            kind = await client.type(self.stream)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "none":
                return
            if kind != "stream":
                raise ArroyoError(f"{self.name}: {self.stream!r} is a Redis {kind}, not a stream")
            info = await client.xinfo_stream(self.stream)
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc) from None
        last = info["last-generated-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        if int(info["length"]) > 0:
            self._end = last
        if self.reading.from_end:
            self._start = last

    async def records(self) -> AsyncGenerator[Record, None]:
        redis = require("redis.exceptions", "redis", _PURPOSE)
        client, position = self._client, self._start
        exit_at_end = self.reading.exit_at_end
        while True:
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
                    reply = await client.xread(
                        {self.stream: position}, count=self.batch, block=self.block_ms
                    )
                    entries = reply[0][1] if reply else []
            except (redis.RedisError, OSError) as exc:
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

    def __init__(self, settings: Any, channel: str, location: str, reading: Reading) -> None:
        super().__init__(settings, location, reading)
        self.channel = channel
        self._pubsub: Any = None

    async def open(self) -> None:
        """Connect and subscribe."""
        redis = require("redis.exceptions", "redis", _PURPOSE)
        client = await self._connect()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc) from None

    async def records(self) -> AsyncGenerator[Record, None]:
        redis = require("redis.exceptions", "redis", _PURPOSE)
        if self.reading.exit_at_end:
            return  # pub/sub keeps nothing: nothing was there at the start
        source = {"url": self.name, "channel": self.channel}
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.2
                )
            except (redis.RedisError, OSError) as exc:
                raise self._error(exc) from None
            if message is not None and message["type"] == "message":
                yield Record(message["data"], source)

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await super().close()


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> Browser:
    """``redis://HOST:PORT/STREAM`` or ``redis+pubsub://HOST:PORT/CHANNEL``."""
    require("redis.asyncio", "redis", _PURPOSE)
    from arroyo.brokers.redis import RedisSettings

    pubsub = url.scheme.endswith("+pubsub")
    known = _CONNECTION if pubsub else {**_CONNECTION, **_STREAM}
    opts = browse_options(url, options, known, _IGNORED)
    settings = RedisSettings.from_url(url, opts)
    kind = "channel" if pubsub else "stream"
    if not url.path:
        raise ConfigError(f"{url}: a Redis URL needs a {kind} name: {url.scheme}://HOST:6379/NAME")
    location = f"{url.scheme}://{settings.host}:{settings.port}/{url.path}"
    if pubsub:
        if reading.from_end is False:
            raise ConfigError(
                f"{url}: pub/sub keeps nothing, so there is no beginning to read from: "
                "tail shows what is published from now on (leave out --from-beginning)"
            )
        return RedisPubSubBrowser(settings, url.path, location, reading)
    for key in ("batch", "block_ms"):
        if opts[key] < 1:
            raise ConfigError(f"{url}: option {key!r} must be at least 1, got {opts[key]}")
    return RedisStreamBrowser(
        settings,
        url.path,
        location,
        reading,
        field=opts["field"],
        batch=opts["batch"],
        block_ms=opts["block_ms"],
    )
