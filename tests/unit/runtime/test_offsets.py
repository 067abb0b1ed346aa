"""Ordered commits: never past a message that is not done."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from arroyo.runtime.offsets import OffsetTracker


def test_commits_stop_at_the_lowest_unfinished_offset() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in range(10, 15):
        tracker.started(0, offset)
    tracker.finished(0, 11)
    tracker.finished(0, 12)
    assert tracker.committable(0) == 10  # 10 is still in flight
    tracker.finished(0, 10)
    assert tracker.to_commit() == {0: 13}
    tracker.committed({0: 13})
    assert tracker.to_commit() == {}
    tracker.finished(0, 13)
    tracker.finished(0, 14)
    assert tracker.to_commit() == {0: 15}


def test_a_full_commit_repeats_what_was_committed_and_can_be_limited_to_partitions() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for partition in (0, 1):
        tracker.started(partition, 3)
        tracker.finished(partition, 3)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}
    assert tracker.to_commit(full=True) == {0: 4, 1: 4}  # after a failed commit
    assert tracker.to_commit([1], full=True) == {1: 4}


def test_partitions_are_independent_and_can_be_forgotten() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    tracker.started(("a", 0), 5)
    tracker.started(("a", 1), 7)
    tracker.finished(("a", 1), 7)
    assert tracker.to_commit() == {("a", 0): 5, ("a", 1): 8}
    assert tracker.in_flight() == 1
    tracker.forget([("a", 0)])
    tracker.finished(("a", 0), 5)  # acked after revocation: ignored
    assert tracker.to_commit() == {("a", 1): 8}


@given(st.permutations(list(range(30))), st.integers(0, 30))
def test_never_commits_an_unfinished_offset(order: list[int], done: int) -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in range(30):
        tracker.started(0, offset)
    finished = set(order[:done])
    for offset in order[:done]:
        tracker.finished(0, offset)
    commit = tracker.committable(0)
    assert commit is not None
    assert all(offset in finished for offset in range(commit))
    assert commit == 30 or commit not in finished


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40)), unique=True), st.data())
def test_a_batch_is_tracked_as_one_by_one(
    handles: list[tuple[int, int]], data: st.DataObject
) -> None:
    """started_many and finished_many leave the tracker as started and finished for each."""
    done = data.draw(st.lists(st.sampled_from(handles), unique=True) if handles else st.just([]))
    one: OffsetTracker[int] = OffsetTracker()
    many: OffsetTracker[int] = OffsetTracker()
    for handle in handles:
        one.started(*handle)
    many.started_many(handles)
    for handle in done:
        one.finished(*handle)
    many.finished_many(done)
    assert many.to_commit() == one.to_commit()
    assert many.in_flight() == one.in_flight() == len(handles) - len(done)
