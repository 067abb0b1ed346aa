"""Avro schemas: Arroyo's own (shipped in ``schemas/``), facility schemas, and compatibility.

The envelope ``arroyo.Message`` carries one ``arroyo.Start``, ``arroyo.Event`` or
``arroyo.Stop``. A facility may declare an Avro record for its Event metadata; the
envelope it writes is then the built-in one with ``Event.metadata`` of that record type
(see :func:`envelope`), so a partner can resolve it with the Avro rules.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.repository.base import SchemaRepositoryError
from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    fingerprint,
    load_schema,
    parse_schema,
    to_parsing_canonical_form,
)

from arroyo.errors import SchemaError

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""Where the built-in ``.avsc`` files are (inside the installed package)."""

ENVELOPE = "arroyo.Message"


@dataclass(frozen=True, eq=False)
class Schema:
    """A parsed, self-contained Avro schema and its CRC-64-AVRO fingerprint.

    ``definition`` is plain JSON with every named type written out where first used, so it
    can be given to any Avro implementation. ``fingerprint`` is the 8 little-endian bytes
    of single-object encoding.
    """

    name: str
    definition: dict[str, Any]
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes
    source: str = "<memory>"

    @classmethod
    def from_definition(cls, definition: dict[str, Any], source: str = "<memory>") -> Schema:
        """Parse a JSON schema (a record) that defines every named type it uses."""
        try:
            parsed = parse_schema(copy.deepcopy(definition), _write_hint=False)
        except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"{source}: not a valid Avro schema: {exc}") from exc
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise SchemaError(f"{source}: expected an Avro record schema")
        canonical = to_parsing_canonical_form(parsed)
        return cls(
            name=parsed["name"],
            definition=parsed,
            parsed=parse_schema(copy.deepcopy(parsed)),
            canonical=canonical,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
            source=source,
        )

    @property
    def is_envelope(self) -> bool:
        """True for an ``arroyo.Message`` envelope (built-in or derived)."""
        return self.name == ENVELOPE

    def event_metadata(self) -> Any:
        """The type of ``Event.metadata`` in this envelope (a map of Value, or a record)."""
        for branch in _body(self.definition):
            if isinstance(branch, dict) and branch.get("name") in ("arroyo.Event", "Event"):
                for f in branch["fields"]:
                    if f["name"] == "metadata":
                        return f["type"]
        raise SchemaError(f"{self.source}: envelope has no Event.metadata field")

    def to_json(self, indent: int | None = 2) -> str:
        """The self-contained schema as JSON text."""
        return json.dumps(self.definition, indent=indent)


def _body(definition: dict[str, Any]) -> list[Any]:
    for f in definition["fields"]:
        if f["name"] == "body":
            return list(f["type"])
    raise SchemaError(f"{definition.get('name')}: an envelope needs a 'body' field")


def load(path: str | Path) -> Schema:
    """Load a schema from an ``.avsc`` file.

    Named types it references are looked up as ``<full name>.avsc`` beside it, then among
    the built-in schemas. Raises SchemaError naming the file when it is missing or invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"schema file not found: {path}")
    try:
        parsed = load_schema(str(path), _write_hint=False)
    except UnknownType as exc:
        raise SchemaError(
            f"{path}: uses the type {exc.name!r}, which is neither defined in it nor in a file "
            f"{exc.name}.avsc beside it"
        ) from exc
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc
    except SchemaRepositoryError as exc:  # not JSON (the file or one it names)
        cause = exc.__cause__ or exc.__context__
        detail = f": {cause}" if cause is not None else ""
        raise SchemaError(f"{path}: cannot be read as an Avro schema ({exc}{detail})") from None
    if not isinstance(parsed, dict):
        raise SchemaError(f"{path}: expected an Avro record schema, found {parsed!r}")
    return Schema.from_definition(parsed, source=str(path))


@cache
def builtin(name: str = ENVELOPE) -> Schema:
    """One of Arroyo's own schemas by full name (``arroyo.Message``, ``arroyo.Event``...)."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")))
        raise SchemaError(f"no built-in schema named {name!r}; known: {known}")
    return load(path)


def builtin_names() -> list[str]:
    """Full names of the built-in schemas."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def previous() -> tuple[Schema, ...]:
    """The earlier versions of the built-in envelope (``schemas/previous/``), which
    Arroyo's own older releases wrote with: every :class:`SchemaStore` knows them, so
    their data is read (and resolved to the current schema) without configuration."""
    return tuple(load(path) for path in sorted((SCHEMA_DIR / "previous").glob("*.avsc")))


def envelope(metadata: Schema | None = None, base: Schema | None = None) -> Schema:
    """The envelope whose ``Event.metadata`` is ``metadata`` (a facility record).

    Without ``metadata`` it is ``base`` (default: the built-in ``arroyo.Message``). A
    schema that already is an envelope is returned as it is. ``base``: the version of
    the built-in envelope to start from (one of :func:`previous`, for older writers).
    """
    base = base if base is not None else builtin()
    if metadata is None:
        return base
    if metadata.is_envelope:
        return metadata
    definition = copy.deepcopy(base.definition)
    for branch in _body(definition):
        if isinstance(branch, dict) and branch.get("name") == "arroyo.Event":
            for f in branch["fields"]:
                if f["name"] == "metadata":
                    f["type"] = copy.deepcopy(metadata.definition)
                    f.pop("default", None)
    return Schema.from_definition(definition, source=f"envelope of {metadata.source}")


class SchemaStore:
    """The writer schemas a decoder knows, by fingerprint. Always knows the built-in
    envelope and its earlier versions (:func:`previous`)."""

    def __init__(self, schemas: list[Schema] | tuple[Schema, ...] = ()) -> None:
        self._by_fingerprint: dict[bytes, Schema] = {}
        self.add(builtin())
        for schema in schemas:
            self.add(schema)

    def add(self, schema: Schema) -> Schema:
        """Know ``schema`` (a facility record is added as its envelope, and as the
        envelopes older Arroyo releases made of it). Returns the current envelope."""
        env = envelope(schema)
        self._by_fingerprint[env.fingerprint] = env
        if not schema.is_envelope or schema is builtin():
            for base in previous():
                old = envelope(None if schema is builtin() else schema, base)
                self._by_fingerprint.setdefault(old.fingerprint, old)
        return env

    def get(self, fp: bytes) -> Schema | None:
        """The envelope with this fingerprint, or None."""
        return self._by_fingerprint.get(fp)

    def __iter__(self) -> Iterator[Schema]:
        return iter(self._by_fingerprint.values())

    def __len__(self) -> int:
        return len(self._by_fingerprint)


class Compatibility(StrEnum):
    """How two versions of a schema must relate, as schema registries define it."""

    BACKWARD = "backward"  # the new schema reads data written with the old one
    FORWARD = "forward"  # the old schema reads data written with the new one
    FULL = "full"  # both


@dataclass(frozen=True)
class Verdict:
    """The answer of :func:`check_compatibility`: ``compatible``, and why not."""

    compatible: bool
    problems: list[str]


def _can_read(reader: Schema, writer: Schema, direction: str) -> list[str]:
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(reader.to_json(None)), avro.schema.parse(writer.to_json(None))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted(k.value for k in result.incompatibilities)
    where = ", ".join(sorted(result.locations))
    what = ", ".join(sorted(str(m) for m in result.messages))
    return [f"{direction}: {'; '.join(kinds)} at {where} ({what})"]


def _field_path(definition: Any, pointer: str, prefix: str) -> str:
    """``/fields/0/type`` of a record as a dotted field path (``metadata.frame``)."""
    path, node = [prefix], definition
    parts = [p for p in pointer.split("/") if p]
    for i, part in enumerate(parts):
        if part == "fields" and i + 1 < len(parts) and isinstance(node, dict):
            field = node["fields"][int(parts[i + 1])]
            path.append(field["name"])
            node = field["type"]
    return ".".join(path)


def explain_metadata(reader: Schema, writer: Schema) -> str | None:
    """Why Event metadata written with ``writer`` cannot be read with ``reader`` (both
    envelopes with facility records), naming the fields; None when it is not that."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    read, written = reader.event_metadata(), writer.event_metadata()
    if not (isinstance(read, dict) and isinstance(written, dict)):
        return None
    if read.get("type") != "record" or written.get("type") != "record":
        return None
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(read)), avro.schema.parse(json.dumps(written))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    fields = sorted(
        {_field_path(read, p, "metadata") for p in result.locations if p not in ("", "/")}
    )
    reasons = sorted(
        m if " " in m else f"{m!r} is not written and has no default in the reader's schema"
        for m in map(str, result.messages)
    )
    return f"at {', '.join(fields) or 'metadata'}: {'; '.join(reasons)}"


def check_compatibility(old: Schema, new: Schema, mode: Compatibility) -> Verdict:
    """Whether ``new`` may replace ``old`` under ``mode`` (Apache Avro's compatibility
    rules), with one sentence per problem naming the field, what changed and who breaks
    (:mod:`arroyo.schema_changes`)."""
    from arroyo.schema_changes import explain

    backward = mode in (Compatibility.BACKWARD, Compatibility.FULL)
    forward = mode in (Compatibility.FORWARD, Compatibility.FULL)
    raw: list[str] = []
    if backward:
        raw += _can_read(new, old, "new schema cannot read old data")
    if forward:
        raw += _can_read(old, new, "old schema cannot read new data")
    if not raw:
        return Verdict(compatible=True, problems=[])
    problems = explain(old.definition, new.definition, backward, forward)
    # The verdict is the checker's: should the sentences miss a reason, its own words stay.
    return Verdict(compatible=False, problems=problems or raw)
