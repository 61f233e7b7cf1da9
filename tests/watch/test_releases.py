"""Seed 003's watch releases: shapes and validation, and matching by release or master with
the target price and minimum condition really applied."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.db.engine import Database
from dispatch.watch.evaluate import Evaluator
from tests.watch.conftest import ADMIN, V1, WatchUser
from tests.watch.test_evaluate import database, evaluator, events, write

__all__ = ["database", "evaluator"]  # fixtures shared with test_evaluate

RELEASE = {
    "discogs_release_id": 249504,
    "title": "Never Gonna Give You Up",
    "artist": "Rick Astley",
    "year": 1987,
    "target_price": 30,
    "currency": "usd",
    "min_condition": "VG+",
}


def record(
    listing: str,
    *,
    release: str = "249504",
    master: str | None = None,
    price: int = 2_500,
    condition: str = "Very Good Plus (VG+)",
) -> ProductRecord:
    attributes = {"release_id": release, "condition": condition}
    if master:
        attributes["master_id"] = master
    return ProductRecord(
        provider="discogs",
        external_id=f"listing:{listing}",
        title="Rick Astley - Never Gonna Give You Up",
        brand="Rick Astley",
        attributes=attributes,
        offers=(OfferRecord(external_id=listing, price_minor=price, currency="USD"),),
    )


async def create(http: httpx.AsyncClient, user: WatchUser, **body: Any) -> dict[str, Any]:
    response = await http.post(
        f"{V1}/watch-releases", json={**RELEASE, **body}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_seed_003s_shape_and_lifecycle(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    made = await create(http, alice)
    assert set(made) == {
        "id", "user_id", "discogs_release_id", "discogs_master_id", "match_mode", "title",
        "artist", "year", "target_price", "currency", "min_condition", "is_active",
        "created_at", "updated_at",
    }  # fmt: skip
    assert made["match_mode"] == "exact_release"
    assert made["currency"] == "USD"
    assert made["target_price"] == 30.0
    path = f"{V1}/watch-releases/{made['id']}"
    assert (await http.get(path, headers=bob.headers)).status_code == 404
    patched = await http.patch(path, json={"target_price": 20}, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["target_price"] == 20.0
    assert patched.json()["title"] == RELEASE["title"]
    bad = await http.patch(path, json={"match_mode": "master_release"}, headers=alice.headers)
    assert bad.status_code == 422
    listed = await http.get(f"{V1}/watch-releases", headers=alice.headers)
    assert [r["id"] for r in listed.json()] == [made["id"]]
    # Releases and search rules are separate lists, as in the seed.
    assert (await http.get(f"{V1}/watch-rules", headers=alice.headers)).json() == []
    assert (
        await http.get(f"{V1}/watch-rules/{made['id']}", headers=alice.headers)
    ).status_code == 404
    disabled = await http.delete(path, headers=alice.headers)
    assert disabled.json()["is_active"] is False
    everyone = await http.get(f"{V1}/watch-releases", headers=ADMIN)
    assert [r["user_id"] for r in everyone.json()] == [alice.id]


@pytest.mark.parametrize(
    "body",
    [
        {"discogs_release_id": 0},
        {"title": ""},
        {"match_mode": "master_release"},  # needs discogs_master_id
        {"min_condition": "pristine"},
        {"target_price": -1},
        {"currency": "dollars"},
    ],
)
async def test_invalid_releases_are_422(
    http: httpx.AsyncClient, alice: WatchUser, body: dict[str, Any]
) -> None:
    response = await http.post(
        f"{V1}/watch-releases", json={**RELEASE, **body}, headers=alice.headers
    )
    assert response.status_code == 422, response.text


async def test_target_price_and_condition_are_applied(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    made = await create(http, alice)
    await write(
        database,
        record("1"),  # matches: the release, 25.00 <= 30.00, VG+
        record("2", price=3_500),  # over the target price
        record("3", condition="Good (G)"),  # under the minimum condition
        record("4", release="1"),  # another release
    )
    await evaluator.run_once()
    (event,) = await events(http, alice)
    assert event["payload"]["listing"]["uid"]
    assert event["watch_release_id"] == made["id"]
    clauses = {c["clause"]: c["value"] for c in event["payload"]["match"]["clauses"]}
    assert clauses["release"] == "249504"
    assert clauses["condition"] == ">= vg+"


async def test_master_mode_matches_any_pressing(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await create(http, alice, match_mode="master_release", discogs_master_id=96559)
    await write(
        database,
        record("1", release="111", master="96559"),
        record("2", release="222", master="1"),
    )
    await evaluator.run_once()
    (event,) = await events(http, alice)
    assert event["payload"]["listing"]["id"]
    assert {"clause": "master", "value": "96559"} in event["payload"]["match"]["clauses"]
