"""The bluesky-kafka parser and format: ``msgpack((name, doc))`` <-> messages (no broker).

Values are packed as bluesky-kafka's Publisher packs them (``msgpack.dumps`` with
``msgpack_numpy``); generated documents are checked with event-model's own JSON schema
validators. Both directions against the real bluesky-kafka package and Kafka are in
tests/integration/test_bluesky_kafka.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import pytest
from event_model import DocumentNames, schema_validators

from arroyo import DecodeError, Event, Start, Stop
from arroyo.formats import make_format
from arroyo.parsers import make_parser
from arroyo.parsers.bluesky_kafka import BlueskyKafkaParser


def pack(name: str, doc: dict[str, Any]) -> bytes:
    """What ``bluesky_kafka.Publisher`` writes as a record's value."""
    packed: bytes = msgpack.packb((name, doc), default=msgpack_numpy.encode)
    return packed


def unpack(value: bytes) -> tuple[str, dict[str, Any]]:
    name, doc = msgpack.unpackb(value, object_hook=msgpack_numpy.decode, strict_map_key=False)
    return name, doc


def documents() -> list[tuple[str, dict[str, Any]]]:
    start = {"uid": str(uuid.uuid4()), "time": 1.5, "plan_name": "count", "detectors": ["det"]}
    descriptor = {
        "uid": str(uuid.uuid4()),
        "run_start": start["uid"],
        "time": 2.0,
        "name": "primary",
        "data_keys": {"det": {"dtype": "array", "shape": [2, 2], "source": "SIM:det"}},
    }
    events = [
        {
            "uid": str(uuid.uuid4()),
            "descriptor": descriptor["uid"],
            "seq_num": i + 1,
            "time": 3.0 + i,
            "data": {"det": np.full((2, 2), i, dtype=np.float64)},
            "timestamps": {"det": 3.0 + i},
            "filled": {},
        }
        for i in range(2)
    ]
    stop = {
        "uid": str(uuid.uuid4()),
        "run_start": start["uid"],
        "time": 9.0,
        "exit_status": "success",
        "num_events": {"primary": 2},
    }
    return [
        ("start", start),
        ("descriptor", descriptor),
        *[("event", e) for e in events],
        ("stop", stop),
    ]


def plain(value: Any) -> Any:
    """A document with numpy arrays as lists (how Arroyo carries them)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def test_a_run_becomes_start_events_stop() -> None:
    parser = make_parser("bluesky-kafka")
    docs = documents()
    messages = [m for name, doc in docs for m in parser.parse(pack(name, doc))]
    start, descriptor, first, second, stop = messages
    assert second.metadata["seq_num"] == 2
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert start.data == docs[0][1] and stop.data == docs[-1][1]
    assert {m.stream for m in messages} == {docs[0][1]["uid"]}
    assert [m.seq for m in messages] == [0, 1, 2, 3, 4]
    assert isinstance(first, Event) and first.metadata["document"] == "event"
    assert first.metadata["data"] == {"det": [[0.0, 0.0], [0.0, 0.0]]}  # msgpack_numpy arrays
    assert descriptor.metadata == {"document": "descriptor", **docs[1][1]}


def test_documents_read_are_written_back_as_they_were() -> None:
    parser, fmt = BlueskyKafkaParser(), make_format("bluesky-kafka")
    docs = documents()
    written = []
    for name, doc in docs:
        for message in parser.parse(pack(name, doc)):
            written += [unpack(r.value) for r in fmt.encode(message)]
    assert written == [(name, plain(doc)) for name, doc in docs]


def test_a_detector_run_becomes_valid_bluesky_documents() -> None:
    fmt = make_format("bluesky-kafka")
    frames = [np.arange(6, dtype="<u2").reshape(2, 3) + i for i in range(3)]
    messages = [
        Start({"sample": "Si", "scan_id": 4}, stream="scan-4", timestamp=1_000_000_000),
        *[
            Event.from_array(f, {"exposure": 0.1, "frame": i}, stream="scan-4", seq=i + 1)
            for i, f in enumerate(frames)
        ],
        Stop({"exit_status": "success", "frames_missing": 0}, stream="scan-4", seq=4),
    ]
    docs = [unpack(r.value) for m in messages for r in fmt.encode(m)]
    assert [name for name, _ in docs] == ["start", "descriptor", "event", "event", "event", "stop"]
    for name, doc in docs:
        schema_validators[DocumentNames(name)].validate(doc)  # event-model says it is valid
    start, descriptor, *events, stop = (doc for _, doc in docs)
    assert start["uid"] == str(uuid.UUID(start["uid"])) and start["sample"] == "Si"
    assert descriptor["run_start"] == start["uid"] == stop["run_start"]
    assert descriptor["data_keys"]["image"] == {
        "source": "arroyo",
        "dtype": "array",
        "shape": [2, 3],
        "dtype_numpy": "<u2",
    }
    assert [e["seq_num"] for e in events] == [1, 2, 3]
    assert all(np.array_equal(e["data"]["image"], f) for e, f in zip(events, frames, strict=True))
    assert stop["num_events"] == {"primary": 3} and stop["frames_missing"] == 0
    # the same run written again has the same uids (stable across a re-bridge)
    fresh = make_format("bluesky-kafka")
    again = [unpack(r.value) for m in messages for r in fresh.encode(m)]
    assert [d["uid"] for _, d in again] == [d["uid"] for _, d in docs]


def test_an_event_without_a_key_of_the_first_is_refused() -> None:
    from arroyo import EncodeError

    fmt = make_format("bluesky-kafka")
    fmt.encode(Start(stream="r"))
    fmt.encode(Event({"a": 1, "b": 2}, stream="r"))
    with pytest.raises(EncodeError, match="lacks b, which the first event of its run had"):
        fmt.encode(Event({"a": 1}, stream="r"))


MALFORMED = {
    "bad msgpack": (b"\xc1\xc1\xc1", "bluesky-kafka: not msgpack"),
    "truncated msgpack": (pack("start", {"uid": "x"})[:-3], "bluesky-kafka: not msgpack"),
    "not a pair": (msgpack.packb({"name": "start"}), "expected msgpack [name, document]"),
    "unknown document": (pack("thing", {}), "unknown document name 'thing'"),
    "name not a string": (msgpack.packb([[1], {}]), "unknown document name [1]"),
    "start without uid": (pack("start", {"time": 1.0}), "the start document has no string 'uid'"),
    "document not a map": (msgpack.packb(["start", [1, 2]]), "not a map"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_value_raises_a_decode_error_saying_why(case: str) -> None:
    data, reason = MALFORMED[case]
    with pytest.raises(DecodeError) as raised:
        BlueskyKafkaParser().parse(data)
    assert reason in str(raised.value) and "\n" not in str(raised.value)
