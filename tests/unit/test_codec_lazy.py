"""The lazy codec (``check: lazy``): the identity on arrival, the rest when first read,
with the full decode's checks and errors."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given

from arroyo import DecodeError, Event, Start, Stop, decode, encode
from arroyo.codec import Codec
from arroyo.codec_guard import MAX_ITEMS
from arroyo.codec_lazy import DeferredEvent
from arroyo.message import JSON
from arroyo.schema import SCHEMA_DIR, SchemaStore, load
from arroyo.testing import BOMBS, bomb
from tests.unit.json_values import json_maps

LAZY = Codec(lazy=True)


def hostile(kind: str) -> bytes:
    """The Event of :func:`arroyo.testing.bomb` ``kind``."""
    return bomb(kind, MAX_ITEMS + 1 if kind == "items" else 5000, event=True)


@given(metadata=json_maps)
def test_an_event_read_lazily_equals_the_event_read_in_full(metadata: dict[str, JSON]) -> None:
    event = Event(metadata, b"px", stream="s", seq=3)
    data = encode(event)
    lazy = LAZY.decode(data)
    assert isinstance(lazy, DeferredEvent)
    assert lazy == decode(data) == event
    assert decode(data) == lazy


def test_the_identity_is_read_on_arrival_and_the_rest_when_first_read() -> None:
    event = Event.from_array(np.arange(6, dtype=">u2").reshape(2, 3), {"frame": 7}, stream="r")
    lazy = LAZY.decode(encode(event))
    assert isinstance(lazy, DeferredEvent)
    assert (lazy.stream, lazy.seq, lazy.id, lazy.timestamp) == (
        event.stream,
        event.seq,
        event.id,
        event.timestamp,
    )
    assert not lazy.decoded
    assert lazy.array == event.array
    assert lazy.decoded
    assert lazy.to_array().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert lazy.metadata == {"frame": 7}
    assert repr(lazy).startswith("DeferredEvent(stream='r', seq=0, ")
    assert "metadata={'frame': 7}" in repr(lazy)


@pytest.mark.parametrize("message", [Start({"a": [1, 2]}, stream="s"), Stop({"n": 3})])
def test_starts_and_stops_are_decoded_in_full_on_arrival(message: Start | Stop) -> None:
    decoded = LAZY.decode(encode(message))
    assert type(decoded) is type(message)
    assert decoded == message


def test_a_deferred_event_forwarded_as_it_came_is_never_decoded() -> None:
    data = hostile("nesting")
    lazy = LAZY.decode(data)
    assert Codec().encode(lazy, wire=data) is data
    assert repr(lazy) == (
        "DeferredEvent(stream='hostile', seq=0, id='00000000000000000000000000000000', "
        "timestamp=1700000000000000000, not decoded yet)"
    )
    assert isinstance(lazy, DeferredEvent)
    assert not lazy.decoded


@pytest.mark.parametrize("kind", [k for k in BOMBS if k != "long number"])  # seq: on arrival
def test_a_hostile_event_is_refused_when_read_with_the_full_decodes_reason(kind: str) -> None:
    data = hostile(kind)
    with pytest.raises(DecodeError) as full:
        decode(data)
    lazy = LAZY.decode(data)  # the identity is fine: no decoding yet
    for _ in range(2):  # refused each time it is read
        with pytest.raises(DecodeError) as read:
            _ = lazy.metadata
        assert str(read.value) == str(full.value)
    with pytest.raises(DecodeError):
        _ = lazy.payload


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not Arroyo data"),
        (b"\xc3\x01" + b"\x01" * 8 + b"rest", "unknown writer schema"),
        (encode(Event({}, b"x"))[:20], "truncated"),  # inside the id
    ],
)
def test_framing_and_identity_are_checked_on_arrival(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        LAZY.decode(data)


def test_replace_copy_and_pickle_give_the_decoded_event() -> None:
    event = Event({"frame": 1}, b"px", stream="s", seq=1)
    changed = dataclasses.replace(LAZY.decode(encode(event)), metadata={"frame": 2})
    assert changed.metadata == {"frame": 2}
    assert changed == dataclasses.replace(event, metadata={"frame": 2})
    assert copy.copy(LAZY.decode(encode(event))) == event
    assert pickle.loads(pickle.dumps(LAZY.decode(encode(event)))) == event
    assert encode(LAZY.decode(encode(event))) == encode(event)


def test_a_lazy_facility_reader_resolves_and_checks_when_read() -> None:
    examples = SCHEMA_DIR / "examples"
    v1 = load(examples / "frame-metadata-v1.avsc")
    v2 = load(examples / "frame-metadata-v2.avsc")
    reader = Codec(reader=v1, store=SchemaStore([v2]), lazy=True)
    good: dict[str, JSON] = {"frame": 2, "exposure_s": 0.5, "detector": "pilatus"}
    newer = reader.decode(Codec(writer=v2).encode(Event({**good, "energy_kev": 12.4}, b"px")))
    assert isinstance(newer, DeferredEvent)
    assert newer.metadata == good  # v2's field, unknown to v1, is left out
    bad = reader.decode(encode(Event({"frame": "two"}, b"px")))
    with pytest.raises(DecodeError, match=r"does not conform to facility.FrameMetadata"):
        _ = bad.metadata  # type: ignore[union-attr]
