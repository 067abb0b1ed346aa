"""Browse a ZeroMQ publisher (``arroyo tail``): ``zmq+sub://HOST:PORT`` (``?topic=PREFIX``).

A SUB socket takes nothing from anyone: every subscriber gets its own copy, so looking
changes nothing. ZeroMQ keeps nothing either: the browser shows what is published from
the moment it is connected (it can only start at the end, and stopping at the end stops
at once). ``zmq+pull://`` is refused: a PULL socket takes each message away from the
receiver it was meant for. Options: those of
:class:`~arroyo.brokers.zmq.settings.ZmqBrowserSettings`; a listener's other options
(``copy_threshold``, ``run_timeout``) are ignored with a warning, so a listener's URL can
be pasted as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.zmq import zmq, zmq_asyncio
from arroyo.brokers.zmq.connection import address, open_socket
from arroyo.brokers.zmq.settings import ZmqBrowserSettings, ZmqListenerSettings
from arroyo.browse.base import Browser, Data, Reading, Record, browse_settings
from arroyo.errors import ConfigError

LISTENING_ONLY = sorted(set(ZmqListenerSettings.known()) - set(ZmqBrowserSettings.known()))
"""A listener's options that mean nothing to a reader (ignored, with a warning)."""


class ZmqSubBrowser(Browser):
    """Subscribes to a PUB socket and shows what it publishes from now on."""

    def __init__(self, url: BrokerURL, reading: Reading, settings: ZmqBrowserSettings) -> None:
        self.url = url
        self.reading = reading
        self.topics = list(settings.topic)
        self.bind = settings.bind
        self.rcvhwm = settings.rcvhwm
        self._socket: Any = None

    @property
    def name(self) -> str:
        return f"{self.url.scheme}://{self.url.host}:{self.url.port}"

    async def open(self) -> None:
        """Connect (or bind) and subscribe."""
        options = {zmq.RCVHWM: self.rcvhwm, zmq.LINGER: 0}
        context = zmq_asyncio.Context.instance()
        self._socket, _ = open_socket(context, "SUB", self.url, self.bind, options)
        for topic in self.topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())

    async def records(self) -> AsyncGenerator[Record, None]:
        if self.reading.exit_at_end:
            return  # ZeroMQ keeps nothing: nothing was there at the start
        count = 0
        while True:
            frames = await self._socket.recv_multipart()
            count += 1
            data: Data = frames[0] if len(frames) == 1 else list(frames)
            yield Record(data, {"url": self.name, "message": count})
            await asyncio.sleep(0)

    async def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                socket.close(linger=0)


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> ZmqSubBrowser:
    """``zmq+sub://HOST:PORT?topic=PREFIX``; every other zmq scheme is refused, saying why."""
    if url.scheme == "zmq+pull":
        raise ConfigError(
            f"{url}: a PULL socket takes each message away from the receiver it was meant for, "
            "so tail does not read one: tail a zmq+sub:// publisher, or the broker the "
            "frames are bridged to"
        )
    if url.scheme != "zmq+sub":
        raise ConfigError(f"{url}: {url.scheme}:// sends; tail reads zmq+sub://")
    if reading.from_end is False:
        raise ConfigError(
            f"{url}: ZeroMQ keeps nothing, so there is no beginning to read from: tail shows "
            "what is published from now on (leave out --from-beginning)"
        )
    settings = browse_settings(ZmqBrowserSettings, url, options, LISTENING_ONLY)
    address(url, settings.bind)
    return ZmqSubBrowser(url, reading, settings)
