"""``arroyo tail`` on Kafka: it shows every record and commits nothing, joins no group,
leaves every group's committed offsets as they were (the records: conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class KafkaState:
    ends: dict[int, tuple[int, int]]
    offsets: dict[str, dict[int, int]]
    """Committed offsets on the topic of every group that has any."""
    tail_groups: list[str]
    """Groups named like the ones tail used to make (``arroyo-tail-*``), with or without
    offsets (any group tail made would have that name)."""


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
    tail_groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith("arroyo-tail"))
    return KafkaState(ends, offsets, tail_groups)


@pytest.fixture
async def kafka_sample(
    kafka_bootstrap: str, kafka_topics: Any, sample: Any
) -> AsyncIterator[tuple[str, Any, str]]:
    """A topic with the six records and a consumer group ``workers-*`` that committed
    offset 2 (it has read the first two); its URL, the sample, and the group."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = kafka_topics("frames")
    url = f"kafka://{kafka_bootstrap}/{topic}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    async def raw(data: bytes) -> None:
        producer.produce(topic, data)
        assert producer.flush(10) == 0

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
    tail_cli: Any, kafka_bootstrap: str, kafka_sample: tuple[str, Any, str]
) -> None:
    url, sample, group = kafka_sample
    topic = url.rsplit("/", 1)[1]
    before = kafka_state(kafka_bootstrap, topic, 1)
    assert before.offsets == {group: {0: 2}}
    assert before.ends == {0: (0, 6)}

    lines = await tail_cli.lines(url, "--schema", sample.schema_file)
    sample.check(lines)
    assert [line["source"]["offset"] for line in lines] == list(range(6))
    assert {line["source"]["topic"] for line in lines} == {topic}
    assert lines[0]["source"]["key"] == sample.stream
    assert lines[0]["headers"]["arroyo.kind"] == "start"
    sample.check(await tail_cli.lines(url), with_schema=False)

    assert kafka_state(kafka_bootstrap, topic, 1) == before


@pytest.mark.kafka
async def test_kafka_tail_with_count_commits_nothing_and_leaves_no_group(
    tail_cli: Any, kafka_bootstrap: str, kafka_sample: tuple[str, Any, str]
) -> None:
    """As a user tails a topic by hand: no --exit-at-end, stopped by --count."""
    url, _, _ = kafka_sample
    topic = url.rsplit("/", 1)[1]
    before = kafka_state(kafka_bootstrap, topic, 1)
    done = await asyncio.to_thread(tail_cli.run, url, "--count", "6")
    assert kafka_state(kafka_bootstrap, topic, 1) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.kafka
async def test_kafka_tail_from_the_end_shows_only_what_comes(
    tail_cli: Any, kafka_bootstrap: str, kafka_sample: tuple[str, Any, str]
) -> None:
    url, _, _ = kafka_sample
    assert await tail_cli.lines(url, "--from-end") == []
    done = await asyncio.to_thread(tail_cli.run, url, "--count", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["kind"] for line in done.stdout.splitlines()] == ["start", "event"]


@pytest.mark.kafka
async def test_kafka_tail_of_a_missing_topic_or_cluster_says_so_in_one_line(
    tail_cli: Any, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    missing = unique_name("missing")
    done = await asyncio.to_thread(tail_cli.run, f"kafka://{kafka_bootstrap}/{missing}", "-e")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: kafka://{kafka_bootstrap}/{missing}: no topic {missing!r} on the cluster"
    ]
    from arroyo.testing import free_port

    nowhere = f"kafka://127.0.0.1:{free_port()}/frames?connect_timeout=2"
    done = await asyncio.to_thread(tail_cli.run, nowhere, "-e")
    assert done.returncode == 1
    [error] = done.stderr.strip().splitlines()
    assert "cannot reach the Kafka cluster" in error
    assert "within 2 s" in error
