"""Kafka -> Kafka with ``arroyo run --workers 2`` against one worker, on the same
4-partition topic (at-least-once, 1 KiB, passthrough).

The source topic is pre-loaded with ``count`` Events spread over its 4 partitions. Each
variant is ``arroyo run --workers N`` on a pipeline of its own (its own group and
destination topic), stopped with SIGTERM once the destination holds every message.
The rate is the destination's: ``count`` over the time between its first and its last
message, by the broker's append times (``LogAppendTime``), so the workers' start-up and
their first rebalance before any output are not counted. The brokers share the same
2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT, Measurement, Row, best_of, size_label, unique
from bench.kafka_kafka import KAFKA, _admin, delete_topics, produce_all

PARTITIONS = 4
COUNTS = (60_000, 200_000)  # quick, full
SIZE = 1 << 10


def create_topic(name: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = _admin()
    config = {"message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
    for future in futures.values():
        future.result(60)


def preload(topic: str, count: int) -> None:
    """``count`` Events of 4 runs, run ``i`` in partition ``i``."""
    from arroyo import Event, encode

    create_topic(topic, PARTITIONS)
    payload = os.urandom(SIZE)

    def records() -> Iterator[tuple[bytes, bytes, int]]:
        for i in range(count):
            part = i % PARTITIONS
            event = Event({"frame": i}, payload, stream=f"bench-{part}", seq=i // PARTITIONS)
            yield encode(event), f"bench-{part}".encode(), part

    produce_all(topic, records())


def _span(topic: str) -> tuple[int, float]:
    """Messages in ``topic`` (one partition) and seconds from its first to its last
    append."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": unique("span")})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        stamps = []
        for offset in (low, high - 1):
            consumer.assign([TopicPartition(topic, 0, offset)])
            msg = consumer.consume(1, 30)[0]
            stamps.append(msg.timestamp()[1])
        return high - low, (stamps[1] - stamps[0]) / 1000
    finally:
        consumer.close()


def _held(topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": unique("held")})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high - low)
    finally:
        consumer.close()


def measure(src: str, count: int, workers: int, made: list[str]) -> Measurement:
    dst = unique(f"kw-{workers}")
    create_topic(dst, 1)
    made.append(dst)
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Path(folder) / "pipeline.yaml"
        pipeline.write_text(
            "blocks:\n"
            "  - name: bench\n"
            f"    listener: kafka://{KAFKA}/{src}?group={unique('kw-group')}\n"
            f"    publishers: [kafka://{KAFKA}/{dst}]\n"
        )
        log = open(Path(folder) / "log", "w+")  # noqa: SIM115  # read at the end
        command = [sys.executable, "-m", "arroyo", "run", "--workers", str(workers)]
        process = subprocess.Popen([*command, str(pipeline)], cwd=ROOT, stderr=log, stdout=log)
        deadline = time.monotonic() + 300
        try:
            while _held(dst) < count:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = " | ".join(log.read().strip().splitlines()[-3:])
                    return Measurement.failed(SIZE, f"{workers} workers: {tail}"[:400])
                time.sleep(0.5)  # polling the destination's watermark, not a wait for it
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
    messages, seconds = _span(dst)
    return Measurement(messages, seconds, SIZE, note=f"{workers} worker(s)")


def run(quick: bool, repeat: int) -> list[Row]:
    count = COUNTS[0] if quick else COUNTS[1]
    src = unique("kw-src")
    preload(src, count)
    made = [src]
    try:
        variants: list[Any] = [
            lambda: measure(src, count, 2, made),
            lambda: measure(src, count, 1, made),
        ]
        two, one = best_of(variants, repeat)
    finally:
        delete_topics(*made)
    return [
        Row(
            f"Kafka -> Kafka, arroyo run --workers 2, {PARTITIONS} partitions",
            size_label(SIZE),
            two,
            one,
            "--workers 1",
            target=1.3,
            note="rates from the destination's append times; brokers on the same 2 cores",
        )
    ]
