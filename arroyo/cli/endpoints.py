"""The HTTP server of ``--metrics-port``: ``/metrics`` for Prometheus, ``/healthz`` and
``/readyz`` for Kubernetes probes (and anyone with curl).

- ``/metrics``: every ``arroyo_*`` metric (:mod:`arroyo.runtime.metrics`), in the
  Prometheus text format (what ``prometheus_client`` serves; ``/`` too).
- ``/healthz``: 200 ``ok`` while the process's event loop answers within
  :data:`~arroyo.runtime.health.ANSWER_WITHIN` seconds (also while it is starting);
  503 with the reason when it does not (blocked, or ended): restart the process.
- ``/readyz``: 200 ``ready`` while every Block runs and can reach its brokers; 503 with
  one line per reason otherwise (starting, stopping, a listener not connected, a
  destination whose publishes fail and are being retried:
  :mod:`arroyo.runtime.health`).

Requests are served in threads of their own; the answers are computed on the event
loop. Nothing is logged per request.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from arroyo.runtime.health import Health

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing (probes come every few seconds)."""


def application(health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application: ``/healthz`` and ``/readyz`` from ``health``, everything
    else from Prometheus' exposition (``/metrics``)."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok, line = health.alive()
            return _answer(start_response, ok, [line])
        if path == "/readyz":
            ok, reasons = health.ready()
            return _answer(start_response, ok, reasons or ["ready"])
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


def _answer(start_response: StartResponse, ok: bool, lines: list[str]) -> list[bytes]:
    body = "".join(f"{line}\n" for line in lines).encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


class Endpoints:
    """The server, serving in a daemon thread from :func:`serve` until :meth:`close`."""

    def __init__(self, server: ThreadingWSGIServer, health: Health) -> None:
        self.server = server
        self.health = health
        self.port: int = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, name="arroyo-endpoints", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def serve(host: str, port: int, health: Health | None = None) -> Endpoints:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (an IPv6
    address works too; port 0: any free port, see ``Endpoints.port``). Raises OSError
    when the address cannot be bound."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    health = health if health is not None else Health()
    server = make_server(str(address[0]), port, application(health), Server, handler_class=_Quiet)
    return Endpoints(server, health)
