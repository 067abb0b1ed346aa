"""The in-process broker's options, and ``arroyo tail`` on it (the module as users see it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import Run
from arroyo.brokers import memory, open_listener, open_publisher
from arroyo.brokers.memory import MemoryBrowser, MemoryListener
from arroyo.browse import Reading, open_browser
from arroyo.errors import ConfigError
from arroyo.runtime.intake import BoundedIntake
from arroyo.testing import publish_all


def test_listener_options_come_from_the_url_and_the_yaml() -> None:
    listener = open_listener("memory://opts?group=g1", {"stop_at_end": "yes"})
    assert isinstance(listener, MemoryListener)
    assert listener.stop_at_end is True
    assert listener.group is listener.topic.groups["g1"]
    default = open_listener("memory://opts")
    assert isinstance(default, MemoryListener) and default.stop_at_end is False
    assert default.group is default.topic.groups["default"]
    memory.delete("opts")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda: open_listener("memory://x?grop=g"),
            "unknown memory option(s) 'grop' (did you mean 'group'?); known: group, stop_at_end",
        ),
        (
            lambda: open_listener("memory://x?stop_at_end=sometimes"),
            "memory option 'stop_at_end': input should be a valid boolean",
        ),
        (lambda: open_publisher("memory://x", {"group": "g"}), "unknown memory option(s) 'group'"),
        (lambda: open_listener("memory://"), "a memory URL needs a name"),
    ],
)
def test_a_bad_option_names_it_and_the_broker(make: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()  # type: ignore[operator]
    assert problem in str(caught.value)


def test_tail_takes_a_listeners_url_and_ignores_its_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Run("tail-memory")
    asyncio.run(publish_all("memory://tail-memory-unit", [run.start(), run.stop()]))

    async def look(browser: MemoryBrowser) -> list[int]:
        async with browser:
            return [record.source["index"] async for record in browser.records()]

    try:
        with caplog.at_level(logging.WARNING, logger="arroyo.browse"):
            browser = open_browser(
                "memory://tail-memory-unit?group=g&stop_at_end=true", Reading(exit_at_end=True)
            )
        assert isinstance(browser, MemoryBrowser)
        assert "ignoring group=g, stop_at_end=true" in caplog.text
        assert asyncio.run(look(browser)) == [0, 1]
        assert memory.topic("tail-memory-unit").groups == {}  # no group was made
        with pytest.raises(ConfigError, match=r"unknown memory option\(s\) 'colour'"):
            open_browser("memory://tail-memory-unit?colour=blue")
    finally:
        memory.delete("tail-memory-unit")


async def test_a_message_put_while_the_listener_starts_waiting_is_not_missed(
    until: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    """The listener finds the topic empty and waits; a message put before the waiting
    task has run once still wakes it (the waiter is registered before it yields). It
    used to be registered only when the waiting task first ran: a message put in
    between was handed over only when the next one came (a view test's Stop never)."""
    name = unique_name("race")
    listener = MemoryListener(name)
    intake = BoundedIntake(10, 1 << 20)
    started = asyncio.create_task(listener.start(intake))
    try:
        await asyncio.sleep(0)  # the listener's first step: the topic is empty, it waits
        memory.topic(name).put(Run("race").start())  # no await in between
        await until(lambda: intake.depth == 1, within=5, what="the message put meanwhile")
    finally:
        await listener.stop()
        await started
        memory.delete(name)
