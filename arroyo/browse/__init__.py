"""Read-only readers of every source: what ``arroyo tail`` looks through.

A :class:`Browser` shows what a source holds and leaves it exactly as it was: the same
messages, counts, pending entries, consumer groups and committed offsets. Each broker's
module reads the way its broker allows without taking anything:

- ``kafka://`` (:mod:`.kafka`): partitions assigned explicitly, no consumer group joined,
  no offset ever committed;
- ``redis://`` (:mod:`.redis`): ``XRANGE`` / ``XREAD``, never a consumer group;
  ``redis+pubsub://``: a subscription (pub/sub keeps nothing: only what comes);
- ``amqp://`` (:mod:`.rabbitmq`): a stream queue is read as a stream; a classic or quorum
  queue with ``basic.get`` and no acknowledgement, and every message goes back to where it
  was when the browser closes (see that module for what RabbitMQ cannot avoid);
- ``zmq+sub://`` (:mod:`.zmq`): a subscriber takes nothing from anyone; ``zmq+pull://`` is
  refused (a PULL socket takes each message away from the real receiver);
- ``memory://`` and ``file://`` (:mod:`.memory`, :mod:`.file`).

Each module imports its broker's client only when used; a missing one raises
MissingDependencyError naming the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from arroyo.brokers import SCHEMES, BrokerURL, parse_url
from arroyo.browse.base import Browser, Data, Reading, Record
from arroyo.errors import ConfigError

__all__ = ["Browser", "Data", "Reading", "Record", "open_browser"]

MODULES: dict[str, str] = {
    "kafka": "kafka",
    "redis": "redis",
    "rediss": "redis",
    "redis+pubsub": "redis",
    "rediss+pubsub": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "zmq+sub": "zmq",
    "zmq+pull": "zmq",
    "zmq+pub": "zmq",
    "zmq+push": "zmq",
    "memory": "memory",
    "file": "file",
}
"""URL scheme -> module of ``arroyo.browse``."""


def open_browser(
    url: str | BrokerURL, reading: Reading | None = None, options: Mapping[str, Any] | None = None
) -> Browser:
    """A browser for ``url`` (not connected yet: use it with ``async with``).

    ``options`` are settings as next to the URL in a YAML file (TLS, passwords...). Raises
    ConfigError for a URL or option that cannot work, MissingDependencyError when the
    broker's client is not installed.
    """
    parsed = url if isinstance(url, BrokerURL) else parse_url(url)
    name = MODULES.get(parsed.scheme)
    if name is None:  # pragma: no cover - every scheme of arroyo.brokers is listed
        raise ConfigError(f"{parsed}: cannot browse {parsed.scheme}:// (known: {sorted(SCHEMES)})")
    module = importlib.import_module(f"arroyo.browse.{name}")
    browser: Browser = module.browser(parsed, dict(options or {}), reading or Reading())
    return browser
