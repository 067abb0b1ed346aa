"""Kafka operator workers as a user runs them: ``create:`` makes the topics, a warning
when workers outnumber partitions, and connectors/kafka-workers.yaml fed as its header
says (real Kafka, real processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo import Event, decode
from arroyo.testing import free_port

ck = pytest.importorskip("confluent_kafka")

ROOT = Path(__file__).resolve().parents[2]
ARROYO = [sys.executable, "-m", "arroyo"]


class Process:
    """An ``arroyo`` command with its stderr collected line by line."""

    def __init__(self, *arguments: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [*ARROYO, *arguments],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        stream = self.popen.stderr
        assert stream is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()

    def count(self, pattern: str) -> int:
        return sum(bool(re.search(pattern, line)) for line in list(self.lines))

    def wait_for(self, pattern: str, times: int = 1, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while self.count(pattern) < times:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen {times} time(s):\n{self.text}")
            time.sleep(0.05)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def topic_partitions(bootstrap: str, topic: str) -> int | None:
    admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap})
    found = admin.list_topics(timeout=10).topics.get(topic)
    return None if found is None else len(found.partitions)


def topic_setting(bootstrap: str, topic: str, key: str) -> str:
    admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap})
    resource = ck.admin.ConfigResource(ck.admin.ConfigResource.Type.TOPIC, topic)
    (future,) = admin.describe_configs([resource]).values()
    return str(future.result(30)[key].value)


@pytest.mark.timeout(180)
def test_more_workers_than_partitions_is_said_once_at_start(
    kafka_bootstrap: str, kafka_topics: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    narrow, wide = kafka_topics("narrow", partitions=1), kafka_topics("wide", partitions=3)
    group = unique_name("group")
    config = tmp_path / "workers.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: narrow
                listener: kafka://{kafka_bootstrap}/{narrow}?group={group}
              - name: wide
                listener: kafka://{kafka_bootstrap}/{wide}?group={group}-wide
            """
        )
    )
    supervisor = Process("run", str(config), "--workers", "3")
    try:
        supervisor.wait_for(r"joining group", times=6)
        assert supervisor.stop() == 0, supervisor.text
    finally:
        supervisor.kill()
    warnings = [line for line in supervisor.lines if "partition(s) for 3 workers" in line]
    assert len(warnings) == 1, supervisor.text
    assert f"supervisor[{supervisor.popen.pid}]" in warnings[0]
    where = f"blocks[0] (narrow).listener: topic {narrow!r}"
    assert f"{where} has 1 partition(s) for 3 workers" in warnings[0]
    assert f"in group {group!r}: at most 1 worker(s) get work from it" in warnings[0]
    assert f"--alter --topic {narrow} --partitions 3" in warnings[0]
    assert not [line for line in supervisor.lines if "WARNING" in line and wide in line]


@pytest.mark.timeout(180)
def test_create_makes_missing_topics_before_the_workers_start(
    kafka_bootstrap: str, kafka_topics: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    source, results, dead = unique_name("in"), unique_name("out"), unique_name("dlq")
    kafka_topics.made.extend([source, results, dead])  # deleted after the test
    config = tmp_path / "workers.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: work
                listener:
                  url: kafka://{kafka_bootstrap}/{source}?group={unique_name("group")}
                  create: {{partitions: 3, config: {{retention.ms: 3600000}}}}
                publishers:
                  - url: kafka://{kafka_bootstrap}/{results}
                    create: {{partitions: 2}}
                dead_letter:
                  url: kafka://{kafka_bootstrap}/{dead}
                  create: {{config: {{max.message.bytes: 20971520}}}}
            """
        )
    )
    checked = subprocess.run([*ARROYO, "check", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert topic_partitions(kafka_bootstrap, source) is None  # check creates nothing
    supervisor = Process("run", str(config), "--workers", "3")
    try:
        supervisor.wait_for(r"joining group", times=3)
        assert supervisor.stop() == 0, supervisor.text
    finally:
        supervisor.kill()
    assert supervisor.count(r"created topic") == 3, supervisor.text
    assert "partition(s) for 3 workers" not in supervisor.text  # created with enough of them
    assert topic_partitions(kafka_bootstrap, source) == 3
    assert topic_partitions(kafka_bootstrap, results) == 2
    assert topic_setting(kafka_bootstrap, source, "retention.ms") == "3600000"
    assert topic_setting(kafka_bootstrap, dead, "max.message.bytes") == "20971520"

    # An existing topic is left as it is, and the difference said.
    config.write_text(config.read_text().replace("partitions: 2", "partitions: 5"))
    again = Process("run", str(config))
    try:
        again.wait_for(r"joining group")
        assert again.stop() == 0, again.text
    finally:
        again.kill()
    assert again.count("created topic") == 0
    assert again.count(rf"topic '{results}' exists with 2 partition\(s\), fewer than") == 1
    assert topic_partitions(kafka_bootstrap, results) == 2


@pytest.mark.timeout(300)
def test_the_kafka_workers_connector_fed_as_its_header_says(
    kafka_bootstrap: str,
    kafka_topics: Any,
    unique_name: Callable[[str], str],
    read_topic: Callable[..., list[Any]],
) -> None:
    """The header's commands as written (the environment names the topics of this test):
    workers, the ZeroMQ -> Kafka bridge, the simulated detector; results come out."""
    frames, results, dead = unique_name("frames"), unique_name("results"), unique_name("dlq")
    kafka_topics.made.extend([frames, results, dead, f"{frames}-bridge-dlq"])
    port = free_port()
    env = {
        **os.environ,
        "ARROYO_KAFKA": kafka_bootstrap,
        "ARROYO_FRAMES_TOPIC": frames,
        "ARROYO_GROUP": unique_name("integrate"),
        "ARROYO_RESULTS_TOPIC": results,
        "ARROYO_DLQ_TOPIC": dead,
        "ARROYO_PARTITIONS": "2",
        "ARROYO_ZMQ_SOURCE": f"zmq+pull://127.0.0.1:{port}",
        "ARROYO_KAFKA_URL": f"kafka://{kafka_bootstrap}/{frames}",
        "ARROYO_KAFKA_DLQ": f"kafka://{kafka_bootstrap}/{frames}-bridge-dlq",
    }
    header = (ROOT / "connectors" / "kafka-workers.yaml").read_text().split("\nblocks:")[0]
    commands = [line.removeprefix("#   ") for line in header.splitlines() if "#   arroyo " in line]
    commands = list(dict.fromkeys(commands))  # the first is also the file's second line
    workers_command, bridge_command, simulate_command, tail_command = commands
    assert workers_command == "arroyo run connectors/kafka-workers.yaml --workers 4"
    assert bridge_command == "arroyo run connectors/zmq-to-kafka.yaml"
    simulate = simulate_command.split()[1:]
    assert simulate[0] == "simulate"
    simulate[1] = f"zmq+push://127.0.0.1:{port}?bind=true"  # this test's port
    simulate[simulate.index("--frames") + 1] = "40"
    simulate[simulate.index("--shape") + 1] = "64x64"
    tail = tail_command.split()[1:]
    assert tail[:2] == ["tail", "kafka://127.0.0.1:9092/frames.integrated"]
    tail[1] = f"kafka://{kafka_bootstrap}/{results}"  # this test's topic

    workers = Process(*workers_command.split()[1:], env=env)
    bridge = None
    try:
        workers.wait_for(r"joining group", times=4)
        assert topic_partitions(kafka_bootstrap, frames) == 2  # created by the workers
        assert workers.count(r"partition\(s\) for 4 workers") == 1  # 2 partitions, 4 workers
        bridge = Process(*bridge_command.split()[1:], env=env)
        bridge.wait_for(r"started: zmq\+pull")
        sent = subprocess.run(
            [*ARROYO, *simulate], env=env, capture_output=True, text=True, timeout=120
        )
        assert sent.returncode == 0, sent.stderr
        records = read_topic(kafka_bootstrap, results, 42, within=120)
        tailed = subprocess.run(
            [*ARROYO, *tail],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bridge.stop() == 0, bridge.text
        assert workers.stop() == 0, workers.text
    finally:
        workers.kill()
        if bridge is not None:
            bridge.kill()
    messages = [decode(r.value()) for r in records]
    assert sorted(m.kind for m in messages) == ["event"] * 40 + ["start", "stop"]
    assert all("total" in m.metadata for m in messages if isinstance(m, Event))  # integrated
    assert tailed.returncode == 0, tailed.stderr
    assert len(tailed.stdout.splitlines()) == 5
