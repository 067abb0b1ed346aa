"""A broker URL, parsed (``kafka://HOST:PORT/TOPIC?group=G`` and the others of the table
"Broker URLs" in README.md). Which schemes exist is the connectors' business
(:func:`arroyo.brokers.parse_url` checks that); here, only the syntax."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from arroyo.errors import ConfigError
from arroyo.runtime.logs import redact


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


def split_url(url: str) -> BrokerURL:
    """The parts of ``url`` (any scheme); ConfigError for a malformed one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
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
