"""Avro encoding of messages, framed so that a reader knows the writer's schema.

Two framings (README.md, "Messages"):

- Avro single-object encoding (the default): ``C3 01``, the writer schema's 8-byte
  CRC-64-AVRO fingerprint (little-endian), then the Avro binary body;
- Confluent framing, with a schema registry: ``00``, the 4-byte big-endian schema id,
  then the body.

A decoder resolves the writer's schema to its reader schema by the Avro rules (fastavro
does the resolution), so a reader one version behind or ahead still decodes. Everything
that goes wrong while decoding raises :class:`~arroyo.errors.DecodeError`, except an
unreachable registry, which raises the retryable :class:`~arroyo.errors.RegistryError`.

Before fastavro reads a body, :mod:`arroyo.codec_guard` checks it against the writer
schema for resource bombs: nesting deeper than :data:`MAX_DEPTH` arrays and maps, more
than :data:`MAX_ITEMS` items, lengths and counts that the bytes left cannot hold.
"""

from __future__ import annotations

import io
import logging
from typing import IO, Any, cast

from fastavro import schemaless_reader, schemaless_writer

from arroyo.codec_guard import MAX_DEPTH, MAX_ITEMS, Guard, guard
from arroyo.codec_lazy import DeferredEvent, Identities
from arroyo.codec_records import from_record, is_generic, nonconformance
from arroyo.codec_values import wrap_map
from arroyo.errors import DecodeError, EncodeError, RegistryError, SchemaError
from arroyo.message import INT64, Buffer, Event, Message, Start, Stop
from arroyo.registry import Registry
from arroyo.schema import Schema, SchemaStore, builtin, envelope, explain_metadata

log = logging.getLogger("arroyo.codec")

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


def _zigzag_varint(n: int) -> bytes:
    """Avro's encoding of a long (zig-zag, then base-128 varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_NULL = ("null", None)


class Codec:
    """Turns messages into framed Avro bytes and back.

    ``writer``: the envelope to encode with (default: the built-in ``arroyo.Message``;
    a facility metadata record is turned into its envelope). ``reader``: the envelope
    decoded messages are resolved to (default: the built-in envelope for generic data,
    the writer's own schema for facility data). ``store``: the writer schemas known by
    fingerprint. ``registry``: when given, encode with Confluent framing under
    ``subject`` and look unknown schema ids up in the registry.

    ``lenient``: pass messages through unchecked instead of failing on a schema problem:
    metadata that does not conform to the writer's facility schema is written with the
    generic envelope, and data whose writer schema cannot be resolved to the reader's is
    read as written. ``unchecked`` counts how often that happened.

    ``lazy``: read an Event on arrival only as far as its identity, and decode the rest
    when it is first read (:mod:`arroyo.codec_lazy`; the ``check: lazy`` of a pipeline).

    ``max_depth`` and ``max_items``: the limits of :mod:`arroyo.codec_guard` (default
    :data:`MAX_DEPTH` levels of arrays and maps, :data:`MAX_ITEMS` items in a message). A
    body that breaks them is refused before it is read; values that would break them are
    refused by the encoder.
    """

    def __init__(
        self,
        *,
        writer: Schema | None = None,
        reader: Schema | None = None,
        store: SchemaStore | None = None,
        registry: Registry | None = None,
        subject: str | None = None,
        lenient: bool = False,
        max_depth: int = MAX_DEPTH,
        max_items: int = MAX_ITEMS,
        lazy: bool = False,
    ) -> None:
        self.writer = envelope(writer)
        self.reader = envelope(reader) if reader is not None else None
        self.store = store if store is not None else SchemaStore()
        self.store.add(self.writer)
        if self.reader is not None:
            self.store.add(self.reader)
        self.registry = registry
        self.subject = subject
        self._single_object = SINGLE_OBJECT_MAGIC + self.writer.fingerprint
        self._writer_generic = is_generic(self.writer)
        self._writer_metadata = self.writer.event_metadata()
        self._readers: dict[bytes, tuple[Schema, bool, Any, Guard]] = {}
        self.max_depth, self.max_items = max_depth, max_items
        self.lenient = lenient
        self.unchecked = 0
        self._generic: Codec | None = None
        self.lazy = lazy
        self._identities = Identities()

    # -- encoding ------------------------------------------------------------------

    def _prefix(self) -> bytes:
        if self.registry is None:
            return self._single_object
        subject = self.subject or "arroyo-value"
        schema_id = self.registry.register(subject, self.writer)
        return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")

    def _metadata(self, metadata: dict[str, Any], budget: list[int]) -> Any:
        if self._writer_generic:
            return wrap_map(metadata, "metadata", 1, budget)
        problem = nonconformance(metadata, self._writer_metadata)
        if problem is not None:
            raise EncodeError(*problem)
        return metadata

    def to_record(self, message: Message, *, payload: bool = True) -> dict[str, Any]:
        """The Avro record (a dict) of ``message`` in the writer schema.

        With ``payload=False`` an Event's payload is left empty (encode() appends it).
        Raises EncodeError when a value cannot be carried, breaks the writer schema, or
        nests deeper or holds more items than the codec's limits.
        """
        budget = [self.max_items, self.max_depth, self.max_items]
        record: dict[str, Any] = {
            "id": message.id,
            "stream": message.stream,
            "seq": message.seq,
            "timestamp": message.timestamp,
        }
        if isinstance(message, Event):
            array = message.array
            if array is not None:
                budget[0] -= len(array.shape)
            record["body"] = (
                "arroyo.Event",
                {
                    "metadata": self._metadata(message.metadata, budget),
                    # the union's branch named: fastavro does not try each in turn
                    "array": _NULL if array is None else ("arroyo.Array", array.to_record()),
                    "payload": message.payload if payload else b"",
                },
            )
        elif isinstance(message, Start | Stop):
            body = {"data": wrap_map(message.data, "data", 1, budget)}
            record["body"] = (f"arroyo.{type(message).__name__}", body)
        else:
            raise EncodeError(f"cannot encode {type(message).__name__}: not a Start, Event or Stop")
        return record

    def encode(self, message: Message, wire: bytes | None = None) -> bytes:
        """Frame and encode ``message``; the payload of an Event is copied exactly once.

        Raises EncodeError (with the field path) when a value cannot be carried or breaks
        the writer schema; RegistryError when the registry cannot be reached.

        ``wire``: the bytes ``message`` arrived as, when it is forwarded unchanged (see
        :meth:`~arroyo.runtime.publisher.Publisher.send`); when they have this codec's
        framing (same writer schema), they are returned as they are.
        """
        if wire is not None:
            prefix = self._prefix()
            if wire.startswith(prefix):
                return wire
        try:
            record = self.to_record(message, payload=False)
        except EncodeError:
            if not self.lenient or self._writer_generic:
                raise
            self.unchecked += 1
            if self._generic is None:
                self._generic = Codec(
                    registry=self.registry,
                    subject=self.subject,
                    max_depth=self.max_depth,
                    max_items=self.max_items,
                )
            return self._generic.encode(message)
        out = io.BytesIO()
        try:
            schemaless_writer(out, self.writer.parsed, record)
        except (ValueError, TypeError, OverflowError) as exc:
            for name in ("seq", "timestamp"):  # identity ints: not checked before fastavro
                value = getattr(message, name)
                if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
                    raise EncodeError(
                        f"cannot encode {message.kind} {message.id}: {name} {value} does "
                        "not fit in 64 bits",
                        name,
                    ) from None
            raise EncodeError(f"cannot encode {message.kind} {message.id}: {exc}") from exc
        head = out.getbuffer()
        if not isinstance(message, Event):
            return b"".join((self._prefix(), head))
        # The payload is the envelope's last value and was written as b"" (a single 0 byte):
        # write its real length instead and append it, so that it is copied only once.
        payload = message.payload
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        return b"".join((self._prefix(), head[:-1], _zigzag_varint(size), payload))

    # -- decoding ------------------------------------------------------------------

    def _writer_for(self, data: Buffer) -> tuple[Schema, int]:
        head = bytes(data[:10])
        if head[:2] == SINGLE_OBJECT_MAGIC:
            if len(head) < 10:
                raise DecodeError(f"truncated: {len(data)} bytes, shorter than the 10-byte header")
            schema = self.store.get(head[2:10])
            if schema is None:
                raise DecodeError(
                    f"unknown writer schema: fingerprint {head[2:10].hex()} is not among the "
                    f"{len(self.store)} known schemas (add the writer's .avsc, or use a registry)"
                )
            return schema, 10
        if head[:1] == CONFLUENT_MAGIC:
            if len(head) < 5:
                raise DecodeError(f"truncated: {len(data)} bytes, shorter than the 5-byte header")
            schema_id = int.from_bytes(head[1:5], "big")
            if self.registry is None:
                raise DecodeError(
                    f"Confluent-framed data (schema id {schema_id}) but no schema registry is "
                    "configured"
                )
            try:
                schema = self.registry.schema(schema_id)
            except SchemaError as exc:
                raise DecodeError(f"schema id {schema_id}: {exc}") from None
            if not schema.is_envelope:
                raise DecodeError(
                    f"schema id {schema_id} is {schema.name}, not an Arroyo envelope "
                    "(arroyo.Message)"
                )
            return schema, 5
        raise DecodeError(
            "not Arroyo data: expected Avro single-object (C3 01) or Confluent (00) framing, "
            f"found bytes {head[:4].hex(' ') or '(empty)'}"
        )

    def _reader_for(self, writer: Schema) -> tuple[Schema, bool, Any, Guard]:
        """The reader schema for ``writer``, whether its metadata is generic, the facility
        record that generic metadata must conform to (or None), and the writer's guard."""
        found = self._readers.get(writer.fingerprint)
        if found is None:
            reader, check = self.reader, None
            writer_generic = is_generic(writer)
            if reader is None:
                reader = builtin() if writer_generic else writer
            elif writer_generic and not is_generic(reader):
                # Generic data cannot be resolved to a record: read it as written, then
                # check the metadata against the facility record.
                reader, check = builtin(), reader.event_metadata()
            limits = guard(writer.definition, writer.canonical)
            found = (reader, is_generic(reader), check, limits)
            self._readers[writer.fingerprint] = found
        return found

    def decode(self, data: Buffer) -> Message:
        """Decode framed bytes into a Start, Event or Stop.

        Raises as :meth:`decode_now` does. A lazy codec checks the framing and the
        writer schema, reads the identity and gives an Event as a
        :class:`~arroyo.codec_lazy.DeferredEvent`, which does the rest of
        :meth:`decode_now` (and raises what it raises) when one of its other fields is
        first read.
        """
        if self.lazy:
            deferred = self._deferred(data)
            if deferred is not None:
                return deferred
        return self.decode_now(data)

    def _deferred(self, data: Buffer) -> DeferredEvent | None:
        """The DeferredEvent of ``data``, or None: decode it now (see Identities.event)."""
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            data = data.cast("B")
        writer, offset = self._writer_for(data)
        return self._identities.event(self, data, writer, offset)

    def decode_now(self, data: Buffer) -> Message:
        """Decode framed bytes into a Start, Event or Stop, in full (lazy or not).

        Raises DecodeError for unknown framing, an unknown or unresolvable writer schema,
        truncated, trailing or garbage bytes, a body that breaks the codec's limits (before
        fastavro reads it); RegistryError when the registry is down.
        """
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            data = data.cast("B")
        writer, offset = self._writer_for(data)
        reader, generic, check, limits = self._reader_for(writer)
        limits.check(data, offset, max_depth=self.max_depth, max_items=self.max_items)
        try:
            message = self._decode(data, offset, writer, reader, generic)
            if check is not None and isinstance(message, Event):
                problem = nonconformance(message.metadata, check)
                if problem is not None:
                    if not self.lenient:
                        raise DecodeError(problem[0])
                    self.unchecked += 1
            return message
        except DecodeError as exc:
            if not self.lenient or reader.fingerprint == writer.fingerprint:
                raise
            log.warning("reading a message unchecked, as its writer wrote it: %s", exc)
            self.unchecked += 1
            return self._decode(data, offset, writer, writer, is_generic(writer))

    def _decode(
        self, data: Buffer, offset: int, writer: Schema, reader: Schema, generic: bool
    ) -> Message:
        source: IO[bytes]
        if len(data) >= _VIEW_THRESHOLD:
            source = cast("IO[bytes]", _Views(data, offset))  # fastavro needs read and tell
        else:
            source = io.BytesIO(data)
            source.seek(offset)
        try:
            record = schemaless_reader(
                source,
                writer.parsed,
                None if reader.fingerprint == writer.fingerprint else reader.parsed,
                return_record_name=True,
                # A facility record's unions of null and one record read as the record;
                # generic data has only ``array`` (see _message), named at less cost.
                return_record_name_override=not generic,
            )
        except EOFError as exc:
            raise DecodeError(f"truncated message ({len(data)} bytes): {exc}") from None
        except RegistryError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            if name == "SchemaResolutionError":
                detail = explain_metadata(reader, writer) or str(exc)
                raise DecodeError(
                    f"writer schema {writer.source} cannot be read as {reader.source}: {detail}"
                ) from None
            raise DecodeError(f"corrupt Avro data ({name}: {exc})") from None
        if source.tell() != len(data):
            raise DecodeError(f"{len(data) - source.tell()} unexpected bytes after the message")
        return from_record(record, generic)


_VIEW_THRESHOLD = 64 * 1024


class _Views:
    """A read-only file over a buffer for fastavro: reads of 64 KiB or more return views
    of the buffer instead of copies, so a large payload decodes without being copied (it
    keeps the received buffer alive as long as it lives). Small reads return bytes, which
    fastavro handles faster."""

    __slots__ = ("_position", "_view")

    def __init__(self, data: Buffer, position: int) -> None:
        view = memoryview(data)
        self._view = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        self._position = position

    def read(self, size: int = -1) -> bytes | memoryview:
        start = self._position
        end = len(self._view) if size < 0 else min(start + size, len(self._view))
        self._position = end
        chunk = self._view[start:end]
        return chunk.toreadonly() if end - start >= _VIEW_THRESHOLD else chunk.tobytes()

    def tell(self) -> int:
        return self._position


_default: Codec | None = None


def default_codec() -> Codec:
    """The codec of :func:`encode` and :func:`decode`: built-in schemas, single-object framing."""
    global _default
    if _default is None:
        _default = Codec()
    return _default


def encode(message: Message) -> bytes:
    """Encode a message with the built-in schema and single-object framing."""
    return default_codec().encode(message)


def decode(data: Buffer) -> Message:
    """Decode bytes written by :func:`encode` (or by a known older or newer writer schema)."""
    return default_codec().decode(data)
