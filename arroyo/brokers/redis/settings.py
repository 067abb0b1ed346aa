"""The options of the Redis connector: the one place their names, types, defaults and
constraints are written (what each one does: the package documentation, in
``arroyo/brokers/redis/__init__.py``).

Values from a URL's query are strings; they become the field's type here. A number
given where a text is expected (``start: 0``, a numeric ``password`` in YAML) is taken
as its text, as Redis would send it anyway.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from arroyo.brokers.settings import ConnectSettings, TlsSettings


class RedisSettings(ConnectSettings, TlsSettings):
    """How to reach the server, for every Redis URL (and the pub/sub listener's only
    options): ``password`` and ``username`` (they win over the URL's), ``db``,
    ``timeout``, ``connect_timeout`` and, with ``rediss://``, the TLS options."""

    model_config = ConfigDict(coerce_numbers_to_str=True)
    broker = "redis"

    password: str | None = Field(default=None, repr=False)
    username: str | None = None
    db: int = Field(default=0, ge=0)
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a reply."""


class RedisStreamSettings(RedisSettings):
    """What every reader and writer of a stream shares: the entry field that holds the
    encoded message."""

    field: str = "data"


class RedisStreamReadSettings(RedisStreamSettings):
    """Reading a stream (the listener, and ``arroyo tail``): entries per read, and how
    long one read waits for new entries."""

    batch: int = Field(default=100, ge=1)
    block_ms: int = Field(default=1000, ge=1)


class RedisStreamListenerSettings(RedisStreamReadSettings):
    """The Streams listener: its consumer group, where a new group starts, the bytes per
    read, when idle entries are taken over, and the delivery journal."""

    group: str = Field(default="arroyo", min_length=1)
    start: str = "0"
    batch_bytes: int = Field(default=16 << 20, ge=1)
    min_idle_ms: int = Field(default=30000, ge=1)
    claim_interval_ms: int = Field(default=5000, ge=1)
    delivery_journal: str | bool | None = ""
    """``""``/true: the default folder; a folder; false: none (see
    :func:`arroyo.runtime.journal.from_option`)."""


class RedisStreamPublisherSettings(RedisStreamSettings):
    """The Streams publisher: the stream's length limit (0: none), and the entries and
    bytes per pipeline."""

    maxlen: int = Field(default=0, ge=0)
    batch: int = Field(default=1000, ge=1)
    batch_bytes: int = Field(default=4 << 20, ge=1)


class RedisPubSubListenerSettings(RedisSettings):
    """The pub/sub listener: nothing beyond reaching the server."""


class RedisPubSubPublisherSettings(RedisSettings):
    """The pub/sub publisher: ``min_subscribers``, how many subscribers must receive a
    message for its publish to count as confirmed (0: any number)."""

    min_subscribers: int = Field(default=0, ge=0)
