"""What a record shows: its decoded messages, a dead letter with its reason, or, when it
cannot be decoded, its size, first bytes and why. A record is never dropped.

Dead letters are recognised in both forms Arroyo writes them: the original bytes with
``arroyo.dead-letter.*`` / ``arroyo.source.*`` headers (Kafka, RabbitMQ, Redis Streams
fields), and an Event whose metadata holds those keys (what
:meth:`arroyo.runtime.publisher.DeadLetter.to_event` makes for the other destinations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from arroyo.browse.base import Data, Record
from arroyo.errors import ArroyoError
from arroyo.message import Event, Message
from arroyo.runtime.parser import AvroParser, Parser

DEAD = "arroyo.dead-letter."
SOURCE = "arroyo.source."
HEAD = 32
"""Bytes of an undecodable record shown (as hex)."""

_TEXT_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Shown:
    """One thing to show.

    ``kind``: ``start``, ``event``, ``stop`` (``message`` is it), ``dead-letter``
    (``dead_letter`` holds the reason, error, attempts, block, timestamp and the source it
    came from; ``data`` is the original; ``message`` the original decoded, or None and
    ``reason`` why not) or ``undecodable`` (``data`` is what the record holds, ``reason``
    why it cannot be decoded).
    """

    kind: str
    record: Record
    message: Message | None = None
    reason: str | None = None
    dead_letter: Mapping[str, Any] | None = None
    data: Data | None = None

    def to_json(self) -> dict[str, Any]:
        """One JSON object (plain values only) with everything shown."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "dead-letter":
            assert self.dead_letter is not None
            out["dead_letter"] = jsonable(self.dead_letter)
            if self.message is not None:
                out["message"] = message_json(self.message)
            else:
                out["decode_error"] = self.reason
        elif self.message is not None:
            out.update(message_json(self.message))
        else:
            out["reason"] = self.reason
        if self.data is not None:
            out["size"] = size(self.data)
            out["head"] = head(self.data)
        elif self.record.messages is None:
            out["size"] = self.record.size
        out["source"] = jsonable(self.record.source)
        headers = {k: v for k, v in self.record.headers.items() if not _letter_key(k)}
        if headers:
            out["headers"] = jsonable(headers)
        return out


def message_json(message: Message) -> dict[str, Any]:
    """The fields of a message as JSON values (an Event's payload as its size)."""
    out: dict[str, Any] = {
        "kind": message.kind,
        "stream": message.stream,
        "seq": message.seq,
        "id": message.id,
        "timestamp": message.timestamp,
    }
    if isinstance(message, Event):
        out["metadata"] = jsonable(message.metadata)
        out["payload_size"] = len(message.payload)
        array = message.array
        out["array"] = None if array is None else {"dtype": array.dtype, "shape": list(array.shape)}
    else:
        out["data"] = jsonable(message.data)
    return out


class Viewer:
    """Decodes records with ``parser`` (Arroyo's codec by default) into what to show."""

    def __init__(self, parser: Parser | None = None) -> None:
        self.parser: Parser = parser or AvroParser()

    def show(self, record: Record) -> list[Shown]:
        """What ``record`` shows: one Shown per message it holds (at least one)."""
        if record.problem is not None:
            return [Shown("undecodable", record, reason=record.problem, data=record.data)]
        if f"{DEAD}reason" in record.headers:
            return [self._dead(record, _letter(record.headers), record.data)]
        if record.messages is not None:
            messages = record.messages
        else:
            try:
                messages = self._parse(record.data)
            except Exception as exc:
                return [Shown("undecodable", record, reason=_reason(exc), data=record.data)]
        shown = []
        for message in messages:
            if isinstance(message, Event) and f"{DEAD}reason" in message.metadata:
                parts = message.metadata.get("parts")
                payload = message.payload
                original: Data = bytes(payload) if isinstance(payload, bytearray) else payload
                if isinstance(parts, list):
                    original = [p if isinstance(p, bytes) else b"" for p in parts]
                shown.append(self._dead(record, _letter(message.metadata), original))
            else:
                shown.append(Shown(message.kind, record, message=message))
        return shown

    def _parse(self, data: Data) -> list[Message]:
        parsed = self.parser.parse(data)
        return parsed if isinstance(parsed, list) else [parsed]

    def _dead(self, record: Record, letter: dict[str, Any], original: Data) -> Shown:
        try:
            messages = self._parse(original)
        except Exception as exc:
            return Shown("dead-letter", record, None, _reason(exc), letter, original)
        message = messages[0] if len(messages) == 1 else None
        reason = None if message is not None else f"the original holds {len(messages)} messages"
        return Shown("dead-letter", record, message, reason, letter, original)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ArroyoError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a parser's bug: still shown, never dropped


def _letter_key(key: str) -> bool:
    return key.startswith((DEAD, SOURCE))


def _letter(values: Mapping[str, Any]) -> dict[str, Any]:
    """The dead letter's reason, error... and source, from headers or Event metadata."""
    letter: dict[str, Any] = {}
    source: dict[str, Any] = {}
    for key, value in values.items():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if key.startswith(DEAD) and not key.startswith(f"{DEAD}part."):
            letter[key[len(DEAD) :]] = text
        elif key.startswith(SOURCE):
            source[key[len(SOURCE) :]] = text
    letter["source"] = source
    return letter


def size(data: Data) -> int:
    """Bytes in ``data`` (all parts)."""
    return sum(len(p) for p in data) if isinstance(data, list) else len(data)


def head(data: Data, limit: int = HEAD) -> str:
    """The first ``limit`` bytes as hex (parts separated by ``|``)."""
    parts = data if isinstance(data, list) else [data]
    return "|".join(bytes(p[:limit]).hex() for p in parts)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: bytes as text when they are short UTF-8, else as their
    size and first bytes in hex; dates as ISO 8601; non-finite floats as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) <= _TEXT_LIMIT:
            try:
                return raw.decode()
            except UnicodeDecodeError:
                pass
        return {"size": len(raw), "head": raw[:HEAD].hex()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)
