"""Lazy decoding (``check: lazy``): an Event is read on arrival only as far as its identity,
and the rest of it is decoded, guarded and checked when something first reads it.

A :class:`~arroyo.codec.Codec` made with ``lazy=True`` checks the framing and the writer
schema of every message, and reads the envelope's identity (``id``, ``stream``, ``seq``,
``timestamp``) and which body it holds with fastavro, from a schema of just those fields
(:func:`identity_schema`). A Start or a Stop is then decoded in full, as always. An Event
becomes a :class:`DeferredEvent`: its ``metadata``, ``payload`` and ``array`` are decoded
by the codec's full :meth:`~arroyo.codec.Codec.decode` (the guard, fastavro, the reader
schema, the facility record) the first time any of them is read, and reading one raises
that decode's :class:`~arroyo.errors.DecodeError` when the bytes are bad. An operator that
forwards its input unchanged (``Passthrough``, ``arroyo bridge``) never reads them: the
bytes go on as they came, unchecked past the identity.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader

from arroyo.errors import DecodeError
from arroyo.message import JSON, ArrayInfo, Buffer, Event, _Identity

if TYPE_CHECKING:
    from arroyo.codec import Codec
    from arroyo.schema import Schema

IDENTITY = (("id", "string"), ("stream", "string"), ("seq", "long"), ("timestamp", "long"))
"""The fields every envelope begins with, in order."""

_DEFERRED = ("metadata", "payload", "array")

IDENTITY_BYTES = 4096
"""At most this many bytes of a body in a buffer other than bytes are copied for the
identity reader (a longer identity is decoded in full)."""


def identity_schema(writer: Schema) -> tuple[Any, int] | None:
    """The parsed schema of the identity and the body's branch number of ``writer`` (an
    envelope), and the branch number of ``arroyo.Event``; None when ``writer`` does not
    begin with :data:`IDENTITY` and a body union holding an Event.

    The branch number of a union is written as an Avro long, so the ``body`` field reads
    as one: what fastavro reads with this schema is exactly the start of the envelope.
    """
    definition = writer.definition
    fields = definition.get("fields")
    if not isinstance(fields, list) or len(fields) <= len(IDENTITY):
        return None
    for (name, kind), field in zip(IDENTITY, fields, strict=False):
        if field.get("name") != name or field.get("type") != kind:
            return None
    body = fields[len(IDENTITY)]
    branches = body.get("type")
    if body.get("name") != "body" or not isinstance(branches, list):
        return None
    names = [b.get("name") if isinstance(b, dict) else b for b in branches]
    if "arroyo.Event" not in names:
        return None
    schema = {
        "type": "record",
        "name": "arroyo.Identity",
        "fields": [
            *({"name": name, "type": kind} for name, kind in IDENTITY),
            {"name": "body", "type": "long"},
        ],
    }
    return parse_schema(schema), names.index("arroyo.Event")


def read_identity(data: Buffer, offset: int, schema: Any) -> dict[str, Any] | None:
    """The identity fields and the body's branch number of the envelope at
    ``data[offset:]``, read with the parsed ``schema`` of :func:`identity_schema`; None
    when they cannot be read (the full decode then says why)."""
    if isinstance(data, bytes):  # BytesIO shares the bytes: no copy
        source = io.BytesIO(data)
        source.seek(offset)
    else:
        source = io.BytesIO(data[offset : offset + IDENTITY_BYTES])
    try:
        record = schemaless_reader(source, schema, None)
    except Exception:  # anything fastavro raises: the full decode says what is wrong
        return None
    return record if isinstance(record, dict) else None


class Identities:
    """The identity reader of a lazy codec: per writer schema (by fingerprint), the
    schema of its identity, made once."""

    def __init__(self) -> None:
        self._schemas: dict[bytes, tuple[Any, int] | None] = {}

    def event(
        self, codec: Codec, data: Buffer, writer: Schema, offset: int
    ) -> DeferredEvent | None:
        """The DeferredEvent of ``data`` (written with ``writer``, its body at ``offset``);
        None when it is not an Event whose identity reads: a Start or a Stop, a writer
        that is not an envelope of this shape, or bytes whose problem the full decode
        explains."""
        try:
            identity = self._schemas[writer.fingerprint]
        except KeyError:
            identity = self._schemas[writer.fingerprint] = identity_schema(writer)
        if identity is None:
            return None
        schema, event = identity
        record = read_identity(data, offset, schema)
        if record is None or record["body"] != event:
            return None
        return DeferredEvent.deferred(
            record["stream"], record["seq"], record["id"], record["timestamp"], codec, data
        )


class DeferredEvent(Event):
    """An :class:`~arroyo.message.Event` whose ``metadata``, ``payload`` and ``array``
    are decoded when one of them is first read (the identity is read on arrival).

    It is an Event in every other way: it compares equal to an Event of the same fields,
    ``dataclasses.replace`` works on it (and gives a message with every field decoded),
    and it pickles and encodes as the Event it holds. Reading a deferred field of bytes
    that do not decode raises :class:`~arroyo.errors.DecodeError` (permanent: the Block
    dead-letters the message with the reason), every time it is read.
    """

    __slots__ = ("_source",)
    _source: tuple[Codec, Buffer] | None
    """The codec and bytes of the deferred fields; None once they are decoded (unset
    when the Event was made with every field, by replace(), copy or unpickling)."""

    @classmethod
    def deferred(
        cls, stream: str, seq: int, id: str, timestamp: int, codec: Codec, data: Buffer
    ) -> DeferredEvent:
        """The Event of ``data`` with the identity read; ``codec.decode_now(data)`` gives
        the rest when it is first read."""
        made = _new(cls)
        _stream(made, stream)
        _seq(made, seq)
        _id(made, id)
        _timestamp(made, timestamp)
        _trace(made, None)
        _source(made, (codec, data))
        return made

    def _load(self) -> None:
        """Decode the deferred fields (once they are, this does nothing)."""
        try:
            source = self._source
        except AttributeError:  # made by replace(), copy or unpickling: every field is set
            return
        if source is None:
            return
        codec, data = source
        full = codec.decode_now(data)
        if not isinstance(full, Event):  # pragma: no cover - the identity said Event
            raise DecodeError(f"event {self.id}: decoded a {full.kind}, not an Event")
        _metadata(self, full.metadata)
        _payload(self, full.payload)
        _array(self, full.array)
        _source(self, None)

    @property
    def metadata(self) -> dict[str, JSON]:
        """The Event's metadata (decoded when first read)."""
        self._load()
        value: dict[str, JSON] = _get_metadata(self)
        return value

    @metadata.setter
    def metadata(self, value: dict[str, JSON]) -> None:  # the dataclass __init__ sets it
        _metadata(self, value)

    @property
    def payload(self) -> Buffer:
        """The Event's payload (decoded when first read)."""
        self._load()
        value: Buffer = _get_payload(self)
        return value

    @payload.setter
    def payload(self, value: Buffer) -> None:
        _payload(self, value)

    @property
    def array(self) -> ArrayInfo | None:
        """The Event's array description (decoded when first read)."""
        self._load()
        value: ArrayInfo | None = _get_array(self)
        return value

    @array.setter
    def array(self, value: ArrayInfo | None) -> None:
        _array(self, value)

    @property
    def decoded(self) -> bool:
        """True once the deferred fields are decoded."""
        try:
            return self._source is None
        except AttributeError:
            return True

    def __repr__(self) -> str:
        """As an Event's; before the deferred fields are decoded, the identity alone
        (a repr never decodes, so it never raises for bad bytes)."""
        if self.decoded:
            return Event.__repr__(self)
        return (
            f"DeferredEvent(stream={self.stream!r}, seq={self.seq!r}, id={self.id!r}, "
            f"timestamp={self.timestamp!r}, not decoded yet)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return _compared(self) == _compared(other)

    __hash__ = None  # type: ignore[assignment]  # as Event's: its metadata is a dict


def _compared(event: Event) -> tuple[Any, ...]:
    return (
        event.stream,
        event.seq,
        event.id,
        event.timestamp,
        event.metadata,
        event.payload,
        event.array,
    )


# The slots' own setters and getters (the dataclasses' fields), which the properties of
# DeferredEvent hide.
_new = object.__new__
_stream, _seq, _id, _timestamp, _trace = (
    _Identity.__dict__[name].__set__ for name in ("stream", "seq", "id", "timestamp", "trace")
)
_metadata, _payload, _array = (Event.__dict__[name].__set__ for name in _DEFERRED)
_get_metadata, _get_payload, _get_array = (Event.__dict__[name].__get__ for name in _DEFERRED)
_source = DeferredEvent.__dict__["_source"].__set__
