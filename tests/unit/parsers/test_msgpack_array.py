"""The msgpack-array parser: [msgpack header, raw array] -> Start/Event/Stop (no broker)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from arroyo import DecodeError, Event, Start, Stop
from arroyo.parsers.msgpack_array import MsgpackArrayParser, encode_header


def pack(**fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def test_a_timepix_style_run_round_trips() -> None:
    parser = MsgpackArrayParser()
    hits = np.arange(1000, dtype="<u4")
    stamp = msgpack.Timestamp.from_unix_nano(1_700_000_000_000_000_123)
    start = parser.parse([pack(type="start", stream="tpx-1", chip="W0005")])
    event = parser.parse(
        [
            pack(
                stream="tpx-1",
                seq=1,
                dtype="<u4",
                shape=[1000],
                timestamp=stamp,
                trigger_count=17,
                t_acq=stamp,
                raw=b"\x01\x02",
            ),
            hits.tobytes(),
        ]
    )
    stop = parser.parse([pack(type="stop", stream="tpx-1", hits=1000)])
    assert isinstance(start, Start) and start.data == {"chip": "W0005"}
    assert isinstance(event, Event)
    assert event.timestamp == 1_700_000_000_000_000_123
    assert event.metadata == {
        "trigger_count": 17,
        "t_acq": 1_700_000_000_000_000_123,
        "raw": b"\x01\x02",
    }
    assert (event.to_array() == hits).all()
    assert isinstance(stop, Stop) and stop.seq == 2


def test_big_endian_arrays() -> None:
    frame = np.array([1, 2, 0x0102], dtype=">u2")
    event = MsgpackArrayParser().parse(
        [encode_header({"dtype": ">u2", "shape": [3]}), frame.tobytes()]
    )
    assert isinstance(event, Event)
    assert event.to_array().dtype == np.dtype(">u2")
    assert event.to_array().tolist() == [1, 2, 0x0102]


def test_the_one_map_form_takes_the_frame_from_data() -> None:
    frame = np.arange(6, dtype="<f4").reshape(2, 3)
    event = MsgpackArrayParser().parse(pack(dtype="<f4", shape=[2, 3], data=frame.tobytes()))
    assert isinstance(event, Event)
    assert "data" not in event.metadata
    assert (event.to_array() == frame).all()


def test_the_array_part_is_not_copied() -> None:
    frame = memoryview(bytes(4096))
    event = MsgpackArrayParser().parse([pack(dtype="u1", shape=[4096]), frame])
    assert isinstance(event, Event) and event.payload is frame


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        ([pack(), b"", b""], "expected 1 or 2 parts"),
        ([b"\xc1", b"x"], "not msgpack"),
        ([msgpack.packb([1, 2])], "msgpack map"),
        ([msgpack.packb({1: 2})], "keys must be strings"),
        ([msgpack.packb({"x": msgpack.ExtType(5, b"z")})], "not a JSON-like value"),
        ([pack(dtype="<u4", shape=[10]), b"\x00" * 39], "39 bytes but dtype <u4 and shape"),
        ([pack(dtype="<u4", shape=[10])], "no frame part"),
        ([pack(type="stop"), b"xx"], "second part"),
    ],
)
def test_malformed_messages_raise_decode_error(parts: list[bytes], problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        MsgpackArrayParser().parse(parts)
