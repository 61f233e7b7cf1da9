"""The admin UI in a real Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from dispatch.config import Settings
from tests.support import ADMIN_PASSWORD, LiveServer

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

pytestmark = pytest.mark.browser


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


async def _log_in(page: Page, base: str, secret: str) -> None:
    await page.goto(f"{base}/ui/")
    await expect(page).to_have_url(f"{base}/ui/login?next=/ui/")
    await page.fill("#secret", secret)
    await page.click("#login")


async def test_login_dashboard_and_logout(browser: Browser, server: LiveServer) -> None:
    page = await browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))

    await _log_in(page, server.url, "wrong password")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong password or key")

    await page.fill("#secret", ADMIN_PASSWORD)
    await page.click("#login")
    await expect(page).to_have_url(f"{server.url}/ui/")
    await expect(page.get_by_test_id("readiness")).to_have_text("Ready")
    await expect(page.get_by_test_id("database")).to_have_text(server.database_kind)
    assert await page.evaluate("typeof window.htmx") == "object"  # served locally

    cookies = await page.context.cookies()
    session = next(cookie for cookie in cookies if cookie["name"] == "dispatch_session")
    assert session["httpOnly"]
    assert ADMIN_PASSWORD not in session["value"]

    await page.click("#logout")
    await expect(page).to_have_url(f"{server.url}/ui/login")
    await page.goto(f"{server.url}/ui/keys")
    await expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/keys")
    assert foreign == [], f"the UI fetched from outside: {foreign}"


async def test_create_and_revoke_a_key_in_the_ui(browser: Browser, server: LiveServer) -> None:
    page = await browser.new_page()
    await _log_in(page, server.url, ADMIN_PASSWORD)
    await page.click("text=API keys")
    await page.fill("input[name=name]", "from-the-browser")
    await page.check("input[value=metrics]")
    await page.click("#create-key")
    new_key = await page.get_by_test_id("new-key").inner_text()
    assert new_key.startswith("dsp_")
    row = page.locator("tr", has_text="from-the-browser")
    await expect(row).to_contain_text("metrics, read")
    await row.get_by_role("button", name="Revoke").click()
    await expect(page.locator("tr.revoked", has_text="from-the-browser")).to_have_count(1)
