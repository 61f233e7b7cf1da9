"""The watch pages in a real Chromium: a user logs in, creates a rule through the form, and
the match of a product written afterwards appears on the dashboard without a reload.

The app runs its embedded worker, whose evaluator follows the catalogue's change feed and
publishes each notification to the stream the dashboard listens to.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from dispatch.config import Settings
from dispatch.db.engine import Database
from tests.support import LiveServer, admin_headers, make_settings
from tests.watch.test_evaluate import product, write
from tests.web.browsing import screenshot

pytestmark = pytest.mark.browser

WAIT = 15_000  # ms
EMAIL, PASSWORD = "alice@example.com", "a long password"


@pytest.fixture
def settings(db_settings: dict[str, Any]) -> Settings:
    """The worker on (it runs the evaluator), polling often; no scheduled catalogue sync."""
    return make_settings(
        **db_settings, worker_enabled=True, worker_poll_interval_seconds=0.1, sync_schedule=""
    )


async def test_a_new_match_shows_up_live_on_the_dashboard(
    server: LiveServer, browser: Browser, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=admin_headers()) as api:
        body = {"email": EMAIL, "password": PASSWORD, "display_name": "Alice"}
        assert (await api.post("/api/v1/users", json=body)).status_code == 201
    page = await browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))

    await page.goto(f"{server.url}/ui/watch")
    await expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/watch&tab=user")
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    await page.click("#user-login")
    await expect(page).to_have_url(f"{server.url}/ui/watch")

    await page.click("#new-rule")
    await page.fill("input[name=name]", "Pandas under 150")
    await page.check("input[name=sources][value=goat]")
    await page.fill("input[name=keywords]", "dunk, panda")
    await page.fill("input[name=max_price]", "150")
    await page.click("#save-rule")
    await expect(page.get_by_test_id("saved")).to_be_visible()
    await expect(page.get_by_test_id("rule-summary")).to_have_text(
        "keywords dunk, panda · price <= 150"
    )

    await page.get_by_test_id("nav-watch").get_by_role("link", name="Dashboard").click()
    live = page.locator("#live")
    await expect(live).to_have_attribute("data-state", "live", timeout=WAIT)
    await expect(page.get_by_test_id("unread-count")).to_have_text("0")
    await page.evaluate("window.notReloaded = true")

    database = Database(settings)
    try:
        await write(database, product("panda", "Nike Dunk Low Panda", price=11_000))
        await write(database, product("jordan", "Air Jordan 1", price=11_000))
    finally:
        await database.dispose()

    items = live.get_by_test_id("notification")
    await expect(items).to_have_count(1, timeout=WAIT)
    await expect(items.first).to_contain_text("New match: Nike Dunk Low Panda, 110.00 USD")
    await expect(items.first).to_contain_text('matched: source goat; keyword "dunk"')
    await expect(page.get_by_test_id("unread-count")).to_have_text("1")
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "watch-dashboard")

    await page.get_by_test_id("read-all").click()
    await expect(page.get_by_test_id("unread-count")).to_have_text("0")
    await expect(items.first).to_have_class("watch-read")
    assert foreign == [], f"the page fetched from outside: {foreign}"

    await page.get_by_test_id("nav-watch").get_by_role("link", name="Rules").click()
    rule = page.get_by_test_id("rules").locator("tr", has_text="Pandas under 150")
    await expect(rule.get_by_test_id("match-count")).to_have_text("1")
    await screenshot(page, "watch-rules")
    await rule.get_by_role("link", name="Pandas under 150").click()
    matches = page.get_by_test_id("matches").locator("tbody tr")
    await expect(matches).to_have_count(1)
    await expect(matches.first).to_contain_text("Nike Dunk Low Panda")
    await screenshot(page, "watch-rule")
    await page.close()  # ends the stream before the server stops
