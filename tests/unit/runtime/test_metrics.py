"""Prometheus metrics of a Block, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block
from arroyo.runtime.metrics import Buckets
from arroyo.testing import Recorder, make_run


def test_a_value_on_a_bound_counts_in_that_bucket_and_a_larger_one_in_inf() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    assert buckets.counts == [2, 2, 1]
    assert buckets.sum == 8.65


async def test_a_scrape_reports_the_counts_and_histograms_of_a_block(
    unique_name: Callable[[str], str],
) -> None:
    source, name = unique_name("src"), unique_name("block")
    for message in make_run(3):  # Start, 3 Events, Stop
        memory.topic(source).put(message)
    try:
        block = Block(MemoryListener(source, stop_at_end=True), publishers=[Recorder()], name=name)
        await block.run()
    finally:
        memory.delete(source)

    def sample(metric: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(metric, {"block": name, **labels})

    assert sample("arroyo_received_total") == 5
    assert sample("arroyo_acknowledged_total") == 5
    assert sample("arroyo_processing_seconds_count") == 5
    assert sample("arroyo_processing_seconds_bucket", le="+Inf") == 5
    assert sample("arroyo_processing_seconds_bucket", le="10.0") == 5
    assert sample("arroyo_end_to_end_latency_seconds_count") == 5
    assert (sample("arroyo_end_to_end_latency_seconds_sum") or 0) > 0
    bounds = [
        sample("arroyo_end_to_end_latency_seconds_bucket", le=le)
        for le in ("0.001", "0.01", "0.1", "1.0", "60.0", "+Inf")
    ]
    assert bounds == sorted(bounds)  # type: ignore[type-var]
