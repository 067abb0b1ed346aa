"""The viewer's web server (aiohttp), in a thread of its own with its own event loop.

Serving pages and WebSockets never runs on the pipeline's event loop: the pipeline only
calls :meth:`arroyo.view.hub.Hub.offer`, which returns at once from any thread. Routes:

- ``/``, ``/view.js``, ``/view.css``: the page (files of ``arroyo/view/static``, shipped
  in the wheel: no build step, nothing from elsewhere);
- ``/ws?from=SEQ&epoch=E&max_size=N``: the stream, as binary WebSocket messages
  (:mod:`arroyo.view.wire`); ``from`` resumes after a reconnection, ``max_size`` is the
  page's view (the frame is reduced to fit it, up to the server's ``max_size``);
- ``/status``: the counters as JSON (:meth:`arroyo.view.hub.Hub.status`).

Every route refuses (403) a page of another site and, on a loopback address, a name
that is not this machine (:mod:`arroyo.view.origins`; the ``origins`` option).

Each client has a writer task that takes from its own bounded queue
(:mod:`arroyo.view.clients`): a slow client waits on its own socket, and its queue drops
its oldest frames meanwhile. What waits is sent together, in one WebSocket message (a
frame in one of its own). WebSocket compression is off: frames are raw numbers, and
compressing them would cost more than sending them.

One server per address in a process (:func:`acquire`): two publishers of the same
``view://HOST:PORT`` (two blocks of a pipeline) share it, and it stops when the last
one is done with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from importlib.resources import files
from typing import Any

from arroyo._optional import require
from arroyo.errors import ConnectError
from arroyo.runtime.logs import Throttle
from arroyo.runtime.tasks import cancel_and_wait
from arroyo.view.hub import Client, Hub
from arroyo.view.origins import parse_origins, refusal
from arroyo.view.settings import ViewSettings
from arroyo.view.wire import pack

web = require("aiohttp.web", "view", "The live viewer (arroyo view, view:// URLs)")
# numpy (which reduces the frames) is imported with the server, before the pipeline runs,
# not at the first frame: an import holds the GIL, so the pipeline would stall for it.
require("numpy", "view", "The live viewer (arroyo view, view:// URLs)")

log = logging.getLogger("arroyo.view")

STATIC = {
    "/": ("index.html", "text/html"),
    "/view.js": ("view.js", "text/javascript"),
    "/view.css": ("view.css", "text/css"),
}
"""Path -> file of ``arroyo/view/static`` and its content type."""

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
TOGETHER = 1 << 16
"""Bytes of small items sent together in one WebSocket message."""
CLOSE_TIMEOUT = 2.0
"""Seconds a closing WebSocket waits for the page's answer (a stalled page never
answers)."""


def _static() -> dict[str, tuple[bytes, str]]:
    folder = files("arroyo.view") / "static"
    return {
        path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in STATIC.items()
    }


class ViewServer:
    """A viewer's HTTP and WebSocket server on ``host:port`` (port 0: a free one, which
    :attr:`port` tells once started). :meth:`start` and :meth:`stop` wait (call them in
    a thread from async code); :attr:`hub` is what to feed."""

    def __init__(self, host: str, port: int, settings: ViewSettings | None = None) -> None:
        self.host = host
        self.port = port
        self.settings = settings or ViewSettings()
        self.hub: Hub
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._sockets: set[Any] = set()
        self._pages = _static()
        self._origins = parse_origins(self.settings.origins)
        self._refused = Throttle()

    @property
    def url(self) -> str:
        """The page's address (``127.0.0.1`` for a server on every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Listen; return once listening. Raises ConnectError when the address cannot be
        listened on (in use, not this machine's)."""
        self._thread = threading.Thread(
            target=self._main, name=f"arroyo-view-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise ConnectError(f"view://{self.host}:{self.port}: the server did not start")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise self._error

    def stop(self) -> None:
        """Close every connection and stop listening; return once done."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        self.hub.close()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._stop_now)
        thread.join(STOP_TIMEOUT)

    def _stop_now(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self.hub = Hub(self.settings, loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # never leave start() waiting
            self._error = self._error or exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()

        async def checked(request: Any, handler: Any) -> Any:
            return await self._checked(request, handler)

        app = web.Application(middlewares=[web.middleware(checked)])
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/status", self._status)
        for path in self._pages:
            app.router.add_get(path, self._page)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            try:
                await site.start()
            except OSError as exc:
                self._error = ConnectError(
                    f"view://{self.host}:{self.port}: cannot listen there: "
                    f"{exc.strerror or exc} (give another port: view://HOST:PORT, --port)"
                )
                self._ready.set()
                return
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            log.info("view: serving on %s", self.url)
            ticker = asyncio.create_task(self._tick())
            await self._stopping.wait()
            ticker.cancel()
            closing = [s.close(code=1001, message=b"server stopping") for s in self._sockets]
            await asyncio.gather(*closing, return_exceptions=True)
        finally:
            await runner.cleanup()
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in left:  # the hub's, and writers of pages that did not answer
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            self.hub.sample()
            await asyncio.sleep(self.settings.status_interval)

    async def _checked(self, request: Any, handler: Any) -> Any:
        """Refuse (403) a request from another site's page, or, on a loopback address,
        one for a name that is not this machine (:mod:`arroyo.view.origins`)."""
        headers = request.headers
        problem = refusal(headers.get("Host"), headers.get("Origin"), self.host, self._origins)
        if problem is not None:
            self._refused(
                log,
                logging.WARNING,
                problem,
                "view: %s %s: %s",
                request.method,
                request.path,
                problem,
            )
            raise web.HTTPForbidden(text=problem)
        return await handler(request)

    async def _page(self, request: Any) -> Any:
        body, kind = self._pages[request.path]
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})

    async def _status(self, request: Any) -> Any:
        return web.json_response(self.hub.status())

    async def _socket(self, request: Any) -> Any:
        query = request.query
        try:
            resume = int(query["from"]) if "from" in query else None
            max_size = int(query.get("max_size", self.settings.max_size))
        except ValueError:
            raise web.HTTPBadRequest(text="from and max_size must be integers") from None
        ws = web.WebSocketResponse(
            compress=False, heartbeat=30.0, max_msg_size=1 << 16, timeout=CLOSE_TIMEOUT
        )
        await ws.prepare(request)
        client = self.hub.join(max(16, max_size), resume, query.get("epoch"))
        self._sockets.add(ws)
        writer = asyncio.create_task(self._write(ws, client))
        try:
            async for _ in ws:  # the page sends nothing the server needs
                pass
        finally:
            try:
                with contextlib.suppress(Exception):  # the writer's end, however it came
                    await cancel_and_wait(writer)
            finally:
                self.hub.leave(client)
                self._sockets.discard(ws)
        return ws

    async def _write(self, ws: Any, client: Client) -> None:
        """Send ``client`` its queue, and the counters every ``status_interval``: what
        waits is sent together in one WebSocket message (a frame alone: it is large)."""
        interval = self.settings.status_interval
        due = time.monotonic()
        queue = client.queue
        try:
            while not ws.closed:
                item = await queue.get(max(0.0, due - time.monotonic()))
                parts = [] if item is None else [item.data]
                size = 0 if item is None else item.size
                while size < TOGETHER and (item := queue.peek()) is not None:
                    if item.size >= TOGETHER and parts:
                        break  # a frame: in a message of its own
                    queue.get_nowait()
                    parts.append(item.data)
                    size += item.size
                if time.monotonic() >= due:
                    parts.append(pack(self.hub.status(client)))
                    due = time.monotonic() + interval
                if parts:
                    await ws.send_bytes(parts[0] if len(parts) == 1 else b"".join(parts))
        except (ConnectionError, RuntimeError) as exc:  # the client went away
            log.debug("view: a client went away: %s", exc)
            with contextlib.suppress(Exception):
                await ws.close()


_SERVERS: dict[tuple[str, int], tuple[ViewServer, int]] = {}
_LOCK = threading.Lock()


def acquire(host: str, port: int, settings: ViewSettings | None = None) -> ViewServer:
    """The server on ``host:port`` in this process, started now when there is none (the
    first caller's settings hold; port 0: a new server on a free port, which
    ``acquire(host, server.port)`` then shares). Waits; :func:`release` it when done."""
    with _LOCK:
        found = _SERVERS.get((host, port)) if port else None
        if found is not None:
            server, users = found
            _SERVERS[(host, port)] = (server, users + 1)
            return server
        server = ViewServer(host, port, settings)
        server.start()
        _SERVERS[(host, server.port)] = (server, 1)
        return server


def release(server: ViewServer) -> None:
    """Done with ``server``; the last user stops it."""
    key = (server.host, server.port)
    with _LOCK:
        found = _SERVERS.get(key)
        if found is None or found[0] is not server:
            return
        users = found[1] - 1
        if users:
            _SERVERS[key] = (server, users)
            return
        del _SERVERS[key]
    server.stop()
