"""The page in a real headless Chromium: what a person sees of a run."""

from __future__ import annotations

import numpy as np

from arroyo.message import Run
from arroyo.testing import free_port
from arroyo.view.publisher import ViewPublisher

from .conftest import Page


def pattern() -> np.ndarray:
    """40 x 30 squares of 5 x 5 pixels, 0 and 1000, and one pixel of 500 at (12, 17)."""
    rows, cols = np.mgrid[0:30, 0:40]
    frame = np.where((rows // 5 + cols // 5) % 2 == 0, 0, 1000).astype("<u2")
    frame[12, 17] = 500
    return frame


async def pixel(page: Page, row: int, col: int) -> list[int]:
    """The colour the page drew for a frame's pixel (the canvas holds one per pixel)."""
    return list(
        await page.page.evaluate(
            f"Array.from(document.getElementById('frame').getContext('2d')"
            f".getImageData({col}, {row}, 1, 1).data)"
        )
    )


async def test_the_page_shows_the_start_a_frame_the_counters_and_the_stop(page: Page) -> None:
    publisher = ViewPublisher("127.0.0.1", free_port())
    await publisher.start()
    try:
        assert publisher.server is not None
        await page.page.goto(publisher.server.url + "?contrast=minmax&scale=linear&colormap=gray")
        await page.wait("view.connected")
        run = Run("scan-17")
        await publisher.send(run.start({"sample": "LaB6", "energy_keV": 12.4, "frames": 3}))
        await page.wait("view.start !== null")
        start = await page.text("#start-data")
        assert "sample" in start and "LaB6" in start and "12.4" in start
        assert "scan-17" in await page.text("#run-title")

        await publisher.send(run.array_event(pattern(), {"frame": 0, "total": 1.5}))
        await page.wait("view.drawn >= 1")
        assert await page.state("image.width") == 40 and await page.state("image.height") == 30
        assert await pixel(page, 0, 0) == [0, 0, 0, 255]
        assert await pixel(page, 0, 5) == [255, 255, 255, 255]
        assert await pixel(page, 7, 7) == [0, 0, 0, 255]
        assert await pixel(page, 12, 17) == [128, 128, 128, 255]  # 500 of 0..1000
        assert await pixel(page, 29, 39) == [0, 0, 0, 255]

        box = await page.page.locator("#frame").bounding_box()
        assert box is not None
        await page.page.mouse.move(
            box["x"] + (17.5 / 40) * box["width"], box["y"] + (12.5 / 30) * box["height"]
        )
        assert await page.text("#pixel") == "row 12, col 17: 500"

        for i in (1, 2):
            await publisher.send(run.array_event(pattern(), {"frame": i, "total": 1.5 + i}))
        # The counters are the server's (counted as offered), the events come in the hub's
        # next batch: wait for both.
        await page.wait("document.getElementById('c-frames').textContent === '3'")
        await page.wait("view.lastSeq >= 4")  # Start and three frames
        assert await page.text("#c-received") == "4"
        await page.page.check("input[data-field=total]")
        assert await page.state("fields.total.points.length") == 3

        await publisher.send(
            run.stop(
                {
                    "exit_status": "success",
                    "frames_expected": 3,
                    "frames_received": 3,
                    "frames_missing": 0,
                    "frames_missing_ranges": [],
                }
            )
        )
        await page.wait("view.stop !== null")
        stop = await page.text("#stop-data")
        assert "frames_missing" in stop and "exit_status" in stop and "success" in stop
        first = await page.page.inner_text("#stop-data tr:first-child th")
        assert first.startswith("frames_")  # the frame accounting first
        assert "(ended)" in await page.text("#run-title")
        assert page.errors == []
    finally:
        await publisher.close()


async def test_the_scale_and_colormap_change_the_picture(page: Page) -> None:
    publisher = ViewPublisher("127.0.0.1", free_port())
    await publisher.start()
    try:
        assert publisher.server is not None
        await page.page.goto(publisher.server.url + "?contrast=minmax")
        run = Run("log")
        await page.wait("view.connected")
        await publisher.send(run.array_event(pattern()))
        await page.wait("view.drawn >= 1")
        linear = await pixel(page, 12, 17)
        await page.page.select_option("#scale", "log")
        await page.wait("view.drawn >= 2")
        logged = await pixel(page, 12, 17)
        assert logged[0] > linear[0]  # log(501) / log(1001) of the range: brighter
        await page.page.select_option("#colormap", "viridis")
        await page.wait("view.drawn >= 3")
        assert await pixel(page, 0, 0) == [0x44, 0x01, 0x54, 255]  # viridis' first colour
        assert page.errors == []
    finally:
        await publisher.close()


async def test_the_page_reconnects_by_itself_when_the_server_restarts(page: Page) -> None:
    port = free_port()
    publisher = ViewPublisher("127.0.0.1", port)
    await publisher.start()
    assert publisher.server is not None
    url = publisher.server.url
    await page.page.goto(url)
    await publisher.send(Run("before").start({"n": 1}))
    await page.wait("view.start && view.start.stream === 'before'")
    await publisher.close()  # the server stops
    await page.wait("!view.connected")
    assert "disconnected" in await page.text("#connection")
    again = ViewPublisher("127.0.0.1", port)
    await again.start()
    try:
        await again.send(Run("after").start({"n": 2}))
        await page.wait("view.connections === 2 && view.start.stream === 'after'")
        assert await page.text("#connection") == "live"
        assert "the server restarted" in await page.text("#note")
        # Chromium logs each failed WebSocket connection while the server was down.
        others = [e for e in page.errors if "WebSocket connection to" not in e]
        assert others == []
    finally:
        await again.close()
