"""A real headless Chromium for the tests of the page: Debian's ``chromium`` driven by
Playwright for Python (``executable_path``: Playwright's own browser downloads are not
used). When it is missing, a test that needs it fails under ``CI=true`` (test.sh
installs it) and is skipped elsewhere, saying what to install."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

HOW = (
    "install Debian's Chromium (apt-get install -y chromium, as test.sh does) and "
    "Playwright for Python (the dev extra), or set ARROYO_CHROMIUM to a Chromium binary"
)


def chromium() -> str | None:
    """The Chromium binary: ``$ARROYO_CHROMIUM``, else ``chromium`` on the PATH."""
    return (
        os.environ.get("ARROYO_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def _missing(what: str) -> None:
    message = f"{what}: {HOW}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class Page:
    """A browser tab with the console errors and page errors it logged."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    async def state(self, expression: str) -> Any:
        """``window.arroyoView.<expression>`` in the page."""
        return await self.page.evaluate(f"window.arroyoView.{expression}")

    async def wait(self, condition: str, within: float = 30.0) -> None:
        """Wait until the JavaScript ``condition`` is true (``view`` is the page's state)."""
        await self.page.wait_for_function(
            f"(() => {{ const view = window.arroyoView; return view && ({condition}); }})()",
            timeout=within * 1000,
        )

    async def text(self, selector: str) -> str:
        return str(await self.page.inner_text(selector))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (failing under CI=true when it cannot be had)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    path = chromium()
    if path is None:
        _missing("Chromium is not installed")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Page]:
    """A new tab, 1280 x 860."""
    tab = await browser.new_page(viewport={"width": 1280, "height": 860})
    try:
        yield Page(tab)
    finally:
        await tab.close()
