"""The consumer group's names (group.py)."""

from __future__ import annotations

import os

from arroyo.brokers.redis.group import consumer_name


def test_consumer_names_are_unique_per_process() -> None:
    first, second = consumer_name(), consumer_name()
    assert first != second
    assert f"-{os.getpid()}-" in first
