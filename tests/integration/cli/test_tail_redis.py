"""``arroyo tail`` on Redis Streams and pub/sub: it shows every record and creates no
group, leaves no pending entry, changes no group (the records: conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from arroyo import Event, Run
from arroyo.brokers import open_publisher
from arroyo.codec import Codec
from arroyo.schema import load


@pytest.fixture
async def redis_client(redis_address: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    host, port = redis_address.rsplit(":", 1)
    client = aioredis.Redis(host=host, port=int(port))
    yield client
    await client.aclose()


async def redis_state(client: Any, stream: str) -> dict[str, Any]:
    """XLEN, the entries, the groups (XINFO GROUPS: consumers, pending count, last
    delivered id, entries read) and every group's pending entries (XPENDING: id, consumer,
    times delivered); what only time changes (lag, idle times) is left out."""
    groups = [
        {k: v for k, v in group.items() if k != "lag"}
        for group in await client.xinfo_groups(stream)
    ]
    pending = {}
    for group in groups:
        entries = await client.xpending_range(stream, group["name"], "-", "+", 100)
        pending[group["name"]] = [
            (e["message_id"], e["consumer"], e["times_delivered"]) for e in entries
        ]
    return {
        "length": await client.xlen(stream),
        "entries": await client.xrange(stream),
        "groups": groups,
        "pending": pending,
    }


@pytest.fixture
async def redis_sample(
    redis_address: str, redis_client: Any, unique_name: Callable[[str], str], sample: Any
) -> AsyncIterator[tuple[str, Any, str]]:
    """A stream with the six records and a group ``workers`` that has read one entry and
    not acknowledged it (one pending entry)."""
    stream = unique_name("frames")
    url = f"redis://{redis_address}/{stream}"

    async def raw(data: bytes) -> None:
        await redis_client.xadd(stream, {"data": data})

    await sample.publish(url, raw)
    await redis_client.xgroup_create(stream, "workers", id="0")
    await redis_client.xreadgroup("workers", "worker-1", {stream: ">"}, count=1)
    yield url, sample, stream
    await redis_client.delete(stream)


@pytest.mark.redis
async def test_redis_tail_shows_everything_and_changes_nothing(
    tail_cli: Any, redis_client: Any, redis_sample: tuple[str, Any, str]
) -> None:
    url, sample, stream = redis_sample
    before = await redis_state(redis_client, stream)
    assert before["length"] == 6
    assert [g["name"] for g in before["groups"]] == [b"workers"]
    assert len(before["pending"][b"workers"]) == 1

    lines = await tail_cli.lines(url, "--schema", sample.schema_file)
    sample.check(lines)
    ids = [entry_id.decode() for entry_id, _ in before["entries"]]
    assert [line["source"]["id"] for line in lines] == ids
    assert lines[0]["headers"]["kind"] == "start"
    sample.check(await tail_cli.lines(url), with_schema=False)

    assert await redis_state(redis_client, stream) == before


@pytest.mark.redis
async def test_redis_tail_with_count_takes_nothing_and_leaves_no_group(
    tail_cli: Any, redis_client: Any, redis_sample: tuple[str, Any, str]
) -> None:
    """As a user tails a stream by hand: no --exit-at-end, stopped by --count."""
    url, _, stream = redis_sample
    before = await redis_state(redis_client, stream)
    done = await asyncio.to_thread(tail_cli.run, url, "--count", "6")
    assert await redis_state(redis_client, stream) == before
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6


@pytest.mark.redis
async def test_redis_tail_from_the_end_shows_what_comes_next(
    tail_cli: Any, redis_client: Any, redis_sample: tuple[str, Any, str]
) -> None:
    url, sample, stream = redis_sample
    before = await redis_state(redis_client, stream)
    assert await tail_cli.lines(url, "--from-end") == []
    later = Run(sample.stream).start({"late": True})
    publisher = open_publisher(url)
    await publisher.start()
    try:
        line = await tail_cli.first_new(url, "--from-end", publish=lambda: publisher.publish(later))
    finally:
        await publisher.close()
    assert line["id"] == later.id
    after = await redis_state(redis_client, stream)
    assert (after["groups"], after["pending"]) == (before["groups"], before["pending"])


@pytest.mark.redis
async def test_redis_tail_decodes_registry_framed_data_with_registry(
    tail_cli: Any,
    sample: Any,
    redis_address: str,
    redis_client: Any,
    registry_url: str,
    unique_name: Callable[[str], str],
) -> None:
    from arroyo.registry import Registry

    stream = unique_name("registry")
    subject = unique_name("subject") + "-value"
    event = Event(metadata=sample.checked_metadata, payload=b"px", stream="scan-r")
    writer = load(sample.schema_file)
    data = Codec(writer=writer, registry=Registry(registry_url), subject=subject).encode(event)
    await redis_client.xadd(stream, {"data": data})
    url = f"redis://{redis_address}/{stream}"
    try:
        [without] = await tail_cli.lines(url)
        [decoded] = await tail_cli.lines(url, "--registry", registry_url)
    finally:
        await redis_client.delete(stream)
    assert without["kind"] == "undecodable"
    assert "no schema registry is configured" in without["reason"]
    assert (decoded["kind"], decoded["id"]) == ("event", event.id)
    assert decoded["metadata"] == sample.checked_metadata


@pytest.mark.redis
async def test_redis_pubsub_tail_shows_what_is_published(tail_cli: Any, redis_address: str) -> None:
    channel = f"t-tail-pubsub-{uuid.uuid4().hex[:8]}"
    url = f"redis+pubsub://{redis_address}/{channel}"
    assert await tail_cli.lines(url) == []  # pub/sub keeps nothing: nothing was there
    message = Run("scan-p").start({"n": 1})
    publisher = open_publisher(url)
    await publisher.start()
    try:
        line = await tail_cli.first_new(url, publish=lambda: publisher.publish(message))
    finally:
        await publisher.close()
    assert (line["id"], line["source"]["channel"]) == (message.id, channel)


@pytest.mark.redis
async def test_redis_tail_of_a_server_that_does_not_answer_says_so_in_one_line(
    tail_cli: Any,
) -> None:
    from arroyo.testing import free_port

    nowhere = f"redis://:s3cret@127.0.0.1:{free_port()}/frames?connect_timeout=1"
    done = await asyncio.to_thread(tail_cli.run, nowhere, "-e")
    assert done.returncode == 1
    [error] = done.stderr.strip().splitlines()
    assert "redis://127.0.0.1:" in error and "/frames: cannot connect within 1 s" in error
    assert "connection refused" in error
    assert "s3cret" not in done.stderr
