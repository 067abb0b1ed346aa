"""``stream2``: Dectris SIMPLON stream v2 (EIGER2, PILATUS4), as Arroyo messages.

The detector sends CBOR maps on a ZeroMQ PUSH socket (port 31001), one per message:
``zmq+pull://DETECTOR:31001?parser=stream2``. See :mod:`arroyo.formats.stream2` for the
tags. How messages become Arroyo's:

- ``start`` -> :class:`~arroyo.message.Start`: every field of the message as ``data``
  (``series_id``, ``series_unique_id``, ``number_of_images``, ``channels``, detector
  settings...); arrays (``flatfield`` and ``pixel_mask`` per channel,
  ``countrate_correction_lookup_table``) kept as *array values*
  (:mod:`arroyo.formats.arrays`, read back with ``arrays.to_array``), compressed as the
  detector sent them;
- ``image`` -> one :class:`~arroyo.message.Event` per channel of ``data``: the image as
  the Event's array (``to_array()``), the other fields (``series_id``,
  ``series_unique_id``, ``image_id``, ``real_time``, ``start_time``, ``stop_time``,
  ``user_data``...) plus ``channel`` as metadata;
- ``end`` -> :class:`~arroyo.message.Stop` with the message's fields as ``data``;
- any other ``type`` -> an Event whose metadata is the message (``type`` included):
  newer firmware's messages cross the bridge instead of stopping it.

``stream`` is ``series_unique_id`` (or ``series-N`` from ``series_id``); ``seq`` counts
the messages of a series (Start 0); ``id`` is derived from the series, image id and
channel, so a frame bridged twice has the same id; ``timestamp`` is when the parser read
it (the detector's own times stay in the metadata: times are ``[numerator,
denominator]`` seconds, dates ISO 8601 strings).

Options (``parser_options:``): ``decompress`` (default true): compressed images are
decompressed (with ``dectris-compression``) so consumers get raw frames; false keeps
them compressed across the brokers (the Event's ``array.compression`` says how,
``to_array()`` decompresses). Tables in the Start stay as sent either way.

Truncated CBOR, an unknown tag, a message that is not a map with a ``type``, or an
image whose size does not match its shape raise DecodeError (a dead letter).
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import hashlib
import math
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arroyo._optional import require
from arroyo.errors import ConfigError, DecodeError
from arroyo.formats import compression as compressions
from arroyo.formats.arrays import array_value
from arroyo.formats.stream2 import (
    COMPRESSED,
    MULTI_DIM,
    MULTI_DIM_COLUMN_MAJOR,
    TYPED_ARRAYS,
    dtype_of_tag,
)
from arroyo.message import JSON, ArrayInfo, Event, Message, Start, Stop
from arroyo.parsers._cbor import Blobs, detach
from arroyo.parsers._frames import size_of

if TYPE_CHECKING:
    from arroyo.runtime.listener import Raw

cbor2 = require("cbor2", "stream2", "The stream2 parser")

_LIMIT = 1000
"""Series whose message count the parser remembers (oldest forgotten)."""


@dataclass(slots=True)
class _Compressed:
    algorithm: str
    elem_size: int
    data: bytes | memoryview  # a view of the received buffer when it is large


@dataclass(slots=True)
class _Typed:
    dtype: str
    data: bytes | memoryview | _Compressed


@dataclass(slots=True)
class _Array:
    shape: tuple[int, ...]
    typed: _Typed
    column_major: bool


class _Refused(Exception):
    """Raised in the tag hook; cbor2 wraps it, :func:`_loads` finds it again."""


def _tag_hook(blobs: Blobs) -> Any:
    """cbor2's tag hook (``(decoder, tag)`` before cbor2 6, ``(tag, immutable)`` since);
    ``blobs``: the large byte strings :func:`~arroyo.parsers._cbor.detach` took out."""

    def hook(first: Any, second: Any) -> Any:
        tag = first if isinstance(first, cbor2.CBORTag) else second
        return _tag(tag.tag, tag.value, blobs)

    return hook


def _tag(number: int, value: Any, blobs: Blobs) -> Any:
    if number == COMPRESSED:
        if not (
            isinstance(value, list | tuple)
            and len(value) == 3
            and isinstance(value[0], str)
            and isinstance(value[1], int)
            and isinstance(value[2], bytes)
        ):
            raise _Refused(f"tag {COMPRESSED} must hold [algorithm, element size, bytes]")
        try:
            algorithm = compressions.check_algorithm(value[0])
        except DecodeError as exc:
            raise _Refused(str(exc)) from None
        return _Compressed(algorithm, value[1], blobs.get_view(value[2]) or value[2])
    if number in TYPED_ARRAYS:
        try:
            dtype = dtype_of_tag(number)
        except DecodeError as exc:
            raise _Refused(str(exc)) from None
        if not isinstance(value, bytes | _Compressed):
            raise _Refused(f"typed array tag {number} must hold a byte string")
        if isinstance(value, bytes):
            value = blobs.get_view(value) or value
        if isinstance(value, _Compressed) and value.elem_size != int(dtype[2:]):
            raise _Refused(
                f"typed array tag {number} ({dtype}) holds {value.algorithm} data of "
                f"{value.elem_size}-byte elements"
            )
        return _Typed(dtype, value)
    if number in (MULTI_DIM, MULTI_DIM_COLUMN_MAJOR):
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise _Refused(f"tag {number} must hold [dimensions, elements]")
        dims, elements = value
        if not isinstance(dims, list | tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in dims
        ):
            raise _Refused(f"tag {number}: dimensions must be non-negative integers: {dims!r}")
        if not isinstance(elements, _Typed):
            raise _Refused(f"tag {number}: elements must be a typed array (tags 64-87)")
        return _Array(tuple(dims), elements, number == MULTI_DIM_COLUMN_MAJOR)
    raise _Refused(f"unknown CBOR tag {number}")


def _loads(data: Raw) -> tuple[Any, Blobs]:
    """The decoded message, and the large byte strings left in the received buffer."""
    if isinstance(data, list):
        if len(data) != 1:
            raise DecodeError(f"stream2: expected 1 part (a CBOR map), received {len(data)} parts")
        data = data[0]
    rest, blobs = detach(data)
    try:
        return cbor2.loads(rest, tag_hook=_tag_hook(blobs)), blobs
    except cbor2.CBORDecodeEOF:
        raise DecodeError(f"stream2: truncated CBOR ({size_of(data)} bytes)") from None
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, _Refused):
            cause = cause.__cause__ or cause.__context__
        reason = str(cause) if cause is not None else f"{type(exc).__name__}: {exc}"
        raise DecodeError(f"stream2: not a stream v2 message ({reason})") from None


class Stream2Counter:
    """Frame accounting of stream v2 (:mod:`arroyo.runtime.frames`): ``image_id`` per
    channel (a lane per channel of the Start's ``channels``), from 0 to the Start's
    ``number_of_images`` - 1."""

    def lanes(self, start: Start) -> Iterable[str]:
        """The Start's ``channels``."""
        channels = start.data.get("channels")
        return [c for c in channels if isinstance(c, str)] if isinstance(channels, list) else ()

    def number(self, event: Event) -> tuple[str, int] | None:
        """``(channel, image_id)`` of an image Event."""
        image_id, channel = event.metadata.get("image_id"), event.metadata.get("channel")
        if (
            isinstance(image_id, int)
            and not isinstance(image_id, bool)
            and isinstance(channel, str)
        ):
            return channel, image_id
        return None

    def first(self, start: Start | None, lane: str) -> int | None:
        """0 (after a Start)."""
        return 0 if start is not None else None

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        """The Start's ``number_of_images`` - 1."""
        count = None if start is None else start.data.get("number_of_images")
        return count - 1 if isinstance(count, int) and not isinstance(count, bool) else None


class Stream2Parser:
    """Parses Dectris stream v2 messages (see the module documentation)."""

    frame_counter = Stream2Counter

    def __init__(self, decompress: bool = True) -> None:
        if not isinstance(decompress, bool):
            raise ConfigError(
                f"stream2 parser: decompress must be true or false, got {decompress!r}"
            )
        self.decompress = decompress
        self._next_seq: OrderedDict[str, int] = OrderedDict()

    def parse(self, data: Raw) -> list[Message]:
        """The messages of one stream v2 message (one Event per channel of an image)."""
        message, blobs = _loads(data)
        if not isinstance(message, Mapping):
            raise DecodeError(f"stream2: expected a CBOR map, got {type(message).__name__}")
        kind = message.get("type")
        if not isinstance(kind, str):
            raise DecodeError(f"stream2: the message has no string 'type' (got {kind!r})")
        stream = _series(message)
        fields = {k: v for k, v in message.items() if k != "type"}
        if kind == "start":
            data_ = _plain(fields, "start", blobs)
            assert isinstance(data_, dict)
            self._remember(stream, 1)
            return [Start(data=data_, stream=stream, seq=0, id=_id(stream, "start"))]
        seq = self._next_seq.get(stream, 1)
        if kind == "end":
            data_ = _plain(fields, "end", blobs)
            assert isinstance(data_, dict)
            self._next_seq.pop(stream, None)
            return [Stop(data=data_, stream=stream, seq=seq, id=_id(stream, "end"))]
        if kind == "image":
            events = self._image(fields, stream, seq, blobs)
        else:
            metadata = _plain(dict(message), kind, blobs)
            assert isinstance(metadata, dict)
            events = [Event(metadata=metadata, stream=stream, seq=seq)]
        self._remember(stream, seq + len(events))
        return list(events)

    def _image(self, fields: dict[Any, Any], stream: str, seq: int, blobs: Blobs) -> list[Event]:
        images = fields.pop("data", None)
        if not isinstance(images, Mapping) or not images:
            raise DecodeError("stream2: the image message has no 'data' map of channels")
        metadata = _plain(fields, "image", blobs)
        assert isinstance(metadata, dict)
        image_id = repr(metadata.get("image_id"))
        events = []
        for offset, (channel, image) in enumerate(images.items()):
            if not isinstance(channel, str) or not isinstance(image, _Array):
                raise DecodeError(
                    f"stream2: image {image_id}: data[{channel!r}] is not a multi-dimensional "
                    "array (tag 40)"
                )
            info, payload = self._frame(image, f"image {image_id} channel {channel}")
            events.append(
                Event(
                    metadata={**metadata, "channel": channel},
                    payload=payload,
                    array=info,
                    stream=stream,
                    seq=seq + offset,
                    id=_id(stream, "image", metadata.get("image_id"), channel),
                )
            )
        return events

    def _frame(self, image: _Array, where: str) -> tuple[ArrayInfo, bytes | memoryview]:
        dtype = image.typed.dtype
        itemsize = int(dtype[2:])
        need = math.prod(image.shape) * itemsize
        content = image.typed.data
        if isinstance(content, _Compressed):
            if not self.decompress:
                try:
                    announced = compressions.uncompressed_size(content.data)
                except DecodeError as exc:
                    raise DecodeError(f"stream2: {where}: {exc}") from None
                if announced != need:
                    raise DecodeError(
                        f"stream2: {where}: {content.algorithm} data announces {announced} "
                        f"bytes, but {dtype} {list(image.shape)} needs {need}"
                    )
                if image.column_major:
                    raise DecodeError(
                        f"stream2: {where}: a compressed column-major array (tag 1040) "
                        "needs decompress: true"
                    )
                return ArrayInfo(dtype, image.shape, content.algorithm), content.data
            raw: bytes | memoryview
            try:
                raw = compressions.decompress(content.data, content.algorithm, itemsize, need)
            except DecodeError as exc:
                raise DecodeError(f"stream2: {where}: {exc}") from None
        else:
            raw = content
        if len(raw) != need:
            raise DecodeError(
                f"stream2: {where}: {len(raw)} bytes, but {dtype} {list(image.shape)} needs {need}"
            )
        if image.column_major:
            np = require("numpy", "numpy", "Reading column-major stream v2 arrays")
            flat = np.frombuffer(raw, dtype=dtype).reshape(image.shape[::-1])
            raw = np.ascontiguousarray(flat.T).tobytes()
        return ArrayInfo(dtype, image.shape), raw

    def _remember(self, stream: str, next_seq: int) -> None:
        self._next_seq[stream] = next_seq
        self._next_seq.move_to_end(stream)
        if len(self._next_seq) > _LIMIT:
            self._next_seq.popitem(last=False)


def _series(message: Mapping[Any, Any]) -> str:
    unique = message.get("series_unique_id")
    if isinstance(unique, str) and unique:
        return unique
    number = message.get("series_id")
    return f"series-{number}" if number is not None else ""


def _id(stream: str, *parts: object) -> str:
    key = ":".join(map(str, (stream, *parts)))
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _plain(value: Any, path: str, blobs: Blobs) -> JSON:
    """A decoded CBOR value as JSON-like values: arrays as array values, dates as ISO
    strings, rationals as ``[numerator, denominator]``. DecodeError for anything else."""
    if isinstance(value, bytes):
        view = blobs.get_view(value)
        return value if view is None else bytes(view)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", blobs) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JSON] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise DecodeError(f"stream2: {path}: map keys must be strings, got {key!r}")
            out[key] = _plain(v, f"{path}.{key}", blobs)
        return out
    if isinstance(value, _Array):
        content = value.typed.data
        if isinstance(content, _Compressed):
            if value.column_major:
                raise DecodeError(f"stream2: {path}: compressed column-major arrays unsupported")
            return array_value(
                value.typed.dtype, value.shape, bytes(content.data), content.algorithm
            )
        if value.column_major:
            np = require("numpy", "numpy", "Reading column-major stream v2 arrays")
            flat = np.frombuffer(content, dtype=value.typed.dtype).reshape(value.shape[::-1])
            content = np.ascontiguousarray(flat.T).tobytes()
        return array_value(value.typed.dtype, value.shape, bytes(content))
    if isinstance(value, _Typed):
        content = value.data  # a one-dimensional typed array
        itemsize = int(value.dtype[2:])
        size = (
            compressions.uncompressed_size(content.data)
            if isinstance(content, _Compressed)
            else len(content)
        )
        if size % itemsize:
            raise DecodeError(
                f"stream2: {path}: {size} bytes is not a whole number of {value.dtype}"
            )
        if isinstance(content, _Compressed):
            return array_value(
                value.dtype, (size // itemsize,), bytes(content.data), content.algorithm
            )
        return array_value(value.dtype, (size // itemsize,), bytes(content))
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, fractions.Fraction):
        return [value.numerator, value.denominator]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return [_plain(v, f"{path}[]", blobs) for v in sorted(value, key=repr)]
    if value is cbor2.undefined:
        return None
    raise DecodeError(f"stream2: {path}: {type(value).__name__} is not a JSON-like value")
