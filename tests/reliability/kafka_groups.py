"""Kafka workers' pipeline, reading their output and waiting for their consumer group,
for the reliability tests of Kafka workers (kill, rebalance storm, cluster)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from arroyo import decode

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # noqa: E402


def read_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    within: float = 60,
    pick: Callable[[Any], Any] = lambda message: message.id,
) -> list[Any]:
    """``pick`` of each committed record of ``topic`` (decoded; by default the source
    id), read to its end."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"final-{topic}",
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            "enable.partition.eof": "true",
        }
    )
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    ids: list[str] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + within
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic} not read to its end in {within} s"
            for record in consumer.consume(1000, 0.2):
                error = record.error()
                if error is None:
                    ids.append(pick(decode(record.value())))
                elif error.code() == ck.KafkaError._PARTITION_EOF:
                    at_end.add(record.partition())
                else:
                    raise AssertionError(error)
    finally:
        consumer.close()
    return ids


_COORDINATOR_MOVING = {
    "NOT_COORDINATOR",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
}
"""What a group's coordinator answers while it moves to another node (one was killed,
or came back and took its partitions' leadership back): ask again."""


def committed_offsets(consumer: Any, topic: str, partitions: int, within: float = 60) -> list[Any]:
    """``consumer.committed`` of every partition of ``topic``, asked again while the
    group's coordinator is moving (or librdkafka calls the error retriable), until
    ``within`` seconds have passed; then, or for any other error, the KafkaException."""
    tps = [ck.TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + within
    while True:
        try:
            return list(consumer.committed(tps, timeout=10))
        except ck.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            moving = error is not None and (
                error.retriable() or error.name() in _COORDINATOR_MOVING
            )
            if not moving or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)  # between two questions to a cluster that is electing


def wait_for_members(bootstrap: str, group: str, count: int, within: float = 60) -> None:
    """Return once ``group`` is stable with ``count`` members, each with partitions
    (AssertionError after ``within`` seconds, with the group's last description)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(ck.KafkaException):
            last = admin.describe_consumer_groups([group])[group].result(10)
            if (
                last.state == ck.ConsumerGroupState.STABLE
                and len(last.members) == count
                and all(m.assignment.topic_partitions for m in last.members)
            ):
                return
        time.sleep(0.2)
    if last is not None:
        members = "; ".join(
            f"{m.client_id} {[tp.partition for tp in m.assignment.topic_partitions]}"
            for m in last.members
        )
        last = f"{last.state.name}, {len(last.members)} members ({members})"
    raise AssertionError(f"group {group} not stable with {count} members: {last}")


def workers_config(
    path: Path,
    bootstrap: str,
    source: str,
    results: str,
    *,
    operator: str = "passthrough",
    listener: dict[str, Any] | None = None,
    publisher: dict[str, Any] | None = None,
    **block: Any,
) -> Path:
    """Write ``path``: one block ``workers`` from ``source`` (group ``SOURCE-g``, offsets
    committed every 500 ms) through ``operator`` to ``results``, with more settings of
    the ``listener``, the ``publisher`` and the ``block`` (``guarantee``...)."""
    config = {
        "name": "workers",
        "listener": {
            "url": f"kafka://{bootstrap}/{source}?group={source}-g",
            "commit_interval_ms": 500,
            **(listener or {}),
        },
        "operator": operator,
        "publishers": [{"url": f"kafka://{bootstrap}/{results}", **(publisher or {})}],
        **block,
    }
    path.write_text(yaml.safe_dump({"blocks": [config]}, sort_keys=False))
    return path
