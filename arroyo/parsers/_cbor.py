"""Large CBOR byte strings without a copy: what lets the stream2 parser hand a detector's
image to the brokers as a view of the received buffer.

cbor2 copies every byte string it decodes into a new ``bytes``. For a 4 MiB image that
copy (and the allocation behind it) costs more than everything else the parser does.
:func:`detach` walks the message's item headers only (no values are decoded), and
replaces each definite-length byte string of at least ``threshold`` bytes by a short
placeholder: cbor2 then decodes the small rest, and :class:`Blobs` gives the view of the
original bytes back for each placeholder. A message the walk cannot follow (truncated,
malformed) is left whole, for cbor2 to say what is wrong with it.
"""

from __future__ import annotations

import os
import struct

from arroyo.message import Buffer

THRESHOLD = 64 * 1024
"""Byte strings from this size on are detached."""

_NONCE = b"\x00arroyo-cbor-blob:" + os.urandom(16).hex().encode()
"""Placeholders start with this (random per process: no real byte string is one)."""
_MAX_DEPTH = 64


class _Unfollowable(Exception):
    """The walk cannot go on: cbor2 decides what the message is."""


class Blobs(dict[bytes, memoryview]):
    """Placeholder -> view of the byte string it stands for."""

    def get_view(self, value: object) -> memoryview | None:
        """The view ``value`` stands for, or None when it is not a placeholder."""
        if isinstance(value, bytes) and value.startswith(_NONCE):
            return self.get(value)
        return None


def detach(data: Buffer, threshold: int = THRESHOLD) -> tuple[Buffer, Blobs]:
    """``data`` with its large byte strings replaced by placeholders, and the views of
    the byte strings by placeholder. Without large byte strings (or when the walk cannot
    follow the message) ``data`` itself and no blobs."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if len(view) < threshold:
        return data, Blobs()
    found: list[tuple[int, int, int]] = []
    try:
        end = _walk(view, 0, found, threshold, 0)
    except (_Unfollowable, IndexError, struct.error):
        return data, Blobs()
    if not found or end != len(view):
        return data, Blobs()
    pieces: list[Buffer] = []
    blobs = Blobs()
    last = 0
    for index, (header, content, stop) in enumerate(found):
        marker = _NONCE + index.to_bytes(4, "big")
        pieces += [view[last:header], bytes([0x58, len(marker)]), marker]  # bstr, 1-byte length
        blobs[marker] = view[content:stop].toreadonly()
        last = stop
    pieces.append(view[last:])
    return b"".join(pieces), blobs


def _argument(view: memoryview, pos: int) -> tuple[int, int | None, int]:
    """(major type, argument or None for indefinite, position after the header)."""
    initial = view[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info == 24:
        return major, view[pos + 1], pos + 2
    if info == 25:
        return major, struct.unpack_from(">H", view, pos + 1)[0], pos + 3
    if info == 26:
        return major, struct.unpack_from(">I", view, pos + 1)[0], pos + 5
    if info == 27:
        return major, struct.unpack_from(">Q", view, pos + 1)[0], pos + 9
    if info == 31 and major in (2, 3, 4, 5, 7):
        return major, None, pos + 1
    raise _Unfollowable(f"reserved additional information {info}")


def _walk(
    view: memoryview, pos: int, found: list[tuple[int, int, int]], threshold: int, depth: int
) -> int:
    """The position after the item at ``pos``; large byte strings go into ``found``."""
    if depth > _MAX_DEPTH:
        raise _Unfollowable("nested too deeply")
    major, argument, after = _argument(view, pos)
    if major in (0, 1):
        return after
    if major in (2, 3):
        if argument is None:  # indefinite: definite chunks until the break
            while view[after] != 0xFF:
                after = _walk(view, after, [], threshold, depth + 1)
            return after + 1
        end = after + argument
        if end > len(view):
            raise _Unfollowable("truncated string")
        if major == 2 and argument >= threshold:
            found.append((pos, after, end))
        return end
    if major in (4, 5):
        per_entry = 1 if major == 4 else 2
        if argument is None:
            while view[after] != 0xFF:
                after = _walk(view, after, found, threshold, depth + 1)
            return after + 1
        for _ in range(argument * per_entry):
            after = _walk(view, after, found, threshold, depth + 1)
        return after
    if major == 6:
        return _walk(view, after, found, threshold, depth + 1)
    if argument is None:
        raise _Unfollowable("a break outside an indefinite item")
    return after  # simple values and floats: their bytes are the header's argument
