"""Each client's queue: it keeps the newest frames, and counts what it leaves out."""

from __future__ import annotations

import pytest

from arroyo.view.clients import ClientQueue
from arroyo.view.wire import Outgoing, unpack


def event(seq: int, image: bool = True) -> Outgoing:
    return Outgoing({"type": "event", "seq": seq}, b"pixels" if image else b"")


def control(kind: str, seq: int) -> Outgoing:
    return Outgoing({"type": kind, "seq": seq})


def drain(queue: ClientQueue) -> list[Outgoing]:
    out = []
    while (item := queue.get_nowait()) is not None:
        out.append(item)
    return out


def test_a_full_queue_keeps_the_newest_frames_and_the_metadata_of_the_others() -> None:
    queue = ClientQueue(frames=3, items=100)
    for seq in range(1, 11):
        queue.put(event(seq))
    got = drain(queue)
    assert [item.seq for item in got] == list(range(1, 11))  # every message, in order
    assert [item.seq for item in got if item.image] == [8, 9, 10]  # the newest frames
    assert queue.dropped_frames == 7 and queue.dropped_events == 0
    bare = unpack(got[0].data)[0]
    assert bare["image"] is None and bare["image_dropped"] is True


def test_beyond_its_items_it_drops_the_oldest_events_never_a_start_or_stop() -> None:
    queue = ClientQueue(frames=2, items=4)
    queue.put(control("start", 1))
    for seq in range(2, 8):
        queue.put(event(seq, image=False))
    queue.put(control("stop", 8))
    got = drain(queue)
    assert [(item.kind, item.seq) for item in got] == [
        ("start", 1),
        ("event", 6),
        ("event", 7),
        ("stop", 8),
    ]
    assert queue.dropped_events == 4 and queue.dropped_frames == 0


def test_a_frame_dropped_whole_counts_as_a_dropped_frame_too() -> None:
    queue = ClientQueue(frames=2, items=2)
    for seq in range(1, 4):
        queue.put(event(seq))
    assert [item.seq for item in drain(queue)] == [2, 3]
    assert queue.dropped_events == 1 and queue.dropped_frames == 1
    assert queue.images == 0


def test_only_starts_and_stops_left_the_oldest_goes() -> None:
    queue = ClientQueue(frames=1, items=2)
    for seq, kind in enumerate(["start", "stop", "start"], 1):
        queue.put(control(kind, seq))
    assert [item.seq for item in drain(queue)] == [2, 3]
    assert queue.dropped_events == 1


def test_the_queue_stays_consistent_while_read_and_written_in_turns() -> None:
    queue = ClientQueue(frames=2, items=8)
    seen = []
    for seq in range(1, 200):
        queue.put(event(seq, image=seq % 3 != 0))
        if seq % 5 == 0:
            seen += drain(queue)
    seen += drain(queue)
    seqs = [item.seq for item in seen]
    assert seqs == sorted(seqs) and seqs[-1] == 199
    assert len(queue) == 0 and queue.images == 0
    sent = sum(1 for item in seen if item.image)
    assert sent + queue.dropped_frames == sum(1 for s in range(1, 200) if s % 3 != 0)


async def test_get_waits_for_an_item_at_most_the_time_given() -> None:
    queue = ClientQueue()
    assert await queue.get(0.01) is None
    queue.put(event(1))
    got = await queue.get(1.0)
    assert got is not None and got.seq == 1


def test_impossible_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="frames"):
        ClientQueue(frames=0)
