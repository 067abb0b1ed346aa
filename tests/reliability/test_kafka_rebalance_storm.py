"""A rebalance storm: while 50,000 messages flow into a 6-partition topic, Kafka workers
(``arroyo run`` processes of one group) come and go every few seconds, 1 -> 4 -> 2 ->
3 -> 1, some stopped with SIGTERM and some killed with SIGKILL. Nothing is lost, every
worker stopped with SIGTERM exits cleanly (none is stuck), and a message is output twice
only when a SIGKILLed worker had output it without committing (each output carries the
pid of the worker that made it)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo import Event, Run, encode
from arroyo.testing import Workers
from tests.reliability.kafka_groups import read_all, workers_config

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.kafka

COUNT = 50_000
PARTITIONS = 6
RATE = 2_500
"""Messages per second the feed writes: 20 s of flow, during which the workers change."""

OPS = '''
import dataclasses
import os

from arroyo import Event
from arroyo.runtime import Operator


class Tag(Operator):
    """Adds the pid of the worker to each Event."""

    async def process(self, message):
        if isinstance(message, Event):
            return dataclasses.replace(
                message, metadata={**message.metadata, "worker": os.getpid()}
            )
        return message
'''


def _config(folder: Path, bootstrap: str, source: str, sink: str) -> Path:
    (folder / "ops.py").write_text(OPS)
    return workers_config(
        folder / "storm.yaml",
        bootstrap,
        source,
        sink,
        operator="ops:Tag",
        listener={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        grace_period=20,
    )


class Feed(threading.Thread):
    """Writes COUNT Events of 60 runs at RATE per second; ``ids`` once done."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = ck.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
            runs = [Run(f"storm-{i}") for i in range(60)]
            began = time.monotonic()
            for i in range(COUNT):
                event = runs[i % len(runs)].event({"i": i})
                self.ids.append(event.id)
                while True:
                    try:
                        producer.produce(self.topic, encode(event), event.stream.encode())
                        break
                    except BufferError:
                        producer.poll(0.05)
                if i % 250 == 0:
                    producer.poll(0)
                    ahead = began + i / RATE - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # the feed's pace, not a wait for anything
            assert producer.flush(60) == 0
        except BaseException as exc:
            self.error = exc


def _outputs(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` (0 while a partition's leader is not known yet)."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{topic}"})
    try:
        return sum(
            consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        )
    except ck.KafkaException:
        return 0
    finally:
        consumer.close()


def _made_by(message: Any) -> tuple[str, int]:
    """(source id, pid of the worker that output it) of a record of the sink."""
    assert isinstance(message, Event)
    return message.id, int(message.metadata["worker"])  # type: ignore[arg-type]


async def test_workers_coming_and_going_lose_nothing(
    kafka_bootstrap: str,
    tmp_path: Path,
    workers: Workers,
    until: Callable[..., Any],
    kafka_reader: Callable[[str, str], Any],
) -> None:
    stamp = f"{int(time.time() * 1000) % 10**9}"
    source, sink = f"storm-src-{stamp}", f"storm-out-{stamp}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (source, sink)]
    ).values():
        future.result(30)
    config = _config(tmp_path, kafka_bootstrap, source, sink)
    output = kafka_reader(kafka_bootstrap, sink)
    feed = Feed(kafka_bootstrap, source)
    began = time.monotonic()
    feed.start()

    async def progress(more: int) -> None:
        target = _outputs(kafka_bootstrap, sink) + more
        await until(
            lambda: _outputs(kafka_bootstrap, sink) >= target, within=60, what=f"+{more} outputs"
        )

    killed: set[int] = set()
    stopped: dict[int, int] = {}
    running = [workers.start(config)]  # 1
    await progress(2_000)
    running += [workers.start(config) for _ in range(3)]  # 4
    await progress(4_000)
    for process, how in zip(running[:2], ("term", "kill"), strict=True):  # 2
        if how == "kill":
            workers.kill(process)
            killed.add(process.pid)
        else:
            stopped[process.pid] = workers.stop(process)
    running = running[2:]
    await progress(4_000)
    running.append(workers.start(config))  # 3
    await progress(4_000)
    workers.kill(running[0])  # 1
    killed.add(running[0].pid)
    stopped[running[1].pid] = workers.stop(running[1])
    last = running[2]
    feed.join(60)
    assert feed.error is None and len(feed.ids) == COUNT, feed.error
    expected = set(feed.ids)
    # Every input in the output, not COUNT outputs: the killed workers' duplicates
    # count towards that before the last worker is through.
    with contextlib.suppress(AssertionError):  # what is missing then is reported below
        output.wait(lambda: expected <= set(output.ids), 120, "every message out")
    stopped[last.pid] = workers.stop(last)
    got = read_all(kafka_bootstrap, sink, PARTITIONS, pick=_made_by)  # all: every worker exited
    seen = {message_id for message_id, _ in got}
    elapsed = time.monotonic() - began
    lost = expected - seen
    copies: defaultdict[str, list[int]] = defaultdict(list)
    for message_id, pid in got:
        copies[message_id].append(pid)
    twice = {message_id: pids for message_id, pids in copies.items() if len(pids) > 1}
    by_worker = Counter(pid for pids in twice.values() for pid in pids if pid in killed)
    print(
        f"rebalance storm: {COUNT} messages, 6 partitions, workers 1 -> 4 -> 2 -> 3 -> 1, "
        f"{len(killed)} SIGKILLed and {len(stopped)} SIGTERMed; lost={len(lost)}, "
        f"output twice={len(twice)} (all by a killed worker: {dict(by_worker)}), "
        f"{elapsed:.0f} s in all"
    )
    assert not lost, f"{len(lost)} messages lost"
    assert all(code == 0 for code in stopped.values()), (stopped, [workers.log(last)[-2000:]])
    for message_id, pids in twice.items():
        assert killed & set(pids), f"{message_id} output twice, by no killed worker: {pids}"
