"""What the ``json-frame`` and ``msgpack-array`` parsers share: a header, maybe a frame.

Both formats carry a header (a map) and, for an Event, an optional raw frame. This
module turns such a header and frame into a Start, Event or Stop, checks dtype and
shape against the frame size, and fills in ``stream`` and ``seq`` when the sender
does not give them. See :mod:`arroyo.parsers.json_frame` for the header keys.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from arroyo.errors import DecodeError
from arroyo.message import (
    INT64,
    JSON,
    ArrayInfo,
    Buffer,
    Event,
    Message,
    Start,
    Stop,
    new_id,
    timestamp_ns,
)
from arroyo.runtime.frames import SeqCounter

_NAMES = {
    "bool": "b1",
    "int8": "i1",
    "int16": "i2",
    "int32": "i4",
    "int64": "i8",
    "uint8": "u1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "float16": "f2",
    "float32": "f4",
    "float64": "f8",
    "complex64": "c8",
    "complex128": "c16",
}
_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}
_TYPESTR = re.compile(r"(?P<order>[<>|=!]?)(?:(?P<kind>[biufc])(?P<size>\d+)|(?P<name>[a-z0-9]+))")
_NATIVE = "<" if sys.byteorder == "little" else ">"


def normalize_dtype(text: object) -> tuple[str, int]:
    """numpy's ``dtype.str`` for ``text`` and its item size, without importing numpy.

    Accepts array-protocol type strings with an optional byte order (``<u2``, ``>f8``,
    ``u1``, ``=i4``, ``!u2``) and plain names with an optional byte order (``uint16``,
    ``>float32``, ``bool``). No byte order means native. Raises DecodeError for anything
    else (object, string, structured dtypes have no portable raw form).
    """
    if not isinstance(text, str):
        raise DecodeError(f"dtype must be a string such as '<u2', got {text!r}")
    return _normalize(text)


@functools.lru_cache(maxsize=256)
def _normalize(text: str) -> tuple[str, int]:
    match = _TYPESTR.fullmatch(text.strip())
    if match is None:
        raise DecodeError(f"unsupported dtype {text!r}: expected e.g. '<u2', '>f4', 'uint16'")
    if match["name"] is not None:
        code = _NAMES.get(match["name"])
        if code is None:
            raise DecodeError(f"unsupported dtype {text!r}: expected e.g. '<u2', '>f4', 'uint16'")
        kind, size = code[0], int(code[1:])
    else:
        kind, size = match["kind"], int(match["size"])
    if size not in _SIZES[kind]:
        raise DecodeError(f"unsupported dtype {text!r}: no {kind}{size} type")
    order = {"": _NATIVE, "=": _NATIVE, "!": ">", "|": _NATIVE}.get(match["order"], match["order"])
    if size == 1:
        order = "|"
    return f"{order}{kind}{size}", size


def _shape(value: object) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        raise DecodeError(f"shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _timestamp(value: object) -> int:
    """An integer is nanoseconds since the epoch; a float is seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"timestamp must be integer nanoseconds or float seconds, got {value!r}")
    return timestamp_ns(value, "s" if isinstance(value, float) else "ns", "timestamp")


def size_of(part: Buffer) -> int:
    """Bytes in a received part."""
    return part.nbytes if isinstance(part, memoryview) else len(part)


class FrameParser:
    """Turns (header map, optional frame) into a message; keeps per-stream counters.

    Subclasses split what was received into a header map and a frame, then call
    :meth:`message`. ``stream_key``/``seq_key``: header keys holding the stream (run id)
    and the sequence number, for senders that call them something else (``frame_number``).
    """

    FORMAT = "frame"
    frame_counter = SeqCounter
    """Frame accounting by ``seq`` (:mod:`arroyo.runtime.frames`)."""

    def __init__(self, stream_key: str = "stream", seq_key: str = "seq") -> None:
        if not isinstance(stream_key, str) or not isinstance(seq_key, str):
            raise TypeError("stream_key and seq_key must be strings")
        self.stream_key = stream_key
        self.seq_key = seq_key
        self._current: str | None = None
        """The stream of messages that name none: a fresh id per Start."""
        self._next_seq: OrderedDict[str, int] = OrderedDict()

    def message(self, header: Mapping[str, Any], frame: Buffer | None) -> Message:
        """The message of ``header`` and ``frame`` (None: the message had no frame part).

        Raises DecodeError for a header that does not make a message; the parser's
        state changes only when it returns.
        """
        rest: dict[str, Any] = dict(header)
        kind = rest.pop("type", "event")
        if kind not in ("start", "event", "stop"):
            raise DecodeError(
                f"{self.FORMAT} header: 'type' must be 'start', 'event' or 'stop', got {kind!r}"
            )
        stream = self._take(rest, self.stream_key, "stream")
        if stream is not None and not isinstance(stream, str):
            if isinstance(stream, int) and not isinstance(stream, bool):
                stream = str(stream)
            else:
                raise DecodeError(f"{self.FORMAT} header: stream must be a string, got {stream!r}")
        seq = self._take(rest, self.seq_key, "seq")
        if seq is not None and (
            isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= INT64[1]
        ):
            raise DecodeError(
                f"{self.FORMAT} header: {self.seq_key} must be a non-negative integer "
                f"below 2**63, got {seq!r}"
            )
        identity: dict[str, Any] = {}
        message_id = rest.pop("id", None)
        if message_id is not None:
            if not isinstance(message_id, str):
                raise DecodeError(f"{self.FORMAT} header: id must be a string, got {message_id!r}")
            identity["id"] = message_id
        stamp = rest.pop("timestamp", None)
        identity["timestamp"] = time.time_ns() if stamp is None else _timestamp(stamp)
        # Fill in stream and seq (the state changes only once the message is made).
        current = self._current
        if stream is None:
            if kind == "start" or current is None:
                current = new_id()
            stream = current
        elif kind == "start":
            current = stream
        if seq is None:
            seq = 0 if kind == "start" else self._next_seq.get(stream, 0)
        identity["stream"], identity["seq"] = stream, seq
        message: Message
        if kind == "event":
            message = self._event(rest, frame, identity)
        else:
            if frame is not None and size_of(frame) > 0:
                raise DecodeError(
                    f"{self.FORMAT}: a {kind} message has a single header part, but a second "
                    f"part of {size_of(frame)} bytes came with it"
                )
            cls = Start if kind == "start" else Stop
            message = cls(data=rest, **identity)
        self._current = current
        if kind == "stop":
            self._next_seq.pop(stream, None)
            if self._current == stream:
                self._current = None
        else:
            self._next_seq[stream] = seq + 1
            self._next_seq.move_to_end(stream)
            if len(self._next_seq) > 10_000:
                self._next_seq.popitem(last=False)
        return message

    def _take(self, rest: dict[str, Any], key: str, default_key: str) -> Any:
        """Read an identity key: removed from the metadata under its default name, kept
        when the user pointed the parser at one of the sender's own keys."""
        return rest.pop(key, None) if key == default_key else rest.get(key)

    def _event(self, rest: dict[str, Any], frame: Buffer | None, identity: dict[str, Any]) -> Event:
        dtype, shape = rest.pop("dtype", None), rest.pop("shape", None)
        if (dtype is None) != (shape is None):
            missing = "shape" if shape is None else "dtype"
            raise DecodeError(
                f"{self.FORMAT} header: has {'dtype' if dtype else 'shape'} "
                f"but no {missing}; an array needs both"
            )
        if dtype is None:
            return Event(metadata=rest, payload=b"" if frame is None else frame, **identity)
        if frame is None:
            raise DecodeError(
                f"{self.FORMAT}: the header describes a {dtype} array of shape {shape} "
                "but the message has no frame part"
            )
        code, itemsize = normalize_dtype(dtype)
        dims = _shape(shape)
        expected = math.prod(dims) * itemsize
        if size_of(frame) != expected:
            raise DecodeError(
                f"{self.FORMAT}: frame has {size_of(frame)} bytes but dtype {dtype} and shape "
                f"{list(dims)} need {expected}"
            )
        return Event(metadata=rest, payload=frame, array=ArrayInfo(code, dims), **identity)


def check_json(value: Any, path: str) -> JSON:
    """``value`` if it is JSON-like (what Event metadata can carry), tuples made lists.

    Raises DecodeError naming the path of the first value that is not.
    """
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if type(value) in (list, tuple):  # not a named tuple such as msgpack's ExtType
        return [check_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, JSON] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise DecodeError(f"{path}: map keys must be strings, got {key!r}")
            out[key] = check_json(v, f"{path}.{key}")
        return out
    raise DecodeError(f"{path}: {type(value).__name__} is not a JSON-like value")
