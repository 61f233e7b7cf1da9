"""The fleet pages in a real Chromium: the overview's charts, the at-risk filter, one asset."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ADMIN_PASSWORD, LiveServer, admin_headers
from tests.web.browsing import log_in, screenshot

pytestmark = pytest.mark.browser

WAIT = 10_000  # ms
R = "/api/v1/rescue"


async def _rescue_one_of_two(base_url: str) -> None:
    """Two assets wanting one copy each; a node rescues the first."""
    async with httpx.AsyncClient(base_url=base_url, headers=admin_headers()) as http:
        assets = [
            {
                "ds_id": "d",
                "res_id": str(n),
                "name": f"Station {n}",
                "priority": n,
                "url": f"https://data.example.org/{n}.csv",
                "size_mb": 5,
                "replication_target": 1,
            }
            for n in (1, 2)
        ]
        assert (await http.post(f"{R}/assets", json=assets)).status_code == 201
        node = (
            await http.post(f"{R}/nodes", json={"name": "attic-nas", "free_space_gb": 1})
        ).json()
        token = {"X-Node-Token": node["token"]}
        given = await http.post(
            f"{R}/dispatch", json={"free_space_gb": 1, "limit": 1}, headers=token
        )
        [item] = given.json()["asset"]
        report = {
            "rescuer_id": node["node_id"],
            "assets": [
                {
                    "asset_id": item["asset_id"],
                    "job_id": item["job_id"],
                    "lease_token": item["lease_token"],
                    "url": item["url"],
                    "status": "SUCCESS",
                    "magnet_link": "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a",
                    "bytes": 5 * 1_048_576,
                }
            ],
        }
        answer = await http.post(f"{R}/assets-downloaded", json=report, headers=token)
        assert answer.json()["results"][0]["outcome"] == "recorded"


async def test_overview_charts_filter_and_an_asset(browser: Browser, server: LiveServer) -> None:
    await _rescue_one_of_two(server.url)
    page = await browser.new_page()
    await log_in(page, server.url, ADMIN_PASSWORD)
    await page.get_by_role("link", name="Fleet", exact=True).first.click()
    await expect(page).to_have_url(f"{server.url}/ui/fleet")
    await expect(page.get_by_test_id("asset-counts")).to_contain_text("2")

    hourly = page.get_by_test_id("hourly-chart").locator("rect.fleet-bar[data-bytes='5242880']")
    await expect(hourly).to_have_count(1, timeout=WAIT)
    box = await hourly.bounding_box()
    assert box is not None
    assert box["height"] > 10
    node_bar = page.get_by_test_id("node-chart").locator("rect.fleet-bar")
    await expect(node_bar).to_have_count(1)
    bar_box = await node_bar.bounding_box()
    assert bar_box is not None
    assert bar_box["width"] > 50
    await screenshot(page, "fleet", full_page=True)

    await page.goto(f"{server.url}/ui/fleet/assets")
    rows = page.get_by_test_id("assets").locator("tbody tr")
    await expect(rows).to_have_count(2)
    await screenshot(page, "fleet-assets")
    await page.get_by_test_id("asset-filter").locator("input[name=at_risk]").check()
    await page.get_by_test_id("asset-filter").get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Station 2")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    copies = page.get_by_test_id("jobs").locator("tbody tr", has_text="rescue.copy")
    await expect(copies).to_have_count(2)  # one copy job per asset
    await expect(copies.filter(has_text="succeeded")).to_have_count(1)
    await screenshot(page, "jobs")

    await page.goto(f"{server.url}/ui/fleet/assets")
    await page.get_by_role("link", name="Station 1").click()
    await expect(page.get_by_test_id("asset-name")).to_have_text("Station 1")
    await expect(page.get_by_test_id("copy-state").first).to_contain_text("rescued")
    magnet = page.get_by_test_id("magnet").first
    assert (await magnet.get_attribute("href") or "").startswith("magnet:?xt=urn:btih:c12fe1c0")
    await screenshot(page, "fleet-asset", full_page=True)
