"""bluesky-kafka both ways through the real Kafka, with the real bluesky-kafka package.

A RunEngine scan (ophyd's simulated detector and motor) is published by
``bluesky_kafka.Publisher``; an Arroyo Block (Kafka listener, parser ``bluesky-kafka``)
reads it, document for document, and bridges it with Arroyo's own Kafka publisher
(``format: bluesky-kafka``) to another topic, where ``bluesky_kafka.RemoteDispatcher``
reads it back: the documents it dispatches are the RunEngine's. A value that is not
msgpack goes to the dead letter, and the bridge goes on. A detector run (not bluesky's)
published with ``format: bluesky-kafka`` reaches the dispatcher as valid documents.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from arroyo import Event, Start, Stop
from arroyo.brokers import open_listener, open_publisher
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.testing import Recorder

ck = pytest.importorskip("confluent_kafka")
bluesky_kafka = pytest.importorskip("bluesky_kafka")

pytestmark = pytest.mark.kafka

FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def plain(value: Any) -> Any:
    """Documents as msgpack gives them back: tuples as lists, numpy values as Python's."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def scan_documents(kafka_bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """Run a scan whose documents bluesky-kafka's Publisher sends to ``topic``; return them."""
    from bluesky import RunEngine
    from bluesky.plans import scan
    from ophyd.sim import det, motor

    engine = RunEngine({})
    publisher = bluesky_kafka.Publisher(
        topic=topic,
        bootstrap_servers=kafka_bootstrap,
        key=f"scan-{uuid.uuid4().hex[:6]}",
        producer_config={"acks": "all"},
        flush_on_stop_doc=True,
    )
    documents: list[tuple[str, dict[str, Any]]] = []
    engine.subscribe(lambda name, doc: documents.append((name, plain(doc))))
    engine.subscribe(publisher)
    engine(scan([det], motor, -1, 1, 5), sample="Si")
    return documents


def test_a_scan_crosses_an_arroyo_bridge_both_ways(kafka_bootstrap: str, kafka_topics: Any) -> None:
    source, results = kafka_topics("bluesky-in"), kafka_topics("bluesky-out")
    documents = scan_documents(kafka_bootstrap, source)
    names = [name for name, _ in documents]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 5
    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(source, b"\xc1 not msgpack")  # a bad record after the run
    assert producer.flush(30) == 0

    # 1. Arroyo reads what bluesky-kafka's Publisher wrote (and bridges it to `results`)
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{source}?group={source}-g", FAST, make_parser("bluesky-kafka")
    )
    bridged = open_publisher(f"kafka://{kafka_bootstrap}/{results}?format=bluesky-kafka")
    out, dead = Recorder(), Recorder()
    block = Block(
        listener,
        None,
        [out, bridged],
        dead_letter=dead,
        max_messages=len(documents) + 1,
        name="bk",
    )
    stats = asyncio.run(block.run())
    assert (stats.published, stats.dead_lettered) == (2 * len(documents), 1)  # two publishers
    assert "bluesky-kafka: not msgpack" in dead.dead_letters[0].reason
    read = []
    for message in out.published:
        if isinstance(message, Start):
            read.append(("start", message.data))
        elif isinstance(message, Stop):
            read.append(("stop", message.data))
        else:
            assert isinstance(message, Event)
            doc = dict(message.metadata)
            read.append((str(doc.pop("document")), doc))
    assert read == documents  # document for document
    assert {m.stream for m in out.published} == {documents[0][1]["uid"]}

    # 2. bluesky-kafka's RemoteDispatcher reads what Arroyo's publisher wrote
    dispatched: list[tuple[str, dict[str, Any]]] = []
    dispatcher = bluesky_kafka.RemoteDispatcher(
        topics=[results],
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{results}-dispatcher",
        consumer_config={"auto.offset.reset": "earliest"},
    )
    dispatcher.subscribe(lambda name, doc: dispatched.append((name, plain(doc))))
    deadline = time.monotonic() + 60
    dispatcher.start(
        continue_polling=lambda: len(dispatched) < len(documents) and time.monotonic() < deadline
    )
    assert dispatched == documents


def test_frames_of_a_detector_reach_a_remote_dispatcher_as_valid_documents(
    kafka_bootstrap: str, kafka_topics: Any, read_topic: Callable[..., list[Any]]
) -> None:
    """A detector run (not bluesky's) becomes start, descriptor, events, stop."""
    from event_model import DocumentNames, schema_validators

    results = kafka_topics("frames-out")
    frames = [np.full((4, 4), i, dtype="<u2") for i in range(3)]
    messages = [
        Start({"detector": "sim"}, stream="det-run-1"),
        *[
            Event.from_array(f, {"frame": i}, stream="det-run-1", seq=i + 1)
            for i, f in enumerate(frames)
        ],
        Stop(stream="det-run-1", seq=4),
    ]
    options = {"format": "bluesky-kafka", "format_options": {"data_key": "image"}}

    async def publish() -> None:
        async with open_publisher(f"kafka://{kafka_bootstrap}/{results}", options) as publisher:
            for message in messages:
                await publisher.publish(message)

    asyncio.run(publish())
    [key] = {record.key() for record in read_topic(kafka_bootstrap, results, 6)}
    assert key == b"det-run-1"  # the run's records share its key: one partition, in order
    dispatched: list[tuple[str, dict[str, Any]]] = []
    dispatcher = bluesky_kafka.RemoteDispatcher(
        topics=[results],
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{results}-dispatcher",
        consumer_config={"auto.offset.reset": "earliest"},
    )
    dispatcher.subscribe(lambda name, doc: dispatched.append((name, doc)))
    deadline = time.monotonic() + 60
    dispatcher.start(continue_polling=lambda: len(dispatched) < 6 and time.monotonic() < deadline)
    assert [name for name, _ in dispatched] == [
        "start",
        "descriptor",
        "event",
        "event",
        "event",
        "stop",
    ]
    for name, doc in dispatched:
        schema_validators[DocumentNames(name)].validate(doc)
    images = [doc["data"]["image"] for name, doc in dispatched if name == "event"]
    assert all(np.array_equal(a, f) for a, f in zip(images, frames, strict=True))
