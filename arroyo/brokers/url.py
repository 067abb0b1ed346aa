"""A broker URL, parsed (``kafka://HOST:PORT/TOPIC?group=G`` and the others of the table
"Broker URLs" in README.md). Which schemes exist is the connectors' business
(:func:`arroyo.brokers.parse_url` checks that, and which of them take several servers);
here, only the syntax."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from arroyo.errors import ConfigError
from arroyo.runtime.logs import redact

Server = tuple[str, "int | None"]
"""One server of a URL's address: host (without brackets for IPv6) and port (None when
the URL gives none)."""


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL. ``path`` has no leading slash; ``query`` holds its parameters.

    ``servers`` is every server of the address in the order written: one for
    ``HOST:PORT``, several for a list (``kafka://h1:9092,h2:9092,h3:9092/TOPIC``, Kafka's
    bootstrap servers); ``host`` and ``port`` are those of the first."""

    raw: str
    scheme: str
    host: str | None
    port: int | None
    path: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    query: dict[str, str] = field(default_factory=dict)
    servers: tuple[Server, ...] = ()

    def __str__(self) -> str:
        return redact(self.raw)

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


def split_url(url: str) -> BrokerURL:
    """The parts of ``url`` (any scheme); ConfigError for a malformed one (a bad port, an
    empty server in a list of servers)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    address = parts.netloc.rpartition("@")[2]
    host: str | None
    if "," in address:
        servers = tuple(_server(url, one) for one in address.split(","))
        host, port = servers[0]
    else:
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad port in {redact(url)!r}: {exc}") from None
        host = parts.hostname
        if scheme.startswith("zmq") and parts.netloc.startswith("*"):
            host = "*"
        servers = ((host, port),) if host else ()
    return BrokerURL(
        raw=url,
        scheme=scheme,
        host=host,
        port=port,
        path=unquote(parts.path.lstrip("/")),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        query=dict(parse_qsl(parts.query)),
        servers=servers,
    )


def _server(url: str, text: str) -> Server:
    """``HOST[:PORT]`` or ``[IPV6][:PORT]``, one item of a list of servers."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ConfigError(f"bad server {text!r} in {redact(url)!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError(
            f"empty server in {redact(url)!r}: write the servers as HOST:PORT,HOST:PORT"
        )
    if not port_text:
        return host.lower(), None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"bad port {port_text!r} of server {host!r} in {redact(url)!r}")
    return host.lower(), int(port_text)
