"""The listener factory: ``redis://`` (and ``rediss://``) reads a stream through a
consumer group (``streams.py``), ``redis+pubsub://`` subscribes to a channel
(``pubsub.py``)."""

from __future__ import annotations

from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.redis.pubsub import RedisPubSubListener
from arroyo.brokers.redis.settings import RedisPubSubListenerSettings, RedisStreamListenerSettings
from arroyo.brokers.redis.streams import RedisStreamListener
from arroyo.runtime.journal import from_option
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.parser import Parser


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> Listener:
    """``redis://HOST:PORT/STREAM?group=G`` or ``redis+pubsub://HOST:PORT/CHANNEL``:
    checks every option (ConfigError naming it), connects to nothing."""
    if url.scheme.endswith("+pubsub"):
        return RedisPubSubListener(url, RedisPubSubListenerSettings.from_url(url, options), parser)
    settings = RedisStreamListenerSettings.from_url(url, options)
    made = RedisStreamListener(url, settings, parser)
    server = made.server
    scope = f"redis {server.host}:{server.port}/{server.db} {made.stream} {made.group}"
    made.journal = from_option(settings.delivery_journal, str(url), scope, entry_key)
    return made


def entry_key(received: Received) -> str:
    """A stream entry's key in the delivery journal: its id."""
    return received.handle.decode()  # type: ignore[no-any-return]
