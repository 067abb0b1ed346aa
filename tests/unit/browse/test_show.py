"""What tail shows of a record: messages, dead letters in both of Arroyo's forms, and
what it cannot decode (never dropped)."""

from __future__ import annotations

import json
import math

from arroyo import Event, Run, encode
from arroyo.browse import Record
from arroyo.browse.show import Viewer, jsonable
from arroyo.codec import Codec
from arroyo.errors import DecodeError
from arroyo.runtime.publisher import DeadLetter
from arroyo.schema import SCHEMA_DIR, SchemaStore, load

V2 = load(SCHEMA_DIR / "examples" / "frame-metadata-v2.avsc")
SOURCE = {"url": "kafka://h:9092/frames", "topic": "frames", "partition": 0, "offset": 7}


def test_a_message_shows_its_fields_and_where_it_is() -> None:
    event = Run("scan-1").event({"frame": 3}, b"\x00" * 10)
    [shown] = Viewer().show(Record(encode(event), SOURCE, {"arroyo.kind": b"event"}))
    assert (shown.kind, shown.message) == ("event", event)
    out = shown.to_json()
    assert out["metadata"] == {"frame": 3}
    assert out["payload_size"] == 10
    assert out["array"] is None
    assert out["source"] == SOURCE
    assert out["headers"] == {"arroyo.kind": "event"}
    json.dumps(out)


def test_bytes_it_cannot_decode_show_their_size_head_and_reason() -> None:
    data = bytes(range(1, 41))
    [shown] = Viewer().show(Record(data, SOURCE))
    out = shown.to_json()
    assert out["kind"] == "undecodable"
    assert (out["size"], out["head"]) == (40, data[:32].hex())
    assert out["reason"].startswith("not Arroyo data")


def test_a_facility_message_needs_its_writer_schema() -> None:
    event = Event(metadata={"frame": 1, "exposure_s": 0.1, "detector": "d", "energy_kev": None})
    data = Codec(writer=V2).encode(event)
    [unknown] = Viewer().show(Record(data, SOURCE))
    assert unknown.kind == "undecodable"
    assert "unknown writer schema" in str(unknown.reason)
    from arroyo.runtime.parser import AvroParser

    viewer = Viewer(AvroParser(Codec(store=SchemaStore([V2]))))
    [known] = viewer.show(Record(data, SOURCE))
    assert known.kind == "event"
    assert known.message is not None and known.message.id == event.id


def test_a_dead_letter_in_headers_shows_its_reason_and_original() -> None:
    letter = DeadLetter.from_exception(DecodeError("bad"), b"\x01\x02", {"offset": 3}, 2, "w")
    headers = {k: v.encode() for k, v in letter.headers().items()}
    [shown] = Viewer().show(Record(letter.data, SOURCE, headers))
    out = shown.to_json()
    assert out["kind"] == "dead-letter"
    assert out["dead_letter"]["reason"] == "bad"
    assert out["dead_letter"]["attempts"] == "2"
    assert out["dead_letter"]["source"] == {"offset": "3"}
    assert (out["size"], out["head"]) == (2, "0102")
    assert out["decode_error"].startswith("not Arroyo data")
    assert "headers" not in out  # the dead letter's headers are shown as dead_letter


def test_a_dead_letter_event_shows_its_reason_and_decoded_original() -> None:
    original = Run("scan-2").start({"a": 1})
    letter = DeadLetter.from_exception(ValueError("boom"), encode(original), {"i": 1}, 3, "w")
    [shown] = Viewer().show(Record(encode(letter.to_event()), {"url": "memory://dlq"}))
    assert shown.kind == "dead-letter"
    assert shown.message == original
    assert shown.to_json()["message"]["data"] == {"a": 1}
    assert shown.to_json()["dead_letter"]["error"] == "ValueError"


def test_a_multipart_dead_letter_event_keeps_its_parts() -> None:
    letter = DeadLetter.from_exception(DecodeError("x"), [b"ab", b"c"], {}, 1, "w")
    [shown] = Viewer().show(Record(encode(letter.to_event()), {"url": "memory://dlq"}))
    assert shown.data == [b"ab", b"c"]
    assert shown.to_json()["head"] == "6162|63"


def test_a_parser_that_breaks_still_shows_the_record() -> None:
    class Broken:
        def parse(self, data: object) -> Event:
            raise KeyError("oops")

    [shown] = Viewer(Broken()).show(Record(b"abc", SOURCE))
    assert shown.kind == "undecodable"
    assert shown.reason == "KeyError: 'oops'"


def test_a_problem_the_browser_found_is_the_reason() -> None:
    [shown] = Viewer().show(Record(b"", SOURCE, {"t": b"1"}, problem="no 'data' field"))
    assert (shown.kind, shown.reason) == ("undecodable", "no 'data' field")


def test_jsonable_keeps_text_and_shortens_binary() -> None:
    assert jsonable({"a": b"text", "b": b"\xff\x00", "c": (1, math.inf)}) == {
        "a": "text",
        "b": {"size": 2, "head": "ff00"},
        "c": [1, "inf"],
    }
