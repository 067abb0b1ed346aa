"""``view://HOST:PORT``: a publisher that shows a pipeline's outputs in the browser.

It confirms every message at once: :meth:`ViewPublisher.send` hands the message to the
viewer's hub (:meth:`arroyo.view.hub.Hub.offer`, which never waits) and returns a done
future, so a viewer never slows or blocks the pipeline, whatever its clients do. What a
client is too slow for is dropped for that client only, and counted on its page.

The server starts with the publisher (:meth:`ViewPublisher.start`) and stops when the
last publisher of its address in the process closes (the blocks of one pipeline share
it). With ``arroyo run --workers N``, worker ``i`` serves on ``PORT + i`` (as
``--metrics-port`` does), since the workers cannot share one port.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from arroyo.message import Message
from arroyo.runtime.logs import WORKER_ENV
from arroyo.runtime.publisher import PipelinedPublisher
from arroyo.view.settings import ViewSettings

if TYPE_CHECKING:
    from arroyo.view.server import ViewServer


class ViewPublisher(PipelinedPublisher):
    """Shows what it is sent on the viewer at ``host:port`` (see the module docstring)."""

    def __init__(self, host: str, port: int, settings: ViewSettings | None = None) -> None:
        self.host = host
        self.port = port
        self.settings = settings or ViewSettings()
        self.server: ViewServer | None = None

    @property
    def name(self) -> str:
        return f"view://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start serving (or join the server of this address); raises ConnectError when
        the address cannot be listened on."""
        from arroyo.view.server import acquire

        if self.server is None:
            self.server = await asyncio.to_thread(acquire, self.host, self.port, self.settings)

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Hand ``message`` to the viewer; the future is already done (``wire`` is not
        needed: the viewer shows messages, not bytes)."""
        server = self.server
        if server is None:
            raise RuntimeError(f"{self.name}: send() before start()")
        server.hub.offer(message)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def close(self) -> None:
        """Done with the server (the last publisher of its address stops it)."""
        from arroyo.view.server import release

        server, self.server = self.server, None
        if server is not None:
            await asyncio.to_thread(release, server)


def worker_port(port: int) -> int:
    """``port`` for this process: ``port + i`` in worker ``i`` of ``arroyo run --workers``."""
    worker = os.environ.get(WORKER_ENV)
    return port + int(worker) if worker and worker.isdigit() and port else port
