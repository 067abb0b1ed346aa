"""Reaching the Redis server: where and how (:class:`RedisServer`, from the URL and the
settings), connecting within ``connect_timeout`` (a one-line ConnectError otherwise, see
``arroyo/brokers/connecting.py``), what counts as a lost connection, and the probe of
``arroyo check --connect``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arroyo.brokers import BrokerURL, Tls
from arroyo.brokers.connecting import Failure, connect_within, socket_failure
from arroyo.brokers.redis.settings import RedisSettings
from arroyo.errors import ConfigError, ConnectError
from arroyo.runtime.logs import redact
from arroyo.runtime.retry import RetryPolicy

RECONNECTING = RetryPolicy(attempts=None, initial=0.05, maximum=1.0)
"""For what must wait for Redis to come back (acknowledgements)."""

READING = RetryPolicy(attempts=None, initial=0.1, maximum=5.0)
"""For reads after a lost connection: until Redis is back (or the listener stops)."""


_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _hiredis_pack = None

_PLAIN = (str, bytes, int)
"""Argument types that hiredis packs exactly as redis-py does (not bool, not float)."""


class _HiredisPacking:
    """Commands packed by hiredis' C packer (as synchronous redis-py does when hiredis is
    installed; redis.asyncio packs in Python, about 5x slower for an ``XADD``). A command
    with an argument of another type, or one larger than the connection's buffer cutoff
    (a frame, which redis-py sends as a chunk of its own instead of copying it), is
    packed by redis-py as before."""

    _buffer_cutoff: int

    def pack_command(self, *args: Any) -> list[bytes]:
        for arg in args:
            if type(arg) not in _PLAIN or (type(arg) is bytes and len(arg) > self._buffer_cutoff):
                return super().pack_command(*args)  # type: ignore[misc,no-any-return]
        assert _hiredis_pack is not None  # these classes are used only when it is there
        first = args[0]
        # "CONFIG GET": the server expects the words as arguments of their own
        words = first.encode().split() if type(first) is str else first.split()
        return [_hiredis_pack((*words, *args[1:]))]


class _Connection(_HiredisPacking, Connection):
    pass


class _SSLConnection(_HiredisPacking, SSLConnection):
    pass


@dataclass(frozen=True)
class RedisServer:
    """Where and how to connect: the URL's host, port and credentials, with the
    settings' (a password or user name in the settings wins over the URL's)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)
    tls: Tls | None
    timeout: float
    connect_timeout: float

    @classmethod
    def from_url(cls, url: BrokerURL, settings: RedisSettings) -> RedisServer:
        """The server of ``url`` with ``settings`` (ConfigError for ssl_* options
        without ``rediss://``)."""
        return cls(
            host=url.host or "localhost",
            port=url.port or 6379,
            db=settings.db,
            username=settings.username or url.username or None,
            password=settings.password or url.password,
            tls=settings.tls(url, "rediss"),
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
        )

    def location(self, url: BrokerURL, name: str) -> str:
        """``scheme://host:port/name``: how errors and logs name a stream or channel
        (never with a password)."""
        return f"{url.scheme}://{self.host}:{self.port}/{name}"

    def client(self, read_timeout: float | None = None, *, each_reply: bool = True) -> Redis:
        """A client (connections are made on first use). Commands that fail on a lost
        connection are retried a few times with a short backoff, reconnecting.

        A reply that does not come within ``read_timeout`` (default: the settings'
        ``timeout``) is a TimeoutError; with ``each_reply=False`` there is no such limit
        per reply, and the caller bounds each exchange as a whole (a pipeline of a
        thousand commands then sets one timer, not a thousand)."""
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
        client = Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_timeout=(read_timeout or self.timeout) if each_reply else None,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries=3),
            **tls,
        )
        if _hiredis_pack is not None:  # no connection is made before the first command
            pool = client.connection_pool
            pool.connection_class = _SSLConnection if self.tls else _Connection
        return client

    def hide(self, text: str) -> str:
        """``text`` without the password (for errors and logs)."""
        return redact(text, self.password)


def target(url: BrokerURL, example: str) -> str:
    """The stream or channel ``url`` names (its path); a ConfigError showing ``example``
    (``frames?group=workers``) when it names none."""
    if not url.path:
        kind = "channel" if url.scheme.endswith("+pubsub") else "stream"
        raise ConfigError(
            f"{url}: a Redis URL needs a {kind} name, as in {url.scheme}://127.0.0.1:6379/{example}"
        )
    return url.path


async def connect(
    server: RedisServer, where: str, read_timeout: float | None = None, *, each_reply: bool = True
) -> Redis:
    """A client (see :meth:`RedisServer.client`) that the server answered (PING), trying
    for up to ``connect_timeout`` seconds. Raises ConnectError (one line naming
    ``where``, never the password)."""
    client = server.client(read_timeout, each_reply=each_reply)
    scheme = where.partition("://")[0]
    plain, secure = scheme.replace("rediss", "redis"), scheme.replace("redis", "rediss", 1)

    def explain(exc: BaseException) -> Failure:
        # AUTH refused (redis-py raises a ConnectionError subclass for it), ACL, a server
        # that is loading...: trying again cannot help.
        if isinstance(exc, AuthenticationError | ResponseError):
            return Failure(f"the server refused: {exc}", final=True)
        return socket_failure(exc, tls=server.tls is not None, plain=plain, secure=secure)

    async def ping(seconds: float) -> None:
        await client.ping()

    try:
        await connect_within(where, server.connect_timeout, ping, explain, server.hide)
    except ConnectError:
        await client.aclose()
        raise
    return client


def is_connection_error(exc: BaseException) -> bool:
    """True for a lost connection or a reply that did not come (worth trying again)."""
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """PING the server of a Redis listener or publisher within ``seconds`` (``arroyo
    check --connect``): no group is created, nothing read or written."""
    server = dataclasses.replace(endpoint.server, connect_timeout=seconds)
    client = await connect(server, endpoint.name)
    await client.aclose()
    return "ok", "the server answers"
