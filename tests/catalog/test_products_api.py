"""Seed 001's product CRUD and offers, on the queue, against a fake offers service.

The seed's 18 tests asserted status codes and field names; these keep those assertions
and add what the seed got wrong: registration through the queue (an outage never loses a
product), the offers token rules, and reconciliation of offers with history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from dispatch.config import Settings
from dispatch.demo.providers import FakeProviders, Fault
from tests.catalog.conftest import ADMIN, V1, sync
from tests.support import running_app


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post(f"{V1}/products", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def registered(
    http: httpx.AsyncClient, product_id: str, seconds: float = 15
) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            product: dict[str, Any] = (
                await http.get(f"{V1}/products/{product_id}", headers=ADMIN)
            ).json()
            if product["registration_status"] != "pending":
                return product
            await asyncio.sleep(0.05)


async def test_create_answers_201_in_seed_001s_shape_and_registers(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    product = await create(http, name="Lamp", description="A desk lamp")
    assert uuid.UUID(product["id"])
    for field in ("name", "description", "created_at", "updated_at"):
        assert field in product
    assert (product["name"], product["description"]) == ("Lamp", "A desk lamp")
    assert product["registration_status"] == "pending"
    done = await registered(http, product["id"])
    assert done["registration_status"] == "registered"
    assert product["id"] in fake.registered
    register = fake.calls("/api/v1/products/register")[0]
    assert fake.offers_token is not None
    assert register.headers["bearer"] == fake.offers_token[0]  # the header is named Bearer
    no_description = await create(http, name="Chair")
    assert no_description["description"] is None


async def test_crud_and_its_404_and_422_paths(http: httpx.AsyncClient) -> None:
    product = await create(http, name="Lamp", description="A desk lamp")
    pid = product["id"]
    got = await http.get(f"{V1}/products/{pid}", headers=ADMIN)
    assert got.status_code == 200
    assert got.json()["name"] == "Lamp"

    replaced = await http.put(f"{V1}/products/{pid}", json={"name": "Lamp 2"}, headers=ADMIN)
    assert replaced.status_code == 200
    assert (replaced.json()["name"], replaced.json()["description"]) == ("Lamp 2", None)

    patched = await http.patch(f"{V1}/products/{pid}", json={"description": "Brass"}, headers=ADMIN)
    assert (patched.json()["name"], patched.json()["description"]) == ("Lamp 2", "Brass")

    for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
        missing = await http.request(
            method, f"{V1}/products/{uuid.uuid4()}", json=body, headers=ADMIN
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "Product not found"
    assert (await http.get(f"{V1}/products/not-a-uuid", headers=ADMIN)).status_code == 404

    for bad in ({}, {"name": ""}, {"name": 5}, {"description": "no name"}):
        invalid = await http.post(f"{V1}/products", json=bad, headers=ADMIN)
        assert invalid.status_code == 422, bad
        assert invalid.json()["error"]["code"] == "validation_error"
        assert invalid.json()["error"]["request_id"]
    null_name = await http.patch(f"{V1}/products/{pid}", json={"name": None}, headers=ADMIN)
    assert null_name.status_code == 422

    deleted = await http.delete(f"{V1}/products/{pid}", headers=ADMIN)
    assert deleted.status_code == 204
    assert (await http.get(f"{V1}/products/{pid}", headers=ADMIN)).status_code == 404
    assert (await http.get(f"{V1}/products/{pid}/offers", headers=ADMIN)).status_code == 404
    changes = (await http.get(f"{V1}/catalog/changes", headers=ADMIN)).json()["items"]
    assert [c["kind"] for c in changes if c["product_id"] == pid] == ["new_listing", "removed"]


ANY_ID = "00000000-0000-4000-8000-000000000000"
CATALOGUE_ROUTES = [
    ("GET", "/providers"),
    ("GET", "/providers/goat"),
    ("PATCH", "/providers/goat"),
    ("POST", "/providers/goat/sync"),
    ("GET", "/provider-requests"),
    ("GET", "/provider-requests/summary"),
    ("GET", "/products"),
    ("POST", "/products"),
    ("GET", "/products/live"),
    ("GET", "/products/cache"),
    ("GET", f"/products/{ANY_ID}"),
    ("PUT", f"/products/{ANY_ID}"),
    ("PATCH", f"/products/{ANY_ID}"),
    ("DELETE", f"/products/{ANY_ID}"),
    ("GET", f"/products/{ANY_ID}/offers"),
    ("GET", f"/products/{ANY_ID}/history"),
    ("GET", "/catalog/changes"),
]


async def test_routes_need_a_key(http: httpx.AsyncClient) -> None:
    for method, path in CATALOGUE_ROUTES:
        response = await http.request(method, f"{V1}{path}", json={"name": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthorized"


async def test_a_read_key_reads_but_does_not_change(http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{V1}/keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN
    )
    reader = {"X-Dispatch-Key": created.json()["key"]}
    for method, path in CATALOGUE_ROUTES:
        response = await http.request(method, f"{V1}{path}", json={"name": "x"}, headers=reader)
        if method == "GET" and path != "/products/live":
            assert response.status_code in (200, 404), (method, path, response.text)
        elif method != "GET":
            assert response.status_code == 403, (method, path)


async def test_sync_reconciles_offers_inserts_updates_and_removes(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    product = await create(http, name="Lamp")
    pid = product["id"]
    await registered(http, pid)
    assert (await http.get(f"{V1}/products/{pid}/offers", headers=ADMIN)).json() == []

    job = await sync(http, "offers")
    assert job["state"] == "succeeded", job
    assert job["result"]["synced"] == 1
    offers = (await http.get(f"{V1}/products/{pid}/offers", headers=ADMIN)).json()
    expected = {o["id"]: (o["price"], o["items_in_stock"]) for o in fake.default_offers}
    assert {o["id"]: (o["price"], o["items_in_stock"]) for o in offers} == expected
    assert all(o["product_id"] == pid for o in offers)
    assert all(o["currency"] == "USD" for o in offers)

    kept, gone, _ = fake.default_offers
    fake.offers[pid] = [
        {**kept, "price": kept["price"] - 1000},
        {"id": str(uuid.uuid4()), "price": 5000, "items_in_stock": 3},
    ]
    job = await sync(http, "offers")
    assert job["state"] == "succeeded", job
    offers = (await http.get(f"{V1}/products/{pid}/offers", headers=ADMIN)).json()
    assert sorted(o["price"] for o in offers) == sorted([5000, kept["price"] - 1000])
    assert gone["id"] not in {o["id"] for o in offers}

    detail = (await http.get(f"{V1}/products/{pid}", headers=ADMIN)).json()
    assert (detail["price_minor"], detail["price"], detail["in_stock"]) == (5000, 50.0, True)
    history = (await http.get(f"{V1}/products/{pid}/history", headers=ADMIN)).json()["points"]
    kept_prices = [p["price"] for p in history if p["offer_id"] == kept["id"]]
    assert kept_prices == [kept["price"], kept["price"] - 1000]
    kinds = [
        c["kind"] for c in (await http.get(f"{V1}/catalog/changes", headers=ADMIN)).json()["items"]
    ]
    assert "price_change" in kinds
    assert kinds.count("stock_change") >= 5  # three offers appeared, one went, one came


async def test_an_offers_outage_never_loses_a_product(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    # More failures than one call's retries: the job is retried when the service says.
    fake.fail("/api/v1/products/register", *[Fault(503, {"Retry-After": "0"})] * 6)
    product = await create(http, name="Lamp")
    assert product["registration_status"] == "pending"
    done = await registered(http, product["id"], seconds=30)
    assert done["registration_status"] == "registered"
    assert len(fake.calls("/api/v1/products/register")) == 7


async def test_the_access_token_is_stored_and_reused_across_restarts(
    catalog_settings: Settings, fake: FakeProviders
) -> None:
    async with running_app(catalog_settings) as http:
        product = await create(http, name="Lamp")
        await registered(http, product["id"])
    assert fake.auth_calls == 1
    # A new process while the token is valid: asking again would get 400.
    async with running_app(catalog_settings) as http:
        job = await sync(http, "offers")
        assert job["state"] == "succeeded", job
    assert fake.auth_calls == 1
    assert len(fake.calls("/api/v1/products/register")) == 1


async def test_a_401_refreshes_the_token_once_and_retries_once(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    product = await create(http, name="Lamp")
    await registered(http, product["id"])
    fake.expire_offers_token()  # the service forgets it: the next call answers 401
    job = await sync(http, "offers")
    assert job["state"] == "succeeded", job
    assert fake.auth_calls == 2
    offer_calls = fake.calls(f"/api/v1/products/{product['id']}/offers")
    assert len(offer_calls) == 2  # the refused call and its one retry


async def test_400_while_a_token_is_valid_is_waited_out_not_spun_on(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    # Another client holds the only valid token; ours was never stored.
    fake.offers_token = ("someone-elses", time.time() + 300)
    product = await create(http, name="Lamp")
    await asyncio.sleep(1.0)
    again = (await http.get(f"{V1}/products/{product['id']}", headers=ADMIN)).json()
    assert again["registration_status"] == "pending"
    assert "another is valid" in (again["registration_error"] or "")
    assert fake.auth_calls == 1  # told to come back in five minutes, not hammered


async def test_an_unregistered_product_is_registered_again(
    http: httpx.AsyncClient, fake: FakeProviders
) -> None:
    product = await create(http, name="Lamp")
    await registered(http, product["id"])
    fake.registered.clear()  # the service lost it: offers answer 404
    job = await sync(http, "offers")
    assert job["result"]["failed"] == 1
    done = await registered(http, product["id"])
    assert done["registration_status"] == "registered"
    assert product["id"] in fake.registered


async def test_products_from_providers_are_read_only(http: httpx.AsyncClient) -> None:
    job = await sync(http, "complexshop")
    assert job["state"] == "succeeded", job
    listed = (await http.get(f"{V1}/products/cache?provider=complexshop", headers=ADMIN)).json()
    pid = listed["results"][0]["id"]
    response = await http.put(f"{V1}/products/{pid}", json={"name": "mine"}, headers=ADMIN)
    assert response.status_code == 409


async def test_the_sync_schedule_runs_the_offers_sync_by_itself(
    catalog_settings: Settings, fake: FakeProviders
) -> None:
    settings = catalog_settings.model_copy(update={"sync_schedule": "* * * * * *"})
    async with running_app(settings) as http:
        product = await create(http, name="Lamp")
        await registered(http, product["id"])
        async with asyncio.timeout(30):  # the sweep runs every 5 s, the schedule every second
            while not (  # noqa: ASYNC110 - the condition is in the database
                await http.get(f"{V1}/products/{product['id']}/offers", headers=ADMIN)
            ).json():
                await asyncio.sleep(0.2)
    assert fake.calls(f"/api/v1/products/{product['id']}/offers")
