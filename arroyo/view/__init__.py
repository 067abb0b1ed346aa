"""Watch a stream live in the browser: ``arroyo view URL`` and ``view://HOST:PORT``.

``arroyo view URL`` reads any source Arroyo reads and serves a page that shows it
(:mod:`arroyo.view.source`); ``view://HOST:PORT`` in a pipeline's ``publishers`` shows
its outputs (:mod:`arroyo.view.publisher`). The page (``static/``: plain HTML and
JavaScript, shipped in the wheel) shows the run's Start, the newest frame, plots of
the metadata fields picked, rates and counters, and the run's Stop.

How: the pipeline hands messages to a :class:`~arroyo.view.hub.Hub` that never waits;
a web server in its own thread (:mod:`arroyo.view.server`, aiohttp: the ``view`` extra)
sends each client, over a WebSocket, binary messages (:mod:`arroyo.view.wire`) from a
bounded queue of its own (:mod:`arroyo.view.clients`), with frames reduced to the view
on the server (:mod:`arroyo.view.image`).

This package imports without aiohttp; making a viewer without it raises
MissingDependencyError naming the extra.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from arroyo._optional import require
from arroyo.brokers.connector import Connector
from arroyo.errors import ConfigError

if TYPE_CHECKING:
    from arroyo.brokers import BrokerURL
    from arroyo.codec import Codec
    from arroyo.view.publisher import ViewPublisher

PURPOSE = "The live viewer (arroyo view, view:// URLs)"
DEFAULT_PORT = 8080


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> ViewPublisher:
    """``view://HOST:PORT?max_size=1024&frames=4...`` (options: :mod:`arroyo.view.settings`;
    ``*`` or ``0.0.0.0`` as HOST: every interface; default 127.0.0.1, port 8080)."""
    from arroyo.view.publisher import ViewPublisher, worker_port
    from arroyo.view.settings import ViewSettings

    settings = ViewSettings.from_url(url, options)
    if url.path:
        raise ConfigError(f"{url}: a view URL has no path: view://HOST:PORT")
    require("aiohttp", "view", PURPOSE)
    host = "0.0.0.0" if url.host == "*" else url.host or "127.0.0.1"
    port = url.port if url.port is not None else DEFAULT_PORT
    return ViewPublisher(host, worker_port(port), settings)


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """Whether the viewer could listen on its address (``arroyo check --connect``): the
    port is bound and let go at once."""
    host, port = endpoint.host, endpoint.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probing:
        probing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probing.bind((host, port))
        except OSError as exc:
            return "FAILED", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return "ok", f"{host}:{port} is free to serve the page on"


CONNECTOR = Connector(
    name="view",
    schemes=("view",),
    extra="view",
    publisher=publisher,
    probe=probe,
    notes={"view": "shows outputs in a browser: confirms at once, drops frames for slow pages"},
)
