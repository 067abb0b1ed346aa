"""The Kafka listener against the real broker: order, commits, scale-out, rebalances,
backpressure, TLS (the producers of these tests are Arroyo's publishers)."""

from __future__ import annotations

import asyncio
import os
import random
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo import Event, Run, Start, Stop, decode, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.kafka import KafkaListener
from arroyo.errors import ConnectError
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output
from arroyo.testing import Workers, publish_all

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # noqa: E402

pytestmark = pytest.mark.kafka

ReadTopic = Callable[..., list[Any]]
Committed = Callable[[str, str, str, int], list[int]]
Runs = Callable[[int, int], tuple[list[str], list[Message]]]


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


class Stall(Operator):
    """Holds every message until ``release`` is set, then keeps its id in ``seen``."""

    def __init__(self, release: asyncio.Event, seen: list[str]) -> None:
        self.release, self.seen = release, seen

    async def process(self, message: Message) -> Output:
        await self.release.wait()
        self.seen.append(message.id)
        return None


def place_on_partitions(bootstrap: str, topic: str) -> dict[int, list[Event]]:
    """Ten events of a run of their own in each of partitions 0 and 1 of ``topic``."""
    placed = {p: [Run(f"p{p}").event({"i": i}) for i in range(10)] for p in (0, 1)}
    producer = ck.Producer({"bootstrap.servers": bootstrap})
    for partition, events in placed.items():
        for event in events:
            producer.produce(topic, encode(event), partition=partition)
    assert producer.flush(10) == 0
    return placed


async def test_round_trip_with_headers_keys_and_committed_offsets(
    kafka_bootstrap: str,
    kafka_topics: Any,
    read_topic: ReadTopic,
    fast: dict[str, Any],
    committed: Committed,
    runs: Runs,
) -> None:
    source, results = kafka_topics("in", 2), kafka_topics("out", 2)
    _, messages = runs(2, 5)
    await publish_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    group = f"{source}-g"
    listener = open_listener(f"kafka://{kafka_bootstrap}/{source}?group={group}", fast)
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    stats = await Block(listener, None, [publisher], max_messages=len(messages)).run()
    assert stats.acknowledged == len(messages)

    records = read_topic(kafka_bootstrap, results, len(messages))
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
    kafka_bootstrap: str, kafka_topics: Any, read_topic: ReadTopic, fast: dict[str, Any], runs: Runs
) -> None:
    """3 runs interleaved into a 4-partition topic come out with each run's Start,
    Events and Stop in order, each run in one partition, while the operator finishes
    messages out of order (concurrency 8)."""
    source, results = kafka_topics("in", 4), kafka_topics("out", 4)
    streams, messages = runs(3, 60)
    await publish_all(f"kafka://{kafka_bootstrap}/{source}", messages)
    listener = open_listener(f"kafka://{kafka_bootstrap}/{source}?group={source}-g", fast)
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{results}")
    block = Block(listener, Shuffle(), [publisher], concurrency=8, max_messages=len(messages))
    await block.run()

    records = read_topic(kafka_bootstrap, results, len(messages))
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
    kafka_bootstrap: str,
    kafka_topics: Any,
    unique_name: Callable[[str], str],
    fast: dict[str, Any],
    runs: Runs,
) -> None:
    prefix = unique_name("rx")
    first, second = kafka_topics(f"{prefix}-a"), kafka_topics(f"{prefix}-b")
    (_, one), (_, two) = runs(1, 2), runs(1, 3)
    await publish_all(f"kafka://{kafka_bootstrap}/{first}", one)
    await publish_all(f"kafka://{kafka_bootstrap}/{second}", two)
    expected = {m.id for m in one + two}
    for path in (f"{first},{second}", f"^t-.*{prefix}-.*"):
        collect = Collect()
        listener = open_listener(
            f"kafka://{kafka_bootstrap}/{path}?group={prefix}-{len(path)}",
            {"topic.metadata.refresh.interval.ms": 1000, **fast},
        )
        await Block(listener, collect, max_messages=len(expected)).run()
        assert set(collect.ids) == expected, path


async def test_tls_settings_pass_through_to_librdkafka(
    kafka_topics: Any, caplog: pytest.LogCaptureFixture, fast: dict[str, Any], runs: Runs
) -> None:
    address, ca = os.environ.get("ARROYO_KAFKA_TLS"), os.environ.get("ARROYO_TLS_CA")
    if not address or not ca:
        message = "ARROYO_KAFKA_TLS / ARROYO_TLS_CA are not set (compose/brokers.sh up)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = kafka_topics("tls")
    tls = {"security.protocol": "SSL", "ssl.ca.location": ca}
    _, messages = runs(1, 3)
    await publish_all(f"kafka://{address}/{name}", messages, **tls)
    collect = Collect()
    listener = open_listener(f"kafka://{address}/{name}?group={name}-g", {**tls, **fast})
    await Block(listener, collect, max_messages=len(messages)).run()
    assert collect.ids == [m.id for m in messages]
    # Without the CA the broker's certificate is refused: the settings really are used.
    wrong = open_publisher(
        f"kafka://{address}/{name}", {"security.protocol": "SSL", "connect_timeout": 3}
    )
    with pytest.raises(ConnectError, match="certificate verify failed"):
        await wrong.start()
    # A producer that never started is not replaced: a replacement raced the error
    # report and could hide the TLS cause behind "cannot reach".
    assert "starting a new producer" not in caplog.text


async def test_a_stalled_block_pauses_the_partitions_and_stays_in_the_group(
    kafka_bootstrap: str,
    kafka_topics: Any,
    until: Callable[..., Any],
    fast: dict[str, Any],
    committed: Committed,
    runs: Runs,
) -> None:
    """The operator holds the Block full longer than max.poll.interval.ms: the listener
    pauses and keeps polling, so it is not thrown out of the group (no second
    assignment), and afterwards everything is processed and committed."""
    name = kafka_topics("stall")
    _, messages = runs(1, 30)
    await publish_all(f"kafka://{kafka_bootstrap}/{name}", messages)
    release, seen = asyncio.Event(), list[str]()
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{name}?group={name}-g&pause_after_ms=50",
        {**fast, "max.poll.interval.ms": 6000},
    )
    assert isinstance(listener, KafkaListener)
    block = Block(listener, Stall(release, seen), queue_size=2, max_messages=len(messages))
    task = asyncio.create_task(block.run())
    await until(lambda: listener.consumer.paused, 20, "the listener pauses while the Block is full")
    # The condition under test is time passing: stay stalled past max.poll.interval.ms.
    await asyncio.sleep(8)
    release.set()
    await asyncio.wait_for(task, 30)
    assert seen == [m.id for m in messages]
    assert listener.partitions.generation == 1, "the partition was revoked and assigned again"
    assert committed(kafka_bootstrap, f"{name}-g", name, 1) == [len(messages)]


def test_three_worker_processes_share_a_six_partition_topic(
    kafka_bootstrap: str, kafka_topics: Any, read_topic: ReadTopic, workers: Workers, tmp_path: Path
) -> None:
    """3 ``arroyo run`` processes in one group: each processes a share, and the union of
    their outputs is every input."""
    source, results = kafka_topics("in", 6), kafka_topics("out", 6)
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
    processes = [workers.start(tmp_path / "workers.yaml") for _ in range(3)]
    try:
        wait_for_members(kafka_bootstrap, group, 3, within=60)
        streams = [f"s{i}" for i in range(60)]
        messages: list[Message] = [Run(s).event({"k": i}) for i in range(10) for s in streams]
        asyncio.run(publish_all(f"kafka://{kafka_bootstrap}/{source}", messages))
        records = read_topic(kafka_bootstrap, results, len(messages), within=60)
        outputs = [decode(r.value()) for r in records]
        sources = {m.metadata["source"] for m in outputs if isinstance(m, Event)}
        assert sources == {m.id for m in messages}
        shares: dict[Any, int] = {}
        for m in outputs:
            assert isinstance(m, Event)
            shares[m.metadata["worker"]] = shares.get(m.metadata["worker"], 0) + 1
        print("messages per worker:", shares)
        assert set(shares) == {w.pid for w in processes}, shares
    finally:
        codes = workers.stop_all()
    for worker, code in zip(processes, codes, strict=True):
        assert code == 0, workers.log(worker)[-3000:]


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


async def test_a_partition_paused_before_a_rebalance_is_read_when_it_comes_back(
    kafka_bootstrap: str, kafka_topics: Any, until: Callable[..., Any], fast: dict[str, Any]
) -> None:
    """The Block is full, so the listener pauses both its partitions; a second consumer
    joins and takes one of them; the Block drains and the listener resumes what it still
    has; the other consumer leaves and the partition comes back. librdkafka keeps a
    partition paused across a rebalance, so the one that came back was never read
    again (the worker stalled with work waiting). Every message is processed."""
    name = kafka_topics("paused", partitions=2)
    placed = place_on_partitions(kafka_bootstrap, name)
    release, seen = asyncio.Event(), list[str]()
    group = f"{name}-g"
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{name}?group={group}&pause_after_ms=50&drain_timeout_ms=200",
        fast,
    )
    assert isinstance(listener, KafkaListener)
    block = Block(listener, Stall(release, seen), queue_size=2)
    task = asyncio.create_task(block.run())
    other = ck.Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False}
        | fast
    )
    leave = threading.Event()

    def poll_until_told() -> None:
        other.subscribe([name])
        while not leave.is_set():
            other.poll(0.1)
        other.close()  # leaves the group: its partition goes back to the listener

    try:
        await until(
            lambda: listener.consumer.paused and len(listener.partitions.owned) == 2,
            20,
            "both partitions paused",
        )
        joined = asyncio.create_task(asyncio.to_thread(poll_until_told))
        await until(lambda: len(listener.partitions.owned) == 1, 30, "the other consumer takes one")
        (kept,) = (p for _, p in listener.partitions.owned)
        release.set()
        await until(
            lambda: {e.id for e in placed[kept]} <= set(seen), 30, f"partition {kept} processed"
        )
        leave.set()
        await joined
        await until(lambda: len(listener.partitions.owned) == 2, 30, "the partition comes back")
        everything = {e.id for events in placed.values() for e in events}
        await until(lambda: everything <= set(seen), 30, f"partition {1 - kept} processed")
    finally:
        leave.set()
        block.stop()
        await asyncio.wait_for(task, 30)


async def test_a_revocation_hands_back_what_waits_in_the_block_unprocessed(
    kafka_bootstrap: str, kafka_topics: Any, until: Callable[..., Any], fast: dict[str, Any]
) -> None:
    """The Block holds 20 messages of two partitions: one being processed (held until the
    revocation starts), 19 waiting. A second consumer joins, and both partitions are
    revoked. The 19 waiting are handed back unprocessed (not processed during the
    revocation, whose drain waited for a full queue before), and the commit stops before
    the first of them: between the two consumers every message is processed exactly
    once."""
    name = kafka_topics("handback", partitions=2)
    placed = place_on_partitions(kafka_bootstrap, name)
    release, seen = asyncio.Event(), list[str]()
    group = f"{name}-g"
    listener = open_listener(
        f"kafka://{kafka_bootstrap}/{name}?group={group}&drain_timeout_ms=60000", fast
    )
    assert isinstance(listener, KafkaListener)
    block = Block(listener, Stall(release, seen), queue_size=20, batch_size=1)
    task = asyncio.create_task(block.run())
    other = ck.Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        | fast
    )
    leave, other_seen = threading.Event(), list[str]()

    def poll_until_told() -> None:
        other.subscribe([name])
        while not leave.is_set():
            msg = other.poll(0.1)
            if msg is not None and msg.error() is None:
                other_seen.append(decode(msg.value()).id)
        other.close()

    joined: asyncio.Future[None] | None = None
    try:
        await until(lambda: block.intake.held == 20, 20, "20 messages in the Block")
        assert block.intake.depth == 19
        joined = asyncio.ensure_future(asyncio.to_thread(poll_until_told))
        await until(lambda: not listener.partitions.owned, 30, "the revocation starts")
        release.set()
        await until(lambda: listener.partitions.owned, 30, "a partition assigned again")
        assert block.stats.handed_back == 19
        everything = {e.id for events in placed.values() for e in events}
        await until(
            lambda: everything <= set(seen) | set(other_seen), 30, "every message processed"
        )
        assert len(seen) == len(set(seen)) and not set(seen) & set(other_seen), (
            f"processed twice: {sorted(set(seen) & set(other_seen))}"
        )
    finally:
        leave.set()
        if joined is not None:
            await joined
        block.stop()
        await asyncio.wait_for(task, 30)
