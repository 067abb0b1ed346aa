"""The simulator's faults on purpose: drawn from a seed, reported exactly (no socket)."""

from __future__ import annotations

import random

import pytest

from arroyo import ConfigError
from arroyo.simulate import Faults


def test_the_order_sent_has_exactly_the_reported_faults() -> None:
    faults = Faults(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=1)
    order, done = faults.order(1000, random.Random(faults.seed))
    assert done.dropped and done.duplicated and done.reordered
    assert sorted(set(order)) == sorted(set(range(1000)) - set(done.dropped))
    assert len(order) == 1000 - len(done.dropped) + len(done.duplicated)
    repeated = [order[i] for i in range(1, len(order)) if order[i] == order[i - 1]]
    assert repeated == done.duplicated  # a duplicate follows its original at once
    distinct = [n for i, n in enumerate(order) if i == 0 or n != order[i - 1]]
    swapped = [
        (distinct[i + 1], distinct[i])
        for i in range(len(distinct) - 1)
        if distinct[i] > distinct[i + 1]
    ]
    assert swapped == done.reordered  # (a, b): b went before a


def test_the_same_seed_gives_the_same_faults() -> None:
    faults = Faults(drop_rate=0.2, reorder_rate=0.2, seed=42)
    assert faults.order(100, random.Random(42)) == faults.order(100, random.Random(42))


def test_no_faults_sends_every_frame_in_order() -> None:
    order, done = Faults().order(50, random.Random())
    assert order == list(range(50)) and not (done.dropped or done.duplicated or done.reordered)
    assert not Faults().any


@pytest.mark.parametrize("name", ["drop_rate", "duplicate_rate", "reorder_rate"])
def test_a_rate_out_of_range_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name.replace('_', '-')} must be between 0 and 1"):
        Faults(**{name: 1.5})


async def test_compression_is_for_stream2_only() -> None:
    from arroyo.simulate import simulate

    with pytest.raises(
        ConfigError, match="compression applies to stream2 images, not to json-frame"
    ):
        await simulate("zmq+push://127.0.0.1:1?bind=true", frames=1, compression="lz4")
    with pytest.raises(ConfigError, match="unknown compression 'zip'; known: bslz4, lz4, none"):
        await simulate(
            "zmq+push://127.0.0.1:1?bind=true", frames=1, format="stream2", compression="zip"
        )
    with pytest.raises(ConfigError, match="stream2 images are two-dimensional, got shape \\[4\\]"):
        await simulate("zmq+push://127.0.0.1:1?bind=true", frames=1, format="stream2", shape=(4,))
