"""Kafka itself dies (kill -9) and comes back mid-stream: the pipeline resumes by itself
and loses nothing, and a publish that fails meanwhile leaves the run in order. Runs on a
private Kafka instance (own folder and ports), so the shared broker stays up for the
other tests."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run, encode
from arroyo.brokers import memory, open_listener, open_publisher
from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block, RetryPolicy
from arroyo.testing import free_port, make_run
from tests.reliability.processes import kill_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
BROKERS = ROOT / "compose" / "brokers.sh"


class PrivateKafka:
    """A Kafka of this test only, started with compose/brokers.sh in its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "ARROYO_BROKERS_DIR": str(folder),
            "ARROYO_KAFKA_PORT": str(free_port()),
            "ARROYO_KAFKA_CONTROLLER_PORT": str(free_port()),
            "ARROYO_KAFKA_TLS_PORT": str(free_port()),
        }
        self.bootstrap = f"127.0.0.1:{self.env['ARROYO_KAFKA_PORT']}"

    def _script(self, *args: str) -> None:
        done = subprocess.run([str(BROKERS), *args], env=self.env, capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr.decode()[-3000:]

    def up(self) -> None:
        self._script("up", "kafka")

    def down(self) -> None:
        self._script("down", "kafka")

    def kill(self) -> None:
        """SIGKILL the broker; return once it is dead and its port accepts nothing (a
        killed JVM's threads may hold its sockets a moment after its pid looks gone)."""
        pid = int((self.folder / "kafka" / "kafka.pid").read_text().split()[0])
        kill_broker(pid, self.bootstrap, "Kafka")


@pytest.fixture
def private_kafka(tmp_path: Path, kafka_bootstrap: str) -> Iterator[PrivateKafka]:
    # (kafka_bootstrap: this needs what the shared broker needs: the jars, Java.)
    if not BROKERS.exists():
        pytest.skip("compose/brokers.sh is missing")
    kafka = PrivateKafka(tmp_path / "brokers")
    kafka.up()
    try:
        yield kafka
    finally:
        kafka.down()


def feed(bootstrap: str, topic: str, ids: list[str], count: int, stop: threading.Event) -> None:
    """Produce ``count`` events at about 500/s (through the outage: librdkafka keeps
    them until the broker is back); their ids go to ``ids`` once delivered."""
    producer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    runs = [Run(f"s{i}") for i in range(8)]
    for i in range(count):
        if stop.is_set():
            break
        event = runs[i % 8].event({"i": i})
        producer.produce(
            topic,
            encode(event),
            key=event.stream.encode(),
            on_delivery=lambda err, msg, i=event.id: ids.append(i) if err is None else None,
        )
        producer.poll(0.002)
    producer.flush(120)


async def test_kafka_restart_mid_stream_loses_nothing(
    private_kafka: PrivateKafka,
    unique_name: Callable[[str], str],
    kafka_reader: Callable[[str, str], Any],
    until: Callable[..., Any],
) -> None:
    bootstrap = private_kafka.bootstrap
    source, results = unique_name("in"), unique_name("out")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in (source, results)]).values():
        future.result(30)
    fast = {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "reconnect.backoff.max.ms": 1000,
    }
    listener = open_listener(f"kafka://{bootstrap}/{source}?group={source}-g", fast)
    publisher = open_publisher(f"kafka://{bootstrap}/{results}", {"reconnect.backoff.max.ms": 1000})
    block = Block(listener, None, [publisher])
    running = asyncio.create_task(block.run())
    output = kafka_reader(bootstrap, results)
    delivered: list[str] = []
    stop_feeding = threading.Event()
    feeder = threading.Thread(target=feed, args=(bootstrap, source, delivered, 6000, stop_feeding))
    feeder.start()
    try:
        await until(lambda: len(output.ids) >= 1000, 60, "1000 outputs before the crash")
        private_kafka.kill()
        received = block.stats.received
        clients = (listener, publisher)
        await until(lambda: not any(c.connected for c in clients), 30, "Kafka seen down")
        await asyncio.to_thread(private_kafka.up)
        await until(lambda: block.stats.received > received, 120, "input again after restart")
        await until(lambda: all(c.connected for c in clients), 30, "Kafka seen up again")
        await asyncio.to_thread(feeder.join)
        expected = set(delivered)
        assert len(expected) >= 1000
        await until(lambda: expected <= set(output.ids), 120, "every input in the output")
    finally:
        stop_feeding.set()
        block.stop()
        await asyncio.wait_for(running, 60)
        output.close()
        feeder.join()
    counts = collections.Counter(output.ids)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    print(
        f"{len(expected)} inputs, {len(output.ids)} outputs, lost "
        f"{len(expected - set(counts))}, duplicated {len(duplicates)}"
    )
    assert expected <= set(counts)
    assert block.stats.dead_lettered == 0


async def test_a_publish_that_times_out_in_an_outage_leaves_the_run_in_order(
    private_kafka: PrivateKafka,
    unique_name: Callable[[str], str],
    kafka_reader: Callable[[str, str], Any],
    until: Callable[..., Any],
) -> None:
    """Rule 2 of arroyo/runtime/ordering.py on a real broker. Once a first message went
    through, Kafka dies and a run of ten messages is published: the first waits in
    librdkafka's queue (room for one message: queue.buffering.max.messages=1), the
    others wait for room behind it. The first times out (message.timeout.ms), Kafka
    comes back. What waited behind the failed message is not written before it is
    published again: the topic holds the run in input order (it held the first message
    after the others)."""
    bootstrap = private_kafka.bootstrap
    source, results = unique_name("in"), unique_name("out")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(results, 1, 1)])[results].result(30)
    settings = {
        "message.timeout.ms": 3000,
        "queue.buffering.max.messages": 1,
        "reconnect.backoff.max.ms": 1000,
    }
    publisher = open_publisher(f"kafka://{bootstrap}/{results}", settings)
    retry = RetryPolicy(None, 0.05, 1.0)
    block = Block(MemoryListener(source), None, [publisher], publish_retry=retry)
    running = asyncio.create_task(block.run())
    first, *messages = make_run(9, unique_name("run"))
    try:
        memory.topic(source).put(first)
        await until(lambda: block.stats.acknowledged == 1, 60, "a first message through")
        private_kafka.kill()
        for message in messages:
            memory.topic(source).put(message)
        await until(lambda: block.stats.retried, 60, "a message timed out")
        await asyncio.to_thread(private_kafka.up)
        await until(lambda: block.stats.acknowledged == 11, 120, "all published")
    finally:
        block.stop()
        await asyncio.wait_for(running, 60)
        memory.delete(source)
    output = kafka_reader(bootstrap, results)
    try:
        await until(lambda: len(output.ids) >= 11, 60, "the topic read")
    finally:
        output.close()
    assert output.ids == [m.id for m in [first, *messages]]
