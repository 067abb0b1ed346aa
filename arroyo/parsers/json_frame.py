"""``json-frame``: a JSON header part, then a raw frame part.

What many beamline detectors and their LabVIEW or simulator front ends send over ZeroMQ:
a multipart message whose first part is a UTF-8 JSON object and whose second part is
the frame's raw bytes (C order). The header::

    {"type": "event", "dtype": ">u2", "shape": [512, 512],
     "stream": "scan-42", "seq": 7, "exposure_s": 0.1, "frame_number": 6}

``type``
    ``"start"``, ``"event"`` or ``"stop"``; absent means ``"event"``.
``dtype``, ``shape`` (Event only)
    The frame's element type with its byte order, as numpy writes it (``"<u2"``,
    ``">u2"`` big-endian, ``"|u1"``, ``"<f4"``) or by name (``"uint16"``, native order),
    and its dimensions (a list of integers). Both or neither: with neither, the frame
    is an opaque payload (``Event.array`` is None). The frame must hold exactly
    ``prod(shape) * itemsize`` bytes.
``stream`` (optional)
    The run id (Kafka partition key). Absent: the parser makes one at each Start and
    uses it until the Stop.
``seq`` (optional)
    The message's place in its run (Start is 0). Absent: the parser counts.
``id`` (optional)
    A unique message id (default: a fresh random one).
``timestamp`` (optional)
    When the message was made: an integer is nanoseconds, a float is seconds, since
    the Unix epoch, up to the year 2262 (default: when the parser read it).

Every other key goes, as it is, into ``Event.metadata`` (or ``Start.data``/``Stop.data``).

Parts: an Event is ``[header, frame]`` or, without a frame, ``[header]``. A Start or
Stop is ``[header]`` (a second, empty part is tolerated). Anything else, a header that
is not a JSON object, or a frame whose size does not match dtype and shape raises
DecodeError, and the Block sends the raw parts to the dead letter.

Options (``parser_options:``): ``stream_key`` and ``seq_key`` name the header keys that
hold the run id and sequence number when the sender calls them something else (for
example ``seq_key: frame_number``); such a key stays in the metadata as well.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from arroyo.errors import DecodeError
from arroyo.parsers._frames import FrameParser, size_of

if TYPE_CHECKING:
    from arroyo.message import Buffer, Message
    from arroyo.runtime.listener import Raw


def split_parts(data: Raw, fmt: str) -> tuple[Buffer, Buffer | None]:
    """(header, frame or None) of a one- or two-part message."""
    if not isinstance(data, list):
        return data, None
    if len(data) == 1:
        return data[0], None
    if len(data) == 2:
        return data[0], data[1]
    sizes = ", ".join(str(size_of(p)) for p in data[:8])
    raise DecodeError(
        f"{fmt}: expected 1 or 2 parts (header[, frame]), received {len(data)} parts "
        f"of {sizes} bytes"
    )


class JsonFrameParser(FrameParser):
    """Parses ``[JSON header, frame]`` messages (see the module documentation)."""

    FORMAT = "json-frame"

    def parse(self, data: Raw) -> Message:
        """The Start, Event or Stop of one message; DecodeError when it is malformed.

        The frame becomes the Event payload without a copy.
        """
        head, frame = split_parts(data, self.FORMAT)
        try:
            header: Any = json.loads(bytes(head))
        except (UnicodeDecodeError, ValueError) as exc:
            preview = bytes(head[:60])
            raise DecodeError(f"json-frame: header is not JSON ({exc}): {preview!r}") from None
        if not isinstance(header, dict):
            raise DecodeError(f"json-frame: header must be a JSON object, got {header!r:.80}")
        return self.message(header, frame)


def encode_header(header: dict[str, Any]) -> bytes:
    """A header as the parser reads it (compact UTF-8 JSON), for senders and tests."""
    return json.dumps(header, separators=(",", ":")).encode()
