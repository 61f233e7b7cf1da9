"""What browser tests share beyond fixtures."""

from __future__ import annotations

from playwright.async_api import Page, expect


async def log_in(page: Page, base: str, secret: str) -> None:
    await page.goto(f"{base}/ui/")
    await expect(page).to_have_url(f"{base}/ui/login?next=/ui/")
    await page.fill("#secret", secret)
    await page.click("#login")
