"""Connectors: one package per broker (``memory`` and ``file`` are modules), all of the
same shape.

Each connector ``arroyo.brokers.<broker>`` provides a Listener and a Publisher class and
two factories, ``listener(url, options, parser)`` and ``publisher(url, options, codec)``,
which check their options (raising ConfigError) but do not connect: connecting happens
in a listener's ``connect()`` (or ``start()``) and a publisher's ``start()``, bounded by
the ``connect_timeout`` option of every network connector (see
:mod:`arroyo.brokers.connecting`). It declares itself as a
:class:`~arroyo.brokers.connector.Connector`. Importing one whose client library is
missing raises MissingDependencyError naming the extra to install.

URLs (the table "Broker URLs" in README.md): ``kafka://HOST:PORT/TOPIC?group=G``,
``redis://HOST:PORT/STREAM?group=G``, ``redis+pubsub://HOST:PORT/CHANNEL``,
``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q``, ``zmq+pull://HOST:PORT`` (and
``zmq+push``, ``zmq+sub``, ``zmq+pub``; ``*`` binds), ``memory://NAME``,
``file:///path/to/file.avro``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from arroyo.errors import ConfigError
from arroyo.runtime.logs import redact

if TYPE_CHECKING:
    from arroyo.codec import Codec
    from arroyo.runtime.listener import Listener
    from arroyo.runtime.parser import Parser
    from arroyo.runtime.publisher import Publisher


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL. ``path`` has no leading slash; ``query`` holds its parameters."""

    raw: str
    scheme: str
    host: str | None
    port: int | None
    path: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    query: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return redact(self.raw)

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> BrokerURL:
    """Parse ``url``; raise ConfigError for an unknown scheme or a malformed URL."""
    from arroyo.brokers.connector import CONNECTORS

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not CONNECTORS.knows(scheme):
        raise ConfigError(
            f"unknown URL scheme {scheme or '(none)'!r} in {redact(url)!r}; "
            f"known: {', '.join(CONNECTORS.schemes())}"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad port in {redact(url)!r}: {exc}") from None
    host = parts.hostname
    if scheme.startswith("zmq") and parts.netloc.startswith("*"):
        host = "*"
    return BrokerURL(
        raw=url,
        scheme=scheme,
        host=host,
        port=port,
        path=unquote(parts.path.lstrip("/")),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        query=dict(parse_qsl(parts.query)),
    )


def open_listener(
    url: str | BrokerURL, options: Mapping[str, Any] | None = None, parser: Parser | None = None
) -> Listener:
    """A listener for ``url``; ``options`` are the settings next to it in the YAML."""
    from arroyo.brokers.connector import CONNECTORS
    from arroyo.runtime.parser import AvroParser

    parsed = url if isinstance(url, BrokerURL) else parse_url(url)
    factory = CONNECTORS.for_scheme(parsed.scheme).listener
    if factory is None:
        raise ConfigError(f"{parsed}: a {parsed.scheme}:// URL cannot be a listener")
    return factory(parsed, dict(options or {}), parser or AvroParser())


def open_publisher(
    url: str | BrokerURL, options: Mapping[str, Any] | None = None, codec: Codec | None = None
) -> Publisher:
    """A publisher for ``url``; ``options`` are the settings next to it in the YAML."""
    from arroyo.brokers.connector import CONNECTORS
    from arroyo.codec import default_codec

    parsed = url if isinstance(url, BrokerURL) else parse_url(url)
    factory = CONNECTORS.for_scheme(parsed.scheme).publisher
    if factory is None:
        raise ConfigError(f"{parsed}: a {parsed.scheme}:// URL cannot be a publisher")
    return factory(parsed, dict(options or {}), codec or default_codec())


@dataclass(frozen=True)
class Tls:
    """A connection's TLS settings: the CA file (None: the system's CAs), the client
    certificate and key (None: no client certificate), whether the server is verified."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """An SSL context with this CA (or the system's) and client certificate."""
        context = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context
