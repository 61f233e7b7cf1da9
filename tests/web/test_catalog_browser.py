"""The catalogue pages in a real Chromium: search, a product's chart and offers, Sync now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect

from dispatch.catalog import store
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from tests.support import ADMIN_PASSWORD, LiveServer
from tests.web.browsing import log_in, screenshot

pytestmark = pytest.mark.browser

WAIT = 10_000  # ms


def _boots(provider: str, external_id: str, first_price: int) -> ProductRecord:
    return ProductRecord(
        provider=provider,
        external_id=external_id,
        title=f"Trail Boot {external_id}",
        brand="Summit",
        style_code="TB-20451",
        offers=(
            OfferRecord(f"{external_id}-41", first_price, "EUR", label="EU 41"),
            OfferRecord(f"{external_id}-42", 14000, "EUR", label="EU 42"),
            OfferRecord(f"{external_id}-43", 15000, "EUR", label="EU 43", available=False),
        ),
    )


async def _seed(settings: Settings) -> None:
    """Boots at two shops; at one of them size 41 changed price twice."""
    database = Database(settings)
    try:
        for days_ago, price in ((6, 12000), (3, 11000), (0, 12500)):
            async with database.session() as session:
                moment = utcnow() - timedelta(days=days_ago)
                await store.upsert_products(session, [_boots("complexshop", "b1", price)], moment)
        async with database.session() as session:
            await store.upsert_products(session, [_boots("goat", "g1", 13000)], utcnow())
    finally:
        await database.dispose()


async def test_search_open_a_product_and_read_its_price_chart(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    await _seed(settings)
    page = await browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))
    await log_in(page, server.url, ADMIN_PASSWORD)

    await page.get_by_test_id("nav-catalogue").get_by_role("link", name="Products").click()
    rows = page.get_by_test_id("products").locator("tbody tr[data-product]")
    await expect(rows).to_have_count(2, timeout=WAIT)
    await page.fill("input[name=query]", "trail boot")
    await page.check("input[name=providers][value=complexshop]")
    await page.click("#search")
    await expect(rows).to_have_count(1, timeout=WAIT)
    await expect(rows.first).to_contain_text("125.00 EUR")  # the cheapest offer, as it is now
    await screenshot(page, "catalog-search")

    await rows.first.get_by_role("link", name="Trail Boot b1").click()
    await expect(page.get_by_test_id("product-title")).to_have_text("Trail Boot b1")
    offers = page.get_by_test_id("offers").locator("tbody tr[data-offer]")
    await expect(offers).to_have_count(3)
    await expect(offers.first).to_contain_text("EU 41")
    await expect(offers.first).to_contain_text("125.00 EUR")

    chart = page.get_by_test_id("price-chart")
    lines = chart.locator("svg polyline")
    await expect(lines).to_have_count(3)  # one line per offer
    drawn = await lines.first.bounding_box()
    assert drawn is not None
    assert drawn["width"] > 100  # it runs across the chart: really drawn, not empty
    size_41 = chart.locator('polyline[data-offer="b1-41"]')
    assert len((await size_41.get_attribute("points") or "").split()) == 6  # two steps
    await expect(chart.get_by_test_id("price-min")).to_have_text("110.00 EUR")
    await expect(chart.get_by_test_id("price-max")).to_have_text("150.00 EUR")
    await expect(page.get_by_test_id("same-item")).to_contain_text("goat")
    await screenshot(page, "catalog-product", full_page=True)
    assert foreign == [], f"the page fetched from outside: {foreign}"


async def test_sync_now_from_the_providers_page(browser: Browser, server: LiveServer) -> None:
    page = await browser.new_page()
    await log_in(page, server.url, ADMIN_PASSWORD)
    await page.get_by_test_id("nav-catalogue").get_by_role("link", name="Providers").click()
    await expect(page).to_have_url(f"{server.url}/ui/catalog/providers")

    await page.get_by_test_id("sync-discogs").click()
    notice = page.get_by_test_id("sync-notice")
    await expect(notice).to_contain_text("discogs cannot run: discogs is disabled", timeout=WAIT)

    await page.get_by_test_id("sync-universalstore").click()
    await expect(notice).to_contain_text("Queued a run of universalstore", timeout=WAIT)
    await screenshot(page, "catalog-providers")
    job_link = page.get_by_test_id("sync-job")
    job_id = (await job_link.inner_text()).removeprefix("job ")
    await job_link.click()
    await expect(page).to_have_url(f"{server.url}/ui/jobs/{job_id}")
    await expect(page.locator("dl")).to_contain_text("catalog.scrape")
    await screenshot(page, "job")
