"""Redis: ``redis://HOST:PORT/STREAM?group=G`` (Streams) and ``redis+pubsub://HOST:PORT/CHANNEL``.

``rediss://`` and ``rediss+pubsub://`` are the same over TLS. Options go in the URL's
query or in the YAML block next to it (the YAML wins); they are declared, with their
types and constraints, in ``arroyo/brokers/redis/settings.py``, and an unknown one is an
error naming it.

**Streams** (at-least-once). The publisher appends each message with ``XADD`` as an
entry with the encoded message under ``field`` (default ``data``) and small readable
fields for tools (``kind``, ``stream``, ``seq``, ``id``; with tracing on,
:mod:`arroyo.runtime.tracing`, also ``traceparent`` and ``tracestate``, which the
listener continues); sends are pipelined (what accumulates while a pipeline is in flight
goes out as the next one, in order; at most ``batch`` entries, default 1000, and about
``batch_bytes``, default 4 MiB, per pipeline). ``maxlen=N`` trims the stream to about N
entries (``MAXLEN ~``); 0, the default, keeps everything.

The listener reads through a consumer group (``group``, default ``arroyo``; created with
``MKSTREAM`` when missing, reading from ``start``: ``0``, the beginning of the stream, by
default, or ``$`` for new entries only). Every worker process is its own consumer
(``host-pid-random``). Entries are read in batches (``batch``, default 100, at most
``batch_bytes``, default 16 MiB, of data at a time, waiting ``block_ms``, default 1000,
for new ones), each read handed to the Block together, and acknowledged with ``XACK``
(batched) once the Block is done with them.
An entry without the ``field`` (default ``data``), written by another tool, is handed to
the parser as its field and value parts (Arroyo's own parser dead-letters it).

Entries a consumer has not acknowledged for ``min_idle_ms`` (default 30000: a crashed
worker's) are taken over by the others with ``XAUTOCLAIM`` (every ``claim_interval_ms``,
default 5000 and at most half of ``min_idle_ms``; Redis 6.2 or later) and delivered with
their delivery count (from ``XPENDING``), so a message that keeps crashing workers
reaches the Block's ``max_deliveries`` limit and the dead letter; with the delivery
journal (``delivery_journal``, on by default: a folder, or false;
``arroyo/runtime/journal.py``) that count is the number of workers (of this machine)
that died while processing the entry, so the other entries a dying worker held are not
counted with it. A live listener keeps its own unfinished entries fresh (``XCLAIM ...
JUSTID``), so slow work is not taken away; ``min_idle_ms`` must still exceed the longest
time the event loop can stall (after a longer stall, another consumer may take over and
process again what this one is still working on; this one, claiming back its own
unfinished entries, does not hand them over twice). On a graceful stop, entries left
unfinished are handed back at once. After a server restart the listener reconnects by
itself (XACKs wait for the server meanwhile); what survives a restart is the server's
business (``appendonly yes`` with ``appendfsync always`` loses nothing acknowledged);
without persistence the group is gone and is created again (logged). Entries read by
several consumers of one group are processed in parallel: the order of a run is not kept
across workers.

**Pub/sub** (at-most-once). ``redis+pubsub://`` uses ``SUBSCRIBE``/``PUBLISH`` for
existing deployments. Redis keeps nothing: a message published while no listener is
subscribed, while a listener is disconnected, or while it is too slow (Redis cuts
subscribers that exceed its output buffer limit) is lost; acknowledging does nothing.
A publish is confirmed once the server accepted it; ``min_subscribers=N`` (default 0)
makes a publish fail (and the Block retry it) until at least N subscribers received it.

**Connection settings** (both): ``password`` (or ``redis://:PASSWORD@HOST``),
``username`` (Redis ACL users), ``db`` (default 0), ``timeout`` (seconds for replies,
default 10), ``connect_timeout`` (seconds, default 10: how long starting keeps trying to
reach the server before it fails with one line, see ``arroyo/brokers/connecting.py``;
also the limit of each later reconnection attempt); with ``rediss://``, TLS: ``ssl_ca``
(CA file), ``ssl_cert`` / ``ssl_key`` (client certificate), ``ssl_verify`` (default
true). Passwords never appear in logs or errors.

``arroyo tail`` reads streams and channels without a consumer group (``browse.py``).
"""

from __future__ import annotations

from arroyo._optional import require

require("redis.asyncio", "redis", "The Redis connector (redis:// URLs)")

from arroyo.brokers.connector import Connector  # noqa: E402
from arroyo.brokers.redis.browse import browser  # noqa: E402
from arroyo.brokers.redis.connection import RedisServer, probe  # noqa: E402
from arroyo.brokers.redis.listener import listener  # noqa: E402
from arroyo.brokers.redis.publisher import publisher  # noqa: E402
from arroyo.brokers.redis.pubsub import RedisPubSubListener, RedisPubSubPublisher  # noqa: E402
from arroyo.brokers.redis.settings import (  # noqa: E402
    RedisPubSubListenerSettings,
    RedisPubSubPublisherSettings,
    RedisSettings,
    RedisStreamListenerSettings,
    RedisStreamPublisherSettings,
)
from arroyo.brokers.redis.streams import RedisStreamListener, RedisStreamPublisher  # noqa: E402

__all__ = [
    "CONNECTOR",
    "RedisPubSubListener",
    "RedisPubSubListenerSettings",
    "RedisPubSubPublisher",
    "RedisPubSubPublisherSettings",
    "RedisServer",
    "RedisSettings",
    "RedisStreamListener",
    "RedisStreamListenerSettings",
    "RedisStreamPublisher",
    "RedisStreamPublisherSettings",
    "listener",
    "publisher",
]

CONNECTOR = Connector(
    name="redis",
    schemes=("redis", "rediss", "redis+pubsub", "rediss+pubsub"),
    extra="redis",
    listener=listener,
    publisher=publisher,
    browser=browser,
    probe=probe,
    notes={"redis+pubsub": "at-most-once", "rediss+pubsub": "at-most-once"},
)
