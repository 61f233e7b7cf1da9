"""Browser fixtures for the UI tests: Debian's Chromium driven by Playwright, a live server."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, async_playwright

from dispatch.config import Settings
from tests.support import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("DISPATCH_REQUIRE_BROWSER"):
        pytest.fail(f"Chromium not found at {CHROMIUM} and DISPATCH_REQUIRE_BROWSER is set")
    pytest.skip("Chromium is not installed (apt-get install chromium); browser tests skipped")


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as live:
        yield live
