"""Kafka workers (``arroyo run`` processes) killed with SIGKILL while a stream goes
through, with exactly-once: nothing is lost and nothing duplicated, also across the
rebalances a kill and a join make. (What every broker does when a worker is killed or
stopped with SIGTERM: tests/contract/test_redelivery.py and test_drain.py.)"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run, encode
from arroyo.testing import Workers
from tests.reliability.kafka_groups import (
    committed_offsets,
    read_all,
    wait_for_members,
    workers_config,
)
from tests.reliability.operators import slow_operator

ck = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.kafka


def produce(bootstrap: str, topic: str, count: int, streams: int = 40) -> list[Any]:
    """``count`` events spread over ``streams`` runs; returns (id, partition, offset)."""
    producer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    runs = [Run(f"s{i}") for i in range(streams)]
    placed: list[Any] = []
    for i in range(count):
        event = runs[i % streams].event({"i": i})

        def report(err: Any, msg: Any, event_id: str = event.id) -> None:
            assert err is None, err
            placed.append((event_id, msg.partition(), msg.offset()))

        value, key = encode(event), event.stream.encode()
        while True:
            try:
                producer.produce(topic, value, key=key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
    return placed


def write_config(
    tmp_path: Path, bootstrap: str, source: str, results: str, guarantee: str, slow: bool = False
) -> Path:
    """The workers' pipeline: a 6 s session (a killed worker's partitions move on soon),
    a 6 s transaction timeout (so a rebalance drains for 5 s at most); ``slow``: 1 ms a
    message."""
    return workers_config(
        tmp_path / "workers.yaml",
        bootstrap,
        source,
        results,
        operator=slow_operator(tmp_path, 0.001) if slow else "passthrough",
        listener={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "drain_timeout_ms": 5000,
        },
        publisher={"transaction.timeout.ms": 6000},
        guarantee=guarantee,
    )


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (0 where none). The offsets of a transaction still
    open (a killed worker's, until the broker aborts it) are not waited for: a
    read_uncommitted consumer asks without KIP-447's require_stable."""
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"}
    )
    try:
        found = committed_offsets(consumer, topic, partitions)
        return {tp.partition: max(tp.offset, 0) for tp in found}
    finally:
        consumer.close()


@pytest.mark.parametrize("guarantee", ["exactly-once"])  # at-least-once: tests/contract
def test_sigkill_of_one_of_two_workers_loses_nothing(
    kafka_bootstrap: str,
    kafka_topics: Any,
    kafka_reader: Callable[[str, str], Any],
    workers: Workers,
    tmp_path: Path,
    guarantee: str,
) -> None:
    """20,000 messages stream through 2 workers; one is killed with SIGKILL when a quarter
    is through. Every input reaches the output (lost = 0); duplicates are counted and
    printed, and with exactly-once there are none in the read_committed output."""
    total = 20_000
    source, results = kafka_topics("in", 4), kafka_topics("out", 4)
    config = write_config(tmp_path, kafka_bootstrap, source, results, guarantee)
    first, second = workers.start(config), workers.start(config)
    output = kafka_reader(kafka_bootstrap, results)
    try:
        wait_for_members(kafka_bootstrap, f"{source}-g", 2)
        placed: list[Any] = []
        feeder = threading.Thread(
            target=lambda: placed.extend(produce(kafka_bootstrap, source, total))
        )
        feeder.start()
        output.wait(lambda: len(output.ids) >= total // 4, 60, "a quarter through")
        workers.kill(first)
        feeder.join()
        expected = {event_id for event_id, _, _ in placed}
        assert len(expected) == total
        output.wait(lambda: expected <= set(output.ids), 120, "every input in the output")
        assert workers.stop(second) == 0, workers.log(second)[-3000:]
    finally:
        output.close()
    final = read_all(kafka_bootstrap, results, 4)  # the survivor has exited: this is all
    counts = collections.Counter(final)
    lost = expected - set(counts)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    print(
        f"{guarantee}: {total} inputs, {len(final)} outputs, lost {len(lost)}, "
        f"duplicated {len(duplicates)} ({sum(duplicates.values()) - len(duplicates)} extra)"
    )
    if duplicates:
        print("duplicated ids:", " ".join(sorted(duplicates)))
    assert not lost
    if guarantee == "exactly-once":
        assert not duplicates
        assert len(final) == total


def wait_settled(bootstrap: str, topic: str, partitions: int, within: float = 60) -> None:
    """Wait until no transaction is open on ``topic`` (the last stable offset, which a
    read_committed consumer sees as its end, is the end of every partition): a worker
    killed mid-transaction holds it back until the broker aborts that transaction."""
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        ends[isolation] = ck.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"ends-{topic}",
                "isolation.level": isolation,
            }
        )
    try:
        deadline, last = time.monotonic() + within, {}
        while time.monotonic() < deadline:
            last = {
                isolation: [
                    consumer.get_watermark_offsets(ck.TopicPartition(topic, p), 10, False)[1]
                    for p in range(partitions)
                ]
                for isolation, consumer in ends.items()
            }
            if last["read_committed"] == last["read_uncommitted"]:
                return
            time.sleep(0.5)
        raise AssertionError(f"{topic}: a transaction still open after {within} s: {last}")
    finally:
        for consumer in ends.values():
            consumer.close()


def test_exactly_once_rebalances_lose_no_first_message(
    kafka_bootstrap: str,
    kafka_topics: Any,
    kafka_reader: Callable[[str, str], Any],
    workers: Workers,
    tmp_path: Path,
) -> None:
    """Issue 14, defect 7: two exactly-once workers start on a topic that already holds
    its input, so the second one's join revokes the partitions of the first mid-stream;
    when both work, one is SIGKILLed and the survivor takes its partitions over and
    finishes. The first message a worker took after such a rebalance was dropped while
    the offsets after it were committed (about one round in four lost one). Twelve
    rounds, two at a time, each on new topics: every input is in the read_committed
    output exactly once, and the group's committed offsets are the end of every
    partition."""
    rounds, total, partitions = 12, 4000, 4
    lock = threading.Lock()  # Workers and write_config are not made for threads

    def one_round(round_: int) -> tuple[str, list[Any]]:
        source = kafka_topics(f"in{round_}", partitions)
        results = kafka_topics(f"out{round_}", partitions)
        placed = produce(kafka_bootstrap, source, total)
        ends = dict(collections.Counter(partition for _, partition, _ in placed))
        group = f"{source}-g"
        with lock:
            config = write_config(tmp_path, kafka_bootstrap, source, results, "exactly-once", True)
            config = config.rename(tmp_path / f"round-{round_}.yaml")
            first, second = workers.start(config), workers.start(config)
        output = kafka_reader(kafka_bootstrap, results)
        try:
            try:
                wait_for_members(kafka_bootstrap, group, 2)
            except AssertionError as exc:
                logs = "\n".join(workers.log(w)[-2000:] for w in (first, second))
                raise AssertionError(f"round {round_}: {exc}; the workers' logs:\n{logs}") from None
            output.wait(lambda: len(output.ids) >= total // 4, 60, "a quarter through")
            workers.kill(first)
            deadline = time.monotonic() + 120
            while (offsets := committed(kafka_bootstrap, group, source, partitions)) != ends:
                assert time.monotonic() < deadline, (
                    f"round {round_}: committed offsets {offsets}, not the ends {ends}; "
                    f"the worker left:\n{workers.log(second)[-3000:]}"
                )
                time.sleep(0.2)
            assert workers.stop(second) == 0, workers.log(second)[-3000:]
        finally:
            output.close()
        return results, placed

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(one_round, range(rounds)))
    failures = []
    for round_, (results, placed) in enumerate(done):
        wait_settled(kafka_bootstrap, results, partitions)
        counts = collections.Counter(read_all(kafka_bootstrap, results, partitions))
        where = {event_id: (p, o) for event_id, p, o in placed}
        lost = sorted(where[i] for i in set(where) - set(counts))
        duplicated = sorted(where.get(i, i) for i, n in counts.items() if n > 1)
        print(f"round {round_}: lost (partition, offset) {lost}, duplicated {duplicated}")
        if lost or duplicated or len(counts) != total:
            failures.append(f"round {round_}: lost {lost[:20]}, duplicated {duplicated[:20]}")
    assert not failures, f"{len(failures)} of {rounds} rounds failed: {'; '.join(failures)}"
