"""Redis Streams against a real Redis server (streams.py, group.py, pipeline.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from arroyo import Event, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.redis import RedisStreamListener, RedisStreamPublisher
from arroyo.errors import EncodeError, PermanentError
from arroyo.runtime import Block
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import Recorder, listening, make_run, publish_all

Until = Callable[..., Any]
pytestmark = pytest.mark.redis


async def test_round_trip_keeps_order_and_acknowledges(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    source = stream("source")
    messages = make_run(50)
    await publish_all(f"redis://{redis_address}/{source}", messages)

    entries = await client.xrange(source)
    assert [fields[b"id"].decode() for _, fields in entries] == [m.id for m in messages]
    first = entries[1][1]
    assert (first[b"kind"], first[b"stream"], first[b"seq"]) == (b"event", b"run", b"1")
    assert first[b"data"] == encode(messages[1])

    recorder = Recorder()
    listener = open_listener(f"redis://{redis_address}/{source}?group=g&block_ms=50")
    stats = await Block(listener, None, [recorder], max_messages=len(messages)).run()
    assert [m.id for m in recorder.published] == [m.id for m in messages]
    assert isinstance(recorder.published[1], Event) and recorder.published[1].payload == b"f0"
    assert stats.acknowledged == len(messages)
    assert (await client.xpending(source, "g"))["pending"] == 0
    assert await client.xinfo_consumers(source, "g") == []  # a consumer with nothing left goes


async def test_group_starts_at_the_beginning_or_at_new_entries(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("source")
    await client.xadd(source, {"data": b"old"})
    everything = open_listener(f"redis://{redis_address}/{source}?group=all&block_ms=50")
    only_new = open_listener(f"redis://{redis_address}/{source}?group=new&start=$&block_ms=50")
    async with listening(everything) as seen_all, listening(only_new) as seen_new:
        await until(lambda: len(seen_all.items) == 1, what="the old entry read by group 'all'")
        await client.xadd(source, {"data": b"new"})
        await until(lambda: len(seen_new.items) == 1 and len(seen_all.items) == 2)
    assert [r.data for r in seen_all.items] == [b"old", b"new"]
    assert [r.data for r in seen_new.items] == [b"new"]
    assert seen_new.items[0].source["group"] == "new"


async def test_idle_entries_of_a_crashed_consumer_are_taken_over_with_their_count(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("source")
    await client.xgroup_create(source, "g", "0", mkstream=True)
    ids = [await client.xadd(source, {"data": b"%d" % i}) for i in range(3)]
    await client.xreadgroup("g", "crashed", {source: ">"}, count=10)  # read, never acked

    listener = open_listener(
        f"redis://{redis_address}/{source}?group=g&min_idle_ms=100&block_ms=20"
    )
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 3, what="the 3 entries taken over")
        assert [r.handle for r in seen.items] == ids
        assert [r.deliveries for r in seen.items] == [2, 2, 2]
        assert seen.items[0].source["entry"] == ids[0].decode()
        for received in seen.items:
            await listener.ack(received)
    assert (await client.xpending(source, "g"))["pending"] == 0


async def test_a_live_listener_keeps_its_slow_entries(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("source")
    url = f"redis://{redis_address}/{source}?group=g&min_idle_ms=400&block_ms=20"
    slow, other = open_listener(url), open_listener(url)
    assert isinstance(slow, RedisStreamListener)
    async with listening(slow) as held:
        await client.xadd(source, {"data": b"slow work"})
        await until(lambda: len(held.items) == 1)
        async with listening(other) as taken:
            began = time.monotonic()
            # Four times min_idle_ms: the other listener claims every 200 ms meanwhile.
            await until(lambda: time.monotonic() - began > 1.6 or taken.items, within=5)
            assert taken.items == []
        pending = await client.xpending_range(source, "g", "-", "+", 10)
        assert [p["consumer"].decode() for p in pending] == [slow.consumer]
        assert pending[0]["times_delivered"] == 1
        await slow.ack(held.items[0])


async def test_a_listener_that_claims_its_own_unfinished_entries_does_not_hand_them_over_twice(
    redis_address: str,
    client: aioredis.Redis,
    stream: Callable[[str], str],
    until: Until,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event loop stalled past ``min_idle_ms`` (a loaded machine) lets the listener's
    own unfinished entries go idle; its next XAUTOCLAIM takes them back to itself. They
    are in its hands already: handing them over again would process them twice."""

    async def stalled(self: RedisStreamListener) -> None:  # never refreshes: as if stalled
        await asyncio.Event().wait()

    monkeypatch.setattr(RedisStreamListener, "_keep_fresh", stalled)
    source = stream("source")
    url = f"redis://{redis_address}/{source}?group=g&min_idle_ms=100&claim_interval_ms=20"
    listener = open_listener(url + "&block_ms=20")
    assert isinstance(listener, RedisStreamListener)
    async with listening(listener) as held:
        ids = [await client.xadd(source, {"data": b"%d" % i}) for i in range(3)]
        await until(lambda: len(held.items) == 3)
        # Claimed by itself at least once more (its delivery count rises past 1) ...
        deadline = time.monotonic() + 5
        while not await _reclaimed(client, source):
            assert time.monotonic() < deadline, "the listener never claimed its own entries"
            await asyncio.sleep(0.01)
        # ... and still handed over once each.
        assert [r.handle for r in held.items] == ids
        for received in held.items:
            await listener.ack(received)
    assert (await client.xpending(source, "g"))["pending"] == 0


async def _reclaimed(client: aioredis.Redis, source: str) -> bool:
    pending = await client.xpending_range(source, "g", "-", "+", 10)
    return len(pending) == 3 and all(p["times_delivered"] > 1 for p in pending)


async def test_a_graceful_stop_hands_unfinished_entries_back_at_once(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("source")
    for i in range(5):
        await client.xadd(source, {"data": b"%d" % i})
    url = f"redis://{redis_address}/{source}?group=g&block_ms=20&min_idle_ms=600000"
    first = open_listener(url)
    async with listening(first) as unfinished:
        await until(lambda: len(unfinished.items) == 5)
    # Without the hand-back, these would wait for min_idle_ms (10 minutes).
    second = open_listener(url)
    async with listening(second) as seen:
        await until(lambda: len(seen.items) == 5, what="entries handed back, taken over")
        assert [r.handle for r in seen.items] == [r.handle for r in unfinished.items]
        assert {r.deliveries for r in seen.items} == {2}
        for received in seen.items:
            await second.ack(received)
    assert (await client.xpending(source, "g"))["pending"] == 0


async def test_a_vanished_group_is_created_again(
    redis_address: str,
    client: aioredis.Redis,
    stream: Callable[[str], str],
    until: Until,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = stream("source")
    listener = open_listener(f"redis://{redis_address}/{source}?group=g&block_ms=20")
    async with listening(listener) as seen:
        await client.xadd(source, {"data": b"before"})
        await until(lambda: len(seen.items) == 1)
        await client.xgroup_destroy(source, "g")  # as a restart without persistence would
        await client.xadd(source, {"data": b"after"})
        await until(lambda: b"after" in [r.data for r in seen.items], what="reading again")
    assert "created it again" in caplog.text


async def test_entries_without_the_data_field_are_handed_over_as_their_fields(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str], until: Until
) -> None:
    source = stream("source")
    await client.xadd(source, {"temperature": b"21.5", "unit": b"C"})
    listener = open_listener(f"redis://{redis_address}/{source}?group=g&block_ms=20")
    async with listening(listener) as seen:
        await until(lambda: len(seen.items) == 1)
    assert seen.items[0].data == [b"temperature", b"21.5", b"unit", b"C"]
    assert seen.items[0].source["fields"] == "temperature,unit"


async def test_dead_letters_carry_the_original_bytes_and_the_reason(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    dlq = stream("dlq")
    publisher = open_publisher(f"redis://{redis_address}/{dlq}")
    await publisher.start()
    source = {"url": "redis://127.0.0.1:6379/frames", "stream": "frames", "entry": "1-0"}
    try:
        await publisher.publish_dead_letter(
            DeadLetter(b"\x00garbage", "not Arroyo data", "DecodeError", source, 1, "workers")
        )
        await publisher.publish_dead_letter(
            DeadLetter([b"a", b"bc"], "two parts", "DecodeError", source, 1, "workers")
        )
    finally:
        await publisher.close()
    (_, single), (_, parts) = await client.xrange(dlq)
    assert single[b"data"] == b"\x00garbage"
    assert single[b"arroyo.dead-letter.reason"] == b"not Arroyo data"
    assert single[b"arroyo.dead-letter.error"] == b"DecodeError"
    assert single[b"arroyo.dead-letter.attempts"] == b"1"
    assert single[b"arroyo.source.entry"] == b"1-0"
    assert (parts[b"data.0"], parts[b"data.1"]) == (b"a", b"bc")


async def test_pipelined_sends_keep_their_order_and_maxlen_trims(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    trimmed = stream("trimmed")
    messages = make_run(3000)
    publisher = open_publisher(f"redis://{redis_address}/{trimmed}?maxlen=100")
    assert isinstance(publisher, RedisStreamPublisher)
    await publisher.start()
    try:
        sends = [publisher.send(m) for m in messages]  # no await between them
        await asyncio.gather(*sends)
    finally:
        await publisher.close()
    entries = await client.xrange(trimmed)
    assert 100 <= len(entries) < 1000  # MAXLEN ~ trims whole nodes: about 100 are left
    kept = [fields[b"id"].decode() for _, fields in entries]
    assert kept == [m.id for m in messages[-len(kept) :]]


async def test_send_many_queues_a_batch_and_fails_an_unencodable_message_alone(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    out = stream("out")
    messages = make_run(5)
    messages[2] = Event({"x": object()}, b"", stream=messages[2].stream)  # breaks the schema
    publisher = open_publisher(f"redis://{redis_address}/{out}")
    assert isinstance(publisher, RedisStreamPublisher)
    await publisher.start()
    try:
        sends = publisher.send_many(messages, [None] * len(messages))
        assert len(sends) == len(messages)
        assert isinstance(sends[2].exception(), EncodeError)
        await asyncio.gather(*(s for i, s in enumerate(sends) if i != 2))
    finally:
        await publisher.close()
    written = [fields[b"id"].decode() for _, fields in await client.xrange(out)]
    assert written == [m.id for i, m in enumerate(messages) if i != 2]


async def test_a_key_of_another_type_is_a_permanent_error(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    key = stream("not-a-stream")
    await client.set(key, b"a string")
    publisher = open_publisher(f"redis://{redis_address}/{key}")
    await publisher.start()
    try:
        with pytest.raises(PermanentError, match="WRONGTYPE"):
            await publisher.publish(Event())
    finally:
        await publisher.close()
