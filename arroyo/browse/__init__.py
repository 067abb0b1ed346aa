"""Read-only readers of every source: what ``arroyo tail`` looks through.

A :class:`Browser` shows what a source holds and leaves it exactly as it was: the same
messages, counts, pending entries, consumer groups and committed offsets. Each broker's
module reads the way its broker allows without taking anything:

- ``kafka://`` (``arroyo/brokers/kafka/browse.py``): partitions assigned explicitly, no
  consumer group joined, no offset ever committed;
- ``redis://`` (``arroyo/brokers/redis/browse.py``): ``XRANGE`` / ``XREAD``, never a
  consumer group; ``redis+pubsub://``: a subscription (pub/sub keeps nothing: only what
  comes);
- ``amqp://`` (``arroyo/brokers/rabbitmq/browse.py``): a stream queue is read as a
  stream; a classic or quorum queue with ``basic.get`` and no acknowledgement, and every
  message goes back to where it was when the browser closes (see that module for what
  RabbitMQ cannot avoid);
- ``zmq+sub://`` (``arroyo/brokers/zmq/browse.py``): a subscriber takes nothing from
  anyone; ``zmq+pull://`` is refused (a PULL socket takes each message away from the real
  receiver);
- ``memory://`` and ``file://`` (in ``arroyo/brokers/memory.py`` and
  ``arroyo/brokers/file.py``).

Each module imports its broker's client only when used; a missing one raises
MissingDependencyError naming the extra to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arroyo.brokers import BrokerURL, parse_url
from arroyo.browse.base import Browser, Data, Reading, Record
from arroyo.errors import ConfigError

__all__ = ["Browser", "Data", "Reading", "Record", "open_browser"]


def open_browser(
    url: str | BrokerURL, reading: Reading | None = None, options: Mapping[str, Any] | None = None
) -> Browser:
    """A browser for ``url`` (not connected yet: use it with ``async with``).

    ``options`` are settings as next to the URL in a YAML file (TLS, passwords...). Raises
    ConfigError for a URL or option that cannot work, MissingDependencyError when the
    broker's client is not installed.
    """
    from arroyo.brokers.connector import CONNECTORS

    parsed = url if isinstance(url, BrokerURL) else parse_url(url)
    factory = CONNECTORS.for_scheme(parsed.scheme).browser
    if factory is None:
        raise ConfigError(f"{parsed}: {parsed.scheme}:// cannot be looked at without consuming")
    return factory(parsed, dict(options or {}), reading or Reading())
