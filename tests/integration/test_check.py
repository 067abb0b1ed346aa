"""``arroyo check --connect`` against the real brokers: one line per endpoint, and the
sources exactly as they were (nothing read, acknowledged, declared or joined)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis

from arroyo import Run, encode
from arroyo.testing import free_port

ck = pytest.importorskip("confluent_kafka")
ARROYO = [sys.executable, "-m", "arroyo"]


def check(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARROYO, "check", str(config), "--connect", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(180)
async def test_connect_reaches_every_broker_and_takes_nothing(
    kafka_bootstrap: str,
    kafka_topics: Any,
    redis_address: str,
    amqp_url: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topic = kafka_topics("frames", partitions=2)
    stream, queue = unique_name("stream"), unique_name("queue")
    group = unique_name("group")
    message = Run("scan-1").start({})
    connection = await aio_pika.connect(amqp_url)
    redis = aioredis.Redis.from_url(f"redis://{redis_address}")
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(encode(message)), queue)
        await redis.xadd(stream, {"data": encode(message)})
        host = amqp_url.rstrip("/")
        config = tmp_path / "pipeline.yaml"
        config.write_text(
            textwrap.dedent(
                f"""
                blocks:
                  - name: kafka
                    listener: kafka://{kafka_bootstrap}/{topic}?group={group}
                    publishers: [kafka://{kafka_bootstrap}/{topic}]
                  - name: redis
                    listener: redis://{redis_address}/{stream}?group={group}
                    publishers: [redis://{redis_address}/{stream}]
                  - name: rabbitmq
                    listener: {host}/?queue={queue}
                    publishers: ["{host}/?queue={unique_name("not-declared")}"]
                """
            )
        )
        result = check(config)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1] == "6 ok"
        assert lines[4].startswith("  ok      kafka.listener ")
        assert f" kafka://{kafka_bootstrap}/{topic}?group={group}: topic " in lines[4]
        assert lines[4].endswith(f"topic {topic!r} has 2 partition(s)")
        assert lines[5].endswith(f"producer connected; topic {topic!r} has 2 partition(s)")
        assert lines[6].endswith("the server answers")
        assert lines[8].endswith("connected")
        assert "guest" not in result.stdout  # no password either
        # nothing was taken: the message is still ready, the group was never made
        declared = await channel.declare_queue(queue, passive=True)
        assert declared.declaration_result.message_count == 1
        assert await redis.xinfo_groups(stream) == []
        assert await redis.xlen(stream) == 1
        admin = ck.admin.AdminClient({"bootstrap.servers": kafka_bootstrap})
        groups = admin.list_consumer_groups().result(30)
        assert group not in {g.group_id for g in groups.valid}
    finally:
        await channel.queue_delete(queue)
        await redis.delete(stream)
        await redis.aclose()
        await connection.close()


@pytest.mark.timeout(120)
def test_connect_names_the_endpoint_that_does_not_answer(
    kafka_bootstrap: str, redis_address: str, tmp_path: Path
) -> None:
    closed = free_port()
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: b
                listener: kafka://127.0.0.1:{closed}/frames?group=g
                publishers:
                  - redis://{redis_address}/out
                  - "amqp://u:secret@127.0.0.1:{closed}/?queue=q"
            """
        )
    )
    result = check(config, "--timeout", "2")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "1 ok, 2 FAILED"
    assert lines[2] == (
        f"  FAILED  b.listener       kafka://127.0.0.1:{closed}/frames?group=g: cannot reach the "
        f"Kafka cluster at 127.0.0.1:{closed} within 2 s: Failed to get metadata: Local: Broker "
        "transport failure"
    )
    assert lines[4] == (
        f"  FAILED  b.publishers[1]  amqp://127.0.0.1:{closed}/?queue=q: cannot connect within "
        "2 s: connection refused; is the broker running, and is this its port?"
    )
    assert "secret" not in result.stdout + result.stderr
    assert result.stderr == ""  # one line per endpoint, no client noise
