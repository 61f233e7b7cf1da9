"""Scrapes and live searches against recorded provider answers, and their failure cases."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from dispatch.demo.providers import FakeProviders, Fault
from tests.catalog.conftest import ADMIN, V1, sync


async def products_of(http: httpx.AsyncClient, provider: str) -> list[dict[str, Any]]:
    response = await http.get(
        f"{V1}/products",
        params={"providers": provider, "status": "all", "limit": 100},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_shopify_scrape_stores_normalised_products(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    job = await sync(http, "complexshop")
    assert job["state"] == "succeeded", job
    assert job["result"]["created"] == 2
    assert job["result"]["pages"] == 1
    stored = {p["external_id"]: p for p in await products_of(http, "complexshop")}
    first = stored["6647619027042"]
    assert first["name"] == "Make Z Guard Great Again by Craig Jones"
    assert (first["price_minor"], first["price"], first["currency"]) == (19700, 197.0, "USD")
    assert first["url"].endswith("/products/" + first["metadata"]["handle"])
    assert first["sku"] == "CJMZGGA-01"
    assert first["in_stock"] is True
    pages = [c.query["page"] for c in fake.calls("/products.json")]
    assert pages == ["1", "2"]  # paged until an empty page
    assert {c.query["limit"] for c in fake.calls("/products.json")} == {"250"}
    # Seed 000's cached listing serves the same products in its shape.
    cached = (await http.get(f"{V1}/products/cache?provider=complexshop", headers=ADMIN)).json()
    assert {r["provider"] for r in cached["results"]} == {"complexshop"}
    for field in (
        "provider",
        "name",
        "url",
        "price",
        "currency",
        "images",
        "description",
        "brand",
        "categories",
        "metadata",
        "last_seen",
    ):
        assert field in cached["results"][0]


async def test_a_rescrape_records_price_changes_and_ends_vanished_products(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    await sync(http, "complexshop")
    first = fake.shopify_pages[0]
    assert isinstance(first, dict)
    page = copy.deepcopy(first)
    page["products"][0]["variants"][0]["price"] = "150.00"
    del page["products"][1]
    fake.shopify_pages = [page]
    job = await sync(http, "complexshop")
    assert job["state"] == "succeeded", job
    assert (job["result"]["ended"], job["result"]["updated"]) == (1, 1)
    stored = {p["external_id"]: p for p in await products_of(http, "complexshop")}
    assert stored["6647619027042"]["price_minor"] == 15000
    assert stored["6628467703906"]["status"] == "ended"
    history = (
        await http.get(f"{V1}/products/{stored['6647619027042']['id']}/history", headers=ADMIN)
    ).json()["points"]
    assert [p["price"] for p in history] == [19700, 15000]
    kinds = [
        c["kind"] for c in (await http.get(f"{V1}/catalog/changes", headers=ADMIN)).json()["items"]
    ]
    assert kinds.count("new_listing") == 2
    assert "price_change" in kinds
    assert "ended" in kinds


async def test_a_failing_page_writes_nothing_half_done(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    await sync(http, "complexshop")
    first = fake.shopify_pages[0]
    assert isinstance(first, dict)
    changed = copy.deepcopy(first)
    changed["products"][0]["title"] = "Renamed"
    # Page 2 answers malformed JSON: page 1 stays written, and nothing is marked ended.
    fake.shopify_pages = [changed, b"{not json"]
    job = await sync(http, "complexshop")
    assert job["state"] in ("scheduled", "failed"), job
    stored = await products_of(http, "complexshop")
    assert len(stored) == 2
    assert {p["status"] for p in stored} == {"active"}
    assert "Renamed" in {p["name"] for p in stored}
    provider = (await http.get(f"{V1}/providers/complexshop", headers=ADMIN)).json()
    assert provider["status"] == "failing", provider["health"]
    assert "not JSON" in provider["status_detail"]


async def test_429_with_retry_after_and_500_are_retried_and_logged(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fake.fail(
        "/products.json",
        Fault(429, {"Retry-After": "1"}, b"slow down"),
        Fault(500, {}, b"oops"),
    )
    job = await sync(http, "complexshop")
    assert job["state"] == "succeeded", job
    assert job["result"]["created"] == 2
    log = (await http.get(f"{V1}/provider-requests?provider=complexshop", headers=ADMIN)).json()
    statuses = [r["status"] for r in reversed(log["items"])]
    assert statuses[:3] == [429, 500, 200]
    assert log["items"][-1]["rate_headers"] == {"retry-after": "1"}
    assert [r["attempt"] for r in reversed(log["items"])][:3] == [1, 2, 3]


async def test_a_retry_after_past_the_cap_defers_the_whole_run(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fake.fail("/products.json", Fault(429, {"Retry-After": "3600"}, b"come back in an hour"))
    job = await sync(http, "complexshop", retried=True)
    assert job["state"] == "scheduled"  # retried by the queue later, not slept on
    assert "3600" in (job["last_error"] or "")
    assert job["run_at"] > job["created_at"]
    assert len(fake.calls("/products.json")) == 1


async def test_timeouts_are_retried(http: httpx.AsyncClient, fake: FakeProviders) -> None:
    fake.fail("/products.json", Fault(200, {}, b"{}", delay=3.0))  # past the 2 s timeout
    job = await sync(http, "complexshop")
    assert job["state"] == "succeeded", job
    log = (await http.get(f"{V1}/provider-requests?errors_only=true", headers=ADMIN)).json()
    assert "TimeoutError" in log["items"][-1]["error"]


async def test_live_search_stores_results_and_reports_each_providers_failure(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fake.fail("/search/suggest.json", *[Fault(503, {"Retry-After": "0"})] * 10)
    response = await http.get(
        f"{V1}/products/live",
        params={"providers": "goat,complexshop", "query": "jordan", "limit": 3},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["providers"]["goat"]) == 3
    assert body["providers"]["goat"][0]["provider"] == "goat"
    assert "complexshop" not in body["providers"]
    assert body["errors"]["complexshop"]["code"] == "unavailable"
    assert body["errors"]["complexshop"]["status"] == 503
    algolia = fake.calls("/1/indexes/product_variants_v2/query")[0]
    assert algolia.headers["x-algolia-application-id"] == "2FWOTDVM2O"
    stored = await products_of(http, "goat")
    assert len(stored) == 3  # what was fetched is in the catalogue now


async def test_live_search_of_an_unknown_provider_is_a_422(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{V1}/products/live?providers=nope", headers=ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["unknown"] == ["nope"]
    assert "goat" in error["details"]["known"]


async def test_discogs_prices_come_from_marketplace_stats(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    response = await http.get(
        f"{V1}/products/live?providers=discogs&query=healer&limit=2", headers=ADMIN
    )
    body = response.json()
    assert body["errors"] == {}
    found = body["providers"]["discogs"]
    assert found
    assert {(p["price_minor"], p["currency"]) for p in found} == {(10000, "EUR")}
    search = fake.calls("/database/search")[0]
    assert search.headers["authorization"].startswith("Discogs token=")
    assert search.headers["user-agent"]
    log = (await http.get(f"{V1}/provider-requests?provider=discogs", headers=ADMIN)).json()
    remaining = [r["rate_limit_remaining"] for r in log["items"]]
    assert remaining == sorted(remaining)  # newest first: the budget counts down
    assert log["items"][0]["rate_headers"]["x-discogs-ratelimit"] == "60"


async def test_ebay_token_is_cached_and_refreshed_once_on_401(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    for _ in range(2):
        response = await http.get(
            f"{V1}/products/live?providers=ebay&query=sneakers", headers=ADMIN
        )
        assert response.json()["errors"] == {}
    assert len(fake.ebay_tokens) == 1  # one token for both searches
    fake.ebay_valid = "revoked"
    response = await http.get(f"{V1}/products/live?providers=ebay&query=sneakers", headers=ADMIN)
    assert response.json()["errors"] == {}
    assert len(fake.ebay_tokens) == 2
    assert response.json()["providers"]["ebay"][0]["provider"] == "ebay"


async def test_providers_report_health_and_hide_secrets(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    await sync(http, "complexshop")
    body = (await http.get(f"{V1}/providers", headers=ADMIN)).json()
    assert body["providers"] == sorted(body["providers"])
    assert {"complexshop", "universalstore", "goat", "discogs", "ebay", "offers"} <= set(
        body["providers"]
    )
    details = {p["name"]: p for p in body["details"]}
    shop = details["complexshop"]
    assert shop["health"]["products"] == 2
    assert shop["health"]["last_success_at"] is not None
    assert shop["health"]["requests_24h"] >= 2
    assert details["universalstore"]["currency"] == "AUD"
    assert "discogs-token-abc" not in str(details["discogs"])
    assert details["discogs"]["credentials"]["token"].endswith("••••")
    metrics = (await http.get("/metrics", headers=ADMIN)).text
    assert 'dispatch_provider_requests_total{provider="complexshop",status="200"} 2.0' in metrics
    assert (
        'dispatch_catalog_products_written_total{provider="complexshop",result="created"} 2.0'
        in (metrics)
    )


async def test_admin_edits_a_provider_and_the_edit_wins(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    edit = {
        "enabled": False,
        "rate_per_minute": 30,
        "credentials": {"token": "new-secret-token-value"},
    }
    response = await http.patch(f"{V1}/providers/discogs", json=edit, headers=ADMIN)
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["enabled"], out["rate_per_minute"], out["status"]) == (False, 30, "disabled")
    assert out["credentials"]["token"] == "new-••••"
    assert sorted(out["edited"]) == ["credentials", "enabled", "rate_per_minute"]
    refused = await http.post(f"{V1}/providers/discogs/sync", headers=ADMIN)
    assert refused.status_code == 409
    bad = await http.patch(f"{V1}/providers/discogs", json={"schedule": "every day"}, headers=ADMIN)
    assert bad.status_code == 422
    reset = await http.patch(f"{V1}/providers/discogs", json={"reset": ["enabled"]}, headers=ADMIN)
    assert reset.json()["enabled"] is True
    unknown = await http.patch(f"{V1}/providers/nope", json={"enabled": True}, headers=ADMIN)
    assert unknown.status_code == 404


async def test_a_second_sync_while_one_is_queued_is_the_same_job(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fake.fail("/products.json", Fault(200, {}, b'{"products": []}', delay=1.0))
    first = (await http.post(f"{V1}/providers/complexshop/sync", headers=ADMIN)).json()
    second = (await http.post(f"{V1}/providers/complexshop/sync", headers=ADMIN)).json()
    assert first["created"] is True
    assert (second["job_id"], second["created"]) == (first["job_id"], False)


async def test_goat_scrape_pages_through_the_index(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    job = await sync(http, "goat")
    assert job["state"] == "succeeded", job
    hits = fake.algolia["hits"]
    assert job["result"]["created"] == len(hits)
    stored = {p["external_id"]: p for p in await products_of(http, "goat")}
    first = hits[0]
    product = stored[str(first["product_template_id"])]
    assert product["style_code"] == first["sku"]
    assert product["url"] == f"https://www.goat.com/sneakers/{first['slug']}"
    assert product["compare_at_price_minor"] == first["retail_price_cents"]


async def test_discogs_and_ebay_scrape_what_is_configured(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    for name, options in (("discogs", {"seller": "example"}), ("ebay", {"queries": ["sneakers"]})):
        edited = await http.patch(
            f"{V1}/providers/{name}", json={"options": options}, headers=ADMIN
        )
        assert edited.status_code == 200, edited.text
        job = await sync(http, name)
        assert job["state"] == "succeeded", job
        assert job["result"]["created"] >= 1, (name, job)
    listing = (await products_of(http, "discogs"))[0]
    assert listing["external_id"].startswith("listing:")
    assert listing["price_minor"] is not None
    assert fake.calls("/users/example/inventory")
    assert len(await products_of(http, "ebay")) >= 1
