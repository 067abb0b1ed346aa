"""Gap and runs-without-Stop accounting of ZeroMQ listeners (no socket needed)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arroyo import Event, Run, Start
from arroyo.brokers.zmq import SeqGaps
from arroyo.message import Message
from arroyo.runtime.logs import current_block


def gaps(block: str) -> float:
    return REGISTRY.get_sample_value("arroyo_zmq_gaps_total", {"block": block}) or 0.0


class Replay:
    """A parser that returns prepared messages."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = iter(messages)
        self.missing = 0

    def parse(self, data: Any) -> Message:
        return next(self.messages)


def observe(messages: list[Message], block: str) -> SeqGaps:
    token = current_block.set(block)
    try:
        tracker = SeqGaps(Replay(messages), "test")
        for _ in messages:
            tracker.parse(b"")
        return tracker
    finally:
        current_block.reset(token)


def test_gaps_in_seq_are_counted_per_stream() -> None:
    a, b = Run("a"), Run("b")
    sent = [a.start(), b.start(), a.event(), b.event(), a.event(), a.event(), b.event(), b.stop()]
    kept = [m for i, m in enumerate(sent) if i not in (4, 6)]  # lose a's 2nd and b's 2nd events
    tracker = observe(kept, "gaps-per-stream")
    assert tracker.missing == 2
    assert gaps("gaps-per-stream") == 2


def test_no_gap_without_loss_nor_for_a_late_join() -> None:
    run = Run("late")
    messages = [run.start(), run.event(), run.event(), run.event(), run.stop()]
    tracker = observe(messages[2:], "late-join")  # joined after the Start
    assert tracker.missing == 0
    again = Run("again")
    assert observe([again.start(), again.event(), again.stop()], "no-loss").missing == 0


def test_a_new_start_resets_the_stream() -> None:
    first = [Start(stream="s", seq=0), Event(stream="s", seq=1)]
    second = [Start(stream="s", seq=0), Event(stream="s", seq=1)]
    assert observe(first + second, "restart").missing == 0


def test_a_parsers_own_missing_count_is_reported() -> None:
    class Counting(Replay):
        def parse(self, data: Any) -> Message:
            self.missing += 3
            return super().parse(data)

    token = current_block.set("parser-missing")
    try:
        tracker = SeqGaps(Counting([Start(stream="x")]), "test")
        tracker.parse(b"")
    finally:
        current_block.reset(token)
    assert tracker.missing == 3
    assert gaps("parser-missing") == 3


def without_stop(block: str) -> float:
    return REGISTRY.get_sample_value("arroyo_zmq_runs_without_stop_total", {"block": block}) or 0


def test_a_run_that_ends_without_its_stop_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    first, second = Run("scan-1"), Run("scan-2")
    lost_stop = [first.start(), first.event(), first.event()]  # its Stop was dropped
    again = Run("scan-1")  # the same stream starts a new run
    messages = [*lost_stop, second.start(), again.start(), second.event(), second.stop()]
    with caplog.at_level(logging.WARNING, logger="arroyo.brokers.zmq"):
        tracker = observe(messages, "lost-stop")
    assert (tracker.missing, tracker.without_stop) == (0, 1)
    assert without_stop("lost-stop") == 1
    assert (
        "run 'scan-1' ended without its Stop (its stream started again; its last message had seq 2)"
    ) in caplog.text
    assert tracker.open_runs() == ["scan-1"]  # the new run, not ended yet


def test_a_run_with_nothing_for_run_timeout_ended_without_its_stop() -> None:
    run, other = Run("quiet"), Run("busy")
    token = current_block.set("run-timeout")
    try:
        tracker = SeqGaps(Replay([run.start(), run.event(), other.start()]), "test", run_timeout=5)
        for _ in range(3):
            tracker.parse(b"")
        tracker.expire(time.monotonic() + 1)
        assert tracker.without_stop == 0
        tracker.expire(time.monotonic() + 5)
    finally:
        current_block.reset(token)
    assert tracker.without_stop == 2  # both open runs, silent for 5 s
    assert without_stop("run-timeout") == 2
    assert tracker.open_runs() == []
