"""Fixtures of the runtime's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from arroyo.brokers import memory


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> Iterator[Callable[[str], str]]:
    """Makes memory topic names unique to the test (``topic("src")``), deleted after it."""
    names: list[str] = []

    def make(tag: str) -> str:
        names.append(unique_name(tag))
        return names[-1]

    yield make
    for name in names:
        memory.delete(name)
