"""ZeroMQ publishers: ``zmq+push://`` and ``zmq+pub://`` (pyzmq, asyncio).

They send Arroyo's own framing (:meth:`arroyo.codec.Codec.encode`), one frame per
message, for another Arroyo process to read with the ``arroyo`` parser; large messages
are sent without a copy. A confirmation only means the message was handed to the
socket: ZeroMQ tells nothing about delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.zmq import zmq, zmq_asyncio
from arroyo.brokers.zmq.connection import SENDING, address, display_name, open_socket
from arroyo.brokers.zmq.settings import ZmqPublisherSettings
from arroyo.codec import Codec, default_codec
from arroyo.errors import ConfigError
from arroyo.message import Message
from arroyo.runtime import tracing
from arroyo.runtime.publisher import PipelinedPublisher

log = logging.getLogger("arroyo.brokers.zmq")


class ZmqPublisher(PipelinedPublisher):
    """Sends messages in Arroyo's framing, one frame each, on a PUSH or PUB socket.

    Confirmation means the message was handed to the socket (queued for sending):
    ZeroMQ says nothing about delivery. PUSH waits when ``sndhwm`` messages are queued
    (so the Block waits); PUB drops instead. :meth:`close` waits up to ``linger`` ms for
    queued messages to go out.
    """

    def __init__(self, url: BrokerURL, codec: Codec | None, settings: ZmqPublisherSettings) -> None:
        if url.scheme not in SENDING:
            raise ConfigError(f"{url}: a publisher needs zmq+push:// or zmq+pub://")
        address(url, settings.bind)
        self.url = url
        self.codec = codec or default_codec()
        self.kind = SENDING[url.scheme]
        self.sndhwm = settings.sndhwm
        self.bind = settings.bind
        self.linger = settings.linger
        self.endpoint: str | None = None
        self._context: Any = None
        self._socket: Any = None

    @property
    def name(self) -> str:
        return display_name(self.url, self.endpoint)

    async def start(self) -> None:
        """Bind or connect (a connecting socket needs no peer yet). Raises ConnectError
        when the socket cannot bind."""
        self._context = zmq_asyncio.Context()
        try:
            self._socket, self.endpoint = open_socket(
                self._context,
                self.kind,
                self.url,
                self.bind,
                {zmq.SNDHWM: self.sndhwm, zmq.LINGER: self.linger},
            )
        except BaseException:
            self._context.term()
            self._context = None
            raise
        log.info("%s: %s %s", self.name, "bound" if self.bind else "sending to", self.endpoint)

    def send(self, message: Message, wire: bytes | None = None) -> Awaitable[None]:
        """Encode ``message`` and queue it on the socket now; the result completes once
        ZeroMQ took it (at once unless a PUSH socket is at its high-water mark).
        Raises EncodeError at once for a message that cannot be encoded."""
        if self._socket is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        data = self.codec.encode(message, wire)
        if message.trace:  # the trace context in a last frame (arroyo.runtime.tracing)
            sent: Awaitable[None] = self._socket.send_multipart(
                [data, tracing.zmq_frame(message.trace)], copy=False
            )
            return sent
        future: Awaitable[None] = self._socket.send(data, copy=False)
        return future

    async def close(self) -> None:
        """Close the socket, waiting up to ``linger`` ms for queued messages to be sent."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._context is not None:
            context, self._context = self._context, None
            await asyncio.to_thread(context.term)


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> ZmqPublisher:
    """``zmq+push://HOST:PORT`` or ``zmq+pub://HOST:PORT`` (``*`` binds), with the options
    of :class:`~arroyo.brokers.zmq.settings.ZmqPublisherSettings`. Checks them
    (ConfigError naming the option); opens no socket."""
    if url.scheme not in SENDING:
        raise ConfigError(
            f"{url}: {url.scheme}:// receives; a publisher needs zmq+push:// or zmq+pub://"
        )
    return ZmqPublisher(url, codec, ZmqPublisherSettings.from_url(url, options))
