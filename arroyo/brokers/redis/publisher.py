"""The publisher factory: ``redis://`` (and ``rediss://``) appends to a stream
(``streams.py``), ``redis+pubsub://`` publishes to a channel (``pubsub.py``)."""

from __future__ import annotations

from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.redis.pubsub import RedisPubSubPublisher
from arroyo.brokers.redis.settings import RedisPubSubPublisherSettings, RedisStreamPublisherSettings
from arroyo.brokers.redis.streams import RedisStreamPublisher
from arroyo.codec import Codec
from arroyo.runtime.publisher import Publisher


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> Publisher:
    """``redis://HOST:PORT/STREAM?maxlen=N`` or ``redis+pubsub://HOST:PORT/CHANNEL``:
    checks every option (ConfigError naming it), connects to nothing."""
    if url.scheme.endswith("+pubsub"):
        return RedisPubSubPublisher(url, RedisPubSubPublisherSettings.from_url(url, options), codec)
    return RedisStreamPublisher(url, RedisStreamPublisherSettings.from_url(url, options), codec)
