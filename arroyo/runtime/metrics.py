"""Prometheus metrics of every Block (label ``block``), and the counts a Block keeps itself.

Counts and gauges are read from each Block's :class:`BlockStats` and intake when
Prometheus scrapes (a collector), so the hot path only adds to plain integers; the two
histograms are observed per message.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PROCESSING = Histogram("arroyo_processing_seconds", "Time in the operator per message", ["block"])
LATENCY = Histogram(
    "arroyo_end_to_end_latency_seconds",
    "From a message's timestamp to its confirmation by a publisher",
    ["block"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


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
    retried_steps: Tally[str] = field(default_factory=Tally)
    started: float = field(default_factory=time.monotonic)

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


_COUNTERS = {
    "received": "Messages handed over by the listener",
    "received_bytes": "Bytes handed over by the listener",
    "published": "Messages confirmed by a publisher",
    "acknowledged": "Source messages acknowledged",
    "dead_lettered": "Messages sent to the dead letter",
    "dropped": "Bad messages dropped (no dead-letter destination, or policy)",
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


def _sum(blocks: list[_Block], read: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for block in blocks:
        out[block.name] = out.get(block.name, 0) + read(block)  # type: ignore[operator]
    return out


_COLLECTOR = _BlocksCollector()
REGISTRY.register(_COLLECTOR)


@dataclass(frozen=True)
class BlockMetrics:
    """The per-message series of one block (``labels()`` is looked up once)."""

    processing: Histogram
    latency: Histogram


def register(block: _Block) -> BlockMetrics:
    """Export ``block``'s counts (at zero before traffic); return its histograms."""
    _COLLECTOR.blocks.add(block)
    return BlockMetrics(PROCESSING.labels(block.name), LATENCY.labels(block.name))
