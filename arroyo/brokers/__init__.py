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

URLs (the table "Broker URLs" in README.md): ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=G``,
``redis://HOST:PORT/STREAM?group=G``, ``redis+pubsub://HOST:PORT/CHANNEL``,
``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q``, ``zmq+pull://HOST:PORT`` (and
``zmq+push``, ``zmq+sub``, ``zmq+pub``; ``*`` binds), ``memory://NAME``,
``file:///path/to/file.avro``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arroyo.brokers.url import BrokerURL, split_url
from arroyo.errors import ConfigError
from arroyo.runtime.logs import redact

if TYPE_CHECKING:
    from arroyo.codec import Codec
    from arroyo.runtime.listener import Listener
    from arroyo.runtime.parser import Parser
    from arroyo.runtime.publisher import Publisher


__all__ = ["BrokerURL", "Tls", "open_listener", "open_publisher", "parse_url", "split_url"]


def parse_url(url: str) -> BrokerURL:
    """Parse ``url``; raise ConfigError for an unknown scheme, a malformed URL, or several
    servers (``h1:9092,h2:9092``) where the connector takes one."""
    from arroyo.brokers.connector import CONNECTORS

    parsed = split_url(url)
    if not CONNECTORS.knows(parsed.scheme):
        raise ConfigError(
            f"unknown URL scheme {parsed.scheme or '(none)'!r} in {redact(url)!r}; "
            f"known: {', '.join(CONNECTORS.schemes())}"
        )
    if len(parsed.servers) > 1 and not CONNECTORS.for_scheme(parsed.scheme).several_servers:
        raise ConfigError(
            f"{parsed}: a {parsed.scheme}:// URL takes one HOST:PORT, not a list of "
            f"{len(parsed.servers)} servers"
        )
    return parsed


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
