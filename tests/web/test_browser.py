"""The admin UI in a real Chromium, driven by Playwright."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.support import ADMIN_PASSWORD, LiveServer
from tests.web.browsing import log_in, screenshot

pytestmark = pytest.mark.browser


async def test_login_dashboard_and_logout(browser: Browser, server: LiveServer) -> None:
    page = await browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))

    await log_in(page, server.url, "wrong password")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong password or key")

    await page.fill("#secret", ADMIN_PASSWORD)
    await page.click("#login")
    await expect(page).to_have_url(f"{server.url}/ui/")
    await expect(page.get_by_test_id("readiness")).to_have_text("Ready")
    await expect(page.get_by_test_id("database")).to_have_text(server.database_kind)
    assert await page.evaluate("typeof window.htmx") == "object"  # served locally
    await screenshot(page, "dashboard")

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
    await log_in(page, server.url, ADMIN_PASSWORD)
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
