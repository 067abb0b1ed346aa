"""``arroyo tail`` on ZeroMQ without a socket: what is refused, and a listener's URL pasted."""

from __future__ import annotations

import logging

import pytest

from arroyo.brokers.zmq import ZmqSubBrowser
from arroyo.browse import Reading, open_browser
from arroyo.errors import ConfigError


def test_a_listeners_url_can_be_pasted_its_own_options_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "zmq+sub://127.0.0.1:5556?topic=frames&copy_threshold=1024&run_timeout=5"
    with caplog.at_level(logging.WARNING, logger="arroyo.browse"):
        browser = open_browser(url)
    assert isinstance(browser, ZmqSubBrowser)
    assert (browser.topics, browser.rcvhwm, browser.bind) == (["frames"], 1000, False)
    assert "ignoring copy_threshold=1024, run_timeout=5" in caplog.text


@pytest.mark.parametrize(
    ("url", "reading", "problem"),
    [
        ("zmq+sub://127.0.0.1:5556?hwm=3", Reading(), "unknown zmq option(s) 'hwm'"),
        ("zmq+sub://127.0.0.1:5556?rcvhwm=-1", Reading(), "zmq option 'rcvhwm': input should"),
        ("zmq+sub://127.0.0.1:5556/frames", Reading(), "a ZeroMQ URL has no path"),
        ("zmq+sub://127.0.0.1:5556", Reading(from_end=False), "ZeroMQ keeps nothing"),
        ("zmq+pub://127.0.0.1:5556", Reading(), "zmq+pub:// sends; tail reads zmq+sub://"),
        ("zmq+pull://127.0.0.1:5556", Reading(), "a PULL socket takes each message away"),
    ],
)
def test_what_tail_cannot_read_is_one_line(url: str, reading: Reading, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_browser(url, reading)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
