"""``arroyo tail`` on RabbitMQ: it shows every record of a classic, quorum or stream queue
and leaves the queue with the same messages in the same order (the records: conftest.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest


async def queue_bodies(amqp_url: str, queue: str) -> tuple[int, list[bytes]]:
    """The queue's ready count, and its bodies in order as a consumer sees them (read
    without acknowledging, then given back)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = int(declared.declaration_result.message_count or 0)
        bodies = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            bodies.append(message.body)
        # closing the channel gives them back
    return count, bodies


@pytest.fixture
async def amqp_queue(
    amqp_url: str, unique_name: Callable[[str], str], make_sample: Callable[[], Any]
) -> AsyncIterator[Any]:
    """``make(queue_type)``: a queue with the six records; its URL, the sample and the
    queue's name. Queues are deleted afterwards."""
    import aio_pika

    names: list[str] = []
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()

    async def make(queue_type: str) -> tuple[str, Any, str]:
        name = unique_name(queue_type)
        names.append(name)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        url = f"{amqp_url}?queue={name}&declare=false"

        async def raw(data: bytes) -> None:
            await channel.default_exchange.publish(aio_pika.Message(data), routing_key=name)

        sample = make_sample()
        await sample.publish(url, raw)
        return url, sample, name

    yield make
    for name in names:
        await channel.queue_delete(name)
    await connection.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_rabbitmq_tail_shows_everything_and_puts_it_all_back(
    tail_cli: Any, amqp_url: str, amqp_queue: Any, queue_type: str
) -> None:
    url, sample, queue = await amqp_queue(queue_type)
    before = await queue_bodies(amqp_url, queue)
    assert before[0] == 6

    lines = await tail_cli.lines(url, "--schema", sample.schema_file)
    sample.check(lines)
    assert {line["source"]["queue"] for line in lines} == {queue}
    assert lines[0]["source"]["message_id"] == sample.good[0].id
    sample.check(await tail_cli.lines(url), with_schema=False)

    assert await queue_bodies(amqp_url, queue) == before


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_with_count_takes_nothing(
    tail_cli: Any, amqp_url: str, amqp_queue: Any
) -> None:
    """As a user tails a queue by hand: no --exit-at-end, stopped by --count."""
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    done = await asyncio.to_thread(tail_cli.run, url, "--count", "6")
    assert await queue_bodies(amqp_url, queue) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_stopped_by_ctrl_c_puts_everything_back(
    amqp_url: str, amqp_queue: Any
) -> None:
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arroyo", "tail", url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for _ in range(6):
            await asyncio.wait_for(process.stdout.readline(), 30)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert "(SIGINT)" in err.decode()
    assert await queue_bodies(amqp_url, queue) == before


async def stream_bodies(amqp_url: str, queue: str, count: int) -> list[bytes]:
    """The first ``count`` bodies of a stream queue, read from its first offset."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=count)
        stream = await channel.get_queue(queue, ensure=False)
        seen: list[bytes] = []
        async with stream.iterator(arguments={"x-stream-offset": "first"}) as messages:
            while len(seen) < count:
                message = await asyncio.wait_for(messages.__anext__(), 30)
                seen.append(message.body)
                await message.ack()
    return seen


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_reads_a_stream_queue_as_a_stream(
    tail_cli: Any, amqp_url: str, amqp_queue: Any
) -> None:
    url, sample, queue = await amqp_queue("stream")
    before = await stream_bodies(amqp_url, queue, 6)
    assert before[4] == sample.bad
    lines = await tail_cli.lines(url, "--schema", sample.schema_file)
    sample.check(lines)
    assert [line["source"]["offset"] for line in lines] == list(range(6))
    assert await stream_bodies(amqp_url, queue, 6) == before


@pytest.mark.rabbitmq
async def test_rabbitmq_tail_refuses_to_read_a_queue_from_its_end(
    tail_cli: Any, amqp_url: str, amqp_queue: Any
) -> None:
    url, _, queue = await amqp_queue("classic")
    before = await queue_bodies(amqp_url, queue)
    done = await asyncio.to_thread(tail_cli.run, url, "--from-end")
    assert done.returncode == 2
    assert "cannot show its new messages without taking all older ones" in done.stderr
    assert await queue_bodies(amqp_url, queue) == before
