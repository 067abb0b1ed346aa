"""Prometheus metrics of every Block (label ``block``), and the counts a Block keeps itself.

Everything is read from each Block when Prometheus scrapes (a collector): counts from
its :class:`BlockStats`, gauges from its intake, histograms from its :class:`Buckets`. The
hot path only adds to plain integers, without the lock ``prometheus_client.Histogram``
takes on every observation.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from arroyo.runtime.lag import LagWatch, families

_LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Buckets:
    """A histogram as plain counts per bucket (Prometheus' ``le`` bounds: a value equal to
    a bound counts in that bucket); not thread-safe, observed from the event loop only."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in its bucket."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_all(self, values: Iterable[float]) -> None:
        """Count each of ``values`` in its bucket."""
        counts, bounds, total = self.counts, self.bounds, 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self.sum += total

    def observe_many(self, value: float, count: int) -> None:
        """Count ``value`` ``count`` times (each message of a batch took its share)."""
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count


_HISTOGRAMS = {
    "processing": (
        "arroyo_processing_seconds",
        "Time in the operator per message",
        Histogram.DEFAULT_BUCKETS[:-1],
    ),
    "latency": (
        "arroyo_end_to_end_latency_seconds",
        "From a message's timestamp to its confirmation by a publisher",
        _LATENCY_BOUNDS,
    ),
}


@dataclass
class BlockStats:
    """What a Block has done so far (exported as Prometheus counters)."""

    received: int = 0
    received_bytes: int = 0
    published: int = 0
    acknowledged: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    handed_back: int = 0
    """Messages given back unprocessed to their source (``Intake.hand_back``)."""
    retried_steps: Tally[str] = field(default_factory=Tally)
    started: float = field(default_factory=time.monotonic)
    last_received: float | None = None
    """Wall-clock time (``time.time()``) the listener handed over the last message."""

    @property
    def elapsed(self) -> float:
        """Seconds since the Block started."""
        return time.monotonic() - self.started


class _Intake(Protocol):
    @property
    def depth(self) -> int: ...
    @property
    def held(self) -> int: ...


class _Block(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def stats(self) -> BlockStats: ...
    @property
    def intake(self) -> _Intake: ...
    @property
    def metrics(self) -> BlockMetrics: ...
    @property
    def lag_watch(self) -> LagWatch: ...


_COUNTERS = {
    "received": "Messages handed over by the listener",
    "received_bytes": "Bytes handed over by the listener",
    "published": "Messages confirmed by a publisher",
    "acknowledged": "Source messages acknowledged",
    "dead_lettered": "Messages sent to the dead letter",
    "dropped": "Bad messages dropped (no dead-letter destination, or policy)",
    "handed_back": "Messages given back unprocessed (their partition was revoked)",
}


class _BlocksCollector(Collector):
    def __init__(self) -> None:
        self.blocks: weakref.WeakSet[_Block] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        blocks = list(self.blocks)
        for name, doc in _COUNTERS.items():
            family = CounterMetricFamily(f"arroyo_{name}", doc, labels=["block"])
            for label, value in _sum(blocks, lambda b, n=name: getattr(b.stats, n)).items():
                family.add_metric([label], value)
            yield family
        retried = CounterMetricFamily(
            "arroyo_retried",
            "Retries of parser, operator or publisher calls",
            labels=["block", "step"],
        )
        for block in blocks:
            for step in ("parse", "operator", "publish", "dead-letter"):
                retried.add_metric([block.name, step], block.stats.retried_steps[step])
        yield retried
        for name, doc, read in (
            ("queue_depth", "Messages waiting for the operator", lambda b: b.intake.depth),
            ("in_flight", "Messages received and not yet acknowledged", lambda b: b.intake.held),
        ):
            gauge = GaugeMetricFamily(f"arroyo_{name}", doc, labels=["block"])
            for label, value in _sum(blocks, read).items():
                gauge.add_metric([label], value)
            yield gauge
        for attribute, (name, doc, bounds) in _HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, doc, labels=["block"])
            for label, (counts, total) in _merge(blocks, attribute, len(bounds)).items():
                cumulative, buckets = 0, []
                for bound, count in zip((*bounds, float("inf")), counts, strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                histogram.add_metric([label], buckets, total)
            yield histogram
        last = GaugeMetricFamily(
            "arroyo_last_message_timestamp_seconds",
            "Wall-clock time the block's listener handed over its last message (Unix time)",
            labels=["block"],
        )
        latest: dict[str, float] = {}
        for block in blocks:
            when = block.stats.last_received
            if when is not None:
                latest[block.name] = max(when, latest.get(block.name, when))
        for label, when in latest.items():
            last.add_metric([label], when)
        yield last
        yield from families(block.lag_watch for block in blocks)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _merge(blocks: list[_Block], attribute: str, size: int) -> dict[str, tuple[list[int], float]]:
    """The bucket counts and sums of the blocks' ``attribute`` histograms, per block name."""
    out: dict[str, tuple[list[int], float]] = {}
    for block in blocks:
        buckets: Buckets = getattr(block.metrics, attribute)
        counts, total = out.get(block.name, ([0] * (size + 1), 0.0))
        out[block.name] = (
            [a + b for a, b in zip(counts, buckets.counts, strict=True)],
            total + buckets.sum,
        )
    return out


def _sum(blocks: list[_Block], read: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for block in blocks:
        out[block.name] = out.get(block.name, 0) + read(block)  # type: ignore[operator]
    return out


_COLLECTOR = _BlocksCollector()
REGISTRY.register(_COLLECTOR)


@dataclass(frozen=True)
class BlockMetrics:
    """The per-message histograms of one block."""

    processing: Buckets = field(default_factory=lambda: Buckets(_HISTOGRAMS["processing"][2]))
    latency: Buckets = field(default_factory=lambda: Buckets(_HISTOGRAMS["latency"][2]))


def register(block: _Block) -> None:
    """Export ``block``'s counts and histograms (at zero before traffic) from now on; its
    ``stats``, ``intake`` and ``metrics`` are read at each scrape."""
    _COLLECTOR.blocks.add(block)


FRAME_COUNTERS: dict[str, tuple[str, str]] = {
    "received": (
        "arroyo_frames_received",
        "Frames received, distinct by their source's own frame counter (labels block, stream)",
    ),
    "missing": (
        "arroyo_frames_missing",
        "Frames a run's source counter says never arrived, counted at the run's Stop",
    ),
    "duplicated": (
        "arroyo_frames_duplicated",
        "Frames received again with a frame number already received in the run",
    ),
    "out_of_order": (
        "arroyo_frames_out_of_order",
        "Frames received after a frame with a higher number (they filled a gap)",
    ),
}
"""Frame accounting counters (:mod:`arroyo.runtime.frames`): attribute -> (name, help).
Labels ``block`` and ``stream`` (the run); exported as ``NAME_total``."""
