"""Fixtures of the documentation tests: the reader's clone, made once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docs.reader import Clone, make_clone, stop_all


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    """A copy of this working tree in which the README's set-up command ran."""
    reader = make_clone(tmp_path_factory.mktemp("reader") / "arroyo")
    try:
        yield reader
    finally:
        stop_all(reader)
