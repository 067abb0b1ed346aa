"""``arroyo demo --view``: the demo's run in the viewer, and the picture of it that the
README shows (a real screenshot: set ``ARROYO_VIEW_SCREENSHOT=docs/view.jpg`` to write
it there)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from arroyo.demo import run_demo
from arroyo.testing import free_port
from arroyo.view.client import ViewClient

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
        # frames counts what was offered, duplicates what the hub has shown since: the
        # second Stop may still be on its way when the 120th frame is counted.
        await page.wait("view.status.frames === 120 && view.status.duplicates >= 2")
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


async def test_arroyo_demo_view_serves_the_run_until_ctrl_c(until: Any) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "arroyo", "demo", "--view", "--frames", "10"],
        *["--shape", "64x64", "--view-port", str(port)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        wanted = f"the run stays on http://127.0.0.1:{port}/?plot=total until Ctrl-C"
        while wanted not in (await asyncio.wait_for(process.stderr.readline(), 60)).decode():
            pass
        async with ViewClient(f"http://127.0.0.1:{port}/") as client:
            await client.read(until=lambda h: h["type"] == "status")
            assert client.status is not None and client.status["frames"] == 10
        process.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        assert "check         OK" in out.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_ctrl_c_during_a_viewed_demo_finishes_the_run_at_once() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "arroyo", "demo", "--view", "--frames", "1000"],
        *["--shape", "64x64", "--view-port", str(port)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        while b"viewer started:" not in await asyncio.wait_for(process.stdout.readline(), 60):
            pass
        process.send_signal(signal.SIGINT)  # 1000 frames at 25 a second would take 40 s
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert "1000 Events" in out.decode() and "check         OK" in out.decode()
        assert "Traceback" not in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
