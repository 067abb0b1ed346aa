"""What a broker connector declares, and the registry of connectors.

Each broker package (``arroyo/brokers/<name>/``) ends its ``__init__.py`` with one
:class:`Connector`: the URL schemes it serves, the extra to install, its factories and
its capabilities. Arroyo's own connectors and those of other packages are found the same
way, by name, through the entry point group ``arroyo.connectors``::

    [project.entry-points."arroyo.connectors"]
    nats = "arroyo_nats:CONNECTOR"

The registry imports a connector's package only when one of its schemes is used, so the
core runs without any broker client installed; a missing client is a
MissingDependencyError naming the extra, raised by the package when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from arroyo.errors import ConfigError
from arroyo.plugins import import_object

if TYPE_CHECKING:
    from arroyo.brokers import BrokerURL
    from arroyo.browse.base import Browser, Reading
    from arroyo.codec import Codec
    from arroyo.runtime.listener import Listener
    from arroyo.runtime.parser import Parser
    from arroyo.runtime.publisher import Publisher

ListenerFactory = Callable[["BrokerURL", dict[str, Any], "Parser"], "Listener"]
"""``listener(url, options, parser)``: checks every option (ConfigError naming it and the
broker), connects to nothing."""

PublisherFactory = Callable[["BrokerURL", dict[str, Any], "Codec"], "Publisher"]
"""``publisher(url, options, codec)``: the same, for a publisher."""

BrowserFactory = Callable[["BrokerURL", dict[str, Any], "Reading"], "Browser"]
"""``browser(url, options, reading)``: a reader that changes nothing (``arroyo tail``)."""

ExactlyOnce = Callable[["Listener", list["Publisher"], "Publisher | None"], None]
"""Sets up exactly-once delivery between a listener and its publishers (raises
ConfigError when they cannot take part)."""

Probe = Callable[[Any, float], Any]
"""``probe(listener_or_publisher, seconds)``: an awaitable giving ``(status, detail)``:
reach the broker without reading, joining or creating anything (``arroyo check
--connect``)."""


@dataclass(frozen=True)
class Connector:
    """One broker connector, as the rest of Arroyo sees it.

    - ``name``: the broker (``kafka``); its loggers are ``arroyo.brokers.<name>``.
    - ``schemes``: the URL schemes it serves (``kafka``; ``redis``, ``rediss``...).
    - ``extra``: the optional dependency that installs its client (``pip install
      'arroyo-streams[<extra>]'``), or None when it needs none.
    - ``listener`` / ``publisher``: the factories (None: it cannot be one).
    - ``browser``: how ``arroyo tail`` reads it without consuming (None: it cannot).
    - ``probe``: how ``arroyo check --connect`` reaches it (None: nothing to try).
    - ``exactly_once``: its transactions hook (None: at-least-once only).
    - ``acknowledges``: True when a message is acknowledged to the broker (redelivered
      when it is not); False for at-most-once sources (ZeroMQ, pub/sub).
    - ``several_servers``: True when its URLs may list several servers
      (``kafka://h1:9092,h2:9092/TOPIC``: the addresses to bootstrap from); a URL with
      several is refused for the others.
    """

    name: str
    schemes: tuple[str, ...]
    extra: str | None = None
    listener: ListenerFactory | None = None
    publisher: PublisherFactory | None = None
    browser: BrowserFactory | None = None
    probe: Probe | None = None
    exactly_once: ExactlyOnce | None = None
    acknowledges: bool = True
    several_servers: bool = False
    notes: Mapping[str, str] = field(default_factory=dict)
    """Per scheme, what it does not do (``redis+pubsub``: at-most-once), for docs."""


BUILTIN: dict[str, str] = {
    "kafka": "arroyo.brokers.kafka:CONNECTOR",
    "redis": "arroyo.brokers.redis:CONNECTOR",
    "rabbitmq": "arroyo.brokers.rabbitmq:CONNECTOR",
    "zmq": "arroyo.brokers.zmq:CONNECTOR",
    "memory": "arroyo.brokers.memory:CONNECTOR",
    "file": "arroyo.brokers.file:CONNECTOR",
    "view": "arroyo.view:CONNECTOR",
}
"""Arroyo's connectors: name -> ``module:attr`` (imported only when used)."""

BUILTIN_SCHEMES: dict[str, str] = {
    "kafka": "kafka",
    "redis": "redis",
    "rediss": "redis",
    "redis+pubsub": "redis",
    "rediss+pubsub": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "zmq+pub": "zmq",
    "zmq+sub": "zmq",
    "zmq+push": "zmq",
    "zmq+pull": "zmq",
    "memory": "memory",
    "file": "file",
    "view": "view",
}
"""The schemes of Arroyo's connectors, known without importing them (URLs are checked
before any client library is imported)."""


class Connectors:
    """Every connector by URL scheme: Arroyo's own, then those of entry points (a third
    party may not take over one of Arroyo's schemes)."""

    def __init__(self) -> None:
        self._third_party: dict[str, Any] | None = None

    def _entry_points(self) -> dict[str, Any]:
        """Third-party connectors, loaded once: scheme -> Connector."""
        if self._third_party is None:
            found: dict[str, Any] = {}
            for entry in entry_points(group="arroyo.connectors"):
                if entry.name in BUILTIN:
                    continue
                connector = entry.load()
                if not isinstance(connector, Connector):
                    raise ConfigError(
                        f"entry point {entry.name!r} of group arroyo.connectors is "
                        f"{type(connector).__name__}, not an arroyo Connector"
                    )
                for scheme in connector.schemes:
                    if scheme not in BUILTIN_SCHEMES:
                        found.setdefault(scheme, connector)
            self._third_party = found
        return self._third_party

    def schemes(self) -> list[str]:
        """Every URL scheme a connector serves."""
        return sorted(set(BUILTIN_SCHEMES) | set(self._entry_points()))

    def knows(self, scheme: str) -> bool:
        """True when a connector serves ``scheme`` (Arroyo's are known without importing
        anything)."""
        return scheme in BUILTIN_SCHEMES or scheme in self._entry_points()

    def for_scheme(self, scheme: str) -> Connector:
        """The connector of ``scheme`` (its package is imported now: a missing client
        library raises MissingDependencyError naming the extra)."""
        name = BUILTIN_SCHEMES.get(scheme)
        if name is None:
            third = self._entry_points().get(scheme)
            if third is None:
                raise ConfigError(
                    f"unknown URL scheme {scheme!r}; known: {', '.join(self.schemes())}"
                )
            connector: Connector = third
            return connector
        builtin: Connector = import_object(BUILTIN[name])  # (from sys.modules once imported)
        return builtin


CONNECTORS = Connectors()
"""The registry every part of Arroyo asks."""
