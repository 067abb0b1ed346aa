"""Redis connector logic that needs no server: URLs, options, secrets, pipelining."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from redis.exceptions import ResponseError

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.redis import (
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisSettings,
    RedisStreamListener,
    RedisStreamPublisher,
    _Batcher,
    _publish_error,
    _Refused,
    consumer_name,
)
from arroyo.errors import PermanentError, PublishError
from arroyo.runtime.ordering import NotSent


def test_schemes_pick_streams_or_pubsub() -> None:
    assert isinstance(open_listener("redis://h:1/frames"), RedisStreamListener)
    assert isinstance(open_publisher("redis://h:1/frames"), RedisStreamPublisher)
    assert isinstance(open_listener("redis+pubsub://h:1/frames"), RedisPubSubListener)
    assert isinstance(open_publisher("rediss+pubsub://h:1/frames"), RedisPubSubPublisher)
    listener = open_listener("rediss://h:1/frames")
    assert isinstance(listener, RedisStreamListener) and listener.settings.tls


def test_options_come_from_the_url_and_the_yaml_block() -> None:
    listener = open_listener(
        "redis://127.0.0.1:6390/frames?group=workers&min_idle_ms=5000&db=2",
        {"batch": 10, "start": "$"},
    )
    assert isinstance(listener, RedisStreamListener)
    assert (listener.stream, listener.group, listener.start_id) == ("frames", "workers", "$")
    assert (listener.min_idle_ms, listener.batch, listener.settings.db) == (5000, 10, 2)
    assert listener.claim_interval == 2.5  # half of min_idle_ms when that is below 5 s
    assert (listener.settings.host, listener.settings.port) == ("127.0.0.1", 6390)
    publisher = open_publisher("redis://h/results?maxlen=1000")
    assert isinstance(publisher, RedisStreamPublisher)
    assert (publisher.maxlen, publisher.settings.port) == (1000, 6379)


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("redis://h:1/frames?gruop=g", {}, "unknown option.*'gruop'"),
        ("redis://h:1/frames", {"batch": 0}, "'batch' must be at least 1"),
        ("redis://h:1/frames?min_idle_ms=abc", {}, "'min_idle_ms' must be a int"),
        ("redis://h:1/frames", {"group": ""}, "'group' must not be empty"),
        ("redis://h:1/frames", {"ssl_ca": "/ca.pem"}, r"need TLS \(the rediss:// scheme"),
        ("redis://h:1/frames", {"timeout": 0}, "'timeout' must be positive"),
        ("redis://h:1", {}, "needs a stream name, as in redis://"),
        ("redis+pubsub://h:1", {}, "needs a channel name"),
        ("redis+pubsub://h:1/c", {"group": "g"}, "unknown option"),
    ],
)
def test_bad_listener_options_are_refused(url: str, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_listener(url, options)


def test_publisher_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="'maxlen' must be 0"):
        open_publisher("redis://h/results?maxlen=-1")
    with pytest.raises(ConfigError, match=r"unknown option.*'group'"):
        open_publisher("redis://h/results?group=g")
    publisher = open_publisher("redis+pubsub://h/c?min_subscribers=2")
    assert isinstance(publisher, RedisPubSubPublisher) and publisher.min_subscribers == 2


def test_passwords_come_from_the_url_or_the_yaml_and_stay_hidden() -> None:
    listener = open_listener("redis://alice:from-url@h:1/frames")
    assert isinstance(listener, RedisStreamListener)
    assert (listener.settings.username, listener.settings.password) == ("alice", "from-url")
    assert "from-url" not in listener.name and "from-url" not in repr(listener.settings)
    publisher = open_publisher("redis://:from-url@h:1/results", {"password": "from-yaml"})
    assert isinstance(publisher, RedisStreamPublisher)
    assert publisher.settings.password == "from-yaml"
    settings = RedisSettings("h", 1, password="pa55")
    assert settings.hide("AUTH pa55 failed for redis://u:pa55@h:1/x") == (
        "AUTH *** failed for redis://u:***@h:1/x"
    )
    with pytest.raises(ConfigError) as refused:
        open_listener("redis://:pa55@h:1/frames?bogus=1")
    assert "pa55" not in str(refused.value)


def test_tls_settings_reach_the_client() -> None:
    listener = open_listener(
        "rediss://h:1/frames",
        {"ssl_ca": "/ca.pem", "ssl_cert": "/c.pem", "ssl_key": "/c.key", "ssl_verify": False},
    )
    assert isinstance(listener, RedisStreamListener)
    kwargs = listener.settings.client().connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        "/ca.pem",
        "/c.pem",
        "/c.key",
    )
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("none", False)


def test_consumer_names_are_unique_per_process() -> None:
    first, second = consumer_name(), consumer_name()
    assert first != second
    assert f"-{os.getpid()}-" in first


async def test_batcher_keeps_order_and_reports_each_result() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[BaseException | None]:
        flushed.append(items)
        await asyncio.sleep(0)
        return [_Refused(f"odd {i}") if i % 2 else None for i in items]

    batcher: _Batcher[int] = _Batcher(flush, limit=3)
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

    batcher: _Batcher[int] = _Batcher(flush, limit=3, where="redis://h:1/out")
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

    batcher: _Batcher[str] = _Batcher(flush, limit=100, limit_bytes=10)
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

    batcher: _Batcher[str] = _Batcher(flush, limit=2)
    first = [batcher.add("a"), batcher.add("b")]
    later = batcher.add("c")
    results = await asyncio.gather(*first, later, return_exceptions=True)
    assert [type(r) for r in results] == [PublishError, PublishError, NotSent]
    assert calls == 1  # "c" was not written: it would reach Redis before "a" and "b"
    assert await batcher.add("c") is None  # sent again once the failure is known: written
    await batcher.drain()


def test_refusals_that_retrying_cannot_fix_are_permanent() -> None:
    settings = RedisSettings("h", 1)
    wrong_type = _publish_error("redis://h:1/x", settings, ResponseError("WRONGTYPE Operation"))
    assert isinstance(wrong_type, PermanentError)
    oom = _publish_error("redis://h:1/x", settings, ResponseError("OOM command not allowed"))
    assert isinstance(oom, PublishError) and not isinstance(oom, PermanentError)
    assert _publish_error("redis://h:1/x", settings, b"1-0") is None
