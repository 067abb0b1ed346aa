"""What ``arroyo tail`` accepts for Redis (browse.py), without a server: a listener's or
publisher's URL can be pasted (their own options are ignored, with a warning), its own
options are checked like the connector's."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from arroyo import ConfigError
from arroyo.brokers.redis.browse import RedisPubSubBrowser, RedisStreamBrowser
from arroyo.browse import Reading, open_browser


def test_a_listeners_or_publishers_options_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    browser = open_browser(
        "redis://:pa55@127.0.0.1:6390/frames?group=workers&min_idle_ms=100&batch=10",
        options={"maxlen": 5, "delivery_journal": False, "block_ms": 20, "db": 3},
    )
    assert isinstance(browser, RedisStreamBrowser)
    assert (browser.batch, browser.block_ms, browser.server.db) == (10, 20, 3)
    assert browser.name == "redis://127.0.0.1:6390/frames"
    assert "ignoring delivery_journal=False, group=workers, maxlen=5, min_idle_ms=100" in (
        caplog.text
    )
    assert "pa55" not in caplog.text


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("redis://h/frames", {"batch": 0}, "redis option 'batch': input should be greater"),
        ("redis://h/frames?bach=3", {}, r"unknown redis option\(s\) 'bach' \(did you mean"),
        ("redis://h/frames", {"ssl_ca": "/ca.pem"}, r"need TLS \(the rediss:// scheme"),
        ("redis://h", {}, "needs a stream name"),
        ("redis+pubsub://h/c", {"field": "x"}, r"unknown redis option\(s\) 'field'"),
    ],
)
def test_bad_options_are_refused_naming_them(
    url: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_browser(url, options=options)


def test_a_channel_is_read_from_now_on_only() -> None:
    assert isinstance(open_browser("rediss+pubsub://h/c"), RedisPubSubBrowser)
    with pytest.raises(ConfigError, match="pub/sub keeps nothing"):
        open_browser("redis+pubsub://h/c", Reading(from_end=False))
