"""The gateway configuration pages in a real Chromium: drag-to-order and the mapping test."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import ADMIN_PASSWORD, LiveServer, admin_headers
from tests.web.browsing import log_in, screenshot

pytestmark = pytest.mark.browser

V1 = "/api/v1/gateway"
WAIT = 10_000  # ms


async def _api(live: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=live.url, headers=admin_headers()) as http:
        response = await http.request(method, f"{V1}{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


async def _create_resource(page: Page, base: str, name: str) -> None:
    await page.goto(f"{base}/ui/gateway/resources/new")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=url]", f"https://{name}.example.com/hook")
    await page.click("#save-resource")
    await expect(page.get_by_test_id("new-secret")).to_contain_text("whsec_", timeout=WAIT)


async def _order(page: Page) -> list[str | None]:
    items = page.locator("#resource-order > li")
    return [await items.nth(i).get_attribute("data-name") for i in range(await items.count())]


async def test_drag_a_resource_up_the_failover_order(
    browser: Browser,
    server: LiveServer,
) -> None:
    page = await browser.new_page()
    await log_in(page, server.url, ADMIN_PASSWORD)
    await _create_resource(page, server.url, "alpha")
    await _create_resource(page, server.url, "beta")

    await page.goto(f"{server.url}/ui/gateway/endpoints/new")
    await page.fill("input[name=path]", "alerts")
    pool = page.get_by_test_id("resource-pool")
    await pool.get_by_role("button", name="Add alpha to the order").click()
    await pool.get_by_role("button", name="Add beta to the order").click()
    order = page.locator("#resource-order > li")
    await expect(order).to_have_count(2, timeout=WAIT)
    assert await _order(page) == ["alpha", "beta"]

    beta, alpha = order.nth(1), order.nth(0)
    await beta.drag_to(alpha, target_position={"x": 30, "y": 3})
    await expect(order.first).to_have_attribute("data-name", "beta", timeout=WAIT)
    await page.click("#save-endpoint")
    await expect(page).to_have_url(f"{server.url}/ui/gateway/endpoints", timeout=WAIT)
    (endpoint,) = await _api(server, "GET", "/endpoints")
    assert [r["name"] for r in endpoint["resources"]] == ["beta", "alpha"]

    # The keyboard way: the up button, then save again.
    await page.goto(f"{server.url}/ui/gateway/endpoints/{endpoint['id']}/edit")
    await page.get_by_role("button", name="Move alpha up").click()
    await expect(order.first).to_have_attribute("data-name", "alpha", timeout=WAIT)
    await expect(page.locator("[data-order-status]")).to_have_text("alpha is number 1 of 2")
    await screenshot(page, "gateway-endpoint-form", full_page=True)
    await page.click("#save-endpoint")
    await expect(page).to_have_url(f"{server.url}/ui/gateway/endpoints", timeout=WAIT)
    (endpoint,) = await _api(server, "GET", "/endpoints")
    assert [r["name"] for r in endpoint["resources"]] == ["alpha", "beta"]
    await screenshot(page, "gateway-endpoints")


async def test_add_a_mapping_rule_and_test_it_before_saving(
    browser: Browser,
    server: LiveServer,
) -> None:
    resource = await _api(
        server, "POST", "/resources", json={"name": "sms", "url": "https://sms.example.com"}
    )
    endpoint = await _api(
        server, "POST", "/endpoints", json={"path": "alerts", "resource_ids": [resource["id"]]}
    )
    page = await browser.new_page()
    await log_in(page, server.url, ADMIN_PASSWORD)
    await page.goto(f"{server.url}/ui/gateway/endpoints/{endpoint['id']}/rules")

    await page.get_by_test_id(f"add-mapping-{resource['id']}").click()
    row = page.get_by_test_id(f"mapping-{resource['id']}").locator("tbody tr").last
    await row.locator("input[name=map_target_key]").fill("mobile")
    await row.locator("input[name=map_source_value]").fill("user.phone")
    await page.fill("#sample", '{"ref": "r-1", "scope": "s", "user": {"phone": "0712"}}')
    await page.click("#test-mapping")
    target = page.get_by_test_id("mapping-target")
    await expect(target).to_contain_text('"mobile": "0712"', timeout=WAIT)
    await screenshot(page, "gateway-mapping", full_page=True)
    assert (await _api(server, "GET", f"/endpoints/{endpoint['id']}/rules"))["mapping"] == []

    # A bad rule comes back as a message in the panel, not as an error page.
    await row.locator("input[name=map_target_key]").fill("bad..key")
    await page.click("#test-mapping")
    await expect(page.get_by_test_id("mapping-errors")).to_contain_text("bad target_key")

    await row.locator("input[name=map_target_key]").fill("mobile")
    await page.click("#save-rules")
    await expect(page.get_by_test_id("saved")).to_be_visible(timeout=WAIT)
    (rule,) = (await _api(server, "GET", f"/endpoints/{endpoint['id']}/rules"))["mapping"]
    assert (rule["target_key"], rule["source_value"]) == ("mobile", "user.phone")
