"""The peers' schema check (fastavro alone) accepts what Arroyo writes, and only that."""

from __future__ import annotations

import pytest

from arroyo import Event, encode
from bench.avro_check import AvroCheck


@pytest.fixture(scope="module")
def check() -> AvroCheck:
    return AvroCheck()


@pytest.fixture(scope="module")
def value() -> bytes:
    return encode(Event({"frame": 1}, b"\x00" * 1024, stream="bench", seq=1))


def test_an_encoded_event_is_returned_as_it_is(check: AvroCheck, value: bytes) -> None:
    assert check(value) is value


def test_another_schema_fingerprint_is_refused(check: AvroCheck, value: bytes) -> None:
    other = value[:2] + bytes(8) + value[10:]
    with pytest.raises(ValueError, match="single-object encoding"):
        check(other)


def test_bytes_after_the_record_are_refused(check: AvroCheck, value: bytes) -> None:
    with pytest.raises(ValueError, match="3 bytes after the record"):
        check(value + b"xyz")


def test_a_truncated_record_is_refused(check: AvroCheck, value: bytes) -> None:
    with pytest.raises(EOFError):
        check(value[:-100])
