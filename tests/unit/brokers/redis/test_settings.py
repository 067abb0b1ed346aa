"""The Redis connector's options (settings.py) and the factories that read them: URLs,
the URL query and the YAML block, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.redis import (
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisStreamListener,
    RedisStreamPublisher,
)


def test_schemes_pick_streams_or_pubsub() -> None:
    assert isinstance(open_listener("redis://h:1/frames"), RedisStreamListener)
    assert isinstance(open_publisher("redis://h:1/frames"), RedisStreamPublisher)
    assert isinstance(open_listener("redis+pubsub://h:1/frames"), RedisPubSubListener)
    assert isinstance(open_publisher("rediss+pubsub://h:1/frames"), RedisPubSubPublisher)
    listener = open_listener("rediss://h:1/frames")
    assert isinstance(listener, RedisStreamListener) and listener.server.tls


def test_options_come_from_the_url_and_the_yaml_block() -> None:
    listener = open_listener(
        "redis://127.0.0.1:6390/frames?group=workers&min_idle_ms=5000&db=2",
        {"batch": 10, "start": "$"},
    )
    assert isinstance(listener, RedisStreamListener)
    assert (listener.stream, listener.group, listener.start_id) == ("frames", "workers", "$")
    assert (listener.min_idle_ms, listener.batch, listener.server.db) == (5000, 10, 2)
    assert listener.claim_interval == 2.5  # half of min_idle_ms when that is below 5 s
    assert (listener.server.host, listener.server.port) == ("127.0.0.1", 6390)
    publisher = open_publisher("redis://h/results?maxlen=1000")
    assert isinstance(publisher, RedisStreamPublisher)
    assert (publisher.maxlen, publisher.server.port) == (1000, 6379)


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("redis://h:1/frames?gruop=g", {}, r"unknown redis option.*'gruop' \(did you mean 'group'"),
        ("redis://h:1/frames", {"batch": 0}, "'batch': input should be greater than or equal to 1"),
        ("redis://h:1/frames?min_idle_ms=abc", {}, "'min_idle_ms': input should be a valid int"),
        ("redis://h:1/frames", {"group": ""}, "'group': string should have at least 1 char"),
        ("redis://h:1/frames", {"ssl_ca": "/ca.pem"}, r"need TLS \(the rediss:// scheme"),
        ("redis://h:1/frames", {"timeout": 0}, "'timeout': input should be greater than 0"),
        ("redis://h:1", {}, "needs a stream name, as in redis://"),
        ("redis+pubsub://h:1", {}, "needs a channel name"),
        ("redis+pubsub://h:1/c", {"group": "g"}, "unknown redis option"),
    ],
)
def test_bad_listener_options_are_refused(url: str, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_listener(url, options)


def test_publisher_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="'maxlen': input should be greater than or equal to 0"):
        open_publisher("redis://h/results?maxlen=-1")
    with pytest.raises(ConfigError, match=r"unknown redis option.*'group'"):
        open_publisher("redis://h/results?group=g")
    publisher = open_publisher("redis+pubsub://h/c?min_subscribers=2")
    assert isinstance(publisher, RedisPubSubPublisher) and publisher.min_subscribers == 2


def test_a_number_in_the_yaml_is_taken_as_text_where_text_is_expected() -> None:
    listener = open_listener("redis://h:1/frames", {"start": 0, "group": 7})
    assert isinstance(listener, RedisStreamListener)
    assert (listener.start_id, listener.group) == ("0", "7")


def test_the_delivery_journal_option_is_a_folder_or_false(tmp_path: Any) -> None:
    on = open_listener("redis://h:1/frames?group=g")
    assert on.journal is not None and not on.journal.explicit
    folder = open_listener("redis://h:1/frames", {"delivery_journal": str(tmp_path)})
    assert folder.journal is not None and folder.journal.root == tmp_path
    for off in ({"delivery_journal": False}, {"delivery_journal": "false"}):
        assert open_listener("redis://h:1/frames", off).journal is None
    assert open_listener("redis+pubsub://h:1/c").journal is None
