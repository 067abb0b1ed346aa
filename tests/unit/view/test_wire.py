"""What goes over the WebSocket: one header and a body, values the page can show."""

from __future__ import annotations

import numpy as np

from arroyo.message import Run
from arroyo.view.wire import MAX_ITEMS, MAX_TEXT, describe, pack, plain, unpack


def test_a_message_is_its_header_then_its_body() -> None:
    data = pack({"type": "event", "seq": 7}, b"\x01\x02")
    assert int.from_bytes(data[:4], "big") == len(b'{"type":"event","seq":7}')
    assert unpack(data) == ({"type": "event", "seq": 7}, b"\x01\x02")


def test_values_are_made_plain_and_short() -> None:
    value = {
        "text": "x" * (MAX_TEXT + 5),
        "raw": b"\x00" * 10,
        "many": list(range(MAX_ITEMS + 3)),
        "nan": float("nan"),
        "nested": {"a": (1, 2.5, None, True)},
        "other": {1, 2},
    }
    out = plain(value)
    assert out["text"] == "x" * MAX_TEXT + "..."
    assert out["raw"] == "<10 bytes>"
    assert out["many"][-1] == "... 3 more" and len(out["many"]) == MAX_ITEMS + 1
    assert out["nan"] == "nan"
    assert out["nested"] == {"a": [1, 2.5, None, True]}
    assert out["other"] == "{1, 2}"


def test_an_event_is_described_by_its_metadata_and_array_not_its_payload() -> None:
    event = Run("s").array_event(np.zeros((2, 3), dtype=">f4"), {"i": 1})
    described = describe(event)
    assert described["metadata"] == {"i": 1}
    assert described["payload_size"] == 24
    assert described["array"] == {"dtype": ">f4", "shape": [2, 3], "compression": None}
    assert describe(Run("s").start({"sample": "Si"}))["data"] == {"sample": "Si"}
