"""Large CBOR byte strings left in the received buffer (no broker).

cbor2 is the oracle: a message with its large byte strings detached decodes, with the
views put back, to what cbor2 decodes from the whole message.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import cbor2
import pytest

from arroyo.parsers._cbor import detach

BIG = bytes(range(256)) * 300  # 76,800 bytes: above the 64 KiB threshold
OTHER = b"\x07" * 70_000


def restore(value: object, blobs: dict[bytes, memoryview]) -> object:
    if isinstance(value, bytes) and value in blobs:
        return bytes(blobs[value])
    if isinstance(value, list | tuple):
        return [restore(v, blobs) for v in value]
    if isinstance(value, Mapping):
        return {k: restore(v, blobs) for k, v in value.items()}
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, restore(value.value, blobs))
    return value


def plain(value: object) -> object:
    """cbor2 6 decodes inside tags as tuples: compare as lists."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, plain(value.value))
    return value


MESSAGES = {
    "image": cbor2.dumps(
        cbor2.CBORTag(
            55799,
            {
                "type": "image",
                "image_id": 2**40,
                "time": -1.5,
                "flags": [True, False, None, cbor2.undefined],
                "data": {"t": cbor2.CBORTag(40, [[300, 256], cbor2.CBORTag(69, BIG)])},
                "more": cbor2.CBORTag(56500, ["lz4", 2, OTHER]),
                "small": b"abc",
            },
        )
    ),
    "floats and simple values": b"\x84"  # an array of 4 items
    + cbor2.dumps(BIG)
    + b"\xf9\x3c\x00"  # float16 1.0
    + b"\xfb"
    + struct.pack(">d", 1e300)  # float64
    + b"\xf8\x20",  # simple value 32
}


@pytest.mark.parametrize("name", MESSAGES)
def test_detached_messages_decode_to_what_cbor2_reads_whole(name: str) -> None:
    data = MESSAGES[name]
    rest, blobs = detach(data)
    assert len(rest) < 1000 and blobs
    assert all(view.obj is data or view.obj.obj is data for view in blobs.values())
    assert plain(restore(cbor2.loads(rest), blobs)) == plain(cbor2.loads(data))


def test_indefinite_lengths_are_followed() -> None:
    data = (
        b"\xbf"  # indefinite map
        + b"\x61a"
        + b"\x9f\x01\x02\xff"  # "a": indefinite array [1, 2]
        + b"\x61b"
        + b"\x5f\x42xy\x41z\xff"  # "b": indefinite byte string (chunks)
        + b"\x61c"
        + cbor2.dumps(BIG)
        + b"\xff"
    )
    rest, blobs = detach(data)
    assert len(blobs) == 1
    assert restore(cbor2.loads(rest), blobs) == {"a": [1, 2], "b": b"xyz", "c": BIG}


@pytest.mark.parametrize(
    "data",
    [
        cbor2.dumps({"x": BIG})[:-10],  # truncated
        cbor2.dumps({"x": BIG}) + b"\x00",  # trailing bytes
        cbor2.dumps(b"small"),  # nothing large
        b"\x9f" * 70 + cbor2.dumps(BIG),  # nested deeper than the walk follows
        b"\x1c" + bytes(70_000),  # reserved additional information
    ],
    ids=["truncated", "trailing", "small", "deep", "reserved"],
)
def test_what_the_walk_cannot_follow_is_left_whole(data: bytes) -> None:
    rest, blobs = detach(data)
    assert rest is data and not blobs
