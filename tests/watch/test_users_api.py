"""Users, profiles and personal keys (seed 003's /me, and Dispatch's admin routes)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.models import User
from dispatch.security.passwords import verify_password
from tests.support import make_settings, running_app
from tests.watch.conftest import ADMIN, V1, WatchUser, new_user


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["status"] == status
    return error


async def test_admin_creates_a_user_whose_password_is_stored_as_argon2(
    http: httpx.AsyncClient, watch_settings: Settings
) -> None:
    response = await http.post(
        f"{V1}/users",
        json={"email": "Carol@Example.com", "password": "hunter2 hunter2", "display_name": "C"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "carol@example.com"
    assert "password" not in response.text
    assert "hash" not in response.text
    assert body["preferences"]["delivery_frequency"] == "instant"
    assert body["preferences"]["timezone"] == "UTC"
    database = Database(watch_settings)
    try:
        async with database.session(write=False) as session:
            stored = await session.scalar(select(User.password_hash).where(User.id == body["id"]))
    finally:
        await database.dispose()
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "hunter2 hunter2")
    assert not verify_password(stored, "hunter3 hunter3")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"email": "not-an-email", "password": "long enough"}, 422),
        ({"email": "x@example.com", "password": "short"}, 422),
        ({"email": "x@example.com"}, 422),
        ({"email": "x@example.com", "password": "long enough", "role": "admin"}, 422),
    ],
)
async def test_bad_user_bodies_are_422_envelopes(
    http: httpx.AsyncClient, body: dict[str, object], status: int
) -> None:
    error = _error(await http.post(f"{V1}/users", json=body, headers=ADMIN), status)
    assert error["code"] == "validation_error"


async def test_a_second_user_with_the_same_email_is_a_conflict(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    response = await http.post(
        f"{V1}/users", json={"email": "ALICE@example.com", "password": "long enough"}, headers=ADMIN
    )
    _error(response, 409)


async def test_a_personal_key_acts_as_its_user_and_never_beyond(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    me = await http.get(f"{V1}/me", headers=alice.headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["id"] == alice.id
    assert body["email"] == alice.email
    assert set(body) >= {
        "id", "email", "display_name", "is_active", "preferences", "integrations",
        "created_at", "updated_at",
    }  # fmt: skip
    # Other domains' routes need scopes a personal key does not carry.
    for path in ("/keys", "/products", "/jobs", "/gateway/endpoints", "/users"):
        assert (await http.get(V1 + path, headers=alice.headers)).status_code == 403, path


async def test_preferences_are_validated_and_kept(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    for bad in (
        {"quiet_hours_start": 24},
        {"timezone": "Mars/Olympus"},
        {"delivery_frequency": "weekly"},
        {"quiet_hours_start": 22},  # without an end
    ):
        response = await http.patch(f"{V1}/me", json={"preferences": bad}, headers=alice.headers)
        _error(response, 422)
    changed = await http.patch(
        f"{V1}/me",
        json={
            "display_name": "Alice",
            "preferences": {
                "timezone": "Europe/Paris",
                "currency": "eur",
                "quiet_hours_start": 22,
                "quiet_hours_end": 7,
                "delivery_frequency": "daily",
            },
        },
        headers=alice.headers,
    )
    assert changed.status_code == 200, changed.text
    again = (await http.get(f"{V1}/me", headers=alice.headers)).json()
    assert again["display_name"] == "Alice"
    assert again["preferences"]["currency"] == "EUR"
    assert again["preferences"]["quiet_hours_start"] == 22
    assert again["preferences"]["delivery_frequency"] == "daily"
    assert again["preferences"]["notifications_email"] is True  # untouched default


async def test_a_new_password_needs_the_current_one(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    wrong = await http.patch(
        f"{V1}/me",
        json={"password": "a new password", "current_password": "not it at all"},
        headers=alice.headers,
    )
    _error(wrong, 403)
    right = await http.patch(
        f"{V1}/me",
        json={"password": "a new password", "current_password": "a long password"},
        headers=alice.headers,
    )
    assert right.status_code == 200, right.text


async def test_deactivation_refuses_the_user_and_stops_their_rules(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    rule = await http.post(
        f"{V1}/watch-rules",
        json={"name": "nike", "query": {"sources": ["goat"], "keywords": ["nike"]}},
        headers=alice.headers,
    )
    assert rule.status_code == 201, rule.text
    gone = await http.delete(f"{V1}/me", headers=alice.headers)
    assert gone.status_code == 200
    assert gone.json()["is_active"] is False
    error = _error(await http.get(f"{V1}/me", headers=alice.headers), 403)
    assert error["message"] == "User account is inactive"
    stored = await http.get(f"{V1}/watch-rules/{rule.json()['id']}", headers=ADMIN)
    assert stored.json()["is_active"] is False


async def test_hard_delete_removes_the_user_and_their_keys(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    assert (await http.delete(f"{V1}/me/hard-delete", headers=alice.headers)).status_code == 204
    _error(await http.get(f"{V1}/me", headers=alice.headers), 401)
    _error(await http.get(f"{V1}/users/{alice.id}", headers=ADMIN), 404)


async def test_users_manage_their_own_keys(http: httpx.AsyncClient, alice: WatchUser) -> None:
    created = await http.post(f"{V1}/me/keys", json={"name": "phone"}, headers=alice.headers)
    assert created.status_code == 201, created.text
    second = created.json()
    assert second["key"].startswith("dsp_")
    assert second["user_id"] == alice.id
    listed = await http.get(f"{V1}/me/keys", headers=alice.headers)
    assert [k["name"] for k in listed.json()] == ["tests", "phone"]
    assert all("key" not in k for k in listed.json())
    revoked = await http.delete(f"{V1}/me/keys/{second['id']}", headers=alice.headers)
    assert revoked.json()["revoked_at"] is not None
    _error(await http.get(f"{V1}/me", headers={"X-Dispatch-Key": second["key"]}), 401)


async def test_users_cannot_revoke_each_others_keys(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    keys = (await http.get(f"{V1}/users/{alice.id}/keys", headers=ADMIN)).json()
    _error(await http.delete(f"{V1}/me/keys/{keys[0]['id']}", headers=bob.headers), 404)
    assert (await http.get(f"{V1}/me", headers=alice.headers)).status_code == 200


async def test_an_admin_key_has_no_profile_but_manages_users(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    _error(await http.get(f"{V1}/me", headers=ADMIN), 422)
    patched = await http.patch(
        f"{V1}/users/{alice.id}", json={"display_name": "A.", "is_admin": True}, headers=ADMIN
    )
    assert patched.status_code == 200
    assert patched.json()["is_admin"] is True
    listed = await http.get(f"{V1}/users", headers=ADMIN)
    assert [u["email"] for u in listed.json()] == ["alice@example.com"]


async def test_self_registration_is_off_by_default(http: httpx.AsyncClient) -> None:
    body = {"email": "dora@example.com", "password": "long enough"}
    _error(await http.post(f"{V1}/register", json=body), 403)


async def test_self_registration_when_enabled_gives_a_working_key(
    db_settings: dict[str, object],
) -> None:
    settings = make_settings(**db_settings, self_registration=True)
    async with running_app(settings) as http:
        body = {"email": "dora@example.com", "password": "long enough"}
        response = await http.post(f"{V1}/register", json=body)
        assert response.status_code == 201, response.text
        key = response.json()["key"]["key"]
        me = await http.get(f"{V1}/me", headers={"Authorization": f"Bearer {key}"})
        assert me.json()["email"] == "dora@example.com"
        _error(await http.post(f"{V1}/register", json=body), 409)


async def test_logout_returns_seed_003s_marker(http: httpx.AsyncClient) -> None:
    user = await new_user(http, "erin@example.com")
    response = await http.post(f"{V1}/me/logout", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == user.id
    assert body["logged_out_at"] == body["invalidate_before"]
