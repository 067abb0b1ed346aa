"""ESS FlatBuffers through the real Kafka: every schema the parser reads, serialised with
the ``ess-streaming-data-types`` package, produced to a topic, bridged by an Arroyo
Block (Kafka listener, parser ``ess``), written back with the ``ess`` format to another
topic and read there with the package's ``deserialise_*``: what arrives is what was
serialised. A buffer with an unknown identifier goes to the dead letter naming it, and
the bridge goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from arroyo.brokers import open_listener
from arroyo.formats import make_format
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.testing import Recorder
from tests.unit.parsers.test_ess import assert_same_as_serialised, buffers

ck = pytest.importorskip("confluent_kafka")
pytest.importorskip("streaming_data_types")

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
    out, dead = Recorder(), Recorder()
    block = Block(
        listener, None, [out], name="ess-bridge", dead_letter=dead, max_messages=len(order) + 1
    )
    stats = await block.run()
    assert (stats.published, stats.dead_lettered) == (len(order), 1)
    [letter] = dead.dead_letters
    assert letter.error == "DecodeError" and letter.data == b"\x10\x00\x00\x00zz99" + bytes(16)
    assert "unknown FlatBuffer identifier 'zz99'" in letter.reason
    assert letter.source["topic"] == source

    # the ess format writes them back; the package reads them from the other topic
    fmt = make_format("ess")
    for message in out.published:
        for record in fmt.encode(message):
            producer.produce(results, record.value, key=message.stream.encode())
    assert producer.flush(30) == 0
    records = read_topic(kafka_bootstrap, results, len(order))
    written = {record.value()[4:8].decode(): record.value() for record in records}
    assert [record.value()[4:8].decode() for record in records] == order
    assert_same_as_serialised(original, written)
