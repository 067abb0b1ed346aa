"""The json-frame parser: [JSON header, raw frame] -> Start/Event/Stop (no broker)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arroyo import DecodeError, Event, Start, Stop, decode, encode
from arroyo.parsers.json_frame import JsonFrameParser, encode_header


def header(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_run_round_trips_with_dtype_shape_and_bytes() -> None:
    parser = JsonFrameParser()
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    start = parser.parse([header(type="start", stream="scan-1", sample="Si")])
    event = parser.parse(
        [
            header(type="event", stream="scan-1", seq=1, dtype="<u2", shape=[3, 4], exposure=0.1),
            frame.tobytes(),
        ]
    )
    stop = parser.parse([header(type="stop", stream="scan-1", seq=2, status="ok")])
    assert isinstance(start, Start) and start.data == {"sample": "Si"}
    assert (start.stream, start.seq) == ("scan-1", 0)
    assert isinstance(event, Event)
    assert event.metadata == {"exposure": 0.1}
    assert (event.array.dtype, event.array.shape) == ("<u2", (3, 4))  # type: ignore[union-attr]
    assert (event.to_array() == frame).all()
    assert isinstance(stop, Stop) and stop.data == {"status": "ok"} and stop.seq == 2
    # and through Arroyo's own codec, unchanged
    again = decode(encode(event))
    assert isinstance(again, Event) and (again.to_array() == frame).all()


def test_big_endian_frames_keep_their_byte_order() -> None:
    frame = np.array([[1, 256], [513, 65535]], dtype=">u2")
    event = JsonFrameParser().parse([header(dtype=">u2", shape=[2, 2]), frame.tobytes()])
    assert isinstance(event, Event)
    assert event.array is not None and event.array.dtype == ">u2"
    array = event.to_array()
    assert array.dtype == np.dtype(">u2")
    assert array.tolist() == [[1, 256], [513, 65535]]


def test_dtype_names_are_normalized() -> None:
    frame = np.ones(4, dtype=np.float32)
    event = JsonFrameParser().parse([header(dtype="float32", shape=4), frame.tobytes()])
    assert isinstance(event, Event) and event.array is not None
    assert event.array == type(event.array)(np.dtype(np.float32).str, (4,))


def test_the_frame_is_not_copied() -> None:
    frame = memoryview(np.zeros(1 << 16, dtype="<u1").tobytes())
    event = JsonFrameParser().parse([header(dtype="<u1", shape=[1 << 16]), frame])
    assert isinstance(event, Event)
    assert event.payload is frame


def test_missing_stream_and_seq_are_filled_in_per_run() -> None:
    parser = JsonFrameParser()
    first = [parser.parse([header(type=t)]) for t in ("start", "event", "event", "stop")]
    second = [parser.parse([header(type=t)]) for t in ("start", "event", "stop")]
    assert [m.seq for m in first] == [0, 1, 2, 3]
    assert [m.seq for m in second] == [0, 1, 2]
    assert len({m.stream for m in first}) == 1
    assert len({m.stream for m in second}) == 1
    assert first[0].stream != second[0].stream


def test_identity_keys_are_read_and_other_keys_kept() -> None:
    event = JsonFrameParser().parse(
        header(id="abc", stream="s", seq=5, timestamp=1.5, frame_number=4, nested={"a": [1]})
    )
    assert isinstance(event, Event)
    assert (event.id, event.stream, event.seq) == ("abc", "s", 5)
    assert event.timestamp == 1_500_000_000
    assert event.metadata == {"frame_number": 4, "nested": {"a": [1]}}
    assert event.payload == b""


def test_integer_timestamps_are_nanoseconds() -> None:
    event = JsonFrameParser().parse(header(timestamp=1_700_000_000_123_456_789))
    assert event.timestamp == 1_700_000_000_123_456_789  # type: ignore[union-attr]


def test_seq_key_points_at_the_senders_counter() -> None:
    parser = JsonFrameParser(seq_key="frame_number", stream_key="run")
    event = parser.parse(header(run="r7", frame_number=12))
    assert isinstance(event, Event)
    assert (event.stream, event.seq) == ("r7", 12)
    assert event.metadata == {"run": "r7", "frame_number": 12}


def test_a_frame_without_dtype_is_an_opaque_payload() -> None:
    event = JsonFrameParser().parse([header(kind="spectrum"), b"\x00\x01\x02"])
    assert isinstance(event, Event)
    assert event.array is None and event.payload == b"\x00\x01\x02"


def test_single_part_messages_may_be_bytes() -> None:
    start = JsonFrameParser().parse(encode_header({"type": "start", "stream": "x"}))
    assert isinstance(start, Start) and start.stream == "x"


def test_a_start_may_carry_an_empty_second_part() -> None:
    assert isinstance(JsonFrameParser().parse([header(type="start"), b""]), Start)


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        ([b"{}", b"a", b"b"], "expected 1 or 2 parts"),
        ([b"not json", b"x"], "not JSON"),
        ([b"\xff\xfe", b"x"], "not JSON"),
        ([b"[1, 2]"], "JSON object"),
        ([header(dtype="<u2", shape=[2, 2]), b"\x00" * 7], "7 bytes but dtype <u2 and shape"),
        ([header(dtype="<u2", shape=[2, 2])], "no frame part"),
        ([header(dtype="<u2"), b"\x00\x00"], "no shape"),
        ([header(shape=[2]), b"\x00\x00"], "no dtype"),
        ([header(dtype="<U4", shape=[1]), b"\x00" * 16], "unsupported dtype"),
        ([header(dtype="<u2", shape=[-1]), b""], "non-negative"),
        ([header(dtype="<u2", shape="2x2"), b"\x00" * 8], "shape"),
        ([header(type="begin")], "'type' must be"),
        ([header(type="stop"), b"frame"], "second part"),
        ([header(seq=-1)], "non-negative integer"),
        ([header(seq="3")], "non-negative integer"),
        ([header(stream=["a"])], "stream must be a string"),
        ([header(timestamp="now")], "timestamp"),
        ([header(timestamp=float("nan"))], "timestamp nan is not a finite number of s"),
        ([header(timestamp=2**63)], r"timestamp 9223372036854775808 ns is out of range"),
        ([header(timestamp=-(2**63) - 1)], "is out of range"),
        ([header(timestamp=1e12)], r"timestamp 1000000000000.0 s is out of range: .* 2262\)$"),
        ([header(seq=2**63)], "non-negative integer below 2\\*\\*63"),
        ([header(id=3)], "id must be a string"),
    ],
)
def test_malformed_messages_raise_decode_error(parts: list[bytes], problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        JsonFrameParser().parse(parts)


def test_a_failed_parse_leaves_the_counters_alone() -> None:
    parser = JsonFrameParser()
    start = parser.parse([header(type="start")])
    with pytest.raises(DecodeError):
        parser.parse([header(dtype="<u2", shape=[2]), b"\x00"])
    event = parser.parse([header()])
    assert (event.stream, event.seq) == (start.stream, 1)


def test_the_largest_timestamp_and_seq_an_avro_long_holds_are_taken() -> None:
    """The bounds of the checks above: 2**63 - 1 parses, and encodes."""
    event = JsonFrameParser().parse([header(timestamp=2**63 - 1, seq=2**63 - 1)])
    assert (event.timestamp, event.seq) == (2**63 - 1, 2**63 - 1)
    assert decode(encode(event)) == event
