"""Frame accounting: missing, duplicated and out-of-order frames per run (no broker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from arroyo import Event, Message, Start, Stop
from arroyo.parsers import make_parser
from arroyo.runtime import frames
from arroyo.runtime.frames import FrameAccounting, SeqCounter


def run(numbers: Iterable[int], stream: str = "r", stop_seq: int | None = None) -> Stop:
    """A run counted by seq: Start 0, an Event per number, the Stop at ``stop_seq``."""
    numbers = list(numbers)
    accounting = FrameAccounting(SeqCounter(), "test")
    accounting.observe(Start(stream=stream, seq=0))
    for n in numbers:
        assert accounting.observe(Event(stream=stream, seq=n)).seq == n
    last = max(numbers, default=0) + 1 if stop_seq is None else stop_seq
    stop = accounting.observe(Stop({"exit_status": "success"}, stream=stream, seq=last))
    assert isinstance(stop, Stop)
    return stop


def summary(stop: Stop) -> dict[str, object]:
    return {k: v for k, v in stop.data.items() if k.startswith("frames_")}


def test_a_whole_run_has_nothing_missing() -> None:
    stop = run(range(1, 11))
    assert summary(stop) == {
        "frames_expected": 10,
        "frames_received": 10,
        "frames_missing": 0,
        "frames_duplicated": 0,
        "frames_out_of_order": 0,
        "frames_missing_ranges": [],
    }
    assert stop.data["exit_status"] == "success"  # the Stop's own data stays


def test_gaps_at_the_start_middle_and_end_are_missing() -> None:
    # frames 1..10: 1 and 2 lost, 5-6 lost, 10 lost (the Stop's seq says there were 10)
    stop = run([3, 4, 7, 8, 9], stop_seq=11)
    assert stop.data["frames_expected"] == 10
    assert stop.data["frames_received"] == 5
    assert stop.data["frames_missing"] == 5
    assert stop.data["frames_missing_ranges"] == [[1, 2], [5, 6], [10, 10]]


def test_duplicates_and_late_frames() -> None:
    stop = run([1, 3, 2, 3, 5, 4, 4, 6], stop_seq=7)
    assert summary(stop) == {
        "frames_expected": 6,
        "frames_received": 6,
        "frames_missing": 0,
        "frames_duplicated": 2,
        "frames_out_of_order": 2,
        "frames_missing_ranges": [],
    }


def test_a_run_whose_frames_all_went_missing() -> None:
    stop = run([], stop_seq=5)
    assert stop.data["frames_expected"] == 4 and stop.data["frames_missing"] == 4
    assert stop.data["frames_missing_ranges"] == [[1, 4]]


def test_only_the_first_ranges_are_listed() -> None:
    stop = run(range(2, 60, 2), stop_seq=60)  # every odd frame lost
    assert stop.data["frames_missing"] == 30
    assert stop.data["frames_missing_ranges"] == [[n, n] for n in range(1, 21, 2)]


def test_without_a_start_the_first_frame_seen_opens_the_count() -> None:
    accounting = FrameAccounting(SeqCounter())
    for n in (5, 6, 8):
        accounting.observe(Event(stream="late", seq=n))
    stop = accounting.observe(Stop(stream="late", seq=10))
    assert stop.data["frames_expected"] == 5  # 5..9: frames before 5 are not known
    assert stop.data["frames_missing_ranges"] == [[7, 7], [9, 9]]


def test_a_stop_of_an_unknown_run_is_left_alone() -> None:
    accounting = FrameAccounting(SeqCounter())
    stop = Stop({"a": 1}, stream="never-seen", seq=3)
    assert accounting.observe(stop) is stop


def test_runs_are_counted_apart_and_a_new_start_resets() -> None:
    accounting = FrameAccounting(SeqCounter())
    for stream in ("a", "b"):
        accounting.observe(Start(stream=stream))
    accounting.observe(Event(stream="a", seq=1))
    accounting.observe(Event(stream="b", seq=2))
    accounting.observe(Start(stream="a"))  # a restarted: its earlier frame is forgotten
    accounting.observe(Event(stream="a", seq=1))
    a = accounting.observe(Stop(stream="a", seq=2))
    b = accounting.observe(Stop(stream="b", seq=3))
    assert (a.data["frames_duplicated"], a.data["frames_missing"]) == (0, 0)
    assert b.data["frames_missing_ranges"] == [[1, 1]]
    assert accounting.open_runs == 0


async def test_a_stop_that_gained_its_summary_is_not_forwarded_as_received() -> None:
    """A Passthrough Block forwards each message with the bytes it arrived as; a Stop
    that gained the frame summary is a new message, so its received bytes must not go
    out in its place."""
    from arroyo import encode
    from arroyo.brokers import memory
    from arroyo.runtime import Block
    from arroyo.runtime.publisher import Publisher

    class Wires(Publisher):
        def __init__(self) -> None:
            self.sent: list[tuple[Message, bytes | None]] = []

        async def publish(self, message: Message) -> None:
            raise AssertionError("send() is what the Block calls")

        def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
            self.sent.append((message, wire))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    start, stop = Start(stream="w"), Stop(stream="w", seq=3)
    for message in (start, stop):
        memory.topic("frames-forwarded").append(encode(message))
    out = Wires()
    listener = memory.MemoryListener("frames-forwarded", stop_at_end=True)
    await Block(listener, None, [out], frame_accounting=True).run()
    memory.delete("frames-forwarded")
    (first, first_wire), (last, last_wire) = out.sent
    assert first == start and first_wire == encode(start)
    assert isinstance(last, Stop) and last.id == stop.id and last_wire is None
    assert last.data["frames_missing"] == 2


class _Lanes:
    """Two channels counted apart, from 0 to 3 (like stream v2)."""

    def lanes(self, start: Start) -> Iterable[str]:
        return ("a", "b")

    def number(self, event: Event) -> tuple[str, int] | None:
        return str(event.metadata["lane"]), int(event.metadata["n"])

    def first(self, start: Start | None, lane: str) -> int | None:
        return 0

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        return 3


def test_lanes_are_counted_apart_and_summed() -> None:
    accounting = FrameAccounting(_Lanes())
    accounting.observe(Start(stream="s"))
    for lane, n in [("a", 0), ("b", 0), ("a", 1), ("a", 3), ("a", 3)]:
        accounting.observe(Event({"lane": lane, "n": n}, stream="s"))
    stop = accounting.observe(Stop(stream="s"))
    assert stop.data["frames_expected"] == 8
    assert stop.data["frames_received"] == 4
    assert stop.data["frames_missing"] == 4  # a: 2; b: 1, 2, 3
    assert stop.data["frames_duplicated"] == 1
    assert stop.data["frames_missing_ranges"] == [[1, 3]]  # the union over lanes
    assert stop.data["frames_lanes"] == {
        "a": {"expected": 4, "received": 3, "missing": 1, "duplicated": 1, "out_of_order": 0},
        "b": {"expected": 4, "received": 1, "missing": 3, "duplicated": 0, "out_of_order": 0},
    }


def test_events_that_are_not_frames_are_not_counted() -> None:
    accounting = FrameAccounting(make_parser("bluesky").frame_counter())
    accounting.observe(Start(stream="run"))
    descriptor = {"document": "descriptor", "uid": "d1", "name": "primary", "run_start": "run"}
    accounting.observe(Event(descriptor, stream="run"))
    for seq_num in (1, 2, 4):
        accounting.observe(
            Event({"document": "event", "descriptor": "d1", "seq_num": seq_num}, stream="run")
        )
    accounting.observe(Event({"document": "datum", "datum_id": "x"}, stream="run"))
    stop = accounting.observe(Stop({"num_events": {"primary": 5}}, stream="run"))
    assert stop.data == {"num_events": {"primary": 5}}  # the RunEngine's document, as it was
    summary = accounting.last_summary
    assert summary is not None
    assert summary["frames_expected"] == 5  # the stop document's num_events
    assert summary["frames_missing_ranges"] == [[3, 3], [5, 5]]


def test_counts_are_exported_with_block_and_stream_labels() -> None:
    accounting = FrameAccounting(SeqCounter(), "frames-metrics-test")
    accounting.observe(Start(stream="m"))
    for n in (1, 1, 3, 2):
        accounting.observe(Event(stream="m", seq=n))

    def value(name: str) -> float | None:
        labels = {"block": "frames-metrics-test", "stream": "m"}
        return REGISTRY.get_sample_value(f"arroyo_frames_{name}_total", labels)

    assert (value("received"), value("duplicated"), value("out_of_order")) == (3, 1, 1)
    assert value("missing") == 0  # settled at the Stop only: a late frame may still come
    accounting.observe(Stop(stream="m", seq=6))
    assert value("missing") == 2  # 4 and 5


def test_a_warning_names_the_stream_and_the_first_missing_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="arroyo.frames"):
        run([1, 2, 5], stream="scan-9", stop_seq=7)
    [record] = caplog.records
    assert record.getMessage() == (
        "stream scan-9: 3 of 6 frames missing (first: 3-4, 6), 0 duplicated, 0 out of order"
    )


def test_memory_is_bounded_and_forgotten_gaps_still_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "MAX_GAPS", 3)
    stop = run(range(1, 20, 2), stop_seq=21)  # 2, 4, ..., 18 lost: 9 gaps, 3 kept; and 20
    assert stop.data["frames_missing"] == 10
    assert stop.data["frames_missing_ranges"] == [[14, 14], [16, 16], [18, 18], [20, 20]]


def test_for_parser_uses_the_parsers_counter() -> None:
    assert FrameAccounting.for_parser(make_parser("json-frame")) is not None
    assert isinstance(FrameAccounting.for_parser(make_parser("arroyo")).counter, SeqCounter)
    assert FrameAccounting.for_parser(object()) is None


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(0, 40),
    data=st.data(),
)
def test_counts_agree_with_a_plain_model(count: int, data: st.DataObject) -> None:
    """Any arrival order, with drops and repeats, counts as a set-based model says."""
    arrivals = data.draw(
        st.lists(st.integers(1, count), max_size=3 * count) if count else st.just([])
    )
    stop = run(arrivals, stop_seq=count + 1)
    seen: set[int] = set()
    duplicated = out_of_order = 0
    for n in arrivals:
        if n in seen:
            duplicated += 1
        elif seen and n < max(seen):
            out_of_order += 1
        seen.add(n)
    missing = sorted(set(range(1, count + 1)) - seen)
    assert stop.data["frames_expected"] == count
    assert stop.data["frames_received"] == len(seen)
    assert stop.data["frames_missing"] == len(missing)
    assert stop.data["frames_duplicated"] == duplicated
    assert stop.data["frames_out_of_order"] == out_of_order
    listed = [n for a, b in stop.data["frames_missing_ranges"] for n in range(a, b + 1)]
    assert listed == missing[: len(listed)]
