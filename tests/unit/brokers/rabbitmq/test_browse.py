"""The options of ``arroyo tail`` on RabbitMQ (arroyo.brokers.rabbitmq.browse), checked
without a broker."""

from __future__ import annotations

import asyncio
import logging

import pytest

from arroyo.brokers.rabbitmq import RabbitMQBrowser
from arroyo.browse import Reading, open_browser
from arroyo.errors import ConfigError, ConnectError
from arroyo.testing import free_port


def test_a_listener_url_can_be_pasted_its_consuming_options_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="arroyo")
    browser = open_browser(
        "amqps://bob:pw@h/lab?queue=frames&prefetch=5&declare=false&delivery_journal=false",
        options={"confirm_timeout": 3, "queue_type": "stream", "batch": "7"},
    )
    assert isinstance(browser, RabbitMQBrowser)
    assert browser.name == "amqps://h:5671/lab?queue=frames"
    assert (browser.queue, browser.queue_type, browser.settings.batch) == ("frames", "stream", 7)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    ignored = warning.split(": ignoring ")[1]
    # declare is what tail does anyway: taken silently
    assert ignored.startswith("confirm_timeout=3, delivery_journal=false, prefetch=5:")


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("", "tail needs a queue"),
        ("queue=q&batch=0", "rabbitmq option 'batch': input should be greater than or equal to 1"),
        ("queue=q&queue_type=lazy", "rabbitmq option 'queue_type': input should be '', 'classic'"),
        ("queue=q&qeue=x", r"unknown rabbitmq option\(s\) 'qeue' \(did you mean 'queue'\?\)"),
    ],
)
def test_bad_options_are_one_line_naming_them(query: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        open_browser(f"amqp://bob:pa55@h/?{query}")
    assert "pa55" not in str(refused.value) and "\n" not in str(refused.value)


def test_tail_tries_to_connect_for_connect_timeout_and_says_why_it_could_not() -> None:
    url = f"amqp://bob:pa55@127.0.0.1:{free_port()}/?queue=q&connect_timeout=0.5"

    async def look() -> None:
        async with open_browser(url, Reading(exit_at_end=True)):
            pass

    with pytest.raises(ConnectError) as refused:
        asyncio.run(look())
    message = str(refused.value)
    assert message.startswith("amqp://127.0.0.1:")
    assert "cannot connect within 0.5 s: connection refused" in message
    assert "pa55" not in message
