"""The ess parser and the ess format: ESS FlatBuffers <-> Arroyo messages (no broker).

The oracle is the ``ess-streaming-data-types`` package: buffers are made with its
``serialise_*``, read by the parser, written back by the format, and read again with
its ``deserialise_*``. The same round trips through the real Kafka are in
tests/integration/test_ess_kafka.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from streaming_data_types import (
    deserialise_6s4t,
    deserialise_ad00,
    deserialise_f144,
    deserialise_pl72,
    serialise_6s4t,
    serialise_pl72,
    serialise_x5f2,
)

from arroyo import DecodeError, EncodeError, Event, Start, Stop, decode, encode
from arroyo.formats import arrays, make_format
from arroyo.formats.ess import EssFormat
from arroyo.parsers import make_parser
from arroyo.parsers.ess import EssParser
from tests.unit.parsers.ess_buffers import IMAGE, assert_same_as_serialised, buffers


def test_every_schema_becomes_a_message() -> None:
    parser = make_parser("ess")
    made = {name: parser.parse(data) for name, data in buffers().items()}
    start, stop = made["pl72"], made["6s4t"]
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert start.stream == stop.stream == "job-1" and start.seq == 0 and stop.seq == 5
    assert start.data["instrument_name"] == "LOKI" and start.data["metadata"] == '{"proposal": 42}'
    assert start.timestamp == 1_700_000_000_000 * 1_000_000
    spectra = start.data["detector_spectrum_map"]
    assert np.array_equal(arrays.to_array(spectra["detector_ids"]), [10, 20, 30])
    assert stop.data["command_id"] == "cmd-7"

    image = made["ad00"]
    assert isinstance(image, Event) and image.stream == "job-1" and image.seq == 1
    assert np.array_equal(image.to_array(), IMAGE) and image.array.dtype == "<u2"
    assert image.metadata["unique_id"] == 17 and image.timestamp == 1_700_000_000_123_456_789
    assert image.metadata["attributes"][0] == {
        "name": "exposure",
        "description": "exposure time",
        "source": "camera",
        "data": 0.25,
    }
    assert np.array_equal(arrays.to_array(image.metadata["attributes"][1]["data"]), [1, 2, 3, 4])

    monitor = made["da00"]
    assert isinstance(monitor, Event) and monitor.metadata["signal"] == "signal"
    assert np.array_equal(monitor.to_array(), np.arange(6, dtype=float).reshape(2, 3))
    x = monitor.metadata["variables"][1]
    assert x["unit"] == "mm" and np.array_equal(arrays.to_array(x["data"]), [0.5, 1.5])

    neutrons = made["ev44"]
    assert isinstance(neutrons, Event) and neutrons.array is None
    assert neutrons.metadata["message_id"] == 99
    assert arrays.to_array(neutrons.metadata["time_of_flight"]).tolist() == [10, 20, 30, 40, 50]
    assert neutrons.timestamp == 1_700_000_000_000_000_000

    log = made["f144"]
    assert isinstance(log, Event)
    assert log.metadata == {"schema": "f144", "source_name": "loki:temperature", "value": 293.15}
    assert log.timestamp == 1_700_000_000_900_000_000


def test_the_format_writes_back_what_the_parser_read() -> None:
    """serialise -> parse -> encode -> deserialise gives what was serialised."""
    parser, fmt = EssParser(), make_format("ess")
    original = buffers()
    again = {}
    for name, data in original.items():
        [record] = fmt.encode(parser.parse(data))
        assert record.value[4:8] == name.encode() and record.key is None
        again[name] = record.value
    assert_same_as_serialised(original, again)


def test_a_detector_run_is_written_as_pl72_ad00_f144_6s4t() -> None:
    fmt = EssFormat(source_name="eiger", instrument_name="BIFROST")
    frame = np.arange(6, dtype=">u2").reshape(2, 3)  # big-endian: written little-endian
    start = Start({"sample": "Si", "run_name": "scan 3"}, stream="scan-3", timestamp=5_000_000_000)
    event = Event.from_array(frame, {"exposure": 0.1}, stream="scan-3", seq=1, timestamp=7)
    scalars = Event({"temperature": 21.5, "counts": [1, 2, 3], "note": "text"}, stream="scan-3")
    stop = Stop(stream="scan-3", seq=3, timestamp=9_000_000_000)
    [pl72] = fmt.encode(start)
    [ad00] = fmt.encode(event)
    f144 = fmt.encode(scalars)
    [s6s4t] = fmt.encode(stop)
    run_start = deserialise_pl72(pl72.value)
    assert (run_start.job_id, run_start.run_name, run_start.start_time) == (
        "scan-3",
        "scan 3",
        5000,
    )
    assert run_start.filename == "scan-3.nxs" and run_start.instrument_name == "BIFROST"
    assert json.loads(run_start.metadata) == {"sample": "Si"}
    image = deserialise_ad00(ad00.value)
    assert (image.source_name, image.unique_id, image.timestamp_ns) == ("eiger", 1, 7)
    assert np.array_equal(image.data, frame)
    logs = [deserialise_f144(r.value) for r in f144]
    assert [(log.source_name, np.asarray(log.value).tolist()) for log in logs] == [
        ("temperature", 21.5),
        ("counts", [1, 2, 3]),
    ]  # "note" is text: f144 carries numbers only
    run_stop = deserialise_6s4t(s6s4t.value)
    assert (run_stop.job_id, run_stop.stop_time) == ("scan-3", 9000)


def test_a_compressed_frame_is_written_decompressed() -> None:
    from arroyo.formats.compression import compress
    from arroyo.message import ArrayInfo

    frame = np.arange(64, dtype="<u2").reshape(8, 8)
    event = Event(
        payload=compress(frame.tobytes(), "bslz4", 2), array=ArrayInfo("<u2", (8, 8), "bslz4")
    )
    [record] = EssFormat().encode(event)
    assert np.array_equal(deserialise_ad00(record.value).data, frame)


def test_an_array_ad00_cannot_carry_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="ad00 cannot carry arrays of dtype complex64"):
        EssFormat().encode(Event.from_array(np.zeros(3, np.complex64)))


def test_ev44_message_ids_and_ad00_unique_ids_are_frame_counters() -> None:
    parser = EssParser()
    counter = EssParser.frame_counter()
    assert counter.number(parser.parse(buffers()["ad00"])) == ("ad00:loki_camera", 17)
    assert counter.number(parser.parse(buffers()["ev44"])) == ("ev44:loki_detector", 99)
    assert counter.number(parser.parse(buffers()["f144"])) is None


MALFORMED = {
    "unknown identifier": (
        serialise_x5f2("sw", "1.0", "svc", "host", 1, 1000, "{}"),
        "unknown FlatBuffer identifier 'x5f2'",
    ),
    "made-up identifier": (
        b"\x10\x00\x00\x00zz99" + bytes(16),
        "unknown FlatBuffer identifier 'zz99'",
    ),
    "too short": (b"\x00\x01ad", "4 bytes is too short"),
    "truncated ad00": (buffers()["ad00"][:40], "malformed ad00 FlatBuffer of 40 bytes"),
    "garbage with a known id": (b"\xff\xff\xff\x7fpl72" + b"\xff" * 8, "malformed pl72 FlatBuffer"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_buffer_raises_a_decode_error_naming_it(case: str) -> None:
    data, reason = MALFORMED[case]
    with pytest.raises(DecodeError) as raised:
        EssParser().parse(data)
    assert reason in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("ident", "name", "buffer"),
    [
        ("pl72", "start_time", lambda t: serialise_pl72("job", "f.nxs", start_time=t)),
        ("pl72", "stop_time", lambda t: serialise_pl72("job", "f.nxs", start_time=1, stop_time=t)),
        ("6s4t", "stop_time", lambda t: serialise_6s4t("job", stop_time=t)),
    ],
)
def test_a_time_after_2262_is_a_decode_error_naming_the_field(
    ident: str, name: str, buffer: Callable[[int], bytes]
) -> None:
    """A uint64 time in ms whose nanoseconds do not fit in a timestamp is refused when
    parsed (not later, when the message is published), naming the schema and field; the
    last millisecond that fits parses."""
    last = ((1 << 63) - 1) // 1_000_000
    with pytest.raises(DecodeError) as info:
        EssParser().parse(buffer(last + 1))
    assert str(info.value) == (
        f"ess: {ident} {name} {last + 1} ms is out of range: its nanoseconds since 1970 must "
        "fit in a signed 64-bit integer (from the year 1677 to 2262)"
    )
    message = EssParser().parse(buffer(last))
    assert decode(encode(message)) == message
