"""``arroyo demo --view``: the demo's run in the viewer, and the picture of it that the
README shows (a real screenshot: set ``ARROYO_VIEW_SCREENSHOT=docs/view.jpg`` to write
it there)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from arroyo.demo import run_demo
from arroyo.testing import free_port

from .conftest import Page


async def test_the_demo_runs_in_the_viewer_and_is_photographed(
    page: Page, tmp_path: Path, capsys: object
) -> None:
    port = free_port()
    done = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(120, (512, 512), tmp_path / "results.avro", ("127.0.0.1", port), done)
    )
    try:
        url = f"http://127.0.0.1:{port}/?plot=total&colormap=inferno"
        for _ in range(200):  # the server starts with the demo
            try:
                await page.page.goto(url)
                break
            except Exception:
                assert not demo.done(), demo
                await asyncio.sleep(0.05)
        await page.wait("view.stop !== null && view.drawn > 0", within=120)
        await page.wait("view.fields.total && view.fields.total.points.length >= 100")
        assert await page.state("start.data.detector") == "sim-512"
        await page.wait("view.status.frames === 120")
        assert await page.state("status.duplicates") == 2  # the Start and Stop came twice
        shot = tmp_path / "view.jpg"
        await page.page.screenshot(path=str(shot), type="jpeg", quality=85)
        assert 20_000 < shot.stat().st_size < 200_000
        wanted = os.environ.get("ARROYO_VIEW_SCREENSHOT")
        if wanted:
            await asyncio.to_thread(Path(wanted).write_bytes, shot.read_bytes())
        assert page.errors == []
    finally:
        done.set()
        assert await demo  # the demo's own check passed with the viewer on
