"""RabbitMQ pipelines (``arroyo run`` worker processes) recover without losing work.

- A message that crashes every worker that takes it (on a quorum queue, which counts
  deliveries) goes to the dead letter once its count exceeds max_deliveries; the rest
  keeps flowing.
- The broker (a private node started for the test) is killed and started again
  mid-stream: the worker reconnects by itself and nothing acknowledged is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from arroyo import Run, encode
from arroyo.message import Message
from arroyo.testing import Workers, free_port
from tests.reliability.rabbitmq_queues import Sink, produce, ready

Until = Callable[..., Any]
pytestmark = pytest.mark.rabbitmq
ROOT = Path(__file__).resolve().parents[2]


def write_config(folder: Path, amqp_url: str, amqp_names: dict[str, str], **block: Any) -> Path:
    """A one-block pipeline: source queue -> operator -> sink queue (+ dead letter)."""
    listener = block.pop("listener", {})
    settings = "".join(f"    {key}: {value}\n" for key, value in block.items())
    listener_settings = "".join(f"      {key}: {value}\n" for key, value in listener.items())
    config = folder / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener:
                  url: {amqp_url}?queue={amqp_names["source"]}
                  reconnect_interval: 0.5
            """
        )
        + listener_settings
        + textwrap.indent(
            textwrap.dedent(
                f"""\
                publishers:
                  - url: {amqp_url}?queue={amqp_names["sink"]}
                    reconnect_interval: 0.5
                dead_letter: {amqp_url}?queue={amqp_names["dlq"]}
                grace_period: 10
                """
            ),
            "    ",
        )
        + settings
    )
    return config


@pytest.fixture
async def sink(amqp_url: str, amqp_names: dict[str, str]) -> AsyncIterator[Sink]:
    reader = Sink(amqp_url, amqp_names["sink"])
    await reader.start()
    yield reader
    await reader.close()


async def test_a_message_that_keeps_crashing_workers_goes_to_the_dead_letter(
    tmp_path: Path,
    amqp_url: str,
    amqp_names: dict[str, str],
    sink: Sink,
    workers: Workers,
    until: Until,
    crash_on_poison: str,
) -> None:
    config = write_config(
        tmp_path,
        amqp_url,
        amqp_names,
        listener={"queue_type": "quorum"},
        operator=crash_on_poison,
        max_deliveries=2,
    )
    run = Run("scan-2")
    good = [run.event({"i": i}) for i in range(20)]
    poison = run.event({"poison": True}, b"bad frame")
    later = [run.event({"i": i}) for i in range(20, 25)]
    quorum = {"x-queue-type": "quorum"}

    worker = workers.start(config)
    await produce(amqp_url, amqp_names["source"], good, **quorum)
    await until(lambda: sink.read() >= {m.id for m in good}, within=60)
    await produce(amqp_url, amqp_names["source"], [poison], **quorum)
    for attempt in (1, 2):  # deliveries 1 and 2 (= max_deliveries) crash a worker each
        await until(lambda w=worker: w.poll() is not None, within=60, what=f"crash {attempt}")
        assert worker.returncode == 3, workers.log(worker)
        worker = workers.start(config)
    # Delivery 3 (> max_deliveries): the third worker dead-letters it instead.
    await until(lambda: "delivered 3 times" in workers.log(worker), within=60)
    await produce(amqp_url, amqp_names["source"], later, **quorum)
    await until(lambda: sink.read() >= {m.id for m in good + later}, within=60)
    assert workers.stop(worker) == 0, workers.log(worker)

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(amqp_names["dlq"], durable=True, passive=True)
        letter = await dlq.get(timeout=10)
        await letter.ack()
        assert await dlq.get(fail=False) is None  # only the poison
    assert letter.body == encode(poison)
    assert "delivered 3 times" in str(letter.headers["arroyo.dead-letter.reason"])
    assert letter.headers["x-first-death-queue"] == amqp_names["source"]
    assert poison.id not in sink.read()
    assert await ready(amqp_url, amqp_names["source"]) == 0


# -- a broker restart ------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Free TCP ports, away from the ranges RabbitMQ's command line tools use."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and not 35672 <= port <= 35682:
            ports.append(port)
    return ports


class PrivateRabbitMQ:
    """A RabbitMQ node of this test's own (compose/brokers.sh with its own folder, ports
    and node name), so that killing it disturbs no other test."""

    def __init__(self, folder: Path) -> None:
        amqp, amqps, dist = free_ports(3)
        while amqp in range(dist + 10000, dist + 10011) or amqps in range(
            dist + 10000, dist + 10011
        ):
            amqp, amqps, dist = free_ports(3)
        self.folder = folder
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp}/"
        self.env = {
            **os.environ,
            "ARROYO_BROKERS_MODE": "native",
            "ARROYO_BROKERS_DIR": str(folder),
            "ARROYO_AMQP_PORT": str(amqp),
            "ARROYO_AMQPS_PORT": str(amqps),
            "ARROYO_RABBITMQ_DIST_PORT": str(dist),
            "ARROYO_RABBITMQ_NODENAME": f"arroyo-test-{uuid.uuid4().hex[:8]}@localhost",
        }

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "compose" / "brokers.sh"), command, "rabbitmq"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def up(self) -> None:
        done = self._script("up")
        assert done.returncode == 0, done.stderr

    def down(self) -> None:
        self._script("down")

    def kill(self) -> None:
        """SIGKILL the node (beam.smp): no clean shutdown."""
        pid = int((self.folder / "rabbitmq" / "rabbitmq.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def private_rabbitmq(tmp_path: Path) -> Iterator[PrivateRabbitMQ]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        message = "rabbitmq-server is not installed natively: cannot run a private node"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    node = PrivateRabbitMQ(tmp_path / "brokers")
    try:
        node.up()
    except AssertionError:  # a port taken meanwhile: once more, with other ports
        node.down()
        node = PrivateRabbitMQ(tmp_path / "brokers-again")
        node.up()
    try:
        yield node
    finally:
        node.down()


async def test_the_pipeline_resumes_after_a_broker_restart(
    tmp_path: Path, private_rabbitmq: PrivateRabbitMQ, workers: Workers, until: Until
) -> None:
    url = private_rabbitmq.url
    count = 5000
    run = Run("scan-3")
    messages: list[Message] = [run.event({"i": i}, os.urandom(64)) for i in range(count)]
    expected = {m.id for m in messages}
    amqp_names = {"source": "frames", "sink": "results", "dlq": "dead-letters"}
    await produce(url, amqp_names["source"], messages)
    sink = Sink(url, amqp_names["sink"])  # reconnects by itself too
    await sink.start()
    try:
        worker = workers.start(write_config(tmp_path, url, amqp_names))
        await until(lambda: len(sink.read()) >= 500, within=60, what="500 messages through")
        before = sink.read()
        private_rabbitmq.kill()
        private_rabbitmq.up()
        await until(lambda: sink.read() >= expected, within=120, what="every message through")
        assert workers.stop(worker) == 0, workers.log(worker)
    finally:
        await sink.close()
    log = workers.log(worker)
    duplicates = len(sink.ids) - len(sink.read())
    print(f"restarted after {len(before)} results; lost=0 duplicates={duplicates}")
    assert len(before) < count, "the restart came after the end of the stream"
    assert "Reconnecting" in log, log
    assert await ready(url, amqp_names["source"]) == 0
