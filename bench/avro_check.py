"""The schema check a peer does by hand, with fastavro alone: Arroyo's work, without Arroyo.

A value must carry Avro single-object encoding of the built-in ``arroyo.Message``
(``C3 01``, the schema's CRC-64-AVRO fingerprint, then the body), and its body must
decode with fastavro against that schema, to the last byte. Arroyo's decoder does this
and then builds the Event (and guards against resource bombs); a peer that forwards the
bytes after this check does the same work short of building the Event. Standard library
and fastavro only: the peers import this in their own environments.
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import schemaless_reader
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from bench.common import ROOT

SCHEMA = ROOT / "schemas" / "arroyo.Message.avsc"


class AvroCheck:
    """``check(value)`` returns ``value`` if it is a well-formed ``arroyo.Message``,
    and raises ValueError (or fastavro's error) if not."""

    def __init__(self) -> None:
        self.schema: Any = load_schema(str(SCHEMA))
        canonical = to_parsing_canonical_form(self.schema)
        self.header = b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))

    def __call__(self, value: bytes) -> bytes:
        if value[:10] != self.header:
            raise ValueError("not an arroyo.Message in single-object encoding")
        body = io.BytesIO(value)
        body.seek(10)
        schemaless_reader(body, self.schema, None, return_record_name=True)
        if body.tell() != len(value):
            raise ValueError(f"{len(value) - body.tell()} bytes after the record")
        return value
