"""Limits on what a message may make a decoder do, checked before fastavro reads it.

fastavro's compiled reader recurses once per nested value and believes the lengths and
counts a message declares, so bytes from the network could kill the process: a 15 KB
``Start`` whose data nests lists 5,000 deep overflows the C stack (SIGSEGV, not an
exception), and a list of a million ``None`` costs 2 bytes each on the wire but hundreds
in memory. :func:`guard` turns a writer schema into a :class:`Guard` that walks the Avro
binary body without building any value and refuses, with a ``DecodeError`` naming the
field path and the limit, what breaks one of these limits:

- ``max_depth`` (:data:`MAX_DEPTH`, 64) arrays and maps open at once. The ``data`` or
  ``metadata`` map itself is the first level: ``data={"a": [[1]]}`` is 3 levels deep. A
  record that contains itself other than through an array or map (a linked list through
  a union) counts one level each time it is entered.
- ``max_items`` (:data:`MAX_ITEMS`, 1,000,000) array items and map entries in one
  message, all levels together.
- whatever the limits: a string, bytes or block declaring more bytes than are left, and
  an array or map block declaring more items than the bytes left could hold (each item
  takes at least its smallest encoding), so nothing is ever allocated for a declared size.

The limits are options of :class:`~arroyo.codec.Codec`, whose encoder refuses to write
values nested deeper or with more items than its own limits, so that it does not write
what its readers refuse. The walk is Python generated from the schema (see
:mod:`arroyo._guard_source`), so that a small message costs about a microsecond.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from arroyo._guard_source import DEPTH, ITEMS, SHORT, Refused, source
from arroyo.errors import DecodeError

MAX_DEPTH = 64
"""Arrays and maps a value may nest (the data or metadata map is the first level)."""

MAX_ITEMS = 1_000_000
"""Array items and map entries one message may hold, all levels together."""

Buf = bytes | bytearray | memoryview
Scan = Callable[[Buf, int, int, list[int]], int]


_LAST_BYTE = re.compile(rb"[\x00-\x7f]").search  # the last byte of a varint


def _unsigned(buf: Buf, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` as written (before zig-zag decoding), the position after it."""
    b = buf[pos]
    n, shift = b & 0x7F, 7
    while b & 0x80:
        if shift == 70:
            raise Refused("a number longer than 10 bytes")
        pos += 1
        b = buf[pos]
        n |= (b & 0x7F) << shift
        shift += 7
    return n, pos + 1


def _varint(buf: Buf, pos: int) -> tuple[int, int]:
    """The zig-zag varint (Avro int or long) at ``pos`` and the position after it."""
    n, pos = _unsigned(buf, pos)
    return (n >> 1) ^ -(n & 1), pos


def _skip_varint(buf: Buf, pos: int) -> int:
    """The position after the varint at ``pos`` (a 9-byte timestamp is skipped in C)."""
    found = _LAST_BYTE(buf, pos, pos + 10)
    if found is None:
        raise Refused(SHORT if pos + 10 > len(buf) else "a number longer than 10 bytes")
    return found.end()


def _refusal(exc: BaseException) -> Refused:
    """``exc`` as a refusal: reading past the end (IndexError) means the bytes end early."""
    return exc if isinstance(exc, Refused) else Refused(SHORT)


def _fail(exc: BaseException, at: str) -> Refused:
    """A refusal leaving a function: ``at`` is where in it the walk was."""
    refused = _refusal(exc)
    if at:
        refused.path.append(at)
    return refused


def _item(exc: BaseException, at: str, buf: Buf, start: int, index: int, is_map: bool) -> Refused:
    """A refusal leaving the item ``index`` (at byte ``start``) of an array or map."""
    refused = _fail(exc, at)
    step = f"[{index}]"
    if is_map:  # the entry's key, when it can be read
        try:
            size, begin = _varint(buf, start)
            if 0 <= size <= len(buf) - begin:
                key = bytes(buf[begin : begin + min(size, 40)]).decode("utf-8", "replace")
                step = f".{key}" + ("..." if size > 40 else "")
        except (Refused, IndexError):
            pass
    refused.path.append(step)
    return refused


def _length(size: int, left: int) -> Refused:
    if left < 0:
        return Refused(SHORT)
    return Refused(f"length {size} declared, only {left} bytes left (truncated or corrupt)")


def _block(what: str, size: int, unit: str, left: int) -> Refused:
    if left < 0:
        return Refused(SHORT)
    return Refused(
        f"{what} block of {size} {unit} declared, only {left} bytes left (truncated or corrupt)"
    )


def _branch(code: int, count: int) -> Refused:
    """A refusal of the branch number written as ``code`` (zig-zag) of a union of ``count``."""
    return Refused(f"union branch {(code >> 1) ^ -(code & 1)} of {count}")


_HELPERS: dict[str, Any] = {
    "_unsigned": _unsigned,
    "_varint": _varint,
    "_skip_varint": _skip_varint,
    "_fail": _fail,
    "_item": _item,
    "_length": _length,
    "_block": _block,
    "_branch": _branch,
    "Refused": Refused,
    "IndexError": IndexError,
    "DEPTH": DEPTH,
    "ITEMS": ITEMS,
}


class Guard:
    """The limits check of one writer schema: ``guard.check(data, start)``."""

    def __init__(self, definition: dict[str, Any]) -> None:
        try:
            text, root = source(definition)
        except DecodeError:
            raise
        except (RecursionError, KeyError, TypeError, ValueError) as exc:
            problem = "nests too deeply" if isinstance(exc, RecursionError) else repr(exc)
            raise DecodeError(
                f"cannot check data of the writer schema {definition.get('name')!r}: {problem}"
            ) from None
        namespace = dict(_HELPERS)
        # Names and strings of the schema appear in ``text`` only as repr() literals.
        exec(compile(text, f"<guard of {definition.get('name')}>", "exec"), namespace)
        self.source = text
        self._scan: Scan = namespace[root]

    def check(
        self, data: Buf, start: int, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
    ) -> None:
        """Raise DecodeError when the Avro body at ``data[start:]`` breaks a limit, is cut
        short or is followed by more bytes; the reason names the field path."""
        end = self.end(data, start, max_depth=max_depth, max_items=max_items)
        if end != len(data):
            raise DecodeError(f"{len(data) - end} unexpected bytes after the message")

    def end(
        self, data: Buf, start: int, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
    ) -> int:
        """Where the value at ``data[start]`` ends (for values one after the other, as in
        an Avro container file's blocks). Raises DecodeError, naming the field path, when
        it breaks a limit or ``data`` ends before it does."""
        try:
            end = self._scan(data, start, max_depth, [max_items])
        except RecursionError:  # a schema nesting named types thousands deep
            raise DecodeError("nesting deeper than the guard can follow") from None
        except (Refused, IndexError) as exc:
            refused = _refusal(exc)
            path = "".join(reversed(refused.path)).lstrip(".")
            if not path.isprintable():  # names and keys may hold anything: one line
                path = "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
            if len(path) > 80:
                path = path[:72] + "..."
            reason = _reason(refused.reason, path, len(data), max_depth, max_items)
            raise DecodeError(reason) from None
        if end > len(data):
            raise DecodeError(_reason(SHORT, "", len(data), max_depth, max_items))
        return end


def _reason(reason: str, path: str, size: int, max_depth: int, max_items: int) -> str:
    where = f"{path}: " if path else ""
    if reason == DEPTH:
        return f"{where}nesting deeper than {max_depth} levels (limit arroyo.codec.MAX_DEPTH)"
    if reason == ITEMS:
        return (
            f"{where}more than {max_items} array items and map entries in one message "
            "(limit arroyo.codec.MAX_ITEMS)"
        )
    if reason == SHORT:
        return f"truncated message ({size} bytes): it ends inside {path or 'the envelope'}"
    return where + reason


_guards: dict[str, Guard] = {}


def guard(definition: dict[str, Any], canonical: str) -> Guard:
    """The guard of the writer schema ``definition`` (plain JSON, every named type written
    out where first used), cached by its parsing canonical form."""
    found = _guards.get(canonical)
    if found is None:
        if len(_guards) >= 256:  # schemas come from a registry too: do not grow forever
            _guards.clear()
        found = _guards[canonical] = Guard(definition)
    return found
