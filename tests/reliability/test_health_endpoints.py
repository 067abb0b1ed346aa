"""``/readyz`` of an ``arroyo run`` worker follows its broker: 503 within 10 s of the
destination's Redis server going away (SIGKILL), 200 once it is back; ``/healthz`` stays
200 all along (the process is alive, only not ready).

The worker reads a stream of the shared Redis server and writes its results to a private
redis-server (never the shared one is killed). A producer keeps feeding the source, so
the worker keeps publishing: the lost connection reaches the runtime as failed
publishes, whatever the connector.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from arroyo import Run, encode
from arroyo.testing import Workers, free_port
from tests.reliability.private_redis import PrivateRedis

Until = Callable[..., Any]
pytestmark = pytest.mark.redis


def get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from the worker: status and body; (0, why) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


async def answer(port: int, path: str, status: int, within: float, what: str) -> str:
    """Poll ``path`` (every 50 ms) until it answers ``status`` within ``within`` seconds;
    the body."""
    deadline = time.monotonic() + within
    seen = await asyncio.to_thread(get, port, path)
    while seen[0] != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not {status} within {within} s; last: {seen}")
        await asyncio.sleep(0.05)
        seen = await asyncio.to_thread(get, port, path)
    return seen[1]


@pytest.fixture
def feed(redis_client: redis.Redis, redis_names: dict[str, str]) -> Iterator[threading.Event]:
    """Writes a message to the source stream every 20 ms (at most 5000, about 100 s) until
    the test ends; set the event to stop it sooner."""
    stop = threading.Event()
    run = Run("scan-readyz")
    stream = redis_names["source"]

    def produce() -> None:
        for i in range(5000):
            if stop.wait(0.02):
                return
            message = run.event({"i": i}, os.urandom(32))
            redis_client.xadd(stream, {"id": message.id, "data": encode(message)})

    thread = threading.Thread(target=produce, name="feed", daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(10)


async def test_readyz_follows_the_destination_broker(
    tmp_path: Path,
    redis_address: str,
    redis_names: dict[str, str],
    private_redis: PrivateRedis,
    workers: Workers,
    feed: threading.Event,
) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener:
                  url: redis://{redis_address}/{redis_names["source"]}?group=workers
                  block_ms: 100
                publishers: [redis://{private_redis.address}/results]
                dead_letter: redis://{redis_address}/{redis_names["dlq"]}
            """
        )
    )
    port = free_port()
    worker = workers.start(config, "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    sink = redis.Redis(port=private_redis.port)
    try:
        await answer(port, "/readyz", 200, 60, "ready once started")
        await answer(port, "/healthz", 200, 5, "alive")
        deadline = time.monotonic() + 30
        while sink.xlen("results") < 10:  # results flow to the private server
            assert time.monotonic() < deadline, workers.log(worker)
            await asyncio.sleep(0.05)
    finally:
        sink.close()

    private_redis.kill()  # SIGKILL: the destination is gone
    body = await answer(port, "/readyz", 503, 10, "not ready after the destination went away")
    assert f"block workers: publishing to redis://{private_redis.address}/results fails" in body
    assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")

    private_redis.start()
    await answer(port, "/readyz", 200, 30, "ready again once the destination is back")
    assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
    feed.set()
    assert workers.stop(worker) == 0, workers.log(worker)
