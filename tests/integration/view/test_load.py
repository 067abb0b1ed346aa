"""A running pipeline shows its outputs on ``view://`` (YAML, ``arroyo run``), and one
viewer serves 50 pages through a 1,000-frame run in bounded memory."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arroyo.brokers import open_publisher
from arroyo.message import Run
from arroyo.testing import Workers, free_port
from arroyo.view.client import ViewClient

CONFIG = """
blocks:
  - name: frames
    listener: zmq+pull://127.0.0.1:{source}?bind=true
    publishers: [view://127.0.0.1:{page}]
"""


def is_stop(header: dict[str, Any]) -> bool:
    return header["type"] == "stop"


def status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "status", timeout=5) as response:
            found: dict[str, Any] = json.loads(response.read())
            return found
    except OSError:
        return None


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


async def start_pipeline(
    workers: Workers, tmp_path: Path, until: Callable[..., Any]
) -> tuple[Any, int, str]:
    source, page = free_port(), free_port()
    config = tmp_path / "view.yaml"
    config.write_text(CONFIG.format(source=source, page=page))
    process = workers.start(config)
    url = f"http://127.0.0.1:{page}/"
    await until(lambda: status(url) is not None or process.poll() is not None, within=60)
    assert process.poll() is None, workers.log(process)
    return process, source, url


async def test_a_pipeline_shows_its_outputs_on_a_view_publisher(
    workers: Workers, tmp_path: Path, until: Callable[..., Any]
) -> None:
    process, source, url = await start_pipeline(workers, tmp_path, until)
    run = Run("from-yaml")
    async with ViewClient(url) as client:
        async with open_publisher(f"zmq+push://127.0.0.1:{source}") as sender:
            await sender.publish(run.start({"sample": "Si"}))
            await sender.publish(run.array_event(np.full((32, 32), 3, dtype="<u2")))
            await sender.publish(run.stop())
        await client.read(until=lambda h: h["type"] == "stop")
        assert [h["type"] for h in client.messages] == ["start", "event", "stop"]
        assert client.images == 1
    assert workers.stop(process) == 0


async def test_fifty_pages_through_a_thousand_frames_in_bounded_memory(
    workers: Workers, tmp_path: Path, until: Callable[..., Any]
) -> None:
    frames, shape, pages = 1000, (256, 256), 50
    process, source, url = await start_pipeline(workers, tmp_path, until)
    clients = [ViewClient(url) for _ in range(pages)]
    samples: list[float] = []
    try:
        for client in clients:
            await client.connect()
        await until(lambda: (status(url) or {}).get("clients") == pages, within=30)
        baseline = memory_mb(process.pid)[0]
        reading = [asyncio.create_task(c.read(until=is_stop)) for c in clients]

        async def sample() -> None:
            while True:
                samples.append(memory_mb(process.pid)[0])
                await asyncio.sleep(0.2)  # a measurement, not a synchronisation

        sampling = asyncio.create_task(sample())
        run = Run("fifty")
        rng = np.random.default_rng(7)
        images = [rng.poisson(50, shape).astype("<u2") for _ in range(8)]
        async with open_publisher(f"zmq+push://127.0.0.1:{source}") as sender:
            await sender.publish(run.start({"pages": pages}))
            for i in range(frames):
                await sender.publish(run.array_event(images[i % 8], {"i": i}))
            await sender.publish(run.stop())
        await asyncio.wait_for(asyncio.gather(*reading), 600)
        sampling.cancel()
        rss, peak = memory_mb(process.pid)
        final = status(url)
        assert process.poll() is None, workers.log(process)  # nothing crashed
        assert final is not None and final["received"] == frames + 2
        shown = final["seq"]  # what the viewer showed (within its max_rate)
        for client in clients:
            seqs = [h["seq"] for h in client.messages]
            assert seqs == list(range(seqs[0], shown + 1))  # in order, every one shown
            assert client.messages[-1]["type"] == "stop"
        images = sum(c.images for c in clients)
        print(
            f"\n50 pages, {frames} frames of {shape[0]}x{shape[1]} uint16 (128 KiB): server RSS "
            f"{baseline:.0f} MiB before, {max(samples):.0f} MiB at most while running, "
            f"{rss:.0f} MiB after (peak {peak:.0f} MiB); {images} frames sent in all; the "
            f"server showed {shown} messages, {final['skipped']} frames without image"
        )
        # What the viewer may hold: 64 MB of frames kept for reconnections, and per page
        # a queue of 4 frames (shared: the same bytes) and its socket's buffer.
        assert max(samples) - baseline < 64 + pages * 4 * 0.128 + 64
    finally:
        for client in clients:
            await client.close()
    assert workers.stop(process) == 0
