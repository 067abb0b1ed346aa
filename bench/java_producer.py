"""The limit row: Kafka's own Java producer (``org.apache.kafka.tools.ProducerPerformance``).

How fast the broker takes records of ``size`` bytes from the fastest producer there is,
on the same broker, as a ceiling for every Kafka row (produce only: nothing is consumed);
as many records as the row it stands by, and at least 100 MiB of them (``records``).
It runs from the kafka-tools jar that ``compose/brokers.sh`` fetched into
``$ARROYO_CACHE_DIR/kafka-<version>/libs`` (default ``~/.cache/arroyo``), with Kafka's
producer's ``acks=all`` and idempotence, batching as librdkafka does by default (the
Python rows' client: ``batch.size=1000000``, ``linger.ms=5``; Java's own 16 KiB batches
cap it at a few thousand 1 KiB records/s here, five requests in flight), a 256 MiB
buffer and ``max.request.size`` raised to what the broker accepts. Every record carries the same
``size`` random ASCII letters (``--payload-file``; the other rows move Events of a
``size`` payload, a few dozen bytes more).

The rate comes from the broker's append times, not from the tool's own figure: the topic
is created with ``message.timestamp.type=LogAppendTime``; the tool sends ``warmup(count)``
records more than ``count`` first, and the time is the span from the append of the first
counted record to that of the last (milliseconds), so the JVM's start-up, its JIT warm-up
and the first metadata request are excluded. p50/p99 are the tool's own, over every
record it sent (send to acknowledgement, whole backlog in flight); peak RSS is the JVM's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.common import ROOT, Measurement, unique

KAFKA = os.environ.get("ARROYO_KAFKA", "127.0.0.1:9092")
MAX_BYTES = 20 << 20
BUFFER = 256 << 20
"""The producer's buffer: its 32 MiB default would hold only 30 records of 1 MiB."""
TOOL = "org.apache.kafka.tools.ProducerPerformance"


def candidate_roots() -> list[Path]:
    """Where compose/brokers.sh keeps Kafka's jars (cache dir, then the brokers dir)."""
    cache = Path(os.environ.get("ARROYO_CACHE_DIR", Path.home() / ".cache" / "arroyo"))
    roots = [cache]
    brokers = os.environ.get("ARROYO_BROKERS_DIR")
    if brokers:
        roots += [Path(brokers), Path(brokers).parent]
    return roots


def find_libs(roots: Iterable[Path]) -> Path | None:
    """The newest ``kafka-<version>/libs`` folder holding a kafka-tools jar, under the
    first root that has one (None if there is none)."""
    for root in roots:
        found = sorted(
            root.glob("kafka-*/libs/kafka-tools-[0-9]*.jar"),
            key=lambda jar: _version(jar.parent.parent.name),
        )
        if found:
            return found[-1].parent
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


_SUMMARY = re.compile(
    r"^(?P<records>\d+) records sent, [\d.]+ records/sec .*?"
    r"(?P<p50>[\d.]+) ms 50th, [\d.]+ ms 95th, (?P<p99>[\d.]+) ms 99th",
    re.MULTILINE,
)


def parse_summary(output: str) -> tuple[int, float, float] | None:
    """The final line of ProducerPerformance: (records sent, p50 ms, p99 ms), or None
    when the output has no such line (its periodic lines have no percentiles)."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        return None
    last = found[-1]
    return int(last["records"]), float(last["p50"]), float(last["p99"])


def write_payload(path: Path, size: int) -> None:
    """One record's value for ``--payload-file``: ``size`` random ASCII letters, no
    delimiter (the tool splits the file at newlines; one line is one payload)."""
    letters = bytes(65 + b % 26 for b in os.urandom(size))
    path.write_bytes(letters)


def command(java: str, libs: Path, topic: str, count: int, payload: Path) -> list[str]:
    """The JVM command line (Kafka's perf-test heap, its log4j2 settings quiet). The
    payload comes from a file: with ``--record-size`` the tool draws every byte of every
    record from ``Random`` (a million calls per 1 MiB record), which caps it, not the
    broker, at about a hundred 1 MiB records/s on this machine."""
    log4j = ROOT / "compose" / "kafka" / "tools-log4j2.properties"
    return [
        java,
        "-Xmx768m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs}/*",
        TOOL,
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--payload-file",
        str(payload),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={KAFKA}",
        "acks=all",
        "enable.idempotence=true",
        f"max.request.size={MAX_BYTES}",
        "batch.size=1000000",
        "linger.ms=5",
        f"buffer.memory={BUFFER}",
    ]


def _create_topic(name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": KAFKA, "log_level": 4})
    config = {"max.message.bytes": str(MAX_BYTES), "message.timestamp.type": "LogAppendTime"}
    for future in admin.create_topics([NewTopic(name, 1, 1, config=config)]).values():
        future.result(60)


MIN_BYTES = 100 << 20
"""The least the tool times, in payload bytes: short runs understate the JVM (20,000 1 KiB
records ran at 38k/s here, 100,000 at 90k/s, in the same minute)."""


def records(count: int, size: int) -> int:
    """How many records the tool times: ``count``, or more to reach :data:`MIN_BYTES`."""
    return max(count, -(-MIN_BYTES // size))


def warmup(count: int) -> int:
    """Records the tool sends before the ``count`` that are timed (a quarter, at least 1)."""
    return max(1, count // 4)


def append_span(topic: str, first: int, last: int) -> float:
    """Seconds from the append of the record at offset ``first`` to that at ``last``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": KAFKA, "group.id": unique("append"), "enable.auto.commit": False}
    )
    stamps: list[int] = []
    try:
        for offset in (first, last):
            consumer.assign([TopicPartition(topic, 0, offset)])
            msg: Any = None
            while msg is None or msg.error() is not None:
                msg = consumer.poll(30)
                if msg is None:
                    raise RuntimeError(f"{topic}: no record at offset {offset}")
            stamps.append(int(msg.timestamp()[1]))
    finally:
        consumer.close()
    return (stamps[1] - stamps[0]) / 1e3


def measure(count: int, size: int) -> Measurement:
    """Run ProducerPerformance once on a new topic (deleted after), timing
    ``records(count, size)`` records; a failure, or a missing Java or jar, is a failed
    Measurement saying which."""
    from bench.kafka_kafka import delete_topics

    java = shutil.which("java")
    libs = find_libs(candidate_roots())
    if java is None or libs is None:
        missing = "java" if java is None else "the kafka-tools jar (compose/brokers.sh up kafka)"
        return Measurement.failed(size, f"Java producer: {missing} not found")
    count = records(count, size)
    sent = count + warmup(count)
    topic = unique("java-producer")
    _create_topic(topic)
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            tempfile.TemporaryFile("w+") as out,
            tempfile.TemporaryFile("w+") as err,
        ):
            payload = Path(folder) / "payload"
            write_payload(payload, size)
            process = subprocess.Popen(
                command(java, libs, topic, sent, payload), stdout=out, stderr=err
            )
            waited = _wait(process.pid, 180)
            if waited is None:
                process.kill()
                process.wait()
                return Measurement.failed(size, "Java producer: timed out after 180 s")
            code, rss_mb = waited
            out.seek(0)
            err.seek(0)
            output, errors = out.read(), err.read()
        summary = parse_summary(output)
        if code != 0 or summary is None or summary[0] < sent:
            tail = " | ".join((errors or output).strip().splitlines()[-3:])
            return Measurement.failed(size, f"Java producer exit {code}: {tail}"[:400])
        seconds = append_span(topic, sent - count, sent - 1)
        if seconds <= 0:
            return Measurement.failed(size, "Java producer: every append in the same ms")
        return Measurement(
            count, seconds, size, p50_ms=summary[1], p99_ms=summary[2], peak_rss_mb=rss_mb
        )
    finally:
        delete_topics(topic)


def _wait(pid: int, timeout: float) -> tuple[int, float] | None:
    """Reap the child ``pid``: (exit code, its own peak RSS in MB), None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024
        time.sleep(0.1)
    return None
