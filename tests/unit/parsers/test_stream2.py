"""The stream2 parser: Dectris SIMPLON stream v2 CBOR -> Start/Event/Stop (no broker).

Messages are built here from the spec with cbor2 (tags written out by hand: 55799
self-describe, 40 multi-dimensional array, 64-87 typed arrays, 56500 Dectris
compression), not with Arroyo's own writer; frames are compressed with bitshuffle and
lz4 in the HDF5 framing Dectris uses, and the test checks Dectris' own
``dectris-compression`` reads them back before the parser sees them.
"""

from __future__ import annotations

import datetime
import fractions
import struct
from typing import Any

import cbor2
import lz4.block
import numpy as np
import pytest
from dectris.compression import decompress as dectris_decompress

from arroyo import DecodeError, Event, Start, Stop
from arroyo.formats import arrays
from arroyo.formats import stream2 as writer
from arroyo.parsers import make_parser
from arroyo.parsers.stream2 import Stream2Parser

TYPED = {"|u1": 64, "<u2": 69, "<u4": 70, ">u2": 65, "<f4": 85, ">i4": 74, "<f8": 86}
"""RFC 8746 tags of the dtypes used here (from the RFC's table)."""


def bslz4(array: np.ndarray) -> bytes:
    """bitshuffle + LZ4, HDF5 framing: 8-byte BE size, 4-byte BE block size in bytes."""
    import bitshuffle

    block = 8192 // array.itemsize
    body = bitshuffle.compress_lz4(np.ascontiguousarray(array).reshape(-1), block).tobytes()
    return struct.pack(">QI", array.nbytes, block * array.itemsize) + body


def lz4_hdf5(array: np.ndarray) -> bytes:
    """LZ4, HDF5 framing: size, block size, then each block as 4-byte BE size + data."""
    raw, block = array.tobytes(), 4096
    parts = [struct.pack(">QI", len(raw), block)]
    for i in range(0, len(raw), block):
        packed = lz4.block.compress(raw[i : i + block], store_size=False)
        parts += [struct.pack(">I", len(packed)), packed]
    return b"".join(parts)


COMPRESS = {"bslz4": bslz4, "lz4": lz4_hdf5}


def image(array: np.ndarray, compression: str | None = None) -> cbor2.CBORTag:
    content: Any = array.tobytes()
    if compression is not None:
        packed = COMPRESS[compression](array)
        # the oracle: Dectris' own library reads what the test made
        assert dectris_decompress(packed, compression, elem_size=array.itemsize) == content
        content = cbor2.CBORTag(56500, [compression, array.itemsize, packed])
    return cbor2.CBORTag(40, [list(array.shape), cbor2.CBORTag(TYPED[array.dtype.str], content)])


def message(fields: dict[str, Any]) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(55799, fields))


def start_message(**extra: Any) -> bytes:
    return message(
        {
            "type": "start",
            "series_id": 7,
            "series_unique_id": "series-uid-7",
            "number_of_images": 3,
            "channels": ["threshold_1"],
            "image_dtype": "uint16",
            "image_size_x": 4,
            "image_size_y": 2,
            "arm_date": datetime.datetime(2025, 5, 1, 12, 0, tzinfo=datetime.UTC),
            **extra,
        }
    )


def image_message(image_id: int, data: dict[str, cbor2.CBORTag], **extra: Any) -> bytes:
    return message(
        {
            "type": "image",
            "series_id": 7,
            "series_unique_id": "series-uid-7",
            "image_id": image_id,
            "real_time": [1, 1000],
            "start_time": [image_id, 1000],
            "stop_time": [image_id + 1, 1000],
            "user_data": {"note": "hi"},
            "data": data,
            **extra,
        }
    )


END = message({"type": "end", "series_id": 7, "series_unique_id": "series-uid-7"})


SHAPES = [(1, 1), (17, 33), (256, 300)]


@pytest.mark.parametrize("compression", ["bslz4", "lz4", None])
@pytest.mark.parametrize("dtype", ["|u1", "<u2", "<u4"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_images_come_back_equal_to_the_original(
    compression: str | None, dtype: str, shape: tuple[int, int]
) -> None:
    rng = np.random.default_rng(sum(shape))
    original = rng.integers(0, 200, size=shape).astype(dtype)
    original.flat[0] = np.iinfo(original.dtype).max  # the full range of the type
    [event] = Stream2Parser().parse(image_message(0, {"threshold_1": image(original, compression)}))
    assert isinstance(event, Event)
    assert event.array is not None and event.array.compression is None
    assert event.array.dtype == dtype and event.array.shape == shape
    out = event.to_array()
    assert out.dtype == original.dtype and np.array_equal(out, original)


@pytest.mark.parametrize("compression", ["bslz4", "lz4"])
@pytest.mark.parametrize("dtype", ["|u1", "<u2", "<u4"])
def test_decompress_false_keeps_the_frame_compressed_and_to_array_reads_it(
    compression: str, dtype: str
) -> None:
    original = (np.arange(64 * 48) % 251).astype(dtype).reshape(64, 48)
    tag = image(original, compression)
    [event] = Stream2Parser(decompress=False).parse(image_message(1, {"threshold_1": tag}))
    assert isinstance(event, Event) and event.array is not None
    assert event.array.compression == compression
    assert bytes(event.payload) == tag.value[1].value.value[2]  # the detector's bytes
    assert len(event.payload) < original.nbytes
    assert np.array_equal(event.to_array(), original)


def test_a_series_becomes_start_events_stop() -> None:
    parser = make_parser("stream2")
    frames = [np.full((2, 4), i, dtype="<u2") for i in range(3)]
    start = parser.parse(start_message())
    events = [
        parser.parse(image_message(i, {"threshold_1": image(f)})) for i, f in enumerate(frames)
    ]
    stop = parser.parse(END)
    [s] = start
    [t] = stop
    assert isinstance(s, Start) and isinstance(t, Stop)
    assert s.stream == "series-uid-7" and s.seq == 0
    assert s.data["number_of_images"] == 3 and s.data["series_id"] == 7
    assert s.data["arm_date"] == "2025-05-01T12:00:00+00:00"
    flat = [e for batch in events for e in batch]
    assert [e.seq for e in flat] == [1, 2, 3] and t.seq == 4
    assert all(e.stream == "series-uid-7" for e in flat) and t.stream == "series-uid-7"
    first = flat[0]
    assert isinstance(first, Event)
    assert first.metadata == {
        "series_id": 7,
        "series_unique_id": "series-uid-7",
        "image_id": 0,
        "real_time": [1, 1000],
        "start_time": [0, 1000],
        "stop_time": [1, 1000],
        "user_data": {"note": "hi"},
        "channel": "threshold_1",
    }
    assert [e.to_array().tolist() for e in flat] == [f.tolist() for f in frames]
    # the same image parsed again has the same id (de-duplication downstream)
    [again] = Stream2Parser().parse(image_message(0, {"threshold_1": image(frames[0])}))
    assert again.id == first.id and again.id != flat[1].id


def test_one_event_per_channel() -> None:
    low, high = np.zeros((3, 5), "<u2"), np.ones((3, 5), "<u2")
    events = Stream2Parser().parse(
        image_message(4, {"threshold_1": image(low, "bslz4"), "threshold_2": image(high, "bslz4")})
    )
    assert [e.metadata["channel"] for e in events] == ["threshold_1", "threshold_2"]
    assert [e.metadata["image_id"] for e in events] == [4, 4]
    assert np.array_equal(events[1].to_array(), high)
    assert events[0].id != events[1].id


@pytest.mark.parametrize("compression", ["bslz4", None])
def test_start_tables_are_kept_as_arrays(compression: str | None) -> None:
    flat = np.linspace(0.9, 1.1, 8, dtype="<f4").reshape(2, 4)
    mask = np.array([[0, 1, 0, 0], [0, 0, 4, 0]], dtype="<u4")
    table = np.arange(10, dtype="<u4")
    [start] = Stream2Parser().parse(
        start_message(
            flatfield={"threshold_1": image(flat, compression)},
            pixel_mask={"threshold_1": image(mask, compression)},
            countrate_correction_lookup_table=cbor2.CBORTag(70, table.tobytes()),
            threshold_energy={"threshold_1": 6200.5},
        )
    )
    assert isinstance(start, Start)
    value = start.data["flatfield"]["threshold_1"]
    assert arrays.is_array_value(value)
    assert value.get("compression") == compression
    assert np.array_equal(arrays.to_array(value), flat)
    assert np.array_equal(arrays.to_array(start.data["pixel_mask"]["threshold_1"]), mask)
    assert np.array_equal(arrays.to_array(start.data["countrate_correction_lookup_table"]), table)
    assert start.data["threshold_energy"] == {"threshold_1": 6200.5}


def test_other_typed_arrays_big_endian_signed_and_float() -> None:
    parser = Stream2Parser()
    for original in (
        np.arange(6, dtype=">u2").reshape(2, 3),
        np.arange(-3, 3, dtype=">i4").reshape(3, 2),
        np.linspace(0, 1, 6, dtype="<f8").reshape(1, 6),
    ):
        [event] = parser.parse(image_message(0, {"c": image(original, "bslz4")}))
        out = event.to_array()
        assert out.dtype == original.dtype and np.array_equal(out, original)


def test_a_column_major_array_is_read_in_c_order() -> None:
    original = np.arange(6, dtype="<u2").reshape(2, 3)
    column_major = original.tobytes(order="F")
    tag = cbor2.CBORTag(1040, [[2, 3], cbor2.CBORTag(69, column_major)])
    [event] = Stream2Parser().parse(image_message(0, {"c": tag}))
    assert np.array_equal(event.to_array(), original)


def test_cbor_dates_and_rationals_become_json_values() -> None:
    [stop] = Stream2Parser().parse(
        message(
            {
                "type": "end",
                "series_id": 1,
                "when": cbor2.CBORTag(1, 0),
                "ratio": fractions.Fraction(1, 3),
            }
        )
    )
    assert isinstance(stop, Stop) and stop.stream == "series-1"
    assert stop.data["when"] == "1970-01-01T00:00:00+00:00"
    assert stop.data["ratio"] == [1, 3]


def test_an_unknown_message_type_is_passed_on_as_metadata() -> None:
    parser = Stream2Parser()
    parser.parse(start_message())
    [event] = parser.parse(
        message({"type": "calibration", "series_unique_id": "series-uid-7", "gain": 2.5})
    )
    assert isinstance(event, Event) and event.array is None
    assert event.metadata == {
        "type": "calibration",
        "series_unique_id": "series-uid-7",
        "gain": 2.5,
    }
    assert event.stream == "series-uid-7" and event.seq == 1


def test_the_writer_makes_messages_the_parser_reads() -> None:
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    parser = Stream2Parser()
    [start] = parser.parse(
        writer.start_message(
            series_id=1,
            series_unique_id="s",
            number_of_images=1,
            image_shape=(3, 4),
            compression="lz4",
        )
    )
    [event] = parser.parse(
        writer.image_message(
            series_id=1, series_unique_id="s", image_id=0, data={"t": frame}, compression="bslz4"
        )
    )
    [stop] = parser.parse(writer.end_message(series_id=1, series_unique_id="s"))
    assert isinstance(start, Start) and start.data["image_size_x"] == 4
    assert np.array_equal(arrays.to_array(start.data["flatfield"]["threshold_1"]), np.ones((3, 4)))
    assert np.array_equal(event.to_array(), frame)
    assert isinstance(stop, Stop) and stop.seq == 2


# -- malformed messages: DecodeError with a one-line reason -------------------------------

GOOD_IMAGE = image_message(0, {"threshold_1": image(np.zeros((4, 4), "<u2"), "bslz4")})
WRONG_SIZE = cbor2.CBORTag(40, [[4, 4], cbor2.CBORTag(69, bytes(30))])
PACKED = bslz4(np.zeros((4, 4), "<u2"))

MALFORMED = {
    "truncated CBOR": (GOOD_IMAGE[:-7], "truncated CBOR"),
    "empty": (b"", "truncated CBOR"),
    "unknown tag": (
        message({"type": "image", "data": {"c": cbor2.CBORTag(31337, b"x")}}),
        "unknown CBOR tag 31337",
    ),
    "not a map": (cbor2.dumps([1, 2, 3]), "expected a CBOR map"),
    "no type": (message({"series_id": 1}), "no string 'type'"),
    "image without data": (message({"type": "image", "image_id": 0}), "no 'data' map"),
    "data not an array": (
        image_message(0, {"c": b"raw bytes"}),
        "data['c'] is not a multi-dimensional array",
    ),
    "wrong size": (image_message(0, {"c": WRONG_SIZE}), "30 bytes, but <u2 [4, 4] needs 32"),
    "unknown compression": (
        image_message(
            0,
            {
                "c": cbor2.CBORTag(
                    40, [[4, 4], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["zip", 2, PACKED]))]
                )
            },
        ),
        "unknown compression 'zip'",
    ),
    "compressed to another shape": (
        image_message(
            0,
            {
                "c": cbor2.CBORTag(
                    40, [[8, 8], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, PACKED]))]
                )
            },
        ),
        "announces 32 uncompressed bytes, expected 128",
    ),
    "element size disagrees": (
        image_message(
            0,
            {
                "c": cbor2.CBORTag(
                    40, [[4, 4], cbor2.CBORTag(70, cbor2.CBORTag(56500, ["bslz4", 2, PACKED]))]
                )
            },
        ),
        "holds bslz4 data of 2-byte elements",
    ),
    "corrupt compressed data": (
        image_message(
            0,
            {
                "c": cbor2.CBORTag(
                    40,
                    [
                        [4, 4],
                        cbor2.CBORTag(69, cbor2.CBORTag(56500, ["lz4", 2, PACKED[:12] + b"junk"])),
                    ],
                )
            },
        ),
        "cannot decompress lz4 data",
    ),
    "float128": (
        image_message(0, {"c": cbor2.CBORTag(40, [[1], cbor2.CBORTag(87, bytes(16))])}),
        "typed array tag 87",
    ),
    "two parts": ([GOOD_IMAGE, b"x"], "expected 1 part"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_message_raises_a_decode_error_saying_why(case: str) -> None:
    data, reason = MALFORMED[case]
    with pytest.raises(DecodeError) as raised:
        Stream2Parser().parse(data)
    text = str(raised.value)
    assert reason in text and text.startswith("stream2:") and "\n" not in text


def test_decompress_false_still_checks_the_announced_size() -> None:
    wrong = image_message(
        0,
        {
            "c": cbor2.CBORTag(
                40, [[8, 8], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, PACKED]))]
            )
        },
    )
    with pytest.raises(DecodeError, match="announces 32 bytes, but <u2 \\[8, 8\\] needs 128"):
        Stream2Parser(decompress=False).parse(wrong)


def test_decompress_false_refuses_compressed_data_without_its_header() -> None:
    short = cbor2.CBORTag(69, cbor2.CBORTag(56500, ["lz4", 2, b"\x00" * 5]))
    with pytest.raises(DecodeError, match="stream2: image 0 channel c: compressed data of 5 bytes"):
        Stream2Parser(decompress=False).parse(
            image_message(0, {"c": cbor2.CBORTag(40, [[2], short])})
        )


def test_the_parser_state_survives_a_bad_message() -> None:
    parser = Stream2Parser()
    parser.parse(start_message())
    with pytest.raises(DecodeError):
        parser.parse(GOOD_IMAGE[:-3])
    [event] = parser.parse(GOOD_IMAGE)
    assert event.seq == 1 and event.stream == "series-uid-7"


def test_decompress_must_be_a_boolean() -> None:
    from arroyo import ConfigError

    with pytest.raises(ConfigError, match="decompress must be true or false"):
        make_parser("stream2", decompress="no")


@pytest.mark.parametrize("decompress", [True, False])
def test_a_large_frame_is_a_view_of_the_received_buffer(decompress: bool) -> None:
    """No copy of the image (cbor2 would make one): the payload views the ZeroMQ frame."""
    original = (np.arange(512 * 512) % 1000).astype("<u2").reshape(512, 512)
    noise = np.random.default_rng(0).integers(0, 60000, size=(512, 512)).astype("<u2")
    for frame, compression in [(original, None), (noise, "lz4")]:
        received = memoryview(image_message(0, {"t": image(frame, compression)}))
        [event] = Stream2Parser(decompress=decompress).parse([received])
        if compression is None or not decompress:
            assert isinstance(event.payload, memoryview) and event.payload.obj is received.obj
        assert np.array_equal(event.to_array(), frame)
