"""Seed 003's watch-rule contract: shapes, validation, pagination, isolation, lifecycle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.watch.conftest import ADMIN, V1, WatchUser

SEED_FIELDS = {
    "id",
    "user_id",
    "name",
    "query",
    "is_active",
    "poll_interval_seconds",
    "last_run_at",
    "next_run_at",
    "created_at",
    "updated_at",
}


async def create(
    http: httpx.AsyncClient, user: WatchUser, name: str = "rule", **query: Any
) -> dict[str, Any]:
    body = {"name": name, "query": {"sources": ["goat"], **query}}
    response = await http.post(f"{V1}/watch-rules", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


async def test_create_answers_seed_003s_shape(http: httpx.AsyncClient, alice: WatchUser) -> None:
    rule = await create(
        http, alice, "Dunks", keywords=["  Nike ", "DUNK low"], q="panda -kids", max_price=150
    )
    assert set(rule) == SEED_FIELDS | {"notify_on"}
    assert rule["user_id"] == alice.id
    assert rule["query"] == {
        "sources": ["goat"],
        "keywords": ["nike", "dunk low"],
        "q": "panda -kids",
        "max_price": 150.0,
    }
    assert rule["is_active"] is True
    assert rule["poll_interval_seconds"] == 600
    assert rule["notify_on"]["new_match"] is True
    fetched = await http.get(f"{V1}/watch-rules/{rule['id']}", headers=alice.headers)
    assert fetched.json() == rule


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "query": {"sources": ["goat"]}}, "name"),
        ({"name": "x" * 121, "query": {"sources": ["goat"]}}, "name"),
        ({"name": "r", "query": {}}, "sources"),
        ({"name": "r", "query": {"sources": []}}, "sources"),
        ({"name": "r", "query": {"sources": ["goat"], "keywords": ["ok", " "]}}, "keywords"),
        ({"name": "r", "query": {"sources": ["goat"], "max_price": -1}}, "max_price"),
        ({"name": "r", "query": {"sources": ["goat"], "min_price": 5, "max_price": 1}}, "query"),
        ({"name": "r", "query": {"sources": ["goat"], "colour": "red"}}, "colour"),
        ({"name": "r", "query": {"sources": ["goat"]}, "poll_interval_seconds": 29}, "poll"),
        ({"name": "r", "query": {"sources": ["goat"]}, "poll_interval_seconds": 86401}, "poll"),
        ({"name": "r", "query": {"sources": ["goat"]}, "notify_on": {"drop_percent": 0}}, "drop"),
    ],
)
async def test_invalid_rules_are_422_envelopes(
    http: httpx.AsyncClient, alice: WatchUser, body: dict[str, Any], field: str
) -> None:
    response = await http.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in response.text


async def test_an_unknown_source_is_named(http: httpx.AsyncClient, alice: WatchUser) -> None:
    body = {"name": "r", "query": {"sources": ["goat", "mars-market"]}}
    response = await http.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["unknown"] == ["mars-market"]


async def test_pagination_by_offset_and_cursor(http: httpx.AsyncClient, alice: WatchUser) -> None:
    made = [await create(http, alice, f"r{i}", keywords=[f"k{i}"]) for i in range(5)]
    newest_first = [r["id"] for r in reversed(made)]
    page = await http.get(f"{V1}/watch-rules", params={"limit": 2}, headers=alice.headers)
    assert [r["id"] for r in page.json()] == newest_first[:2]
    seen = [r["id"] for r in page.json()]
    while cursor := page.headers.get("X-Next-Cursor"):
        page = await http.get(
            f"{V1}/watch-rules", params={"limit": 2, "cursor": cursor}, headers=alice.headers
        )
        seen += [r["id"] for r in page.json()]
    assert seen == newest_first
    offset = await http.get(
        f"{V1}/watch-rules", params={"limit": 2, "offset": 2}, headers=alice.headers
    )
    assert [r["id"] for r in offset.json()] == newest_first[2:4]
    both = await http.get(
        f"{V1}/watch-rules", params={"offset": 1, "cursor": "abc"}, headers=alice.headers
    )
    assert both.status_code == 422
    bad = await http.get(f"{V1}/watch-rules", params={"cursor": "!!!"}, headers=alice.headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["message"] == "Invalid cursor"
    too_many = await http.get(f"{V1}/watch-rules", params={"limit": 201}, headers=alice.headers)
    assert too_many.status_code == 422


async def test_users_never_see_each_others_rules(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    rule = await create(http, alice, "mine", keywords=["nike"])
    path = f"{V1}/watch-rules/{rule['id']}"
    assert (await http.get(path, headers=bob.headers)).status_code == 404
    assert (await http.patch(path, json={"name": "x"}, headers=bob.headers)).status_code == 404
    assert (await http.post(f"{path}/disable", headers=bob.headers)).status_code == 404
    assert (await http.delete(f"{path}/hard", headers=bob.headers)).status_code == 404
    assert (await http.get(f"{V1}/watch-rules", headers=bob.headers)).json() == []
    # Bob cannot list Alice's by asking for her id either.
    asked = await http.get(f"{V1}/watch-rules", params={"user_id": alice.id}, headers=bob.headers)
    assert asked.json() == []
    # An admin key sees everyone's, or one user's.
    await create(http, bob, "his", keywords=["adidas"])
    everyone = await http.get(f"{V1}/watch-rules", headers=ADMIN)
    assert {r["name"] for r in everyone.json()} == {"mine", "his"}
    hers = await http.get(f"{V1}/watch-rules", params={"user_id": alice.id}, headers=ADMIN)
    assert [r["name"] for r in hers.json()] == ["mine"]


async def test_an_admin_key_creates_rules_for_a_named_user(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    body = {"name": "r", "query": {"sources": ["goat"]}}
    missing = await http.post(f"{V1}/watch-rules", json=body, headers=ADMIN)
    assert missing.status_code == 422
    assert "user_id" in missing.json()["error"]["message"]
    made = await http.post(
        f"{V1}/watch-rules", params={"user_id": alice.id}, json=body, headers=ADMIN
    )
    assert made.status_code == 201
    assert made.json()["user_id"] == alice.id
    nobody = await http.post(f"{V1}/watch-rules", params={"user_id": 999}, json=body, headers=ADMIN)
    assert nobody.status_code == 422


async def test_other_keys_are_refused(http: httpx.AsyncClient) -> None:
    key = await http.post(f"{V1}/keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN)
    assert key.status_code == 201, key.text
    reader = {"X-Dispatch-Key": key.json()["key"]}
    assert (await http.get(f"{V1}/watch-rules", headers=reader)).status_code == 403
    assert (await http.get(f"{V1}/watch-rules")).status_code == 401


async def test_patch_merges_the_query_and_keeps_its_sources(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    rule = await create(http, alice, "r", keywords=["nike"], max_price=100)
    path = f"{V1}/watch-rules/{rule['id']}"
    patched = await http.patch(
        path,
        json={"query": {"max_price": 80, "sizes": ["10"]}, "notify_on": {"drop_percent": 10}},
        headers=alice.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["query"]["keywords"] == ["nike"]
    assert body["query"]["max_price"] == 80.0
    assert body["query"]["sizes"] == ["10"]
    assert body["notify_on"]["drop_percent"] == 10
    removed = await http.patch(path, json={"query": {"sources": []}}, headers=alice.headers)
    assert removed.status_code == 422
    assert "sources" in removed.json()["error"]["message"]
    invalid = await http.patch(path, json={"query": {"max_price": "lots"}}, headers=alice.headers)
    assert invalid.status_code == 422


async def test_disable_soft_delete_and_hard_delete(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    rule = await create(http, alice, "r", keywords=["nike"])
    path = f"{V1}/watch-rules/{rule['id']}"
    disabled = await http.post(f"{path}/disable", headers=alice.headers)
    assert disabled.json()["is_active"] is False
    assert disabled.json()["next_run_at"] is None
    enabled = await http.patch(path, json={"is_active": True}, headers=alice.headers)
    assert enabled.json()["is_active"] is True
    assert enabled.json()["next_run_at"] is not None
    soft = await http.delete(path, headers=alice.headers)
    assert soft.status_code == 200
    assert soft.json()["is_active"] is False
    assert (await http.get(path, headers=alice.headers)).status_code == 200
    assert (await http.delete(f"{path}/hard", headers=alice.headers)).status_code == 204
    assert (await http.get(path, headers=alice.headers)).status_code == 404
    events = await http.get(f"{V1}/events", params={"rule_id": rule["id"]}, headers=alice.headers)
    kinds = [e["type"] for e in reversed(events.json())]
    assert kinds == [
        "RULE_CREATED",
        "RULE_DISABLED",
        "RULE_UPDATED",
        "RULE_ENABLED",
        "RULE_DISABLED",
        "RULE_DELETED",
        "RULE_DELETED",
    ]
    assert events.json()[0]["payload"]["hard"] is True


async def test_a_search_that_cannot_be_watched_is_a_422(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    # Searching with an empty keyword is harmless; a rule must not hold one (was a 500).
    for query in ({"keywords": ["dunk", ""]}, {"providers": ["", "goat"]}):
        response = await http.post(
            f"{V1}/search/save-alert",
            json={"name": "blank", "query": query},
            headers=alice.headers,
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["errors"][0]["msg"].endswith("must not contain empty strings")
    rules = await http.get(f"{V1}/watch-rules", headers=alice.headers)
    assert rules.json() == []


async def test_save_a_search_as_an_alert(http: httpx.AsyncClient, alice: WatchUser) -> None:
    response = await http.post(
        f"{V1}/search/save-alert",
        json={
            "name": "cheap dunks",
            "query": {
                "keywords": ["Dunk"],
                "providers": ["goat", "complexshop"],
                "max_price": 99.5,
            },
            "poll_interval_seconds": 3600,
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    rule = response.json()
    assert rule["query"] == {
        "sources": ["goat", "complexshop"],
        "keywords": ["dunk"],
        "max_price": 99.5,
    }
    assert rule["poll_interval_seconds"] == 3600
