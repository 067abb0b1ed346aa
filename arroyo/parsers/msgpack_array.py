"""``msgpack-array``: msgpack metadata plus a raw array (Timepix-style event streams).

A multipart message ``[header, array]``: the first part is a msgpack map, the second
the array's raw bytes (C order). The map's keys are those of ``json-frame``
(:mod:`arroyo.parsers.json_frame`)::

    {"type": "event", "dtype": "<u4", "shape": [65536], "stream": "run-7", "seq": 12,
     "timestamp": Timestamp(...), "frame_number": 11, "trigger_count": 4096}

``type`` (``start``/``event``/``stop``, default ``event``); ``dtype`` and ``shape`` (both
or neither; ``dtype`` as numpy writes it, byte order included: ``<u4``, ``>u2``);
``stream`` and ``seq`` (optional: the parser makes a run id at each Start and counts
when they are absent); ``id`` (optional); ``timestamp`` (optional: a msgpack Timestamp
or an integer are nanoseconds since the Unix epoch, a float is seconds). Every other
key (counters, timestamps, detector settings) goes into ``Event.metadata`` or
``Start.data``/``Stop.data``; msgpack Timestamps there become integer nanoseconds and
binary values stay bytes.

A single-part message is a header alone (a Start, a Stop, or an Event without a
frame), unless its map has a binary ``data`` value: that is then the frame (the
one-map form some senders use). Other part counts, a header that is not a msgpack map
with string keys, values metadata cannot carry (extension types), and a frame whose
size does not match dtype and shape raise DecodeError.

Options (``parser_options:``): ``stream_key`` and ``seq_key``, as for ``json-frame``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arroyo._optional import require
from arroyo.errors import DecodeError
from arroyo.parsers._frames import FrameParser, check_json
from arroyo.parsers.json_frame import split_parts

if TYPE_CHECKING:
    from arroyo.message import Message
    from arroyo.runtime.listener import Raw

msgpack = require("msgpack", "zmq", "The msgpack-array parser")


class MsgpackArrayParser(FrameParser):
    """Parses ``[msgpack header, array]`` messages (see the module documentation)."""

    FORMAT = "msgpack-array"

    def parse(self, data: Raw) -> Message:
        """The Start, Event or Stop of one message; DecodeError when it is malformed.

        The array part becomes the Event payload without a copy.
        """
        head, frame = split_parts(data, self.FORMAT)
        try:
            header: Any = msgpack.unpackb(
                head, raw=False, strict_map_key=False, timestamp=2
            )  # Timestamp -> int ns
        except Exception as exc:  # msgpack raises several unrelated types
            preview = bytes(head[:60])
            raise DecodeError(
                f"msgpack-array: header is not msgpack ({_describe(exc)}): {preview!r}"
            ) from None
        if not isinstance(header, dict):
            raise DecodeError(f"msgpack-array: header must be a msgpack map, got {header!r:.80}")
        header = check_json(header, "msgpack-array header")
        assert isinstance(header, dict)
        if frame is None and isinstance(header.get("data"), bytes):
            frame = header.pop("data")
        return self.message(header, frame)


def encode_header(header: dict[str, Any]) -> bytes:
    """A header as the parser reads it, for senders and tests."""
    packed: bytes = msgpack.packb(header, use_bin_type=True)
    return packed


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
