"""What the viewer keeps for later pages: the last items within a count and a byte
bound, and each run's counters."""

from __future__ import annotations

from arroyo.view.kept import Recent, RunSeen
from arroyo.view.wire import Outgoing


def item(seq: int, body: bytes = b"") -> Outgoing:
    return Outgoing({"type": "event", "seq": seq}, body)


def test_recent_keeps_the_last_count_items_and_gives_what_follows_a_seq() -> None:
    recent = Recent(3, 1e9)
    assert recent.first is None and recent.since(1) == []
    for seq in range(1, 6):
        recent.add(item(seq))
    assert [out.seq for out in recent] == [3, 4, 5]
    assert recent.first == 3
    assert [out.seq for out in recent.since(4)] == [4, 5]
    assert [out.seq for out in recent.since(1)] == [3, 4, 5]  # older: all that is kept
    assert recent.since(6) == []


def test_recent_drops_the_oldest_frames_beyond_its_bytes_and_keeps_their_events() -> None:
    frames = [item(seq, bytes(1000)) for seq in range(1, 5)]
    recent = Recent(10, 2.5 * frames[0].size)
    for out in frames:
        recent.add(out)
    kept = list(recent)
    assert [out.seq for out in kept] == [1, 2, 3, 4]
    assert [out.image for out in kept] == [False, False, True, True]
    assert kept[0].header["image_dropped"] is True
    assert recent.image_bytes == frames[2].size + frames[3].size
    for seq in range(5, 15):  # frames pushed out by count leave the byte total
        recent.add(item(seq))
    assert recent.image_bytes == 0 and len(recent) == 10


def test_a_run_counts_the_seqs_that_never_came() -> None:
    run = RunSeen()
    for seq in (1, 2, 5, 4, 6, 9):
        run.saw(seq)
    assert run.seq_gaps == 2 + 2  # 3 and 4 (4 came late, still counted), then 7 and 8
    assert run.next_seq == 10
    assert run.summary("s") == {
        "stream": "s",
        "events": 0,
        "frames": 0,
        "seq_gaps": 4,
        "stopped": False,
    }
