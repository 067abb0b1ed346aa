"""Frame accounting: which frames of a run never arrived, came twice, or came late.

Detectors number their frames (Dectris stream v2 ``image_id``, ESS ``unique_id`` and
``message_id``, bluesky ``seq_num``, Arroyo's own ``seq``). A :class:`FrameAccounting`
watches the messages of one listener, in the order the parser gave them, and keeps per
run (a ``stream``, between its Start and Stop) and per *lane* (an independent counter
within the run: a detector channel, a bluesky descriptor, an ESS source):

- **received**: distinct frame numbers seen;
- **duplicated**: a number seen again;
- **out of order**: a number lower than one already seen, that filled a gap;
- **missing**, at the Stop: the numbers never seen between the run's first frame and
  its last (the last as the source announced it, when it does: stream v2
  ``number_of_images``, the Stop's ``seq``, bluesky's ``num_events``).

:meth:`FrameAccounting.observe` returns the Stop with a summary added to its ``data``::

    frames_expected, frames_received, frames_missing, frames_duplicated,
    frames_out_of_order, frames_missing_ranges  # the first ranges: [[first, last], ...]
    frames_lanes  # per lane, when the run has more than one

and counts them in Prometheus (``arroyo_frames_received_total`` ... with labels
``block`` and ``stream``: :data:`arroyo.runtime.metrics.FRAME_COUNTERS`; missing frames
are counted when the run's Stop settles them, as a late frame may still fill a gap).

What a source's counter is, is the parser's business: a parser class names its
:class:`FrameCounter` in its ``frame_counter`` attribute (a class, made once per
accounting). Memory is bounded: gaps are kept as ranges (at most :data:`MAX_GAPS` per
lane: older ones are still counted, no longer filled), and at most :data:`MAX_RUNS` runs
are open (the oldest is dropped, without a summary, beyond).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from arroyo.message import JSON, Event, Message, Start, Stop
from arroyo.runtime.metrics import FRAME_COUNTERS

log = logging.getLogger("arroyo.frames")

MAX_GAPS = 100_000
"""Gap ranges kept per lane."""
MAX_RUNS = 10_000
"""Runs open at once (without their Stop yet)."""
MAX_STREAMS = 1_000
"""Streams whose totals are exported as metrics (the most recent)."""
RANGES = 10
"""Missing ranges listed in a Stop."""


class FrameCounter(Protocol):
    """Where a source keeps its frame numbers. One instance per accounting, called in
    the order of the messages (so it may remember what it saw, e.g. descriptor names)."""

    def lanes(self, start: Start) -> Iterable[str]:
        """The lanes a run has from its Start on (so a lane that receives nothing is
        counted as missing everything); others are added as frames show them."""

    def number(self, event: Event) -> tuple[str, int] | None:
        """``(lane, frame number)`` of an Event that is a frame; None for one that is not."""

    def first(self, start: Start | None, lane: str) -> int | None:
        """The number of a lane's first frame (``start``: the run's Start, None when it
        was not seen); None: the lowest number seen (a gap before it goes unseen)."""

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        """The number of a lane's last frame, as the source announced it; None: the
        highest number seen (frames lost after it go unseen)."""

    # A counter may set ``summary_in_stop = False``: the run's Stop is then forwarded as
    # it came (a document of someone else's), the summary only counted and logged.


class SeqCounter:
    """Arroyo's ``seq`` (formats ``arroyo``, ``json-frame``, ``msgpack-array``): the Start
    is 0, frames 1 to n, the Stop n + 1. One lane."""

    def lanes(self, start: Start) -> Iterable[str]:
        """One lane, ``""``."""
        return ("",)

    def number(self, event: Event) -> tuple[str, int] | None:
        """Every Event, by its ``seq``."""
        return ("", event.seq)

    def first(self, start: Start | None, lane: str) -> int | None:
        """1 after a Start (0); unknown without one."""
        return 1 if start is not None else None

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        """The Stop's ``seq`` - 1."""
        return stop.seq - 1


class _Lane:
    """The frame numbers of one lane of a run: gaps as sorted ``[first, last]`` ranges."""

    __slots__ = (
        "duplicated",
        "first",
        "forgotten",
        "gaps",
        "high",
        "low",
        "out_of_order",
        "received",
    )

    def __init__(self, first: int | None) -> None:
        self.first = first
        self.low: int | None = None
        self.high: int | None = None
        self.gaps: list[list[int]] = []
        self.received = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.forgotten = 0

    def observe(self, n: int) -> str:
        """Count frame ``n``: ``"new"``, ``"duplicated"`` or ``"out_of_order"``."""
        if self.high is None or self.low is None:
            self.low = n if self.first is None else min(self.first, n)
            if n > self.low:
                self._gap(self.low, n - 1)
            self.high = n
            self.received += 1
            return "new"
        if n > self.high:
            if n > self.high + 1:
                self._gap(self.high + 1, n - 1)
            self.high = n
            self.received += 1
            return "new"
        if n < self.low:
            if n < self.low - 1:
                self.gaps.insert(0, [n + 1, self.low - 1])
            self.low = n
            self.received += 1
            self.out_of_order += 1
            return "out_of_order"
        i = bisect.bisect_right(self.gaps, n, key=lambda gap: gap[0]) - 1
        if i >= 0 and self.gaps[i][0] <= n <= self.gaps[i][1]:
            a, b = self.gaps[i]
            if a == b:
                del self.gaps[i]
            elif n == a:
                self.gaps[i][0] = n + 1
            elif n == b:
                self.gaps[i][1] = n - 1
            else:
                self.gaps[i][1] = n - 1
                self.gaps.insert(i + 1, [n + 1, b])
            self.received += 1
            self.out_of_order += 1
            return "out_of_order"
        self.duplicated += 1
        return "duplicated"

    def _gap(self, a: int, b: int) -> None:
        self.gaps.append([a, b])
        if len(self.gaps) > MAX_GAPS:
            old = self.gaps.pop(0)
            self.forgotten += old[1] - old[0] + 1

    def settle(self, last: int | None) -> tuple[int, int, list[list[int]]] | None:
        """``(expected, missing, missing ranges)`` given the announced last number;
        None when nothing is known (no frame seen, no first or last announced)."""
        if self.high is None or self.low is None:
            if self.first is None or last is None:
                return None
            expected = max(0, last - self.first + 1)
            return expected, expected, [[self.first, last]] if expected else []
        gaps = [list(g) for g in self.gaps]
        top = self.high
        if last is not None and last > self.high:
            gaps.append([self.high + 1, last])
            top = last
        missing = sum(b - a + 1 for a, b in gaps) + self.forgotten
        return top - self.low + 1, missing, gaps


@dataclass
class _Run:
    start: Start | None
    lanes: dict[str, _Lane] = field(default_factory=dict)


@dataclass
class FrameTotals:
    """What the accounting counted for one stream (exported as metrics)."""

    received: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0


class FrameAccounting:
    """Counts the frames of the runs one listener receives (see the module documentation).

    ``counter``: the source's :class:`FrameCounter`; ``block``: the ``block`` label of
    the metrics. Call :meth:`observe` with every parsed message, in order.
    """

    def __init__(self, counter: FrameCounter, block: str = "block") -> None:
        self.counter = counter
        self.block = block
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self.totals: OrderedDict[str, FrameTotals] = OrderedDict()
        self.last_summary: dict[str, JSON] | None = None
        """The summary of the run that ended last (also when not added to its Stop)."""
        """Per stream, the most recent :data:`MAX_STREAMS`."""
        _COLLECTOR.accountings.add(self)

    @classmethod
    def for_parser(cls, parser: object, block: str = "block") -> FrameAccounting | None:
        """The accounting of ``parser``'s frame counter (its ``frame_counter`` class
        attribute), or None when its format has none."""
        factory = getattr(parser, "frame_counter", None)
        return None if factory is None else cls(factory(), block)

    def observe(self, message: Message) -> Message:
        """Count ``message``; return it, or for a Stop of a run with frames, a copy with
        the summary added to its ``data`` (and a warning logged when frames were missing,
        duplicated or out of order)."""
        if isinstance(message, Start):
            self._open(message.stream, message)
        elif isinstance(message, Event):
            found = self.counter.number(message)
            if found is not None:
                self._frame(message.stream, *found)
        else:
            run = self._runs.pop(message.stream, None)
            if run is not None:
                summary = self._settle(message, run)
                if summary is not None and getattr(self.counter, "summary_in_stop", True):
                    return dataclasses.replace(message, data={**message.data, **summary})
        return message

    def observe_all(self, messages: Iterable[Message]) -> list[Message]:
        """:meth:`observe` each of ``messages``."""
        return [self.observe(m) for m in messages]

    @property
    def open_runs(self) -> int:
        """Runs seen without their Stop yet."""
        return len(self._runs)

    def _open(self, stream: str, start: Start | None) -> _Run:
        run = _Run(start)
        if start is not None:
            for lane in self.counter.lanes(start):
                run.lanes[lane] = _Lane(self.counter.first(start, lane))
        self._runs[stream] = run
        self._runs.move_to_end(stream)
        if len(self._runs) > MAX_RUNS:
            dropped, _ = self._runs.popitem(last=False)
            log.warning("frame accounting: more than %d open runs, forgot %s", MAX_RUNS, dropped)
        return run

    def _frame(self, stream: str, lane_name: str, number: int) -> None:
        run = self._runs.get(stream) or self._open(stream, None)
        lane = run.lanes.get(lane_name)
        if lane is None:
            lane = run.lanes[lane_name] = _Lane(self.counter.first(run.start, lane_name))
        outcome = lane.observe(number)
        totals = self._totals(stream)
        if outcome == "duplicated":
            totals.duplicated += 1
        else:
            totals.received += 1
            if outcome == "out_of_order":
                totals.out_of_order += 1

    def _totals(self, stream: str) -> FrameTotals:
        totals = self.totals.get(stream)
        if totals is None:
            totals = self.totals[stream] = FrameTotals()
            if len(self.totals) > MAX_STREAMS:
                self.totals.popitem(last=False)
        else:
            self.totals.move_to_end(stream)
        return totals

    def _settle(self, stop: Stop, run: _Run) -> dict[str, JSON] | None:
        per_lane: dict[str, dict[str, JSON]] = {}
        ranges: list[list[int]] = []
        sums = {"expected": 0, "received": 0, "missing": 0, "duplicated": 0, "out_of_order": 0}
        for name, lane in run.lanes.items():
            settled = lane.settle(self.counter.last(run.start, stop, name))
            if settled is None:
                continue
            expected, missing, gaps = settled
            counts = {
                "expected": expected,
                "received": lane.received,
                "missing": missing,
                "duplicated": lane.duplicated,
                "out_of_order": lane.out_of_order,
            }
            for key, value in counts.items():
                sums[key] += value
            per_lane[name] = dict(counts)
            ranges.extend(gaps)
        if not per_lane:
            return None
        summary: dict[str, JSON] = {f"frames_{key}": value for key, value in sums.items()}
        first_ranges = _merge(ranges)[:RANGES]
        summary["frames_missing_ranges"] = [list(r) for r in first_ranges]
        if len(per_lane) > 1:
            summary["frames_lanes"] = dict(per_lane)
        self.last_summary = summary
        self._totals(stop.stream).missing += sums["missing"]
        if sums["missing"] or sums["duplicated"] or sums["out_of_order"]:
            log.warning(
                "stream %s: %d of %d frames missing%s, %d duplicated, %d out of order",
                stop.stream,
                sums["missing"],
                sums["expected"],
                f" (first: {_describe(first_ranges)})" if first_ranges else "",
                sums["duplicated"],
                sums["out_of_order"],
            )
        return summary


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted ranges, overlapping or adjacent ones merged (lanes sharing numbers)."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _describe(ranges: list[list[int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class _FramesCollector(Collector):
    def __init__(self) -> None:
        self.accountings: weakref.WeakSet[FrameAccounting] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        accountings = list(self.accountings)
        for attribute, (name, doc) in FRAME_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["block", "stream"])
            sums: dict[tuple[str, str], int] = {}
            for accounting in accountings:
                for stream, totals in list(accounting.totals.items()):
                    key = (accounting.block, stream)
                    sums[key] = sums.get(key, 0) + getattr(totals, attribute)
            for labels, value in sums.items():
                family.add_metric(list(labels), value)
            yield family


_COLLECTOR = _FramesCollector()
REGISTRY.register(_COLLECTOR)
