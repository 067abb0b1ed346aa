"""Prometheus metrics of every Block (label ``block``), and the counts a Block keeps itself."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("arroyo_received", "Messages handed over by the listener", ["block"])
RECEIVED_BYTES = Counter("arroyo_received_bytes", "Bytes handed over by the listener", ["block"])
PUBLISHED = Counter("arroyo_published", "Messages confirmed by a publisher", ["block"])
ACKNOWLEDGED = Counter("arroyo_acknowledged", "Source messages acknowledged", ["block"])
RETRIED = Counter("arroyo_retried", "Retries of operator or publisher calls", ["block", "step"])
DEAD_LETTERED = Counter("arroyo_dead_lettered", "Messages sent to the dead letter", ["block"])
DROPPED = Counter(
    "arroyo_dropped", "Bad messages dropped (no dead-letter destination, or policy)", ["block"]
)
QUEUE_DEPTH = Gauge("arroyo_queue_depth", "Messages waiting for the operator", ["block"])
IN_FLIGHT = Gauge("arroyo_in_flight", "Messages received and not yet acknowledged", ["block"])
PROCESSING = Histogram("arroyo_processing_seconds", "Time in the operator per message", ["block"])
LATENCY = Histogram(
    "arroyo_end_to_end_latency_seconds",
    "From a message's timestamp to its confirmation by a publisher",
    ["block"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@dataclass(frozen=True)
class BlockMetrics:
    """The series of one block (looked up once: ``labels()`` is not free per message)."""

    received: Counter
    received_bytes: Counter
    published: Counter
    acknowledged: Counter
    dead_lettered: Counter
    dropped: Counter
    retried: dict[str, Counter]
    queue_depth: Gauge
    in_flight: Gauge
    processing: Histogram
    latency: Histogram


def register(block: str) -> BlockMetrics:
    """The series of ``block``, created at zero so dashboards see it before traffic."""
    found = BlockMetrics(
        received=RECEIVED.labels(block),
        received_bytes=RECEIVED_BYTES.labels(block),
        published=PUBLISHED.labels(block),
        acknowledged=ACKNOWLEDGED.labels(block),
        dead_lettered=DEAD_LETTERED.labels(block),
        dropped=DROPPED.labels(block),
        retried={
            s: RETRIED.labels(block, s) for s in ("parse", "operator", "publish", "dead-letter")
        },
        queue_depth=QUEUE_DEPTH.labels(block),
        in_flight=IN_FLIGHT.labels(block),
        processing=PROCESSING.labels(block),
        latency=LATENCY.labels(block),
    )
    found.queue_depth.set(0)
    found.in_flight.set(0)
    return found


@dataclass
class BlockStats:
    """What a Block has done so far (the same counts as its Prometheus metrics)."""

    received: int = 0
    received_bytes: int = 0
    published: int = 0
    acknowledged: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the Block started."""
        return time.monotonic() - self.started
