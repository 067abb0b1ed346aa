"""A simulated EIGER2 (Dectris stream v2 over ZeroMQ PUSH) bridged into the real Kafka.

Frames are compressed by the detector (bslz4, lz4); the bridge decompresses them by
default, so a Kafka consumer decodes raw frames equal to what the detector imaged. With
``decompress: false`` they cross Kafka compressed and ``Event.to_array()`` decompresses
at the far end; bridged with ``format: ess`` they arrive as ``ad00`` frames that
``streaming_data_types.deserialise_ad00`` reads equal to what was imaged (either way).
Malformed messages (truncated CBOR, an unknown tag) go to the dead letter with the
reason, and the bridge goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import cbor2
import numpy as np
import pytest

from arroyo import Event, Start, Stop, decode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.zmq import ZmqListener
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.simulate import frame, simulate
from arroyo.testing import Recorder

zmq = pytest.importorskip("zmq")
pytest.importorskip("zmq.asyncio")
pytest.importorskip("confluent_kafka")

SHAPE = (64, 96)


async def bridge_into_kafka(
    kafka_bootstrap: str,
    topic: str,
    compression: str,
    decompress: bool,
    frames: int,
    publisher_options: dict[str, Any] | None = None,
) -> None:
    parser = make_parser("stream2", decompress=decompress)
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=parser)
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{topic}", publisher_options)
    block = Block(listener, None, [publisher], name="eiger", max_messages=frames + 2)
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    await asyncio.wait_for(listener.ready.wait(), 10)
    assert listener.endpoint is not None
    await simulate(
        f"zmq+push://{listener.endpoint.removeprefix('tcp://')}",
        frames=frames,
        shape=SHAPE,
        format="stream2",
        compression=compression,
        stream="eiger-series",
    )
    stats = await asyncio.wait_for(task, 60)
    assert stats.published == frames + 2 and stats.dead_lettered == 0


@pytest.mark.kafka
@pytest.mark.parametrize("compression", ["bslz4", "lz4", "none"])
async def test_an_eiger_series_arrives_in_kafka_as_raw_frames(
    compression: str, kafka_bootstrap: str, kafka_topics: Any, read_topic: Callable[..., list[Any]]
) -> None:
    topic = kafka_topics("eiger")
    await bridge_into_kafka(kafka_bootstrap, topic, compression, decompress=True, frames=20)
    start, *events, stop = [decode(r.value()) for r in read_topic(kafka_bootstrap, topic, 22)]
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert start.stream == stop.stream == "eiger-series"
    assert start.data["number_of_images"] == 20 and start.data["image_size_x"] == SHAPE[1]
    for i, event in enumerate(events):
        assert isinstance(event, Event) and event.metadata["image_id"] == i
        assert event.array is not None and event.array.compression is None
        assert np.array_equal(event.to_array(), frame(i, SHAPE))


@pytest.mark.kafka
@pytest.mark.parametrize("compression", ["bslz4", "lz4"])
async def test_compressed_frames_cross_kafka_compressed_and_decode_at_the_far_end(
    compression: str, kafka_bootstrap: str, kafka_topics: Any, read_topic: Callable[..., list[Any]]
) -> None:
    topic = kafka_topics("eiger-packed")
    await bridge_into_kafka(kafka_bootstrap, topic, compression, decompress=False, frames=10)
    _, *events, _ = [decode(r.value()) for r in read_topic(kafka_bootstrap, topic, 12)]
    for i, event in enumerate(events):
        assert isinstance(event, Event) and event.array is not None
        assert event.array.compression == compression
        assert len(event.payload) < event.to_array().nbytes
        assert np.array_equal(event.to_array(), frame(i, SHAPE))


@pytest.mark.kafka
@pytest.mark.parametrize("decompress", [True, False], ids=["decompressed", "forwarded packed"])
async def test_an_eiger_series_bridged_with_format_ess_is_read_by_deserialise_ad00(
    decompress: bool,
    kafka_bootstrap: str,
    kafka_topics: Any,
    read_topic: Callable[..., list[Any]],
) -> None:
    sdt = pytest.importorskip("streaming_data_types")
    topic = kafka_topics("eiger-ess")
    options = {"format": "ess", "format_options": {"source_name": "eiger"}}
    await bridge_into_kafka(kafka_bootstrap, topic, "bslz4", decompress, 6, options)
    records = [r.value() for r in read_topic(kafka_bootstrap, topic, 8)]
    assert [r[4:8] for r in records] == [b"pl72", *[b"ad00"] * 6, b"6s4t"]
    assert sdt.deserialise_pl72(records[0]).job_id == "eiger-series"
    assert sdt.deserialise_6s4t(records[-1]).job_id == "eiger-series"
    for i, buffer in enumerate(records[1:-1]):
        image = sdt.deserialise_ad00(buffer)
        assert image.source_name == "eiger"
        np.testing.assert_array_equal(image.data, frame(i, SHAPE))


async def test_malformed_messages_are_dead_lettered_and_the_bridge_goes_on(
    until: Callable[..., Any],
) -> None:
    from arroyo.formats import stream2

    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=make_parser("stream2"))
    out, dead = Recorder(), Recorder()
    block = Block(listener, None, [out], name="eiger-poison", dead_letter=dead)
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    await asyncio.wait_for(listener.ready.wait(), 10)
    context = zmq.asyncio.Context()
    push = context.socket(zmq.PUSH)
    push.connect(listener.endpoint)
    ids = {"series_id": 1, "series_unique_id": "poison"}
    good = [
        stream2.image_message(**ids, image_id=i, data={"t": frame(i, (4, 4))}, compression="bslz4")
        for i in range(3)
    ]
    bad = {
        "truncated CBOR": good[0][:-9],
        "unknown tag": cbor2.dumps({"type": "image", **ids, "data": cbor2.CBORTag(31337, b"")}),
    }
    try:
        await push.send(stream2.start_message(**ids, number_of_images=3, image_shape=(4, 4)))
        await push.send(good[0])
        for message, data in zip(good[1:], bad.values(), strict=True):
            await push.send(data)
            await push.send(message)
        await push.send(stream2.end_message(**ids))
        await until(lambda: len(out.published) == 5, what="start, 3 images, stop")
        await until(lambda: len(dead.dead_letters) == 2, what="both bad messages")
    finally:
        block.stop()
        await asyncio.wait_for(task, 10)
        push.close(linger=0)
        context.term()
    assert [type(m).__name__ for m in out.published] == ["Start", "Event", "Event", "Event", "Stop"]
    assert [letter.data for letter in dead.dead_letters] == list(bad.values())
    reasons = [letter.reason for letter in dead.dead_letters]
    assert "stream2: truncated CBOR" in reasons[0]
    assert "unknown CBOR tag 31337" in reasons[1]
