"""``arroyo demo``: the main job, on an in-process broker.

A simulated area detector emits a run: a Start, frames (numpy arrays with a moving
peak on Poisson background), a Stop. An operator integrates each frame (total counts,
peak position) and publishes a small result Event. Results are archived to an Avro
container file, which is read back and checked at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arroyo._optional import require
from arroyo.brokers import memory
from arroyo.brokers.file import FilePublisher
from arroyo.brokers.memory import MemoryListener
from arroyo.message import Event, Message, Run, Start, Stop
from arroyo.operators import Integrate
from arroyo.runtime import Block


def _frames(np: Any, count: int, shape: tuple[int, int]) -> list[Any]:
    """A few distinct frames (a peak moving on a noisy background), reused round-robin."""
    rng = np.random.default_rng(42)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = []
    for i in range(min(count, 16)):
        r, c = shape[0] * (0.3 + 0.4 * i / 16), shape[1] * (0.5 + 0.2 * np.sin(i))
        peak = 2000 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * (shape[0] / 40) ** 2))
        out.append((rng.poisson(5, shape) + peak).astype("<u2"))
    return out


async def _detector(
    topic: memory.MemoryTopic,
    count: int,
    shape: tuple[int, int],
    interval: Callable[[], float] = lambda: 0.0,
) -> Run:
    np = require("numpy", "numpy", "The demo's simulated detector")
    frames = _frames(np, count, shape)
    run = Run("demo-scan-1")
    topic.put(run.start({"detector": "sim-512", "frames": count, "shape": list(shape)}))
    group = topic.groups.setdefault("default", memory._Group())
    due = time.monotonic()
    for i in range(count):
        topic.put(run.array_event(frames[i % len(frames)], {"frame": i, "exposure_s": 0.001}))
        await topic.wait_backlog(group, 32)  # a detector's send buffer is finite
        due += interval()  # watched: at a rate a person can follow
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
    topic.put(run.stop({"exit_status": "success", "frames": count}))
    return run


def _read_back(path: Path) -> list[Message]:
    """The messages archived in an Avro file."""
    from fastavro import reader

    from arroyo.codec_records import from_record

    with open(path, "rb") as file:
        return [from_record(r, True) for r in reader(file, return_record_name=True)]


def _progress(block: Block, total: int, frame_bytes: int, final: bool = False) -> str:
    stats = block.stats
    rate = stats.acknowledged / stats.elapsed if stats.elapsed else 0.0
    mbps = stats.received_bytes / stats.elapsed / 1e6 if stats.elapsed else 0.0
    return (
        f"  {stats.acknowledged:>6}/{total} messages  {rate:>8.0f} msg/s  {mbps:>7.1f} MB/s  "
        f"queue {block.intake.depth:>3}/{block.intake.size}"
        + ("" if final else f"  in flight {block.intake.held:>3}")
    )


async def run_demo(
    frames: int,
    shape: tuple[int, int],
    output: Path | None,
    view: tuple[str, int] | None = None,
    until: asyncio.Event | None = None,
) -> bool:
    """Run the demo; print progress and a summary; return whether the check passed.
    ``view``: show it live in the browser on ``(host, port)`` (:mod:`arroyo.view.demo`),
    until ``until`` is set (None: Ctrl-C)."""
    require("numpy", "numpy", "arroyo demo")
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="arroyo-demo-")) / "results.avro"
    name = f"demo-{time.monotonic_ns()}"
    topic = memory.topic(name)
    topic.retain = False
    frame_bytes = shape[0] * shape[1] * 2
    print(
        f"arroyo demo: a simulated detector sends {frames} frames of {shape[0]}x{shape[1]} uint16"
    )
    print(f"  ({frames * frame_bytes / 1e6:.0f} MB) through an in-process broker;")
    print("  an operator integrates each frame; results go to an Avro file.")
    viewer = None
    if view is not None:
        from arroyo.view.demo import DemoView, open_page

        viewer = DemoView(name, *view)
        await viewer.start(until)
        print(f"  viewer started: watch it live on {viewer.url}", flush=True)
        if sys.stdout.isatty():
            open_page(viewer.url)
    block = Block(
        MemoryListener(name, stop_at_end=False),
        Integrate(),
        [FilePublisher(output), *([viewer.publisher] if viewer else [])],
        name="demo",
        queue_size=64,
        concurrency=2,
    )
    total = frames + 2
    running = asyncio.create_task(block.run())
    pace = (lambda: viewer.interval) if viewer else (lambda: 0.0)
    detector = asyncio.create_task(_detector(topic, frames, shape, pace))
    tty = sys.stdout.isatty()
    last = 0.0
    while block.stats.acknowledged < total and not running.done():
        await asyncio.sleep(0.1)
        if tty:
            print("\r" + _progress(block, total, frame_bytes), end="", flush=True)
        elif time.monotonic() - last >= 1.0:
            print(_progress(block, total, frame_bytes), flush=True)
            last = time.monotonic()
    block.stop()
    await detector
    stats = await running
    print(("\r" if tty else "") + _progress(block, total, frame_bytes, final=True) + " " * 16)
    if viewer is not None:
        await viewer.stop()
    memory.delete(name)

    results = _read_back(output)
    kinds = [m.kind for m in results]
    ok = (
        len(results) == total
        and isinstance(results[0], Start)
        and isinstance(results[-1], Stop)
        and all(isinstance(m, Event) for m in results[1:-1])
        and [m.seq for m in results] == list(range(total))
    )
    rate, mbps = stats.received / stats.elapsed, stats.received_bytes / stats.elapsed / 1e6
    lines = [
        "",
        f"done in {stats.elapsed:.2f} s:",
        f"  received      {stats.received} messages ({stats.received_bytes / 1e6:.1f} MB)",
        f"  published     {stats.published}  (acknowledged {stats.acknowledged})",
        f"  dead letters  {stats.dead_lettered}   retries {stats.retried}",
        f"  throughput    {rate:.0f} frames/s, {mbps:.1f} MB/s",
        f"  results       {output}",
        f"                {kinds.count('start')} Start, {kinds.count('event')} Events, "
        f"{kinds.count('stop')} Stop",
    ]
    middle = results[len(results) // 2]
    if isinstance(middle, Event):
        m = middle.metadata
        lines.append(
            f"  e.g. frame {m['frame']!r}: total {m['total']!r} counts, peak {m['max']!r}, "
            f"centre of mass ({m['centroid_row']!s:.6}, {m['centroid_col']!s:.6})"
        )
    verdict = "OK: every frame, in order, Start first, Stop last" if ok else "FAILED"
    lines.append(f"  check         {verdict}")
    print("\n".join(lines))
    return ok
