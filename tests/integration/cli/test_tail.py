"""``arroyo tail`` against the real brokers, run as a user types it: it shows good
messages, schema-checked ones (with --schema), dead letters with their reason and what it
cannot decode, and leaves the source exactly as it was.

Each source holds the same six records, in this order: a run of three good messages
(Start, an array Event, Stop), an Event written with facility B's schema (decodable only
with --schema), bytes that are no Arroyo data, and a dead letter written by Arroyo's own
publisher for that broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arroyo import Event, Run
from arroyo.brokers import open_publisher
from arroyo.codec import Codec
from arroyo.errors import DecodeError
from arroyo.message import Message
from arroyo.runtime.publisher import DeadLetter
from arroyo.schema import SCHEMA_DIR, load

V2_FILE = SCHEMA_DIR / "examples" / "frame-metadata-v2.avsc"
V2 = load(V2_FILE)
CHECKED_METADATA = {"frame": 7, "exposure_s": 0.5, "detector": "eiger", "energy_kev": 12.4}
BAD = b"not arroyo data, just bytes \x00\xff\xfe"
ORIGINAL = b"\xde\xad\xbe\xef\x00\x01"
LETTER_SOURCE = {"topic": "frames", "partition": 0, "offset": 3}


@dataclass
class Sample:
    """The six records every source gets, and what tail must say about them."""

    stream: str = field(default_factory=lambda: f"scan-{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        run = Run(self.stream)
        self.good: list[Message] = [
            run.start({"sample": "Si"}),
            run.array_event(np.arange(6, dtype=">u2").reshape(2, 3), {"frame": 0}),
            run.stop({"frames": 1}),
        ]
        self.checked = Event(
            metadata=dict(CHECKED_METADATA), payload=b"\x01\x02\x03", stream=self.stream, seq=3
        )
        self.letter = DeadLetter.from_exception(
            DecodeError("frame 3: truncated header"), ORIGINAL, LETTER_SOURCE, 1, "bridge"
        )

    async def publish(self, url: str, raw: Callable[[bytes], Any]) -> None:
        """Publish the six records to ``url``; ``raw(bytes)`` writes bytes as they are."""
        plain = open_publisher(url)
        facility = open_publisher(url, codec=Codec(writer=V2))
        await plain.start()
        await facility.start()
        try:
            for message in self.good:
                await plain.publish(message)
            await facility.publish(self.checked)
            await raw(BAD)
            await plain.publish_dead_letter(self.letter)
        finally:
            await plain.close()
            await facility.close()

    def check(self, lines: list[dict[str, Any]], with_schema: bool = True) -> None:
        """Assert that ``lines`` (tail --json, parsed) show the six records as they are."""
        kinds = [line["kind"] for line in lines]
        checked_kind = "event" if with_schema else "undecodable"
        assert kinds == ["start", "event", "stop", checked_kind, "undecodable", "dead-letter"]
        start, frame, stop, checked, bad, letter = lines
        assert [start["id"], frame["id"], stop["id"]] == [m.id for m in self.good]
        assert {start["stream"], frame["stream"], stop["stream"]} == {self.stream}
        assert start["data"] == {"sample": "Si"}
        assert frame["array"] == {"dtype": ">u2", "shape": [2, 3]}
        assert frame["payload_size"] == 12
        assert frame["metadata"] == {"frame": 0}
        if with_schema:
            assert checked["metadata"] == CHECKED_METADATA
            assert checked["id"] == self.checked.id
        else:
            assert "unknown writer schema" in checked["reason"]
            assert checked["size"] > 0
        assert bad["size"] == len(BAD)
        assert bad["head"] == BAD[:32].hex()
        assert bad["reason"].startswith("not Arroyo data")
        assert letter["dead_letter"]["reason"] == "frame 3: truncated header"
        assert letter["dead_letter"]["error"] == "DecodeError"
        assert letter["dead_letter"]["block"] == "bridge"
        assert letter["dead_letter"]["source"] == {k: str(v) for k, v in LETTER_SOURCE.items()}
        assert (letter["size"], letter["head"]) == (len(ORIGINAL), ORIGINAL.hex())
        assert letter["decode_error"].startswith("not Arroyo data")


def tail(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``arroyo tail ARGS`` in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "arroyo", "tail", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def tail_json(*args: str) -> list[dict[str, Any]]:
    """The lines of ``arroyo tail ARGS --exit-at-end --json``, parsed; it must exit 0."""
    done = await asyncio.to_thread(tail, *args, "--exit-at-end", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# -- Kafka -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaState:
    ends: dict[int, tuple[int, int]]
    offsets: dict[str, dict[int, int]]
    """Committed offsets on the topic of every group that has any."""


def kafka_state(bootstrap: str, topic: str, partitions: int) -> KafkaState:
    """The topic's watermarks and every consumer group's committed offsets on it."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t-state-never-used"})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in range(partitions)
        }
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups(request_timeout=10).result()
    offsets: dict[str, dict[int, int]] = {}
    wanted = [TopicPartition(topic, p) for p in range(partitions)]
    for group in sorted(g.group_id for g in listed.valid):
        request = [ConsumerGroupTopicPartitions(group, wanted)]
        try:
            reply = admin.list_consumer_group_offsets(request)[group].result(10)
        except Exception:
            continue  # a group deleted meanwhile (other tests share the cluster)
        committed = {tp.partition: tp.offset for tp in reply.topic_partitions if tp.offset >= 0}
        if committed:
            offsets[group] = committed
    return KafkaState(ends, offsets)


@pytest.fixture
async def kafka_sample(
    kafka_bootstrap: str, kafka_topics: Any
) -> AsyncIterator[tuple[str, Sample, str]]:
    """A topic with the six records and a consumer group ``workers-*`` that committed
    offset 2 (it has read the first two); its URL, the sample, and the group."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = kafka_topics("frames")
    url = f"kafka://{kafka_bootstrap}/{topic}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    async def raw(data: bytes) -> None:
        producer.produce(topic, data)
        assert producer.flush(10) == 0

    sample = Sample()
    await sample.publish(url, raw)
    group = f"workers-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    committer.close()
    yield url, sample, group
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    with contextlib.suppress(Exception):
        admin.delete_consumer_groups([group])[group].result(10)


@pytest.mark.kafka
async def test_kafka_tail_shows_everything_and_changes_nothing(
    kafka_bootstrap: str, kafka_sample: tuple[str, Sample, str]
) -> None:
    url, sample, group = kafka_sample
    topic = url.rsplit("/", 1)[1]
    before = kafka_state(kafka_bootstrap, topic, 1)
    assert before.offsets == {group: {0: 2}}
    assert before.ends == {0: (0, 6)}

    lines = await tail_json(url, "--schema", str(V2_FILE))
    sample.check(lines)
    assert [line["source"]["offset"] for line in lines] == list(range(6))
    assert {line["source"]["topic"] for line in lines} == {topic}
    assert lines[0]["source"]["key"] == sample.stream
    assert lines[0]["headers"]["arroyo.kind"] == "start"
    sample.check(await tail_json(url), with_schema=False)

    assert kafka_state(kafka_bootstrap, topic, 1) == before


@pytest.mark.kafka
async def test_kafka_tail_with_count_commits_nothing_and_leaves_no_group(
    kafka_bootstrap: str, kafka_sample: tuple[str, Sample, str]
) -> None:
    """As a user tails a topic by hand: no --exit-at-end, stopped by --count."""
    url, _, _ = kafka_sample
    topic = url.rsplit("/", 1)[1]
    before = kafka_state(kafka_bootstrap, topic, 1)
    done = await asyncio.to_thread(tail, url, "--count", "6")
    assert kafka_state(kafka_bootstrap, topic, 1) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.kafka
async def test_kafka_tail_from_the_end_shows_only_what_comes(
    kafka_bootstrap: str, kafka_sample: tuple[str, Sample, str]
) -> None:
    url, _, _ = kafka_sample
    assert await tail_json(url, "--from-end") == []
    done = await asyncio.to_thread(tail, url, "--count", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["kind"] for line in done.stdout.splitlines()] == ["start", "event"]


@pytest.mark.kafka
async def test_kafka_tail_of_a_missing_topic_or_cluster_says_so_in_one_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    missing = unique_name("missing")
    done = await asyncio.to_thread(tail, f"kafka://{kafka_bootstrap}/{missing}", "-e")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: kafka://{kafka_bootstrap}/{missing}: no topic {missing!r} on the cluster"
    ]
    from arroyo.testing import free_port

    nowhere = f"kafka://127.0.0.1:{free_port()}/frames?timeout=2"
    done = await asyncio.to_thread(tail, nowhere, "-e")
    assert done.returncode == 1
    [error] = done.stderr.strip().splitlines()
    assert "cannot reach the Kafka cluster" in error
    assert "within 2 s" in error


# -- Redis Streams -----------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_address: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    host, port = redis_address.rsplit(":", 1)
    client = aioredis.Redis(host=host, port=int(port))
    yield client
    await client.aclose()


async def redis_state(client: Any, stream: str) -> dict[str, Any]:
    """XLEN, the entries, the groups (XINFO GROUPS: consumers, pending count, last
    delivered id, entries read) and every group's pending entries (XPENDING: id, consumer,
    times delivered); what only time changes (lag, idle times) is left out."""
    groups = [
        {k: v for k, v in group.items() if k != "lag"}
        for group in await client.xinfo_groups(stream)
    ]
    pending = {}
    for group in groups:
        entries = await client.xpending_range(stream, group["name"], "-", "+", 100)
        pending[group["name"]] = [
            (e["message_id"], e["consumer"], e["times_delivered"]) for e in entries
        ]
    return {
        "length": await client.xlen(stream),
        "entries": await client.xrange(stream),
        "groups": groups,
        "pending": pending,
    }


@pytest.fixture
async def redis_sample(
    redis_address: str, redis_client: Any, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[str, Sample, str]]:
    """A stream with the six records and a group ``workers`` that has read one entry and
    not acknowledged it (one pending entry)."""
    stream = unique_name("frames")
    url = f"redis://{redis_address}/{stream}"

    async def raw(data: bytes) -> None:
        await redis_client.xadd(stream, {"data": data})

    sample = Sample()
    await sample.publish(url, raw)
    await redis_client.xgroup_create(stream, "workers", id="0")
    await redis_client.xreadgroup("workers", "worker-1", {stream: ">"}, count=1)
    yield url, sample, stream
    await redis_client.delete(stream)


@pytest.mark.redis
async def test_redis_tail_shows_everything_and_changes_nothing(
    redis_client: Any, redis_sample: tuple[str, Sample, str]
) -> None:
    url, sample, stream = redis_sample
    before = await redis_state(redis_client, stream)
    assert before["length"] == 6
    assert [g["name"] for g in before["groups"]] == [b"workers"]
    assert len(before["pending"][b"workers"]) == 1

    lines = await tail_json(url, "--schema", str(V2_FILE))
    sample.check(lines)
    ids = [entry_id.decode() for entry_id, _ in before["entries"]]
    assert [line["source"]["id"] for line in lines] == ids
    assert lines[0]["headers"]["kind"] == "start"
    sample.check(await tail_json(url), with_schema=False)

    assert await redis_state(redis_client, stream) == before


@pytest.mark.redis
async def test_redis_tail_with_count_takes_nothing_and_leaves_no_group(
    redis_client: Any, redis_sample: tuple[str, Sample, str]
) -> None:
    """As a user tails a stream by hand: no --exit-at-end, stopped by --count."""
    url, _, stream = redis_sample
    before = await redis_state(redis_client, stream)
    done = await asyncio.to_thread(tail, url, "--count", "6")
    assert await redis_state(redis_client, stream) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.redis
async def test_redis_tail_from_the_end_shows_what_comes_next(
    redis_address: str, redis_client: Any, redis_sample: tuple[str, Sample, str]
) -> None:
    url, sample, stream = redis_sample
    before = await redis_state(redis_client, stream)
    assert await tail_json(url, "--from-end") == []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arroyo", "tail", url, "--from-end", "--count", "1", "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # tail may not be reading yet: append until it shows one (one line, at most 1 s late)
        later = Run(sample.stream).start({"late": True})
        publisher = open_publisher(url)
        await publisher.start()
        try:
            while process.returncode is None:
                await publisher.publish(later)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 1.0)
        finally:
            await publisher.close()
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    [line] = [json.loads(text) for text in out.decode().splitlines()]
    assert line["id"] == later.id
    after = await redis_state(redis_client, stream)
    assert (after["groups"], after["pending"]) == (before["groups"], before["pending"])


# -- RabbitMQ ----------------------------------------------------------------------------


async def queue_bodies(amqp_url: str, queue: str) -> tuple[int, list[bytes]]:
    """The queue's ready count, and its bodies in order as a consumer sees them (read
    without acknowledging, then given back)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = int(declared.declaration_result.message_count or 0)
        bodies = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            bodies.append(message.body)
        # closing the channel gives them back
    return count, bodies


@pytest.fixture
async def amqp_queue(amqp_url: str, unique_name: Callable[[str], str]) -> AsyncIterator[Any]:
    """``make(queue_type)``: a queue with the six records; its URL, the sample and the
    queue's name. Queues are deleted afterwards."""
    import aio_pika

    names: list[str] = []
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()

    async def make(queue_type: str) -> tuple[str, Sample, str]:
        name = unique_name(queue_type)
        names.append(name)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        url = f"{amqp_url}?queue={name}&declare=false"

        async def raw(data: bytes) -> None:
            await channel.default_exchange.publish(aio_pika.Message(data), routing_key=name)

        sample = Sample()
        await sample.publish(url, raw)
        return url, sample, name

    yield make
    for name in names:
        await channel.queue_delete(name)
    await connection.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_rabbitmq_tail_shows_everything_and_puts_it_all_back(
    amqp_url: str, amqp_queue: Any, queue_type: str
) -> None:
    url, sample, queue = await amqp_queue(queue_type)
    before = await queue_bodies(amqp_url, queue)
    assert before[0] == 6

    lines = await tail_json(url, "--schema", str(V2_FILE))
    sample.check(lines)
    assert {line["source"]["queue"] for line in lines} == {queue}
    assert lines[0]["source"]["message_id"] == sample.good[0].id
    sample.check(await tail_json(url), with_schema=False)

    assert await queue_bodies(amqp_url, queue) == before


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_with_count_takes_nothing(amqp_url: str, amqp_queue: Any) -> None:
    """As a user tails a queue by hand: no --exit-at-end, stopped by --count."""
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    done = await asyncio.to_thread(tail, url, "--count", "6")
    assert await queue_bodies(amqp_url, queue) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_stopped_by_ctrl_c_puts_everything_back(
    amqp_url: str, amqp_queue: Any
) -> None:
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arroyo", "tail", url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for _ in range(6):
            await asyncio.wait_for(process.stdout.readline(), 30)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert "(SIGINT)" in err.decode()
    assert await queue_bodies(amqp_url, queue) == before


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_reads_a_stream_queue_as_a_stream(
    amqp_url: str, amqp_queue: Any
) -> None:
    import aio_pika

    url, sample, queue = await amqp_queue("stream")
    lines = await tail_json(url, "--schema", str(V2_FILE))
    sample.check(lines)
    assert [line["source"]["offset"] for line in lines] == list(range(6))
    # Every message is still in the stream: a consumer from the first offset reads them all.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        stream = await channel.get_queue(queue, ensure=False)
        seen: list[bytes] = []
        async with stream.iterator(arguments={"x-stream-offset": "first"}) as messages:
            async for message in messages:
                seen.append(message.body)
                await message.ack()
                if len(seen) == 6:
                    break
    assert seen[4] == BAD


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_refuses_to_read_a_queue_from_its_end(
    amqp_url: str, amqp_queue: Any
) -> None:
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    done = await asyncio.to_thread(tail, url, "--from-end")
    assert done.returncode == 2
    assert "cannot show its new messages without taking all older ones" in done.stderr
    assert await queue_bodies(amqp_url, queue) == before


# -- ZeroMQ ------------------------------------------------------------------------------


def test_zmq_pull_is_refused_in_one_line() -> None:
    done = tail("zmq+pull://127.0.0.1:5555")
    assert done.returncode == 2
    [error] = done.stderr.strip().splitlines()
    assert "a PULL socket takes each message away from the receiver" in error


async def test_zmq_sub_shows_what_a_publisher_sends(tmp_path: Path) -> None:
    from arroyo.testing import free_port

    port = free_port()
    publisher = open_publisher(f"zmq+pub://127.0.0.1:{port}?bind=true")
    await publisher.start()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arroyo", "tail", f"zmq+sub://127.0.0.1:{port}",
        "--count", "1", "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    frame = Run("zmq-scan").start({"n": 1})
    try:
        # SUB joins late by design: publish until tail has shown one
        while process.returncode is None:
            await publisher.publish(frame)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
        await publisher.close()
    assert process.returncode == 0, err.decode()
    [line] = [json.loads(text) for text in out.decode().splitlines()]
    assert (line["kind"], line["id"]) == ("start", frame.id)
