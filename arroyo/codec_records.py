"""Envelope records and messages: the message of a record as fastavro reads it, and the
check of metadata against a facility record (the codec's other half: :mod:`arroyo.codec`
frames, guards and calls fastavro)."""

from __future__ import annotations

from typing import Any

from fastavro.validation import ValidationError, validate

from arroyo.codec_values import unwrap_map
from arroyo.errors import DecodeError
from arroyo.message import ArrayInfo, Event, Message, Start, Stop, assembler
from arroyo.schema import Schema


def from_record(record: Any, generic: bool) -> Message:
    """The message of an envelope record as fastavro reads it (``return_record_name``).

    ``generic``: Event metadata is a map of ``arroyo.Value`` (else a facility record).
    Raises DecodeError when the record does not make a message.
    """
    if not isinstance(record, dict):
        raise DecodeError(f"decoded a {type(record).__name__}, not a message record")
    try:
        return _message(record, generic)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"decoded record does not make a message: {exc!r}") from None


def is_generic(schema: Schema) -> bool:
    """True when the envelope's Event metadata is the generic map of ``arroyo.Value``."""
    metadata = schema.event_metadata()
    return isinstance(metadata, dict) and metadata.get("type") == "map"


_event, _start, _stop = assembler(Event), assembler(Start), assembler(Stop)


def _message(record: dict[str, Any], generic: bool) -> Message:
    name, body = record["body"]
    identity = (record["stream"], record["seq"], record["id"], record["timestamp"], None)
    if name == "arroyo.Event":
        array = body["array"]
        if array is not None:  # (name, record) unless read with return_record_name_override
            array = ArrayInfo.from_record(array[1] if isinstance(array, tuple) else array)
        metadata = body["metadata"]
        return _event(
            *identity, unwrap_map(metadata) if generic else metadata, body["payload"], array
        )
    if name == "arroyo.Start":
        return _start(*identity, unwrap_map(body["data"]))
    if name == "arroyo.Stop":
        return _stop(*identity, unwrap_map(body["data"]))
    raise DecodeError(f"unknown message kind {name!r}")


def nonconformance(metadata: dict[str, Any], record: Any) -> tuple[str, str | None] | None:
    """Why ``metadata`` does not conform to the Avro ``record`` (the message, and the path
    of the first bad field as ``metadata.x.y``), or None when it conforms."""
    try:
        validate(metadata, record, field="metadata", raise_errors=True)
    except ValidationError as exc:
        name = str(record.get("name"))
        paths = [
            "metadata" + e.field[len(name) :] if e.field.startswith(name) else e.field
            for e in exc.errors
        ]
        problems = "; ".join(
            f"{path}: expected {_type_name(e.schema)}, got {e.datum!r}"
            for path, e in zip(paths, exc.errors, strict=True)
        )
        return f"metadata does not conform to {name}: {problems}", paths[0] if paths else None
    return None


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " | ".join(_type_name(s) for s in schema)
    return str(schema)
