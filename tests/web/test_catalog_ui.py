"""The catalogue's admin pages over HTTP: providers, sync now, the edit form, search, detail."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dispatch.catalog import store
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import CatalogPricePoint, CatalogProduct, CatalogProviderRequest
from dispatch.web.catalog_forms import money, price_charts
from tests.gateway.conftest import Gateway
from tests.support import ADMIN_PASSWORD, admin_headers, running_app
from tests.web.test_gateway_task_pages import client_login
from tests.web.test_ui import csrf_from, login

ADMIN = admin_headers()
GOAT_KEY = "ac96de6fef0e02bb95d433d8d5c7038a"  # goat's built-in default api_key
NEW_SECRET = "sekrit-new-api-key-0123456789"
TEES = 27  # more than a page of 25
ROW = re.compile(r'<tr data-product="([0-9a-f-]{36})"')
POLYLINE = re.compile(r'<polyline [^>]*data-offer="([^"]+)" points="([^"]+)"')
JOB = re.compile(r'href="/ui/jobs/(\d+)" data-testid="sync-job"')


PANDA_PAGE = "https://shop.complex.com/products/panda"
PANDA_TEXT = "Black & white <script>alert('x')</script>"


def _panda(size_9_price: int) -> ProductRecord:
    offers = (
        OfferRecord("panda-9", size_9_price, "USD", label="US 9", stock=3),
        OfferRecord("panda-10", 12000, "USD", label="US 10", compare_at_minor=13000),
    )
    title = "Nike Dunk Low 'Panda'"
    images = ("https://cdn.example.com/panda.jpg",)
    return ProductRecord(
        "complexshop", "panda", title, PANDA_PAGE, "Nike", PANDA_TEXT, images,
        style_code="DD1391-100", offers=offers,
    )  # fmt: skip


def _one(provider: str, eid: str, title: str, price: int, currency: str, **extra: Any) -> Any:
    available = extra.pop("available", True)
    offer = OfferRecord(f"{eid}-1", price, currency, label="One size", available=available)
    return ProductRecord(provider=provider, external_id=eid, title=title, offers=(offer,), **extra)


async def _seed(database: Database) -> dict[str, str]:
    """Products at three providers (one price drop, one ended), and two provider requests."""
    earlier = utcnow() - timedelta(days=2)
    tees = [_one("complexshop", f"tee-{n}", f"Plain Tee {n}", 2000 + n, "USD") for n in range(TEES)]
    odd = _one("complexshop", "odd", "Odd Link Socks", 900, "USD", url="javascript:alert(1)")
    goat = _one("goat", "g-panda", "Dunk Low Retro", 15000, "USD", style_code="DD1391100")
    cap = _one("universalstore", "cap", "Bulls Cap", 4500, "AUD", brand="New Era", available=False)
    async with database.session() as session:
        await store.upsert_products(session, [_panda(11000), *tees, odd], earlier)
        await store.upsert_products(session, [goat], earlier)
        await store.upsert_products(session, [cap], earlier)
    async with database.session() as session:
        await store.upsert_products(session, [_panda(9900)], utcnow())  # size 9 drops in price
        await session.execute(
            update(CatalogProduct)
            .where(CatalogProduct.external_id == "tee-0")
            .values(status="ended", ended_at=utcnow())
        )
        session.add_all(
            [
                CatalogProviderRequest(
                    provider="complexshop", method="GET", endpoint="/products.json",
                    status=200, duration_ms=41.5, rate_limit_remaining=38,
                ),
                CatalogProviderRequest(
                    provider="complexshop", method="GET", endpoint="/collections/all.json",
                    status=503, duration_ms=1200.0, attempt=2, error="upstream unavailable",
                ),
            ]
        )  # fmt: skip
    async with database.session() as session:
        rows = await session.execute(select(CatalogProduct.external_id, CatalogProduct.uid))
        return {eid: uid for eid, uid in rows}


@pytest.fixture
async def ids(settings: Settings) -> dict[str, str]:
    database = Database(settings)
    try:
        return await _seed(database)
    finally:
        await database.dispose()


@pytest.fixture
async def ui(settings: Settings, ids: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An admin signed in to the UI, over a seeded catalogue."""
    async with running_app(settings) as http:
        assert (await login(http, ADMIN_PASSWORD)).status_code == 303
        yield http


async def _api(http: httpx.AsyncClient, path: str) -> Any:
    response = await http.get(f"/api/v1{path}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def _search(http: httpx.AsyncClient, params: Any, status: int = 200) -> str:
    response = await http.get("/ui/catalog/products", params=params)
    assert response.status_code == status, response.text
    return response.text


def _rows(page: str, ids: dict[str, str]) -> set[str]:
    by_uid = {uid: eid for eid, uid in ids.items()}
    return {by_uid[uid] for uid in ROW.findall(page)}


# Access ------------------------------------------------------------------------------------

PAGES = ["/ui/catalog/providers", "/ui/catalog/providers/goat", "/ui/catalog/products"]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_need_an_admin_session(client: httpx.AsyncClient, path: str) -> None:
    anonymous = await client.get(path)
    assert (anonymous.status_code, anonymous.headers["location"]) == (
        303,
        f"/ui/login?next={path}",
    )
    gateway_client = await Gateway(client).client("shop-client", [])
    assert (await client_login(client, gateway_client["token"])).status_code == 303
    refused = await client.get(path)
    assert refused.status_code == 403
    assert 'data-code="admin_only"' in refused.text


async def test_the_navigation_links_the_catalogue(ui: httpx.AsyncClient) -> None:
    dashboard = await ui.get("/ui/")
    assert 'href="/ui/catalog/products"' in dashboard.text
    assert 'href="/ui/catalog/providers"' in dashboard.text


# Providers ---------------------------------------------------------------------------------


def _provider_row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-provider="{name}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {name}"
    return match.group(1)


async def test_providers_table_shows_status_health_and_counts(ui: httpx.AsyncClient) -> None:
    response = await ui.get("/ui/catalog/providers")
    assert response.status_code == 200
    names = re.findall(r'<tr data-provider="([^"]+)"', response.text)
    assert names == sorted(p["name"] for p in (await _api(ui, "/providers"))["details"])
    shop = _provider_row(response.text, "complexshop")
    assert 'data-testid="status">ok<' in shop
    assert "2 / 1 errors" in shop
    assert "50.0 % errors" in shop
    # 29 listings: the Panda, 27 tees (one ended) and the socks.
    assert re.search(r'data-testid="product-counts">29<br><span class="muted">28 active', shop)
    discogs = _provider_row(response.text, "discogs")
    assert 'data-testid="status">disabled<' in discogs
    assert "discogs is disabled" in discogs
    cap = _provider_row(response.text, "universalstore")
    assert "1 active, 0 in stock" in cap


async def test_sync_now_enqueues_the_run_and_links_the_job(ui: httpx.AsyncClient) -> None:
    listing = await ui.get("/ui/catalog/providers")
    token = csrf_from(listing.text)
    action = "/ui/catalog/providers/complexshop/sync"
    assert f'action="{action}"' in listing.text

    forged = await ui.post(action, data={"back": "list"})
    assert forged.status_code == 403
    assert (await _api(ui, "/jobs?kind=catalog.scrape"))["items"] == []

    done = await ui.post(action, data={"csrf_token": token})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/ui/catalog/providers?")
    shown = await ui.get(done.headers["location"])
    (job_id,) = JOB.findall(shown.text)
    assert "Queued a run of complexshop" in shown.text
    job = await _api(ui, f"/jobs/{job_id}")
    assert (job["kind"], job["args"]) == ("catalog.scrape", {"provider": "complexshop"})

    # Pressed again while that run waits: the same job, said so; from the provider's page.
    again = await ui.post(action, data={"csrf_token": token, "back": "detail"})
    assert again.headers["location"].startswith("/ui/catalog/providers/complexshop?")
    detail = await ui.get(again.headers["location"])
    assert JOB.findall(detail.text) == [job_id]
    assert "A run of complexshop was already queued" in detail.text
    assert len((await _api(ui, "/jobs?kind=catalog.scrape"))["items"]) == 1


async def test_sync_now_refuses_a_provider_that_cannot_run(ui: httpx.AsyncClient) -> None:
    token = csrf_from((await ui.get("/ui/catalog/providers")).text)
    refused = await ui.post("/ui/catalog/providers/discogs/sync", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "discogs cannot run: discogs is disabled. Nothing was queued." in refused.text
    from_detail = await ui.post(
        "/ui/catalog/providers/discogs/sync", data={"csrf_token": token, "back": "detail"}
    )
    assert from_detail.status_code == 409
    assert 'data-testid="configuration"' in from_detail.text
    assert (await _api(ui, "/jobs?kind=catalog.scrape"))["items"] == []
    unknown = await ui.post("/ui/catalog/providers/nope/sync", data={"csrf_token": token})
    assert unknown.status_code == 404


async def test_provider_page_shows_configuration_masked_and_recent_requests(
    ui: httpx.AsyncClient,
) -> None:
    goat = await ui.get("/ui/catalog/providers/goat")
    assert goat.status_code == 200
    assert "https://2fwotdvm2o-dsn.algolia.net" in goat.text
    assert "product_variants_v2" in goat.text  # its options, as JSON
    assert "api_key: ac96••••" in goat.text
    assert GOAT_KEY not in goat.text
    assert goat.text.count('type="password"') == 2  # app_id and api_key
    assert 'name="credential_api_key" value=""' in goat.text

    shop = await ui.get("/ui/catalog/providers/complexshop")
    requests = re.search(r'data-testid="requests">(.*?)</table>', shop.text, re.S)
    assert requests
    assert requests.group(1).index("/collections/all.json") < requests.group(1).index(
        "/products.json"
    )  # newest first
    assert "upstream unavailable" in requests.group(1)
    assert "1200 ms" in requests.group(1)
    assert ">38<" in requests.group(1)

    missing = await ui.get("/ui/catalog/providers/nope")
    assert missing.status_code == 404
    assert "No provider named" in missing.text


async def _edit(ui: httpx.AsyncClient, name: str, **fields: str) -> httpx.Response:
    page = await ui.get(f"/ui/catalog/providers/{name}")
    return await ui.post(
        f"/ui/catalog/providers/{name}", data={"csrf_token": csrf_from(page.text), **fields}
    )


GOAT_FORM = {
    "enabled": "on",
    "base_url": "https://2fwotdvm2o-dsn.algolia.net",
    "currency": "USD",
    "rate_per_minute": "",
    "schedule": "@every 1800s",
}


async def test_edit_stores_only_what_changed_and_never_echoes_a_secret(
    ui: httpx.AsyncClient,
) -> None:
    forged = await ui.post("/ui/catalog/providers/goat", data={**GOAT_FORM, "currency": "EUR"})
    assert forged.status_code == 403

    fields = {**GOAT_FORM, "rate_per_minute": "90", "schedule": "@every 600s"}
    saved = await _edit(ui, "goat", **fields, credential_api_key=NEW_SECRET)
    assert (saved.status_code, saved.headers["location"]) == (
        303,
        "/ui/catalog/providers/goat?saved=1",
    )
    stored = await _api(ui, "/providers/goat")
    assert (stored["rate_per_minute"], stored["schedule"]) == (90, "@every 600s")
    assert sorted(stored["edited"]) == ["credentials", "rate_per_minute", "schedule"]
    assert stored["credentials"]["api_key"] == "sekr••••"

    shown = await ui.get(saved.headers["location"])
    assert 'data-testid="saved"' in shown.text
    assert NEW_SECRET not in shown.text
    assert GOAT_KEY not in shown.text
    assert 'name="rate_per_minute" value="90"' in shown.text

    # Blank keeps the secret; unticking "enabled" turns the provider off.
    unticked = {name: value for name, value in fields.items() if name != "enabled"}
    kept = await _edit(ui, "goat", **unticked, credential_api_key="")
    assert kept.status_code == 303
    stored = await _api(ui, "/providers/goat")
    assert stored["credentials"]["api_key"] == "sekr••••"
    assert (stored["enabled"], stored["status"]) == (False, "disabled")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("currency", "dollars", "three-letter ISO 4217 code"),
        ("schedule", "every tuesday", "Schedule:"),
        ("rate_per_minute", "fast", "Rate per minute:"),
        ("rate_per_minute", "0", "greater than or equal to 1"),
        ("base_url", "not a url", "Base url:"),
    ],
)
async def test_edit_refuses_bad_input_on_the_page(
    ui: httpx.AsyncClient, field: str, value: str, message: str
) -> None:
    refused = await _edit(ui, "goat", **{**GOAT_FORM, field: value}, credential_api_key=NEW_SECRET)
    assert refused.status_code == 422
    assert 'data-testid="errors"' in refused.text
    assert message in html.unescape(refused.text)
    assert f'name="{field}" value="{html.escape(value)}"' in refused.text  # shown as typed
    assert NEW_SECRET not in refused.text
    stored = await _api(ui, "/providers/goat")
    assert stored["edited"] == []


# Products ----------------------------------------------------------------------------------


async def test_search_filters_narrow_the_table(ui: httpx.AsyncClient, ids: dict[str, str]) -> None:
    assert _rows(await _search(ui, {"query": "panda"}), ids) == {"panda"}
    assert _rows(await _search(ui, {"providers": ["goat", "universalstore"]}), ids) == {
        "g-panda",
        "cap",
    }
    assert _rows(await _search(ui, {"min_price": "100", "currency": "usd"}), ids) == {"g-panda"}
    assert _rows(await _search(ui, {"max_price": "9.5", "currency": "USD"}), ids) == {"odd"}
    assert _rows(await _search(ui, {"in_stock": "no"}), ids) == {"cap"}
    assert _rows(await _search(ui, {"brand": "new era"}), ids) == {"cap"}
    assert "tee-0" not in _rows(await _search(ui, {"query": "tee 0"}), ids)
    assert _rows(await _search(ui, {"query": "tee 0", "status": "ended"}), ids) == {"tee-0"}
    cheapest = await _search(ui, {"sort": "price", "providers": "complexshop"})
    assert ROW.findall(cheapest)[0] == ids["odd"]

    page = await _search(ui, {"query": "panda", "providers": "complexshop"})
    assert "99.00 USD" in page  # the current lowest price, in major units
    assert 'value="complexshop" checked' in page
    assert 'value="goat" checked' not in page
    assert 'src="https://cdn.example.com/panda.jpg"' in page


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"providers": "nope"}, 422, "Unknown provider: nope"),
        ({"min_price": "-5"}, 422, "Min price: must be a positive amount"),
        ({"max_price": "cheap"}, 422, "Max price: 'cheap' is not a number"),
        ({"min_price": "1.234", "currency": "USD"}, 422, "more decimals than USD allows"),
        ({"min_price": "1.5", "currency": "JPY"}, 422, "more decimals than JPY allows"),
        ({"currency": "US"}, 422, "is not an ISO 4217 currency code"),
        ({"sort": "cheapest"}, 422, "Sort: one of relevance, price, -price, newest"),
        ({"status": "gone"}, 422, "Status: one of active, ended, all"),
        ({"cursor": "!!!"}, 400, "The cursor is not one this API gave out"),
    ],
)
async def test_bad_search_input_is_explained_on_the_page(
    ui: httpx.AsyncClient, params: dict[str, str], status: int, message: str
) -> None:
    page = html.unescape(await _search(ui, params, status))
    assert message in page
    assert "Correct the search above." in page
    assert ROW.findall(page) == []


async def test_a_refused_search_shows_the_form_as_typed(ui: httpx.AsyncClient) -> None:
    page = await _search(ui, {"query": "panda", "min_price": "-5", "providers": "goat"}, 422)
    assert 'name="query" value="panda"' in page
    assert 'name="min_price" value="-5"' in page
    assert 'value="goat" checked' in page


async def test_the_next_page_link_continues_the_search(
    ui: httpx.AsyncClient, ids: dict[str, str]
) -> None:
    params = {"query": "tee", "sort": "price", "status": "all"}
    first = await _search(ui, params)
    link = re.search(r'<a href="([^"]+)" id="next-page"', first)
    assert link, "no next page link"
    second = await _search(ui, html.unescape(link.group(1)).split("?", 1)[1])
    assert 'id="next-page"' not in second
    one, two = ROW.findall(first), ROW.findall(second)
    assert (len(one), len(two)) == (25, TEES - 25)
    assert _rows(first, ids) | _rows(second, ids) == {f"tee-{n}" for n in range(TEES)}
    assert one == [ids[f"tee-{n}"] for n in range(25)]  # by price, the page went on


async def test_product_page_shows_offers_chart_and_the_same_item(
    ui: httpx.AsyncClient, ids: dict[str, str]
) -> None:
    response = await ui.get(f"/ui/catalog/products/{ids['panda']}")
    assert response.status_code == 200
    page = response.text
    assert "Black &amp; white &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert 'href="https://shop.complex.com/products/panda" rel="noopener noreferrer"' in page
    assert "DD1391-100" in page

    offers = re.search(r'data-testid="offers">(.*?)</table>', page, re.S)
    assert offers
    assert re.search(r"US 9</td>\s*<td><span class=\"cat-price\">99.00 USD", offers.group(1))
    assert "120.00 USD" in offers.group(1)
    assert "130.00 USD" in offers.group(1)

    lines = dict(POLYLINE.findall(page))
    assert set(lines) == {"panda-9", "panda-10"}
    drop = [tuple(map(float, p.split(","))) for p in lines["panda-9"].split()]
    flat = [tuple(map(float, p.split(","))) for p in lines["panda-10"].split()]
    assert len(drop) == 4
    assert len(flat) == 2
    assert drop[1][1] == drop[0][1]
    assert drop[2][0] == drop[1][0]
    assert drop[3][1] > drop[0][1]  # a lower price is drawn lower
    assert 'data-testid="price-min">99.00 USD' in page
    assert 'data-testid="price-max">120.00 USD' in page

    same = re.search(r'data-testid="same-item">(.*?)</table>', page, re.S)
    assert same
    assert ids["g-panda"] in same.group(1)
    assert "150.00 USD" in same.group(1)


async def test_product_page_details_and_misses(ui: httpx.AsyncClient, ids: dict[str, str]) -> None:
    odd = (await ui.get(f"/ui/catalog/products/{ids['odd']}")).text
    assert 'href="javascript' not in odd
    assert "No listing elsewhere" in odd

    created = await ui.post("/api/v1/products", json={"name": "Our own"}, headers=ADMIN)
    ours = (await ui.get(f"/ui/catalog/products/{created.json()['id']}")).text
    assert 'data-testid="registration">pending' in ours
    assert "No prices recorded yet." in ours

    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await ui.get(f"/ui/catalog/products/{missing}")
        assert response.status_code == 404
        assert "Product not found" in response.text


# Pure helpers ------------------------------------------------------------------------------


def test_money_shows_the_currency_decimals() -> None:
    assert money(12999, "USD") == "129.99 USD"
    assert money(1299, "JPY") == "1,299 JPY"
    assert money(1234567, "KWD") == "1,234.567 KWD"
    assert money(None, "USD") == "—"


def _point(offer: str, price: int | None, currency: str, minutes: int) -> CatalogPricePoint:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return CatalogPricePoint(
        offer_external_id=offer, label=None, price_minor=price, currency=currency, observed_at=at
    )


def test_price_charts_draw_steps_per_currency_to_now() -> None:
    now = datetime(2026, 1, 1, 1, 40, tzinfo=UTC)
    points = [
        _point("a", 1000, "USD", 0),
        _point("b", 500, "EUR", 10),
        _point("a", None, "USD", 20),  # no price: the line holds the last one
        _point("a", 2000, "USD", 50),
    ]
    eur, usd = price_charts(points, now)
    assert (eur.currency, usd.currency) == ("EUR", "USD")
    assert (usd.low, usd.high, usd.start, usd.end) == (1000, 2000, points[0].observed_at, now)
    (line,) = usd.series
    xy = [tuple(map(float, p.split(","))) for p in line.points.split()]
    assert [x for x, _ in xy] == [usd.left, 84 + 544 / 2, 84 + 544 / 2, usd.right]
    assert [y for _, y in xy] == [usd.bottom, usd.bottom, usd.top, usd.top]
    (flat,) = eur.series  # one price: drawn across the middle
    assert {y for _, y in (p.split(",") for p in flat.points.split())} == {
        f"{(eur.top + eur.bottom) / 2:.1f}"
    }
    assert price_charts([_point("a", None, "USD", 0)], now) == []


async def test_edit_stores_options_from_json_and_refuses_bad_json(ui: httpx.AsyncClient) -> None:
    page = await ui.get("/ui/catalog/providers/goat")
    assert 'name="options_json"' in page.text
    assert "product_variants_v2" in page.text  # the current options, shown in the textarea

    options = '{"index": "product_variants_v2", "scrape_query": "jordan"}'
    saved = await _edit(ui, "goat", **GOAT_FORM, options_json=options)
    assert saved.status_code == 303
    stored = await _api(ui, "/providers/goat")
    assert stored["options"] == {"index": "product_variants_v2", "scrape_query": "jordan"}
    assert stored["edited"] == ["options"]

    for text, message in (
        ("{not json", "Options: not valid JSON"),
        ('["a list"]', "Options: must be a JSON object"),
    ):
        refused = await _edit(ui, "goat", **GOAT_FORM, options_json=text)
        assert refused.status_code == 422
        assert message in html.unescape(refused.text)
        assert text in html.unescape(refused.text)  # shown as typed
    assert (await _api(ui, "/providers/goat"))["options"]["scrape_query"] == "jordan"
