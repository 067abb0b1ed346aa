"""Lag and connection gauges (arroyo.runtime.lag): refreshed on a timer from the
listener's ``lag()`` and the parts' ``connected``, read from the last snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.message import Message
from arroyo.runtime import Block
from arroyo.runtime.lag import LagWatch, Source, source
from arroyo.testing import Recorder, make_run


class _Lagging(MemoryListener):
    """A memory listener whose lag is what the test says (or raises, or hangs)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.answer: dict[Source, int] | BaseException | None = None
        self.asked = 0
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    async def lag(self) -> dict[Source, int] | None:
        self.asked += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class _Held:
    """An operator that returns each message once the test lets it (``gate``)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def start(self) -> None:
        pass

    async def process(self, message: Message) -> Message:
        await self.gate.wait()
        return message

    async def close(self) -> None:
        pass


def _sample(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_a_source_is_sorted_labels_as_text() -> None:
    assert source(topic="t", partition=3) == (("partition", "3"), ("topic", "t"))


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="lag_interval must be positive"):
        Block(MemoryListener("x"), lag_interval=0)


async def test_the_gauges_follow_the_listener_while_the_block_runs(
    unique_name: Callable[[str], str], until: Callable[..., Any]
) -> None:
    topic, name = unique_name("src"), unique_name("block")
    listener = _Lagging(topic)
    recorder = Recorder()
    block = Block(listener, publishers=[recorder], name=name, lag_interval=0.01)
    key = {"block": name, "queue": "q"}
    assert (
        _sample("arroyo_connected", block=name, role="listener", connector=f"memory://{topic}") == 0
    )
    assert _sample("arroyo_last_message_timestamp_seconds", block=name) is None
    listener.answer = {source(queue="q"): 7}
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: _sample("arroyo_lag_messages", **key) == 7, what="lag 7")
        assert (
            _sample("arroyo_connected", block=name, role="listener", connector=f"memory://{topic}")
            == 1
        )
        assert (
            _sample("arroyo_connected", block=name, role="publisher", connector=recorder.name) == 1
        )
        listener.answer = {source(queue="q"): 0}
        await until(lambda: _sample("arroyo_lag_messages", **key) == 0, what="lag 0")
        listener.up = False
        await until(
            lambda: (
                _sample(
                    "arroyo_connected", block=name, role="listener", connector=f"memory://{topic}"
                )
                == 0
            ),
            what="listener reported down",
        )
        listener.answer = RuntimeError("broker gone")  # unknown: no sample, block goes on
        await until(lambda: _sample("arroyo_lag_messages", **key) is None, what="lag unknown")
        assert not running.done()
        memory.topic(topic).put(next(iter(make_run(1))))
        await until(lambda: _sample("arroyo_last_message_timestamp_seconds", block=name))
    finally:
        block.stop()
        await running
        memory.delete(topic)
    assert _sample("arroyo_lag_messages", **key) is None
    assert (
        _sample("arroyo_connected", block=name, role="listener", connector=f"memory://{topic}") == 0
    )
    assert _sample("arroyo_connected", block=name, role="publisher", connector=recorder.name) == 0


async def test_a_listener_that_does_not_answer_leaves_the_lag_unknown_not_the_block_stuck(
    unique_name: Callable[[str], str],
) -> None:
    class Hangs(_Lagging):
        async def lag(self) -> dict[Source, int] | None:
            await asyncio.Event().wait()
            return None

    watch = LagWatch(unique_name("block"), Hangs(unique_name("src")), lambda: [], interval=0.01)
    watch.lag = {source(queue="q"): 1}
    await watch.refresh()  # gives up after max(interval, 5 s)
    assert watch.lag is None


async def test_a_watch_cancelled_as_the_listener_answers_ends_and_marks_all_down(
    unique_name: Callable[[str], str],
) -> None:
    """The answer and the cancel land in the same turn of the loop: the watch still ends
    (Python 3.11's ``asyncio.wait_for`` returned the answer then, and the watch went on
    refreshing after its Block had stopped)."""
    answer: asyncio.Future[dict[Source, int] | None] = asyncio.get_running_loop().create_future()
    asked = asyncio.Event()

    class Waits(_Lagging):
        async def lag(self) -> dict[Source, int] | None:
            asked.set()
            return await answer

    out = Recorder()
    watch = LagWatch(
        unique_name("block"), Waits(unique_name("src")), lambda: [("publisher", out)], interval=60
    )
    running = asyncio.create_task(watch.run())
    await asked.wait()
    answer.set_exception(RuntimeError("broker gone"))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):  # a watch that went on: TimeoutError, not a hang
            await running
    assert watch.lag is None
    assert not any(watch.connected.values())


async def test_the_lag_is_not_asked_while_messages_are_handled_in_the_hot_path(
    unique_name: Callable[[str], str], until: Callable[..., Any]
) -> None:
    """A block whose operator is held keeps refreshing (the timer is its own task)."""
    topic, name = unique_name("src"), unique_name("block")
    listener = _Lagging(topic)
    listener.answer = {source(queue="q"): 1}
    held = _Held()
    block = Block(listener, held, name=name, lag_interval=0.01)  # type: ignore[arg-type]
    for message in make_run(2):
        memory.topic(topic).put(message)
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: block.stats.received >= 1, what="a message in the operator")
        asked = listener.asked
        await until(lambda: listener.asked >= asked + 3, what="refreshes while held")
    finally:
        held.gate.set()
        block.stop()
        await running
        memory.delete(topic)


async def test_the_block_takes_the_interval_from_its_config() -> None:
    from arroyo.config import BlockConfig

    config = BlockConfig.model_validate({"name": "b", "listener": "memory://x"})
    assert config.lag_interval == 5.0
    off = BlockConfig.model_validate({"name": "b", "listener": "memory://x", "lag_interval": None})
    assert off.lag_interval is None


def test_blocks_of_the_same_name_give_one_sample_per_label_set(
    unique_name: Callable[[str], str],
) -> None:
    from arroyo.runtime.lag import families

    name, topic = unique_name("block"), unique_name("src")
    old, new = (LagWatch(name, MemoryListener(topic), lambda: []) for _ in range(2))
    old.lag, new.lag = {source(queue="q"): 3}, {source(queue="q"): 5}
    new.connected = {key: True for key in new.connected}
    lag, connected = families([old, new])
    assert [(s.labels, s.value) for s in lag.samples] == [({"block": name, "queue": "q"}, 5)]
    assert [s.value for s in connected.samples] == [1]


async def test_a_publisher_whose_publishes_are_retried_reads_disconnected(
    unique_name: Callable[[str], str],
) -> None:
    out = Recorder()
    failing: set[object] = set()
    watch = LagWatch(
        unique_name("block"),
        MemoryListener(unique_name("src")),
        lambda: [("publisher", out)],
        failing=lambda: failing,
    )
    await watch.refresh()
    assert watch.connected[("publisher", out.name)] is True
    failing.add(out)  # the Block's readiness: a failed publish of it is being retried
    await watch.refresh()
    assert watch.connected[("publisher", out.name)] is False
    assert all(up for (role, _), up in watch.connected.items() if role == "listener")


async def test_a_part_going_down_and_coming_back_is_logged_once_each_way(
    unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("block")
    listener = _Lagging(unique_name("src"))
    watch = LagWatch(name, listener, lambda: [])
    caplog.set_level("INFO", logger="arroyo")
    await watch.refresh()  # the first snapshot: nothing changed yet
    assert "connected" not in caplog.text
    listener.up = False
    await watch.refresh()
    await watch.refresh()
    listener.up = True
    await watch.refresh()
    lines = [r.getMessage() for r in caplog.records if "connected" in r.getMessage()]
    assert lines == [
        f"block {name}: listener {listener.name} is not connected",
        f"block {name}: listener {listener.name} is connected again",
    ]
