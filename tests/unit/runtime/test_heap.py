"""The garbage collector's settings for a process of Blocks (arroyo.runtime.heap)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator

import pytest

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.errors import ConfigError
from arroyo.runtime import Block, heap
from arroyo.testing import Recorder, make_run


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process as if no Block had started yet; the collector as it was afterwards."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(700, *threshold[1:])
    monkeypatch.setattr(heap, "_tuned", False)
    monkeypatch.delenv(heap.ENV, raising=False)
    yield
    gc.set_threshold(*threshold)
    if frozen:
        gc.freeze()


def test_the_first_call_freezes_the_heap_and_raises_the_young_threshold(fresh: None) -> None:
    older = gc.get_threshold()[1:]
    assert heap.tune() is True
    assert gc.get_freeze_count() > 1000  # the modules, at least
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *older)
    gc.set_threshold(700, *older)
    assert heap.tune() is False  # once per process
    assert gc.get_threshold()[0] == 700


def test_a_higher_threshold_of_the_process_is_kept(fresh: None) -> None:
    gc.set_threshold(50_000)
    assert heap.tune() is True
    assert gc.get_threshold()[0] == 50_000


def test_arroyo_gc_python_leaves_the_collector_as_it_is(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(heap.ENV, "python")
    assert heap.tune() is False
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == 700


def test_another_value_of_arroyo_gc_is_a_config_error_naming_it(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(heap.ENV, "off")
    with pytest.raises(ConfigError, match=r"^environment variable ARROYO_GC='off': expected"):
        heap.tune()
    assert gc.get_freeze_count() == 0


async def test_the_first_block_of_a_process_tunes_it(
    fresh: None, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("src")
    try:
        for message in make_run(3):
            memory.topic(name).put(message)
        out = Recorder()
        block = Block(MemoryListener(name), publishers=[out], max_messages=5)
        await asyncio.wait_for(block.run(), 10)
        assert len(out.published) == 5
        assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 1000
    finally:
        memory.delete(name)
