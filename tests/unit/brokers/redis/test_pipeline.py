"""Redis commands sent in order as pipelines (pipeline.py), without a server: the
batcher's order, limits and fail-stop rule, and which refusals are permanent."""

from __future__ import annotations

import asyncio

from redis.exceptions import ResponseError

from arroyo.brokers import parse_url
from arroyo.brokers.redis import RedisServer, RedisSettings
from arroyo.brokers.redis.pipeline import Batcher, Refused, reply_error
from arroyo.errors import PermanentError, PublishError
from arroyo.runtime.ordering import NotSent


async def test_batcher_keeps_order_and_reports_each_result() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[BaseException | None]:
        flushed.append(items)
        await asyncio.sleep(0)
        return [Refused(f"odd {i}") if i % 2 else None for i in items]

    batcher: Batcher[int] = Batcher(flush, limit=3)
    futures = [batcher.add(i) for i in range(7)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [i for batch in flushed for i in batch] == list(range(7))
    assert max(len(batch) for batch in flushed) == 3
    # A refusal (permanent: that message goes to the dead letter) stops nothing.
    assert [r is None for r in results] == [i % 2 == 0 for i in range(7)]
    assert str(results[1]) == "odd 1"


async def test_a_retryable_error_fails_what_is_queued_behind_it_unwritten() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[BaseException | None]:
        flushed.append(items)
        await asyncio.sleep(0)
        return [PublishError("OOM command not allowed") if i == 1 else None for i in items]

    batcher: Batcher[int] = Batcher(flush, limit=3, where="redis://h:1/out")
    futures = [batcher.add(i) for i in range(7)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert flushed == [[0, 1, 2]]  # 3..6 never written: they would overtake 1's retry
    assert [type(r).__name__ for r in results] == ["NoneType", "PublishError", "NoneType"] + [
        "NotSent"
    ] * 4
    assert "redis://h:1/out: not sent: an earlier message failed" in str(results[3])
    assert await batcher.add(7) is None  # given after the failure was reported: written
    assert flushed[-1] == [7]


async def test_batcher_limits_the_bytes_of_a_batch() -> None:
    flushed: list[list[str]] = []

    async def flush(items: list[str]) -> list[BaseException | None]:
        flushed.append(items)
        return [None] * len(items)

    batcher: Batcher[str] = Batcher(flush, limit=100, limit_bytes=10)
    sizes = {"a": 4, "b": 4, "c": 4, "huge": 50, "d": 1}
    await asyncio.gather(*(batcher.add(name, size) for name, size in sizes.items()))
    assert flushed == [["a", "b"], ["c"], ["huge"], ["d"]]  # a large item goes alone


async def test_a_failed_flush_fails_its_batch_and_what_is_queued_behind_it() -> None:
    calls = 0

    async def flush(items: list[str]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise PublishError("connection lost")
        return [None] * len(items)

    batcher: Batcher[str] = Batcher(flush, limit=2)
    first = [batcher.add("a"), batcher.add("b")]
    later = batcher.add("c")
    results = await asyncio.gather(*first, later, return_exceptions=True)
    assert [type(r) for r in results] == [PublishError, PublishError, NotSent]
    assert calls == 1  # "c" was not written: it would reach Redis before "a" and "b"
    assert await batcher.add("c") is None  # sent again once the failure is known: written
    await batcher.drain()


def test_refusals_that_retrying_cannot_fix_are_permanent() -> None:
    url = parse_url("redis://h:1/x")
    server = RedisServer.from_url(url, RedisSettings.from_url(url))
    wrong_type = reply_error("redis://h:1/x", server, ResponseError("WRONGTYPE Operation"))
    assert isinstance(wrong_type, PermanentError)
    oom = reply_error("redis://h:1/x", server, ResponseError("OOM command not allowed"))
    assert isinstance(oom, PublishError) and not isinstance(oom, PermanentError)
    assert reply_error("redis://h:1/x", server, b"1-0") is None
