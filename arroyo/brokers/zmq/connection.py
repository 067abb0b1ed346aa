"""How a ZeroMQ socket reaches its peer: the URL's address, bind or connect, and the probe
of ``arroyo check --connect``.

ZeroMQ has no broker and no handshake: a connecting socket needs no peer when it starts
(ZeroMQ connects, and reconnects, by itself), and a binding socket only needs its port.
So nothing waits for a connection and there is no ``connect_timeout``: what can fail at
start is the address itself (a port in use, a host that is not this machine's), a
:class:`~arroyo.errors.ConnectError` of one line.
"""

from __future__ import annotations

from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.zmq import zmq
from arroyo.errors import ConfigError, ConnectError

RECEIVING = {"zmq+pull": "PULL", "zmq+sub": "SUB"}
"""The schemes of listeners, and their socket kinds."""
SENDING = {"zmq+push": "PUSH", "zmq+pub": "PUB"}
"""The schemes of publishers, and their socket kinds."""


def address(url: BrokerURL, bind: bool) -> tuple[str, bool]:
    """``(tcp://HOST:PORT, bind?)`` for a zmq URL; ConfigError when it is not usable.

    ``*`` as host always binds; port 0 (binding only) takes a free port.
    """
    if url.path:
        raise ConfigError(
            f"{url}: a ZeroMQ URL has no path (found {url.path!r}); "
            "a SUB topic goes in the query: ?topic=NAME"
        )
    if not url.host:
        raise ConfigError(f"{url}: a ZeroMQ URL needs a host, as in zmq+pull://127.0.0.1:5555")
    bind = bind or url.host == "*"
    if url.port is None or (url.port == 0 and not bind):
        raise ConfigError(
            f"{url}: a ZeroMQ URL needs a port, as in zmq+pull://127.0.0.1:5555"
            + (" (port 0 only when binding)" if url.port == 0 else "")
        )
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = "*" if url.port == 0 else str(url.port)
    return f"tcp://{host}:{port}", bind


def open_socket(
    context: Any, kind: str, url: BrokerURL, bind: bool, options: dict[int, int]
) -> tuple[Any, str]:
    """A socket of ``kind`` (``PULL``...) bound or connected to ``url``, with socket
    ``options`` set first; returns it and its endpoint (the bound port when it was 0).
    Raises ConnectError (one line) when ZeroMQ refuses the address (a port in use)."""
    target, binding = address(url, bind)
    socket = context.socket(getattr(zmq, kind))
    try:
        for option, value in options.items():
            socket.setsockopt(option, value)
        if binding:
            socket.bind(target)
            endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        else:
            socket.connect(target)
            endpoint = target
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        how = "bind" if binding else "connect to"
        raise ConnectError(f"{url}: cannot {how} {target}: {exc}") from None
    return socket, endpoint


def display_name(url: BrokerURL, endpoint: str | None = None) -> str:
    """``scheme://host:port`` for logs, with the real port once a port 0 is bound."""
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host
    port = endpoint.rsplit(":", 1)[-1] if endpoint and url.port == 0 else url.port
    return f"{url.scheme}://{host}:{port}"


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """ZeroMQ has no handshake to try: a socket connects when a peer is there."""
    return "skipped", "ZeroMQ has no handshake to try (it connects when a peer is there)"
