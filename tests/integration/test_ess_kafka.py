"""ESS FlatBuffers through the real Kafka, with the ``ess-streaming-data-types`` package as
the oracle, written by Arroyo's own Kafka publisher with ``format: ess``.

1. Every schema the parser reads, serialised by the package, produced to a topic, bridged
   by an Arroyo Block (Kafka listener, parser ``ess``; Kafka publisher, ``format: ess``)
   to another topic and read there with the package's ``deserialise_*``: what arrives is
   what was serialised. A buffer with an unknown identifier goes to the dead letter
   naming it, and the bridge goes on.
2. An Arroyo run (a Start, frames of several dtypes, scalar log values, a Stop) bridged
   by a Block built from YAML whose Kafka publisher has ``format: ess``: the topic holds
   ``pl72``, ``ad00``, ``f144`` and ``6s4t`` that ``deserialise_*`` read back equal; an
   Event with nothing ESS can carry writes nothing and is acknowledged; an array no ESS
   schema carries goes to the dead letter, in Arroyo's own framing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arroyo import Run, decode
from arroyo.brokers import open_listener, open_publisher
from arroyo.build import build
from arroyo.config import parse_config
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.testing import Recorder
from tests.unit.parsers.ess_buffers import assert_same_as_serialised, buffers

ck = pytest.importorskip("confluent_kafka")
sdt = pytest.importorskip("streaming_data_types")

pytestmark = pytest.mark.kafka

FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


async def test_every_schema_round_trips_through_kafka_and_a_bad_one_is_dead_lettered(
    kafka_bootstrap: str, kafka_topics: Any, read_topic: Callable[..., list[Any]]
) -> None:
    source, results = kafka_topics("ess-in"), kafka_topics("ess-out")
    original = buffers()
    order = ["pl72", "ad00", "da00", "ev44", "f144", "6s4t"]
    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    for name in order[:3]:
        producer.produce(source, original[name])
    producer.produce(source, b"\x10\x00\x00\x00zz99" + bytes(16))  # unknown identifier
    for name in order[3:]:
        producer.produce(source, original[name])
    assert producer.flush(30) == 0

    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{source}?group={source}-g", FAST, make_parser("ess")
    )
    ess = open_publisher(f"kafka://{kafka_bootstrap}/{results}?format=ess")
    out, dead = Recorder(), Recorder()
    block = Block(
        listener,
        None,
        [out, ess],
        name="ess-bridge",
        dead_letter=dead,
        max_messages=len(order) + 1,
    )
    stats = await block.run()
    assert (stats.published, stats.dead_lettered) == (2 * len(order), 1)  # two publishers
    assert stats.acknowledged == len(order) + 1
    [letter] = dead.dead_letters
    assert letter.error == "DecodeError" and letter.data == b"\x10\x00\x00\x00zz99" + bytes(16)
    assert "unknown FlatBuffer identifier 'zz99'" in letter.reason
    assert letter.source["topic"] == source

    # Arroyo's publisher wrote them back; the package reads them from the other topic
    records = read_topic(kafka_bootstrap, results, len(order))
    assert [record.value()[4:8].decode() for record in records] == order
    assert [record.key() for record in records] == [m.stream.encode() for m in out.published]
    assert all(record.headers() is None for record in records)  # no arroyo.* headers
    written = {record.value()[4:8].decode(): record.value() for record in records}
    assert_same_as_serialised(original, written)


def ess_config(bootstrap: str, source: str, results: str, dead: str) -> str:
    return f"""
blocks:
  - name: feed-file-writer
    listener: kafka://{bootstrap}/{source}?group={source}-g
    publishers:
      - url: kafka://{bootstrap}/{results}
        format: ess
        format_options: {{source_name: loki_camera}}
    dead_letter: kafka://{bootstrap}/{dead}
"""


async def test_a_block_with_format_ess_feeds_a_file_writer_topic(
    kafka_bootstrap: str,
    kafka_topics: Any,
    read_topic: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    source, results, dead = kafka_topics("run"), kafka_topics("ess"), kafka_topics("dlq")
    run = Run("run-42")
    frames = [
        np.arange(12, dtype="<u2").reshape(3, 4),
        np.arange(12, dtype=">u2").reshape(3, 4) * 7,  # big-endian, as detectors send
        np.linspace(0, 1, 6, dtype="<f4").reshape(2, 3),
        np.arange(8, dtype=">f8"),
    ]
    messages = [
        run.start({"sample": "Si", "instrument_name": "LOKI"}),
        run.array_event(frames[0], {"exposure_s": 0.1}),
        run.event({"temperature_k": 293.5, "position_mm": [1.0, 2.5, 4.0]}),
        run.array_event(frames[1]),
        run.event({"note": "shutter open"}),  # nothing ESS carries: no record
        run.array_event(np.ones(3, dtype=np.complex128)),  # no ad00 dtype: dead letter
        run.array_event(frames[2]),
        run.array_event(frames[3], {"unique_id": 1234, "source_name": "loki_detector"}),
        run.stop({"exit_status": "success"}),
    ]
    async with open_publisher(f"kafka://{kafka_bootstrap}/{source}") as publisher:
        for message in messages:
            await publisher.publish(message)

    config = parse_config(ess_config(kafka_bootstrap, source, results, dead), "ess.yaml")
    [built] = build(config, "ess.yaml", tmp_path)
    built.block.max_messages = len(messages)
    stats = await built.block.run()
    assert (stats.published, stats.dead_lettered) == (len(messages) - 1, 1)
    assert stats.acknowledged == len(messages)

    records = read_topic(kafka_bootstrap, results, 8)
    ids = [record.value()[4:8].decode() for record in records]
    assert ids == ["pl72", "ad00", "f144", "f144", "ad00", "ad00", "ad00", "6s4t"]
    assert {record.key() for record in records} == {b"run-42"}
    start, first, temperature, position, *images, stop = (r.value() for r in records)

    run_start = sdt.deserialise_pl72(start)
    assert run_start.job_id == "run-42" and run_start.filename == "run-42.nxs"
    assert run_start.start_time == messages[0].timestamp // 1_000_000
    assert run_start.instrument_name == "LOKI"
    assert '"sample":"Si"' in run_start.metadata

    for buffer, array, event in zip(
        [first, *images], frames, [messages[1], messages[3], messages[6], messages[7]], strict=True
    ):
        ad = sdt.deserialise_ad00(buffer)
        assert ad.data.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(ad.data, array)
        assert ad.timestamp_ns == event.timestamp
    sources = [sdt.deserialise_ad00(b).source_name for b in [first, *images]]
    assert sources == ["loki_camera"] * 3 + ["loki_detector"]
    unique_ids = [sdt.deserialise_ad00(b).unique_id for b in [first, *images]]
    assert unique_ids == [messages[1].seq, messages[3].seq, messages[6].seq, 1234]

    log = sdt.deserialise_f144(temperature)
    assert (log.source_name, log.value) == ("temperature_k", 293.5)
    assert log.timestamp_unix_ns == messages[2].timestamp
    log = sdt.deserialise_f144(position)
    assert log.source_name == "position_mm"
    np.testing.assert_array_equal(log.value, [1.0, 2.5, 4.0])

    run_stop = sdt.deserialise_6s4t(stop)
    assert (run_stop.job_id, run_stop.stop_time) == ("run-42", messages[-1].timestamp // 1_000_000)

    # the dead letter keeps Arroyo's framing: the bytes as received, the reason in headers
    [letter] = read_topic(kafka_bootstrap, dead, 1)
    assert decode(letter.value()) == messages[5]
    headers = {k: v.decode() for k, v in letter.headers()}
    assert headers["arroyo.dead-letter.error"] == "EncodeError"
    assert (
        "ess: ad00 cannot carry arrays of dtype complex128" in headers["arroyo.dead-letter.reason"]
    )
    assert headers["arroyo.source.topic"] == source
