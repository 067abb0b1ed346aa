"""What the viewer sends to a page: binary WebSocket messages, each holding one item or
several (small ones are sent together: a page gets a batch in one message).

An item is a 4-byte big-endian length ``h`` of its header, a 4-byte big-endian length
``b`` of its body, ``h`` bytes of UTF-8 JSON (the header), then ``b`` bytes of body: an
event's frame as :mod:`arroyo.view.image` makes it (its ``image`` header field says how
to read it), or nothing. The header's ``type`` is:

- ``hello``: the first item on a connection: ``epoch`` (this server's run: a page that
  reconnects to another epoch starts afresh), ``seq`` (the last number given),
  ``resumed`` (true: the ``?from=`` asked for is still buffered and follows) and
  ``missed`` (messages asked for that are no longer buffered);
- ``start``, ``event``, ``stop``: a message of the stream, numbered ``seq`` by the viewer
  (1, 2, ...: what ``?from=SEQ`` resumes from), with the message's own fields in
  ``message`` (``stream``, ``seq``, ``id``, ``timestamp``, and ``data`` or ``metadata``);
  an event whose frame this client could not be sent in time has ``image: null`` and
  ``image_dropped: true``, one whose frame the server did not prepare
  ``image_skipped: true``, one whose frame could not be read ``image_error``;
- ``status``: counters and rates (see :meth:`arroyo.view.hub.Hub.status`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

from arroyo.message import Event, Message

_LENGTHS = struct.Struct(">II")

MAX_TEXT = 1000
"""Characters of a string value sent (longer ones are cut, with ``...``)."""
MAX_ITEMS = 64
"""Items of a list value sent (the rest is said as ``"... N more"``)."""


def pack(header: Mapping[str, Any], body: bytes | memoryview = b"") -> bytes:
    """One item: the lengths of its JSON header and of its body, the header, the body."""
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return b"".join((_LENGTHS.pack(len(text), len(body)), text, body))


def unpack_all(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The items of a WebSocket message made of :func:`pack` items (for tools and tests)."""
    items = []
    at = 0
    while at < len(data):
        head, size = _LENGTHS.unpack_from(data, at)
        at += _LENGTHS.size
        header: dict[str, Any] = json.loads(data[at : at + head])
        items.append((header, data[at + head : at + head + size]))
        at += head + size
    return items


def unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The one item of ``data``."""
    (item,) = unpack_all(data)
    return item


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
