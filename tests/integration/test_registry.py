"""Confluent framing through a real schema registry (Apicurio's Confluent-compatible API)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from arroyo import DecodeError, Event, RegistryError, Start
from arroyo.codec import Codec
from arroyo.registry import Registry
from arroyo.schema import SCHEMA_DIR, load

EXAMPLES = SCHEMA_DIR / "examples"


def test_register_encode_and_decode_through_the_registry(
    registry_url: str, unique_name: Callable[[str], str]
) -> None:
    subject = unique_name("frames") + "-value"
    writer = Codec(registry=Registry(registry_url), subject=subject)
    message = Start({"sample": "Si", "energy_kev": 12.4}, stream="scan-1")
    data = writer.encode(message)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")

    # A reader in another process knows nothing but the registry's address.
    reader = Codec(registry=Registry(registry_url))
    assert reader.decode(data) == message
    assert reader.registry is not None
    assert reader.registry.schema(schema_id).name == "arroyo.Message"


def test_facility_schema_versions_through_the_registry(
    registry_url: str, unique_name: Callable[[str], str]
) -> None:
    subject = unique_name("facility") + "-value"
    v1, v2 = load(EXAMPLES / "frame-metadata-v1.avsc"), load(EXAMPLES / "frame-metadata-v2.avsc")
    event = Event({"frame": 3, "exposure_s": 0.2, "detector": "eiger", "energy_kev": 9.0}, b"px")
    data = Codec(writer=v2, registry=Registry(registry_url), subject=subject).encode(event)
    as_v1 = Codec(reader=v1, registry=Registry(registry_url)).decode(data)
    assert isinstance(as_v1, Event)
    assert as_v1.metadata == {"frame": 3, "exposure_s": 0.2, "detector": "eiger"}
    assert Codec(reader=v2, registry=Registry(registry_url)).decode(data) == event


def test_unknown_schema_id_is_a_decode_error(registry_url: str) -> None:
    data = b"\x00" + (2**31 - 7).to_bytes(4, "big") + b"\x02"
    with pytest.raises(DecodeError, match="unknown to"):
        Codec(registry=Registry(registry_url)).decode(data)


def test_unreachable_registry_is_a_retryable_error_not_a_pass_through(tmp_path: Path) -> None:
    codec = Codec(registry=Registry("http://127.0.0.1:1/apis/ccompat/v7"), subject="x-value")
    with pytest.raises(RegistryError, match="unreachable"):
        codec.encode(Start())
    with pytest.raises(RegistryError):
        codec.decode(b"\x00\x00\x00\x00\x05\x02")


def test_a_registry_closes_its_connections_when_collected_or_closed(
    registry_url: str, unique_name: Callable[[str], str]
) -> None:
    """A Registry dropped without close() leaves no socket open (no ResourceWarning);
    after close(), what was cached is still known and the rest is a RegistryError."""
    subject = unique_name("closing") + "-value"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dropped = Registry(registry_url)
        data = Codec(registry=dropped, subject=subject).encode(Start())
        del dropped
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []

    registry = Registry(registry_url)
    schema_id = int.from_bytes(data[1:5], "big")
    assert registry.schema(schema_id).name == "arroyo.Message"
    registry.close()
    registry.close()
    assert registry.schema(schema_id).name == "arroyo.Message"
    with pytest.raises(RegistryError, match="closed"):
        registry.schema(2**31 - 7)
