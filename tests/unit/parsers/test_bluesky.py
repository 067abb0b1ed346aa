"""The bluesky parser on documents in bluesky's 0MQ wire format (no broker, no RunEngine).

The wire format is built with bluesky's own Publisher code path: ``b" ".join([prefix,
name.encode(), serializer(doc)])`` (bluesky.callbacks.zmq.Publisher.__call__).
"""

from __future__ import annotations

import json
import pickle
import uuid
from typing import Any

import event_model
import msgpack
import msgpack_numpy
import numpy as np
import pytest

from arroyo import ConfigError, DecodeError, Event, Start, Stop, decode, encode
from arroyo.parsers.bluesky import BlueskyParser


def wire(name: str, doc: dict[str, Any], prefix: bytes = b"", dumps: Any = msgpack.dumps) -> bytes:
    return b" ".join([prefix, name.encode(), dumps(doc)])


def uid() -> str:
    return str(uuid.uuid4())


def run_documents() -> list[tuple[str, dict[str, Any]]]:
    start = {"uid": uid(), "time": 1700000000.5, "plan_name": "scan", "detectors": ["det"]}
    descriptor = {
        "uid": uid(),
        "run_start": start["uid"],
        "time": 1700000001.0,
        "name": "primary",
        "data_keys": {"det": {"dtype": "number", "shape": [], "source": "SIM:det"}},
    }
    events = [
        {
            "uid": uid(),
            "descriptor": descriptor["uid"],
            "seq_num": i + 1,
            "time": 1700000002.0 + i,
            "data": {"det": float(i), "motor": -1.0 + i},
            "timestamps": {"det": 1700000002.0 + i, "motor": 1700000002.0 + i},
            "filled": {},
        }
        for i in range(3)
    ]
    stop = {
        "uid": uid(),
        "run_start": start["uid"],
        "time": 1700000009.0,
        "exit_status": "success",
        "num_events": {"primary": 3},
    }
    return [
        ("start", start),
        ("descriptor", descriptor),
        *(("event", e) for e in events),
        ("stop", stop),
    ]


def parse_all(parser: BlueskyParser, messages: list[bytes]) -> list[Any]:
    out = []
    for message in messages:
        out.extend(parser.parse(message))
    return out


def test_a_run_becomes_start_events_and_stop_in_one_stream() -> None:
    docs = run_documents()
    messages = parse_all(BlueskyParser(), [wire(n, d) for n, d in docs])
    start, descriptor, *events, stop = messages
    run = docs[0][1]["uid"]
    assert isinstance(start, Start) and start.data == docs[0][1]
    assert start.id == uuid.UUID(run).hex
    assert start.timestamp == 1_700_000_000_500_000_000
    assert isinstance(descriptor, Event) and descriptor.metadata["document"] == "descriptor"
    assert descriptor.metadata["data_keys"] == docs[1][1]["data_keys"]
    assert [e.metadata["document"] for e in events] == ["event"] * 3
    assert [e.metadata["data"]["det"] for e in events] == [0.0, 1.0, 2.0]
    assert [e.metadata["seq_num"] for e in events] == [1, 2, 3]
    assert isinstance(stop, Stop) and stop.data == docs[-1][1]
    assert {m.stream for m in messages} == {run}
    assert [m.seq for m in messages] == list(range(6))
    for message in messages:  # everything survives Arroyo's own codec
        assert decode(encode(message)) == message


def test_an_event_page_expands_into_one_event_per_event() -> None:
    # event_model, bluesky's own document package, packs the page and is the oracle of
    # what it holds: the parser must give the events its unpack_event_page gives.
    docs = run_documents()
    parser = BlueskyParser()
    parse_all(parser, [wire(n, d) for n, d in docs[:2]])
    events = [d for n, d in docs if n == "event"]
    page = event_model.pack_event_page(*events)
    out = parser.parse(wire("event_page", page))
    expected = [dict(e) for e in event_model.unpack_event_page(page)]
    assert expected == events  # the oracle agrees with the documents the page was made of
    assert [m.metadata for m in out] == [{"document": "event", **e} for e in expected]
    assert [m.id for m in out] == [uuid.UUID(e["uid"]).hex for e in events]
    assert {m.stream for m in out} == {docs[0][1]["uid"]}


def test_resources_and_datums_are_kept_as_events() -> None:
    docs = run_documents()
    parser = BlueskyParser()
    parse_all(parser, [wire(n, d) for n, d in docs[:1]])
    resource = {
        "uid": uid(),
        "run_start": docs[0][1]["uid"],
        "spec": "AD_HDF5",
        "root": "/data",
        "resource_path": "x.h5",
        "resource_kwargs": {},
    }
    datum = [
        {
            "datum_id": f"{resource['uid']}/{i}",
            "resource": resource["uid"],
            "datum_kwargs": {"point_number": i},
        }
        for i in range(2)
    ]
    page = event_model.pack_datum_page(*datum)  # the oracle, as for event pages
    (res,) = parser.parse(wire("resource", resource))
    datums = parser.parse(wire("datum_page", page))
    assert res.metadata == {"document": "resource", **resource}
    expected = [dict(d) for d in event_model.unpack_datum_page(page)]
    assert expected == datum
    assert [d.metadata for d in datums] == [{"document": "datum", **d} for d in expected]
    assert {d.stream for d in datums} == {docs[0][1]["uid"]}
    assert len({d.id for d in datums}) == 2


def test_json_is_read_too() -> None:
    name, start = run_documents()[0]
    (message,) = BlueskyParser().parse(wire(name, start, dumps=lambda d: json.dumps(d).encode()))
    assert isinstance(message, Start) and message.data == start


def test_numpy_values_packed_by_msgpack_numpy_become_lists() -> None:
    name, start = run_documents()[0]
    start["positions"] = np.array([[1.0, 2.0], [3.0, 4.0]])
    start["count"] = np.int64(7)
    (message,) = BlueskyParser(serializer="msgpack").parse(
        wire(name, start, dumps=lambda d: msgpack.packb(d, default=msgpack_numpy.encode))
    )
    assert message.data["positions"] == [[1.0, 2.0], [3.0, 4.0]]
    assert message.data["count"] == 7


def test_pickle_is_refused_unless_allowed() -> None:
    name, start = run_documents()[0]
    pickled = wire(name, start, dumps=pickle.dumps)
    with pytest.raises(DecodeError, match="allow_pickle"):
        BlueskyParser().parse(pickled)
    (message,) = BlueskyParser(allow_pickle=True).parse(pickled)
    assert message.data == start


def test_pickle_serializer_needs_allow_pickle() -> None:
    with pytest.raises(ConfigError, match="allow_pickle"):
        BlueskyParser(serializer="pickle")
    with pytest.raises(ConfigError, match="serializer"):
        BlueskyParser(serializer="yaml")  # type: ignore[arg-type]


def test_other_prefixes_are_left_out() -> None:
    name, start = run_documents()[0]
    parser = BlueskyParser(prefix="scan")
    assert parser.parse(wire(name, start, prefix=b"other")) == []
    assert len(parser.parse(wire(name, start, prefix=b"scan"))) == 1


def test_gaps_in_seq_num_are_counted() -> None:
    docs = run_documents()
    parser = BlueskyParser()
    parse_all(parser, [wire(n, d) for n, d in docs if not (n == "event" and d["seq_num"] == 2)])
    assert parser.missing == 1


def test_documents_of_an_unseen_run_go_to_the_open_run() -> None:
    docs = run_documents()
    parser = BlueskyParser()
    parser.parse(wire(*docs[0]))
    (event,) = parser.parse(wire(*docs[2]))  # its descriptor was missed
    assert event.stream == docs[0][1]["uid"]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"no-spaces", "PREFIX NAME DOCUMENT"),
        (b" start", "PREFIX NAME DOCUMENT"),
        (b" nonsense " + msgpack.dumps({}), "unknown document name"),
        (b" start \xc1", "not msgpack"),
        (b" start " + msgpack.dumps([1, 2]), "not a map"),
        (b" start " + msgpack.dumps({"time": 1.0}), "no string 'uid'"),
        (b" event " + msgpack.dumps({"uid": "x"}), "no string 'descriptor'"),
        (b" start " + msgpack.dumps({"uid": "x", "time": "noon"}), "time is not a number"),
        (
            b" start " + msgpack.dumps({"uid": "x", "time": float("nan")}),
            "time nan is not a finite number of s",
        ),
        (b' start {"uid": "x", "time": -Infinity}', "time -inf is not a finite number of s"),
        (
            b" stop " + msgpack.dumps({"uid": "x", "run_start": "s", "time": 1e10}),
            r"time 10000000000.0 s is out of range: .* 2262\)$",
        ),
        (
            b" event_page "
            + msgpack.dumps(
                {
                    "descriptor": "d",
                    "uid": ["a"],
                    "seq_num": [1, 2],
                    "time": [1.0],
                    "data": {},
                    "timestamps": {},
                }
            ),
            "malformed event_page",
        ),
        (b" start {not json", "not JSON"),
    ],
)
def test_malformed_messages_raise_decode_error(message: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        BlueskyParser().parse(message)


def test_multipart_messages_are_refused() -> None:
    with pytest.raises(DecodeError, match="expected 1 part"):
        BlueskyParser().parse([b" start {}", b"more"])
