"""What browser tests share beyond fixtures."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Page, ViewportSize, expect

# `make screenshots` sets this to docs/images; unset, the tests write nothing.
SCREENSHOTS_VARIABLE = "DISPATCH_SCREENSHOTS"
SCREENSHOT_VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


async def log_in(page: Page, base: str, secret: str) -> None:
    await page.goto(f"{base}/ui/")
    await expect(page).to_have_url(f"{base}/ui/login?next=/ui/")
    await page.fill("#secret", secret)
    await page.click("#login")


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Save the page as `<$DISPATCH_SCREENSHOTS>/<name>.png`, one of the docs' pictures.

    The picture is the top of the page in a fixed viewport, or the whole page with `full_page`.
    """
    folder = os.environ.get(SCREENSHOTS_VARIABLE)
    if not folder:
        return
    await page.set_viewport_size(SCREENSHOT_VIEWPORT)  # the same size from run to run
    await page.evaluate("window.scrollTo(0, 0)")
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
