"""The gateway pages in a real Chromium: a client's session, its tasks and its documentation."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.gateway.conftest import Gateway
from tests.support import LiveServer
from tests.web.browsing import screenshot

pytestmark = pytest.mark.browser


@dataclass
class Scene:
    token: str
    own_task: int
    other_task: int


async def _scene(base_url: str) -> Scene:
    """Clients alpha and beta on a holding endpoint, one task each."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        gateway = Gateway(http)
        hold = {"is_development_mode": True, "dev_hold_tasks": True}
        notify = await gateway.endpoint("notify", [], description="Send a notification", **hold)
        await gateway.endpoint("internal", [], **hold)
        alpha = await gateway.client("alpha", [notify["id"]])
        beta = await gateway.client("beta", [notify["id"]])
        sent = [
            await gateway.send("notify", c["token"], {"ref": f"{c['name']}-1", "scope": "prod"})
            for c in (alpha, beta)
        ]
    own, other = (response.json()["task_id"] for response in sent)
    return Scene(alpha["token"], own, other)


async def _client_login(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/ui/gateway/tasks")
    await expect(page).to_have_url(f"{base}/ui/login?next=/ui/gateway/tasks")
    await page.click("#tab-client")
    await page.fill("#token", token)
    await page.click("#client-login")


async def test_a_client_sees_and_stops_its_own_task(browser: Browser, server: LiveServer) -> None:
    scene = await _scene(server.url)
    page = await browser.new_page()
    await _client_login(page, server.url, "dpy_wrong")
    await expect(page.get_by_role("alert")).to_contain_text("Unknown or inactive client token")
    await page.fill("#token", scene.token)
    await page.click("#client-login")
    await expect(page).to_have_url(f"{server.url}/ui/gateway/tasks")

    rows = page.locator("[data-testid=tasks] tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("alpha-1")
    await expect(page.get_by_role("link", name="Resources")).to_have_count(0)
    await screenshot(page, "gateway-tasks")

    await rows.first.get_by_role("link", name=str(scene.own_task)).click()
    await expect(page.get_by_test_id("task-status")).to_have_text("held")
    await page.click("#stop")
    await expect(page.get_by_test_id("task-status")).to_have_text("stopped")
    await expect(page.locator("#retry")).to_be_visible()
    await expect(page.locator("#stop")).to_have_count(0)
    await screenshot(page, "gateway-task")

    await page.goto(f"{server.url}/ui/gateway/tasks/{scene.other_task}")
    await expect(page.locator("h1")).to_have_text("404")


async def test_the_docs_hold_the_token(browser: Browser, server: LiveServer) -> None:
    scene = await _scene(server.url)
    page = await browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))
    await _client_login(page, server.url, scene.token)
    await page.click("text=Documentation")
    await expect(page).to_have_url(f"{server.url}/documentation")

    operation = page.locator(".opblock-summary-path", has_text="/api/notify")
    await expect(operation).to_be_visible()
    await expect(page.locator(".opblock-summary-path", has_text="/api/internal")).to_have_count(0)
    await expect(page.get_by_test_id("swagger")).to_have_attribute("data-authorized", "true")
    await page.click(".auth-wrapper .authorize")
    dialog = page.locator(".dialog-ux")
    await expect(dialog).to_contain_text("Authorized")
    held = "() => window.swaggerUi.authSelectors.authorized().toJS().ApiToken.value"
    assert await page.evaluate(held) == scene.token
    await dialog.locator(".close-modal").click()
    await screenshot(page, "gateway-docs")

    await operation.click()
    await page.click("button.try-out__btn")
    await page.click("button.execute")
    status = page.locator(".live-responses-table tbody .response-col_status")
    await expect(status).to_have_text("202")
    await expect(page.locator(".live-responses-table")).to_contain_text('"held"')

    stored = "() => sessionStorage.getItem('dispatch.gatewayToken')"
    assert await page.evaluate(stored) == scene.token
    cookies = await page.context.cookies()
    assert all(scene.token not in cookie["value"] for cookie in cookies)
    assert await page.evaluate("() => Object.keys(localStorage).length") == 0
    await page.click("#logout")
    await expect(page).to_have_url(f"{server.url}/ui/login?tab=client")
    assert await page.evaluate(stored) is None
    assert foreign == [], f"the documentation fetched from outside: {foreign}"
