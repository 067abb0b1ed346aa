"""The codec alone: encode + decode of one Event, against fastavro by hand and a bytes copy.

- 4 MiB: Arroyo's encode, decode, and encode+decode against one plain copy of the
  payload (for encode, a ratio near 1 means the payload is copied once, into the output;
  decode does not copy a large payload at all, so its ratio is far above 1, and
  encode+decode near 1 means one copy in all);
- 1 KiB: Arroyo's codec against fastavro's ``schemaless_writer``/``reader`` of the same
  envelope record written by hand (what a user would otherwise write).
"""

from __future__ import annotations

import io
import os

from fastavro import schemaless_reader, schemaless_writer

from arroyo import Event, decode, encode
from arroyo.schema import builtin
from bench.common import Measurement, Row, peak_rss_mb, size_label, timed


def _large(size: int, quick: bool) -> list[Row]:
    payload = os.urandom(size)
    event = Event({"frame": 1}, payload, stream="bench")
    data = encode(event)
    number = 20 if quick else 100
    repeat = 3 if quick else 7
    copy = timed(lambda: b"".join((b"\0", payload)), repeat, number)
    variants = [
        ("encode", lambda: encode(event), "ratio ~1: the payload is copied once"),
        ("decode", lambda: decode(data), "the payload is a view of the input, not a copy"),
        ("encode+decode", lambda: decode(encode(event)), "ratio ~1: one copy in all"),
    ]
    timings = [(name, timed(call, repeat, number), note) for name, call, note in variants]
    rss = peak_rss_mb()
    return [
        Row(
            f"codec: {name}",
            size_label(size),
            Measurement(number, seconds, size, peak_rss_mb=rss),
            Measurement(number, copy, size, peak_rss_mb=rss),
            raw_label="one bytes copy",
            note=note,
        )
        for name, seconds, note in timings
    ]


def _small(size: int, quick: bool) -> Row:
    payload = os.urandom(size)
    event = Event({"frame": 1, "exposure_s": 0.1}, payload, stream="bench", seq=7)
    parsed = builtin().parsed
    header = b"\xc3\x01" + builtin().fingerprint

    def by_hand() -> None:
        out = io.BytesIO()
        out.write(header)
        record = {
            "id": event.id,
            "stream": event.stream,
            "seq": event.seq,
            "timestamp": event.timestamp,
            "body": (
                "arroyo.Event",
                {
                    "metadata": {"frame": {"v": 1}, "exposure_s": {"v": 0.1}},
                    "array": None,
                    "payload": payload,
                },
            ),
        }
        schemaless_writer(out, parsed, record)
        out.seek(10)
        schemaless_reader(out, parsed, None, return_record_name=True)

    number = 2000 if quick else 20000
    repeat = 3 if quick else 5
    raw = timed(by_hand, repeat, number)
    ours = timed(lambda: decode(encode(event)), repeat, number)
    rss = peak_rss_mb()
    return Row(
        "codec: encode+decode",
        size_label(size),
        Measurement(number, ours, size, peak_rss_mb=rss),
        Measurement(number, raw, size, peak_rss_mb=rss),
        raw_label="fastavro by hand",
    )


def run(quick: bool, repeat: int = 1) -> list[Row]:
    """The codec rows (in this process: no broker, no client; ``repeat`` is not used,
    each figure is already the best of several timings)."""
    return [*_large(4 << 20, quick), _small(1 << 10, quick)]
