"""Redis Streams pipelines (``arroyo run`` worker processes) recover without losing work.

- Two workers share 10,000 messages; one is killed with SIGKILL mid-stream; the other
  takes over its unacknowledged entries (XAUTOCLAIM) and every id reaches the sink.
- A message that crashes every worker that takes it is delivered again and again
  until its delivery count exceeds max_deliveries; then it goes to the dead letter,
  and the rest keeps flowing.
- The Redis server (a private one, with an append-only file fsynced every second, as
  compose/brokers.sh runs it) is killed and started again mid-stream: the worker
  reconnects by itself and nothing that was acknowledged is lost.
- The destination's server is down for seconds mid-stream: the outputs still reach it
  in input order (no output sent after the outage overtakes one refused during it).
- SIGTERM while the destination is down: the worker stops within its grace period,
  leaving what was not confirmed unacknowledged, in a few log lines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from arroyo import Run
from arroyo.message import Message
from arroyo.testing import Workers, free_port
from tests.reliability.private_redis import PrivateRedis
from tests.reliability.redis_pipelines import produce, write_config

Until = Callable[..., Any]
pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


class Sink:
    """Reads a stream incrementally and counts the message ids it holds."""

    def __init__(self, redis_client: redis.Redis, stream: str) -> None:
        self.redis_client = redis_client
        self.stream = stream
        self.last = b"-"
        self.ids: list[str] = []

    def read(self) -> set[str]:
        """Every id read so far (while the server is down: what was read before)."""
        try:
            while entries := self.redis_client.xrange(
                self.stream, self.last if self.last == b"-" else b"(" + self.last, "+", 5000
            ):
                self.ids += [fields[b"id"].decode() for _, fields in entries]
                self.last = entries[-1][0]
        except redis.ConnectionError:
            pass
        return set(self.ids)


async def test_the_pipeline_resumes_after_a_server_restart(
    tmp_path: Path, private_redis: PrivateRedis, workers: Workers, until: Until
) -> None:
    count = 10_000
    run = Run("scan-3")
    messages: list[Message] = [run.event({"i": i}, os.urandom(64)) for i in range(count)]
    expected = {m.id for m in messages}
    redis_names = {"source": "frames", "sink": "results", "dlq": "dead-letters"}
    # No retries of its own: the test reads the sink while the server is down.
    redis_client = redis.Redis(port=private_redis.port, retry=Retry(NoBackoff(), 0))
    produce(redis_client, redis_names["source"], messages)
    worker = workers.start(write_config(tmp_path, private_redis.address, redis_names))
    sink = Sink(redis_client, redis_names["sink"])
    await until(lambda: len(sink.read()) >= 1000, within=60, what="1000 messages through")

    confirmed = sink.read()
    private_redis.kill()  # SIGKILL: only what was written to the append-only file survives
    # Down long enough for the worker to notice (a quick restart is retried unnoticed).
    await until(lambda: "connection lost" in workers.log(worker), within=30)
    private_redis.start()
    restarted = time.monotonic()
    await until(private_redis.answers, within=20, what="the restarted redis-server")
    before = len(sink.read())
    await until(lambda: len(sink.read()) > before, within=60, what="results after the restart")
    resumed = time.monotonic() - restarted
    await until(lambda: sink.read() >= expected, within=120, what="every message at the sink")
    assert workers.stop(worker) == 0, workers.log(worker)

    log = workers.log(worker)
    assert len(confirmed) < count, "the restart came after the end of the stream"
    assert "reconnected" in log, log
    everything = Sink(redis_client, redis_names["sink"]).read()  # read again from the start
    assert everything >= confirmed, "results confirmed before the restart were lost"
    assert not expected - everything
    duplicates = len(sink.ids) - len(set(sink.ids))
    print(
        f"redis-server killed once after {len(confirmed)} of {count} results; lost=0 "
        f"duplicates={duplicates}; results again {resumed:.1f} s after the restart"
    )
    assert redis_client.xpending(redis_names["source"], "workers")["pending"] == 0
    redis_client.close()


async def test_pubsub_subscribes_again_after_a_server_restart_and_stops_while_down(
    private_redis: PrivateRedis, until: Until, caplog: pytest.LogCaptureFixture
) -> None:
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.testing import listening

    url = f"redis+pubsub://{private_redis.address}/frames"
    before, after = Run("scan-4").event({"i": 1}), Run("scan-4").event({"i": 2})
    listener = open_listener(url)
    async with listening(listener) as seen:
        await until(listener.subscribed.is_set, what="subscribed")
        async with open_publisher(url) as publisher:
            await publisher.publish(before)
        await until(lambda: len(seen.items) == 1, what="the first message")
        private_redis.kill()
        await until(lambda: "connection lost" in caplog.text, within=30)
        private_redis.start()
        await until(lambda: "subscribed again" in caplog.text, within=30)
        async with open_publisher(url) as publisher:
            await publisher.publish(after)
        await until(lambda: len(seen.items) == 2, what="the message after the restart")
        private_redis.kill()  # stopping while it waits to reconnect does not wait for it
        await until(lambda: not listener.subscribed.is_set(), within=30)
    assert [listener.parser.parse(r.data).id for r in seen.items] == [before.id, after.id]


def inversions(redis_client: redis.Redis, stream: str) -> tuple[int, int, list[str]]:
    """Order inversions in ``stream`` per run (Arroyo ``stream`` field): how many first
    occurrences of a message came after one with a higher ``seq`` of the same run; the
    number of distinct messages; a few examples."""
    highest: dict[bytes, int] = {}
    seen: set[bytes] = set()
    found, examples = 0, []
    last = b"-"
    while entries := redis_client.xrange(stream, last if last == b"-" else b"(" + last, "+", 5000):
        for _, fields in entries:
            if fields[b"id"] in seen:
                continue  # a duplicate (at-least-once), not an inversion
            seen.add(fields[b"id"])
            run, seq = fields[b"stream"], int(fields[b"seq"])
            if seq < highest.get(run, -1):
                found += 1
                if len(examples) < 5:
                    examples.append(f"seq {seq} after seq {highest[run]}")
            highest[run] = max(seq, highest.get(run, -1))
        last = entries[-1][0]
    return found, len(seen), examples


async def test_outputs_keep_input_order_through_a_destination_outage(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    private_redis: PrivateRedis,
    workers: Workers,
    until: Until,
) -> None:
    # Two interleaved runs, so that order is checked per stream.
    runs = [Run("scan-a"), Run("scan-b")]
    messages: list[Message] = [runs[i % 2].event({"i": i}, os.urandom(64)) for i in range(20_000)]
    produce(redis_client, redis_names["source"], messages)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener: redis://{redis_address}/{redis_names["source"]}?group=workers
                publishers: [redis://{private_redis.address}/results]
                grace_period: 10
            """
        )
    )
    destination = redis.Redis(port=private_redis.port, retry=Retry(NoBackoff(), 0))
    sink = Sink(destination, "results")
    worker = workers.start(config)
    await until(lambda: len(sink.read()) >= 1000, within=60, what="1000 messages through")
    private_redis.kill()
    before = len(sink.read())
    await until(lambda: "publish failed" in workers.log(worker), within=30, what="the outage seen")
    # The outage itself: long enough for the retries of the first refused output to back
    # off for seconds while later outputs queue up (the scenario that reordered them).
    await asyncio.sleep(8)
    private_redis.start()
    await until(private_redis.answers, within=20, what="the restarted redis-server")
    expected = {m.id for m in messages}
    await until(lambda: sink.read() >= expected, within=180, what="every message at the sink")
    assert workers.stop(worker) == 0, workers.log(worker)
    found, distinct, examples = inversions(destination, "results")
    destination.close()
    print(
        f"outage after {before} messages; {distinct} messages, "
        f"{len(sink.ids) - distinct} duplicates, {found} inversions"
    )
    assert before < len(messages), "the outage came after the end of the stream"
    assert distinct == len(messages)
    assert found == 0, f"{found} order inversions, e.g. {examples}"
    assert redis_client.xpending(redis_names["source"], "workers")["pending"] == 0


async def test_sigterm_during_a_destination_outage_stops_cleanly(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    private_redis: PrivateRedis,
    workers: Workers,
    until: Until,
) -> None:
    messages: list[Message] = [Run("scan-5").event({"i": i}) for i in range(5000)]
    produce(redis_client, redis_names["source"], messages)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener: redis://{redis_address}/{redis_names["source"]}?group=workers
                publishers: [redis://{private_redis.address}/results]
                grace_period: 2
            """
        )
    )
    worker = workers.start(config)
    destination = redis.Redis(port=private_redis.port, retry=Retry(NoBackoff(), 0))
    sink = Sink(destination, "results")
    await until(lambda: len(sink.read()) >= 500, within=60, what="500 messages through")
    private_redis.kill()
    await until(lambda: "publish failed" in workers.log(worker), within=30, what="the outage seen")
    worker.send_signal(signal.SIGTERM)
    await until(lambda: worker.poll() is not None, within=60, what="the worker exits")
    log = workers.log(worker)
    destination.close()
    assert worker.returncode == 0, log
    assert "messages left unacknowledged (they will be redelivered)" in log
    assert "never retrieved" not in log, log[-3000:]
    assert len(log.splitlines()) < 40, log[-3000:]  # a few lines, not a storm


def test_brokers_sh_waits_for_a_redis_that_is_loading_its_append_only_file(
    tmp_path: Path,
) -> None:
    """A durable Redis answers LOADING while it reads its append-only file, which can take
    longer than the start timeout: ``compose/brokers.sh up`` waits for it, not fails."""
    port, tls_port = free_port(), free_port()
    env = {
        **os.environ,
        "ARROYO_BROKERS_MODE": "native",
        "ARROYO_BROKERS_DIR": str(tmp_path / "brokers"),
        "ARROYO_REDIS_PORT": str(port),
        "ARROYO_REDIS_TLS_PORT": str(tls_port),
        # 1 ms per key while loading: 5,000 keys take at least 5 s. Redis answers (LOADING)
        # only between chunks of the file it reads, 2 MB by default, more than these keys
        # hold: chunks of 1 KiB, so that it answers every ~50 keys.
        "ARROYO_REDIS_ARGS": "--key-load-delay 1000 --loading-process-events-interval-bytes 1024",
    }

    def script(command: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "compose" / "brokers.sh"), command, "redis"],
            env={**env, **more},
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        first = script("up")
        assert first.returncode == 0, first.stderr
        with redis.Redis(port=port) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(5000):
                pipe.set(f"k{i}", i)
            pipe.execute()
            client.bgrewriteaof()  # into the file's RDB base, which the delay applies to
            deadline = time.monotonic() + 30
            while (info := client.info("persistence"))["aof_rewrite_in_progress"] or info[
                "aof_rewrite_scheduled"
            ]:
                assert time.monotonic() < deadline, "the append-only file was not rewritten"
                time.sleep(0.05)
        assert script("down").returncode == 0
        again = script("up", ARROYO_REDIS_START_TIMEOUT="2")  # 1 to 2 s (whole seconds)
        assert again.returncode == 0, again.stderr
        assert "redis: loading its append-only file" in again.stderr
        with redis.Redis(port=port) as client:
            assert client.dbsize() == 5000
    finally:
        script("down")
