"""What the viewer sends to a page: one binary WebSocket message per thing to show.

A message is a 4-byte big-endian length ``n``, ``n`` bytes of UTF-8 JSON (the header),
then the body: an event's frame as :mod:`arroyo.view.image` makes it (its ``image``
header field says how to read it), or nothing. The header's ``type`` is:

- ``hello``: the first message on a connection: ``epoch`` (this server's run: a page
  that reconnects to another epoch starts afresh), ``seq`` (the last number given),
  ``resumed`` (true: the ``?from=`` asked for is still buffered and follows) and
  ``missed`` (messages asked for that are no longer buffered);
- ``start``, ``event``, ``stop``: a message of the stream, numbered ``seq`` by the viewer
  (1, 2, ...: what ``?from=SEQ`` resumes from), with the message's own fields in
  ``message`` (``stream``, ``seq``, ``id``, ``timestamp``, and ``data`` or ``metadata``);
  an event whose frame this client could not be sent in time has ``image: null`` and
  ``image_dropped: true``, one whose frame could not be read has ``image_error``;
- ``status``: counters and rates (see :meth:`arroyo.view.hub.Hub.status`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

from arroyo.message import Event, Message

_LENGTH = struct.Struct(">I")

MAX_TEXT = 1000
"""Characters of a string value sent (longer ones are cut, with ``...``)."""
MAX_ITEMS = 64
"""Items of a list value sent (the rest is said as ``"... N more"``)."""


def pack(header: Mapping[str, Any], body: bytes | memoryview = b"") -> bytes:
    """One WebSocket message: the length of the JSON header, the header, the body."""
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return b"".join((_LENGTH.pack(len(text)), text, body))


def unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and body of a message made by :func:`pack` (for tests and tools)."""
    (length,) = _LENGTH.unpack_from(data)
    header: dict[str, Any] = json.loads(data[4 : 4 + length])
    return header, data[4 + length :]


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON the page can show: long strings and lists cut, bytes as their
    size, non-finite floats as strings, anything else as its ``str``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if depth >= 8:
        return "..."
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, list | tuple):
        items = [plain(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    return plain(str(value), depth)


def describe(message: Message, payload_size: int | None = None) -> dict[str, Any]:
    """The fields of ``message`` for the page (an event's payload as its size:
    ``payload_size`` when given, for an event whose payload was let go)."""
    out: dict[str, Any] = {
        "stream": message.stream,
        "seq": message.seq,
        "id": message.id,
        "timestamp": message.timestamp,
    }
    if isinstance(message, Event):
        out["metadata"] = plain(message.metadata)
        payload = message.payload
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        out["payload_size"] = size if payload_size is None else payload_size
        if message.array is not None:
            out["array"] = {
                "dtype": message.array.dtype,
                "shape": list(message.array.shape),
                "compression": message.array.compression,
            }
    else:
        out["data"] = plain(message.data)
    return out


class Outgoing:
    """One thing sent to clients, packed once and shared by every client's queue.

    ``seq``: the viewer's number (0 for ``hello`` and ``status``); ``kind``: the header's
    ``type``; ``data``: the packed message; ``image``: True when it carries a frame.
    """

    __slots__ = ("_bare", "data", "header", "image", "kind", "seq")

    def __init__(self, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        self.header = header
        self.seq: int = header.get("seq", 0)
        self.kind: str = header["type"]
        self.image = bool(body)
        self.data = pack(header, body)
        self._bare: Outgoing | None = None

    @property
    def size(self) -> int:
        """Bytes sent."""
        return len(self.data)

    def without_image(self) -> Outgoing:
        """The same event without its frame (``image_dropped``): what a client is sent
        when it was too slow for the frame. Made once, shared."""
        if not self.image:
            return self
        if self._bare is None:
            self._bare = Outgoing({**self.header, "image": None, "image_dropped": True})
        return self._bare

    def __repr__(self) -> str:
        return f"Outgoing({self.kind} seq={self.seq} {self.size} B)"
