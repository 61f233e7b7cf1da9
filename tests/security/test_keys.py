from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import ApiKey
from dispatch.security import api_keys
from dispatch.security.scopes import Scope
from tests.support import MASTER_KEY, admin_headers, make_settings, running_app


async def _create(client: httpx.AsyncClient, *scopes: str, **extra: object) -> dict[str, object]:
    body = {"name": f"key-{'-'.join(scopes)}", "scopes": list(scopes), **extra}
    response = await client.post("/api/v1/keys", json=body, headers=admin_headers())
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_create_returns_key_once_and_stores_only_a_hash(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    created = await _create(client, "read", "write")
    key = str(created["key"])
    assert key.startswith("dsp_")
    assert created["prefix"] == key[:12]
    assert created["scopes"] == ["read", "write"]

    listed = (await client.get("/api/v1/keys", headers=admin_headers())).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "key" not in listed[0]

    database = Database(settings)
    try:
        async with database.session(write=False) as session:
            record = await session.get(ApiKey, created["id"])
    finally:
        await database.dispose()
    assert record is not None
    assert key not in (record.key_hash, record.prefix)
    assert record.key_hash == api_keys.hash_key(key)


@pytest.mark.parametrize("header", ["X-Dispatch-Key", "X-API-Token", "Authorization"])
async def test_key_accepted_in_each_header(client: httpx.AsyncClient, header: str) -> None:
    key = str((await _create(client, "read"))["key"])
    value = f"Bearer {key}" if header == "Authorization" else key
    response = await client.get("/api/v1/auth/whoami", headers={header: value})
    assert response.status_code == 200
    assert response.json()["scopes"] == ["read"]


async def test_scopes_are_enforced(client: httpx.AsyncClient) -> None:
    read = {"X-Dispatch-Key": str((await _create(client, "read"))["key"])}
    metrics = {"X-Dispatch-Key": str((await _create(client, "metrics"))["key"])}

    assert (await client.get("/api/v1/system", headers=read)).status_code == 200
    denied = await client.get("/api/v1/keys", headers=read)
    assert denied.status_code == 403
    assert denied.json()["error"]["details"]["required_scope"] == "admin"
    assert (await client.get("/metrics", headers=metrics)).status_code == 200
    assert (await client.get("/metrics", headers=read)).status_code == 403
    assert (await client.get("/api/v1/system", headers=metrics)).status_code == 403
    # admin implies every scope
    assert (await client.get("/metrics", headers=admin_headers())).status_code == 200


async def test_key_revoked_mid_use_stops_working(client: httpx.AsyncClient) -> None:
    created = await _create(client, "admin")
    headers = {"X-Dispatch-Key": str(created["key"])}
    assert (await client.get("/api/v1/keys", headers=headers)).status_code == 200

    revoked = await client.delete(f"/api/v1/keys/{created['id']}", headers=admin_headers())
    assert revoked.status_code == 204

    after = await client.get("/api/v1/keys", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "unauthorized"
    all_keys = await client.get("/api/v1/keys?include_revoked=true", headers=admin_headers())
    assert all_keys.json()["items"][0]["revoked_at"] is not None
    # revoking again is harmless, an unknown id is a 404
    repeat = await client.delete(f"/api/v1/keys/{created['id']}", headers=admin_headers())
    assert repeat.status_code == 204
    assert (await client.delete("/api/v1/keys/9999", headers=admin_headers())).status_code == 404


async def test_expired_key_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    database = Database(settings)
    try:
        async with database.session() as session:
            _, key = await api_keys.create_key(
                session, "short-lived", [Scope.READ], expires_at=utcnow() + timedelta(seconds=1)
            )
            record = await api_keys.find_usable_key(session, key)
            assert record is not None
            record.expires_at = utcnow() - timedelta(seconds=1)
    finally:
        await database.dispose()
    response = await client.get("/api/v1/system", headers={"X-Dispatch-Key": key})
    assert response.status_code == 401


async def test_last_used_is_recorded_in_batches(settings: Settings) -> None:
    async with running_app(settings) as client:
        created = await _create(client, "read")
        assert created["last_used_at"] is None
        await client.get("/api/v1/system", headers={"X-Dispatch-Key": str(created["key"])})
    # the pending use is written at the latest when the app stops
    async with running_app(settings) as client:
        shown = await client.get(f"/api/v1/keys/{created['id']}", headers=admin_headers())
    assert shown.json()["last_used_at"] is not None


async def test_stored_admin_key_can_write(client: httpx.AsyncClient) -> None:
    """A write request authenticated by a stored key (SQLite: one writer at a time)."""
    admin = {"X-Dispatch-Key": str((await _create(client, "admin"))["key"])}
    for index in range(3):
        response = await client.post("/api/v1/keys", json={"name": f"n{index}"}, headers=admin)
        assert response.status_code == 201


async def test_bad_key_requests_are_4xx(client: httpx.AsyncClient) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    cases = [
        {"name": "", "scopes": ["read"]},
        {"name": "x", "scopes": ["superuser"]},
        {"name": "x", "scopes": []},
        {"name": "x", "expires_at": past},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "unknown": 1},
    ]
    for body in cases:
        response = await client.post("/api/v1/keys", json=body, headers=admin_headers())
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get("/api/v1/keys/abc", headers=admin_headers())).status_code == 422


async def test_wrong_and_missing_keys_are_401(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/keys")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/api/v1/keys", headers={"X-Dispatch-Key": MASTER_KEY + "x"})
    assert wrong.status_code == 401
    assert "Invalid" in wrong.json()["error"]["message"]


async def test_api_keys_from_environment_are_accepted(db_settings: dict[str, object]) -> None:
    settings = make_settings(**db_settings, api_keys="seed-key-one,seed-key-two", master_key=None)
    async with running_app(settings) as client:
        ok = await client.get("/api/v1/keys", headers={"X-Dispatch-Key": "seed-key-two"})
        assert ok.status_code == 200
        whoami = await client.get("/api/v1/auth/whoami", headers={"X-API-Token": "seed-key-one"})
        assert whoami.json()["name"] == "API_KEYS[0]"
        assert (await client.get("/api/v1/keys", headers=admin_headers())).status_code == 401


def test_env_key_match_is_exact() -> None:
    digests = [api_keys.key_digest(key) for key in ("alpha", "beta")]
    assert api_keys.match_env_key("beta", digests) == 1
    assert api_keys.match_env_key("bet", digests) is None
    assert api_keys.match_env_key("betaa", digests) is None
