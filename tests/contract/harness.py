"""What the contract tests share: runs of messages, a Block run while the test feeds its
source, ``arroyo run`` worker configs, and waiting with a deadline."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from arroyo.message import Message, Run
from arroyo.runtime import Block
from arroyo.runtime.metrics import BlockStats
from tests.contract.adapters import Broker

WITHIN = 60.0
"""Seconds a step may take before the test fails naming it (a busy 2-core machine)."""


def interleaved(runs: int, events: int, tag: str = "run") -> list[Message]:
    """``runs`` runs (Start, ``events`` Events, Stop) interleaved message by message."""
    made = [Run(f"{tag}-{i}-{os.urandom(3).hex()}") for i in range(runs)]
    starts = [run.start({"sample": "Si"}) for run in made]
    middle = [run.event({"i": i}, b"frame %d" % i) for i in range(events) for run in made]
    return starts + middle + [run.stop() for run in made]


async def until(condition: Callable[[], Any], what: str, within: float = WITHIN) -> Any:
    """Call ``condition()`` (awaiting what it returns when that is awaitable) until it
    gives something true, and return that; fail after ``within`` seconds, naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def run_block(block: Block, *feeding: Awaitable[Any], within: float = WITHIN) -> BlockStats:
    """Start ``block``, then await ``feeding`` (what puts its input on the source: a
    ZeroMQ source only takes messages once the listener is there), then the end of the
    Block (it must end by itself: ``max_messages``). Stops it when anything fails."""
    task = asyncio.create_task(block.run())
    try:
        for feed in feeding:
            await asyncio.wait_for(feed, within)
        return await asyncio.wait_for(asyncio.shield(task), within)
    finally:
        if not task.done():
            block.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), within)


def pipeline(
    folder: Path,
    broker: Broker,
    source: str,
    group: str,
    operator: str = "passthrough",
    publishers: tuple[str, ...] = (),
    dead_letter: str | None = None,
    **block: Any,
) -> Path:
    """An ``arroyo run`` config of one block, ``workers``: ``source`` (in ``group``, with
    the broker's worker options) -> ``operator`` -> ``publishers`` (names on the broker),
    with ``dead_letter`` and the other settings of the block given."""
    listener = {"url": broker.listener_url(source, group), **broker.worker_options()}
    settings: dict[str, Any] = {
        "name": "workers",
        "listener": listener,
        "operator": operator,
        "publishers": [broker.publisher_url(name) for name in publishers],
        **block,
    }
    if dead_letter is not None:
        settings["dead_letter"] = broker.publisher_url(dead_letter)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"blocks": [settings]}, sort_keys=False))
    return path


def worker_env(folder: Path) -> dict[str, str]:
    """The environment of a test's workers: their delivery journal is the test's own."""
    return {**os.environ, "XDG_STATE_HOME": str(folder / "state")}


SUMMARY = re.compile(
    r"stopped: (?P<received>\d+) received, (?P<published>\d+) published, "
    r"(?P<acknowledged>\d+) acknowledged, (?P<dead_lettered>\d+) dead-lettered"
)


def summary(log: str) -> Mapping[str, int]:
    """The counts of a worker's last ``stopped:`` line (fails when there is none)."""
    found = list(SUMMARY.finditer(log))
    assert found, f"no summary line in the worker's log:\n{log[-3000:]}"
    return {key: int(value) for key, value in found[-1].groupdict().items()}


async def run_python(
    *arguments: str, folder: Path, config: Mapping[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGUMENTS`` (with ``config`` written to ``folder/pipeline.yaml`` and
    its path added last, when given) to its end, in a thread; what it did."""
    command = [sys.executable, *arguments]
    if config is not None:
        path = folder / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        command.append(str(path))
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120
    )


async def run_arroyo(
    *arguments: str, folder: Path, config: Mapping[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """``arroyo ARGUMENTS [folder/pipeline.yaml]`` as :func:`run_python` runs it."""
    return await run_python("-m", "arroyo", *arguments, folder=folder, config=config)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command wrote on stderr (fails showing all it wrote when it
    wrote more, or nothing)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line on stderr:\n{done.stderr[-3000:]}"
    return lines[0]


def one_block(listener: Mapping[str, Any]) -> dict[str, Any]:
    """A config of one block, ``intake``: ``listener`` -> ``memory://out``."""
    block = {"name": "intake", "listener": dict(listener), "publishers": ["memory://out"]}
    return {"blocks": [block]}
