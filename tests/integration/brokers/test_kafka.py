"""The Kafka connector against the real broker: order, scale-out, headers, limits, TLS,
backpressure and exactly-once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arroyo import Event, Run, Start, Stop, decode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.kafka import KafkaListener, KafkaPublisher, exactly_once
from arroyo.errors import MessageTooLargeError, PublishError
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[3]
FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@pytest.fixture
def topics(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[Any]:
    """``topics(tag, partitions=1, **config)`` creates a topic; all are deleted after."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def make(tag: str, partitions: int = 1, **config: str) -> str:
        name = unique_name(tag)
        admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(30)
        made.append(name)
        return name

    yield make
    if made:
        for future in admin.delete_topics(made).values():
            with contextlib.suppress(Exception):
                future.result(30)


def read(bootstrap: str, topic: str, count: int, within: float = 30, **config: Any) -> list[Any]:
    """The first ``count`` records of ``topic`` (read_committed, from the start)."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{topic}-{random.random()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            **config,
        }
    )
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + within
    try:
        while len(records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} of {count} records in {within} s")
            for record in consumer.consume(1000, 0.2):
                assert record.error() is None, record.error()
                records.append(record)
    finally:
        consumer.close()
    return records


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [ck.TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return [max(tp.offset, 0) for tp in offsets]  # none committed (empty partition): 0
    finally:
        consumer.close()


async def send_all(url: str, messages: list[Message], **options: Any) -> None:
    publisher = open_publisher(url, options)
    async with publisher:
        await asyncio.gather(*[publisher.send(m) for m in messages])


def runs(count: int, events: int) -> tuple[list[str], list[Message]]:
    """``count`` runs (Start, events, Stop), interleaved message by message."""
    made = [Run(f"run-{i}-{os.urandom(3).hex()}") for i in range(count)]
    per_run: list[list[Message]] = [
        [r.start({"n": events}), *[r.event({"i": i}) for i in range(events)], r.stop()]
        for r in made
    ]
    interleaved = [m for group in zip(*per_run, strict=True) for m in group]
    return [r.stream for r in made], interleaved


class Collect(Operator):
    """Keeps the ids of what it gets; publishes nothing."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def process(self, message: Message) -> Output:
        self.ids.append(message.id)
        return None


class Shuffle(Operator):
    """Finishes messages out of order (a random short await each)."""

    async def process(self, message: Message) -> Output:
        await asyncio.sleep(random.random() / 500)
        return message


async def test_round_trip_with_headers_keys_and_committed_offsets(
    kafka_bootstrap: str, topics: Any
) -> None:
    source, results = topics("in", 2), topics("out", 2)
    _, messages = runs(2, 5)
    await send_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    group = f"{source}-g"
    listener = open_listener(f"kafka://{kafka_bootstrap}/{source}?group={group}", FAST)
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    stats = await Block(listener, None, [publisher], max_messages=len(messages)).run()
    assert stats.acknowledged == len(messages)

    records = read(kafka_bootstrap, results, len(messages))
    by_id = {m.id: m for m in messages}
    for record in records:
        message = decode(record.value())
        assert message == by_id[message.id]
        assert record.key() == message.stream.encode()
        headers = dict(record.headers())
        assert headers["arroyo.kind"] == message.kind.encode()
        assert headers["arroyo.id"] == message.id.encode()
        assert headers["arroyo.schema"] == record.value()[2:10].hex().encode()
    assert {decode(r.value()).id for r in records} == set(by_id)
    # Every message was acknowledged, so every offset is committed: nothing to redo.
    ends = []
    probe = ck.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "probe"})
    for p in range(2):
        ends.append(probe.get_watermark_offsets(ck.TopicPartition(source, p), timeout=10)[1])
    probe.close()
    assert committed(kafka_bootstrap, group, source, 2) == ends


async def test_interleaved_runs_stay_in_order_through_a_block(
    kafka_bootstrap: str, topics: Any
) -> None:
    """3 runs interleaved into a 4-partition topic come out with each run's Start,
    Events and Stop in order, each run in one partition, while the operator finishes
    messages out of order (concurrency 8)."""
    source, results = topics("in", 4), topics("out", 4)
    streams, messages = runs(3, 60)
    await send_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    listener = open_listener(f"kafka://{kafka_bootstrap}/{source}?group={source}-g", FAST)
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    block = Block(listener, Shuffle(), [publisher], concurrency=8, max_messages=len(messages))
    await block.run()

    records = read(kafka_bootstrap, results, len(messages))
    by_stream: dict[str, list[tuple[int, Message]]] = {s: [] for s in streams}
    for record in sorted(records, key=lambda r: (r.partition(), r.offset())):
        message = decode(record.value())
        by_stream[message.stream].append((record.partition(), message))
    for stream in streams:
        partitions = {p for p, _ in by_stream[stream]}
        assert len(partitions) == 1, f"{stream} spread over partitions {partitions}"
        out = [m for _, m in by_stream[stream]]
        assert [m.seq for m in out] == list(range(62))
        assert isinstance(out[0], Start) and isinstance(out[-1], Stop)
        assert all(isinstance(m, Event) for m in out[1:-1])
        assert [m.metadata["i"] for m in out[1:-1]] == list(range(60))  # type: ignore[union-attr]


async def test_several_topics_and_a_regex_subscription(
    kafka_bootstrap: str, topics: Any, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("rx")
    first, second = topics(f"{prefix}-a"), topics(f"{prefix}-b")
    (_, one), (_, two) = runs(1, 2), runs(1, 3)
    await send_all(f"kafka://{kafka_bootstrap}/{first}", one)
    await send_all(f"kafka://{kafka_bootstrap}/{second}", two)
    expected = {m.id for m in one + two}
    for path in (f"{first},{second}", f"^t-.*{prefix}-.*"):
        collect = Collect()
        listener = open_listener(
            f"kafka://{kafka_bootstrap}/{path}?group={prefix}-{len(path)}",
            {"topic.metadata.refresh.interval.ms": 1000, **FAST},
        )
        await Block(listener, collect, max_messages=len(expected)).run()
        assert set(collect.ids) == expected, path


async def test_a_message_over_the_producer_limit_names_the_settings_to_raise(
    kafka_bootstrap: str, topics: Any
) -> None:
    name = topics("big")
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{name}", {"message.max.bytes": 100_000})
    async with publisher:
        with pytest.raises(MessageTooLargeError) as caught:
            await publisher.publish(Event({}, b"x" * 200_000))
        text = str(caught.value)
        assert "message.max.bytes=100000" in text
        assert "max.message.bytes" in text
        await publisher.publish(Event({}, b"x" * 50_000))  # still works afterwards


async def test_a_message_over_the_topic_limit_names_the_settings_to_raise(
    kafka_bootstrap: str, topics: Any
) -> None:
    name = topics("small", **{"max.message.bytes": "20000"})
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{name}")
    async with publisher:
        with pytest.raises(MessageTooLargeError) as caught:
            await publisher.publish(Event({}, b"x" * 50_000))
        assert "topic's max.message.bytes" in str(caught.value)
        await publisher.publish(Event({}, b"x" * 1000))


async def test_tls_settings_pass_through_to_librdkafka(topics: Any) -> None:
    address, ca = os.environ.get("ARROYO_KAFKA_TLS"), os.environ.get("ARROYO_TLS_CA")
    if not address or not ca:
        message = "ARROYO_KAFKA_TLS / ARROYO_TLS_CA are not set (compose/brokers.sh up)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = topics("tls")
    tls = {"security.protocol": "SSL", "ssl.ca.location": ca}
    _, messages = runs(1, 3)
    await send_all(f"kafka://{address}/{name}", messages, **tls)
    collect = Collect()
    listener = open_listener(f"kafka://{address}/{name}?group={name}-g", {**tls, **FAST})
    await Block(listener, collect, max_messages=len(messages)).run()
    assert collect.ids == [m.id for m in messages]
    # Without the CA the broker's certificate is refused: the settings really are used.
    wrong = open_publisher(
        f"kafka://{address}/{name}", {"security.protocol": "SSL", "connect_timeout_ms": 3000}
    )
    with pytest.raises(PublishError, match="certificate verify failed"):
        await wrong.start()


async def test_a_stalled_block_pauses_the_partitions_and_stays_in_the_group(
    kafka_bootstrap: str, topics: Any, until: Callable[..., Any]
) -> None:
    """The operator holds the Block full longer than max.poll.interval.ms: the listener
    pauses and keeps polling, so it is not thrown out of the group (no second
    assignment), and afterwards everything is processed and committed."""
    name = topics("stall")
    _, messages = runs(1, 30)
    await send_all(f"kafka://{kafka_bootstrap}/{name}", messages)
    release = asyncio.Event()
    seen: list[str] = []

    class Stall(Operator):
        async def process(self, message: Message) -> Output:
            await release.wait()
            seen.append(message.id)
            return None

    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{name}?group={name}-g&pause_after_ms=50",
        {**FAST, "max.poll.interval.ms": 6000},
    )
    assert isinstance(listener, KafkaListener)
    block = Block(listener, Stall(), queue_size=2, max_messages=len(messages))
    task = asyncio.create_task(block.run())
    await until(lambda: listener._paused, 20, "the listener pauses while the Block is full")
    # The condition under test is time passing: stay stalled past max.poll.interval.ms.
    await asyncio.sleep(8)
    release.set()
    await asyncio.wait_for(task, 30)
    assert seen == [m.id for m in messages]
    assert listener._generation == 1, "the partition was revoked and assigned again"
    assert committed(kafka_bootstrap, f"{name}-g", name, 1) == [len(messages)]


async def test_exactly_once_block_commits_outputs_offsets_and_dead_letters_together(
    kafka_bootstrap: str, topics: Any
) -> None:
    source, results, dlq = topics("in", 2), topics("out", 2), topics("dlq")
    _, messages = runs(2, 200)
    await send_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    raw = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(source, b"not arroyo data", partition=0)
    raw.flush(10)
    group = f"{source}-g"
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{source}?group={group}&commit_every=50", FAST
    )
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    dead = open_publisher(f"kafka://{kafka_bootstrap}/{dlq}")
    exactly_once(listener, [publisher], dead)
    assert isinstance(dead, KafkaPublisher) and dead._txn is not None
    total = len(messages) + 1
    stats = await Block(listener, None, [publisher], dead_letter=dead, max_messages=total).run()
    assert (stats.published, stats.dead_lettered) == (len(messages), 1)

    records = read(kafka_bootstrap, results, len(messages))
    assert sorted(decode(r.value()).id for r in records) == sorted(m.id for m in messages)
    (letter,) = read(kafka_bootstrap, dlq, 1)
    assert letter.value() == b"not arroyo data"
    assert dict(letter.headers())["arroyo.dead-letter.error"] == b"DecodeError"
    # Only committed transactions are visible, and the offsets went with them.
    assert sum(committed(kafka_bootstrap, group, source, 2)) == total


def test_three_worker_processes_share_a_six_partition_topic(
    kafka_bootstrap: str, topics: Any, tmp_path: Path
) -> None:
    """3 ``arroyo run`` processes in one group: each processes a share, and the union of
    their outputs is every input."""
    source, results = topics("in", 6), topics("out", 6)
    group = f"{source}-g"
    (tmp_path / "ops.py").write_text(
        textwrap.dedent(
            """
            import os
            from arroyo import Event
            from arroyo.runtime import Operator

            class Tag(Operator):
                async def process(self, message):
                    return Event({"worker": os.getpid(), "source": message.id},
                                 stream=message.stream, seq=message.seq)
            """
        )
    )
    (tmp_path / "workers.yaml").write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: workers
                listener:
                  url: kafka://{kafka_bootstrap}/{source}?group={group}
                  session.timeout.ms: 6000
                  heartbeat.interval.ms: 500
                operator: ops:Tag
                publishers: [kafka://{kafka_bootstrap}/{results}]
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "arroyo", "run", "workers.yaml"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        wait_for_members(kafka_bootstrap, group, 3, within=60)
        streams = [f"s{i}" for i in range(60)]
        messages: list[Message] = [Run(s).event({"k": i}) for i in range(10) for s in streams]
        asyncio.run(send_all(f"kafka://{kafka_bootstrap}/{source}", messages))
        records = read(kafka_bootstrap, results, len(messages), within=60)
        outputs = [decode(r.value()) for r in records]
        sources = {m.metadata["source"] for m in outputs if isinstance(m, Event)}
        assert sources == {m.id for m in messages}
        shares: dict[Any, int] = {}
        for m in outputs:
            assert isinstance(m, Event)
            shares[m.metadata["worker"]] = shares.get(m.metadata["worker"], 0) + 1
        print("messages per worker:", shares)
        assert set(shares) == {w.pid for w in workers}, shares
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        logs = [w.communicate(timeout=60)[1].decode() for w in workers]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]


def wait_for_members(bootstrap: str, group: str, count: int, within: float) -> None:
    """Wait until ``group`` is stable with ``count`` members that all have partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = admin.describe_consumer_groups([group])[group].result(10)
        except ck.KafkaException:
            last = None
        if (
            last is not None
            and last.state == ck.ConsumerGroupState.STABLE
            and len(last.members) == count
            and all(m.assignment.topic_partitions for m in last.members)
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"group {group} not stable with {count} members: {last}")
