"""A client of the viewer's WebSocket in Python, reading what a page reads.

For scripts that watch a viewer's counters, and for the tests and the benchmark::

    async with ViewClient("http://127.0.0.1:8080/") as client:
        await client.read(until=lambda header: header["type"] == "stop")
        print(client.status["received"], [h["seq"] for h in client.messages])

``delay`` makes a deliberately slow reader (it waits that long after each message).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from arroyo._optional import require
from arroyo.view import PURPOSE
from arroyo.view.wire import unpack_all

aiohttp = require("aiohttp", "view", PURPOSE)


class ViewClient:
    """One connection to a viewer at ``url`` (the page's address): ``hello`` is the
    first header received, ``messages`` the headers of the run's messages (``start``,
    ``event``, ``stop``) in the order received, ``bodies`` their frames by viewer seq
    (when ``keep_bodies``), ``status`` the last counters received."""

    def __init__(
        self,
        url: str,
        *,
        resume: int | None = None,
        epoch: str | None = None,
        max_size: int = 1024,
        delay: float = 0.0,
        keep_bodies: bool = False,
    ) -> None:
        query = f"max_size={max_size}"
        if resume is not None:
            query += f"&from={resume}&epoch={epoch or ''}"
        self.address = url.replace("http", "ws", 1).rstrip("/") + "/ws?" + query
        self.delay = delay
        self.keep_bodies = keep_bodies
        self.hello: dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.bodies: dict[int, bytes] = {}
        self.images = 0
        """Messages received with a frame."""
        self.packets = 0
        """WebSocket messages received (each holds one item or several)."""
        self._session: Any = None
        self._socket: Any = None

    async def connect(self) -> None:
        """Open the WebSocket (raises aiohttp's errors when the viewer does not answer)."""
        self._session = aiohttp.ClientSession()
        try:
            self._socket = await self._session.ws_connect(self.address, max_msg_size=0)
        except BaseException:
            await self._session.close()
            raise

    async def read(
        self, until: Callable[[dict[str, Any]], bool] | None = None, within: float = 60.0
    ) -> None:
        """Read until a header makes ``until`` true (None: until the server closes);
        raises TimeoutError after ``within`` seconds, ConnectionError when the connection
        ends first (with ``until``)."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.address}: not seen within {within} s")
            message = await self._socket.receive(timeout=left)
            if message.type != aiohttp.WSMsgType.BINARY:
                if until is None:
                    return
                raise ConnectionError(f"{self.address}: closed ({message.type.name})")
            self.packets += 1
            for header, body in unpack_all(message.data):
                kind = header["type"]
                if kind == "hello":
                    self.hello = header
                elif kind == "status":
                    self.status = header
                else:
                    self.messages.append(header)
                    if body:
                        self.images += 1
                        if self.keep_bodies:
                            self.bodies[header["seq"]] = body
                if until is not None and until(header):
                    return  # (what came with it in the same message is left unread)
            if self.delay:
                await asyncio.sleep(self.delay)

    async def close(self) -> None:
        """Close the connection."""
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ViewClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
