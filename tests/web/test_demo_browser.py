"""``dispatch demo`` in a real Chromium, as its guide says to use it: the console's buttons, the
admin password and the watch user's login it prints, and what those pages then show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.demo.running import RunningDemo, running_demo
from tests.web.browsing import screenshot

pytestmark = pytest.mark.browser

WAIT = 45_000  # ms: syncs and deliveries run on the demo's own worker


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    with running_demo(tmp_path) as running:
        yield running


@pytest.mark.timeout(240)
async def test_the_guide_in_a_browser(browser: Browser, demo: RunningDemo) -> None:
    info = demo.wait_ready()
    service, console = info["dispatch_url"], info["console_url"]
    page = await browser.new_page()

    # The console: the first order arrived at 'primary'; take it down with its button.
    await page.goto(console)
    await expect(page.locator("h1")).to_have_text("Dispatch demo console")
    await expect(page.get_by_text('"A-1001"').first).to_be_visible(timeout=WAIT)
    await page.get_by_role("button", name="Take primary down").click()
    await expect(page.get_by_role("button", name="Bring primary back up")).to_be_visible()
    await page.get_by_role("button", name="GOAT sale: 15% off").click()
    await expect(page.get_by_text("listings 15% off")).to_be_visible()
    drop = page.locator("span.said", has_text="PRICE_DROP Air Jordan").first
    await expect(drop).to_be_visible(timeout=WAIT)
    await screenshot(page, "demo-console")

    # The watch user logs in with what the guide printed and sees the rule's alerts.
    await page.goto(f"{service}/ui/login?tab=user")
    await page.fill("#email", info["user"]["email"])
    await page.fill("#password", info["user"]["password"])
    await page.click("#user-login")
    await expect(page).to_have_url(f"{service}/ui/watch")
    await expect(page.get_by_text("Air Jordan").first).to_be_visible(timeout=WAIT)
    await page.goto(f"{service}/ui/watch/rules")
    await expect(page.get_by_text("Air Jordans under $250")).to_be_visible()

    # The admin logs in with the printed password; the fleet shows the six files rescued.
    admin = await browser.new_page()
    await admin.goto(f"{service}/ui/login")
    await admin.fill("#secret", info["admin_password"])
    await admin.click("#login")
    await admin.goto(f"{service}/ui/fleet/assets")
    for name in ("sea-ice-extent-1979-2024.csv", "ozone-column-monthly.nc"):
        await expect(admin.get_by_text(name)).to_be_visible()
    # A product's pictures are the console's placeholders, so the page shows them offline.
    await admin.goto(f"{service}/ui/catalog/products?q=jordan")
    picture = admin.locator("img").first
    await expect(picture).to_be_visible(timeout=WAIT)
    assert (await picture.get_attribute("src") or "").startswith(console + "images/")
    width = await picture.evaluate("image => image.naturalWidth")
    assert width > 0  # loaded, not a broken image
