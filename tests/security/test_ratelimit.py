from __future__ import annotations

import uuid
from typing import Any

from tests.support import MASTER_KEY, admin_headers, make_settings, running_app

PROXY_PEER = "203.0.113.7"  # the client address the test transport reports


def _limited(db_settings: dict[str, Any], **overrides: Any) -> Any:
    return make_settings(**db_settings, request_rate_per_minute=3, **overrides)


async def test_over_budget_gets_429_envelope_with_headers(db_settings: dict[str, Any]) -> None:
    async with running_app(_limited(db_settings)) as client:
        for remaining in (2, 1, 0):
            ok = await client.get("/api/v1/system", headers=admin_headers())
            assert ok.status_code == 200
            assert ok.headers["RateLimit-Limit"] == "3"
            assert ok.headers["RateLimit-Remaining"] == str(remaining)
        refused = await client.get("/api/v1/system", headers=admin_headers())
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["request_id"] == refused.headers["X-Request-ID"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"


async def test_refusals_for_auth_carry_the_budget_headers(db_settings: dict[str, Any]) -> None:
    async with running_app(_limited(db_settings)) as client:
        refused = await client.get("/api/v1/keys", headers={"X-Dispatch-Key": "guess"})
    assert refused.status_code == 401
    assert refused.headers["RateLimit-Remaining"] == "2"


async def test_ui_rate_limit_page_has_retry_after(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, login_rate_per_minute=1)
    async with running_app(settings) as client:
        await client.post("/ui/login", data={"secret": "x"})
        refused = await client.post("/ui/login", data={"secret": "x"})
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert int(refused.headers["Retry-After"]) >= 1


async def test_each_principal_has_its_own_budget(db_settings: dict[str, Any]) -> None:
    settings = _limited(db_settings, api_keys="second-key")
    async with running_app(settings) as client:
        for _ in range(3):
            await client.get("/api/v1/system", headers=admin_headers())
        assert (await client.get("/api/v1/system", headers=admin_headers())).status_code == 429
        other = await client.get("/api/v1/system", headers={"X-Dispatch-Key": "second-key"})
        assert other.status_code == 200
        # anonymous callers are budgeted by address, apart from any key
        assert (await client.get("/")).status_code == 200


async def test_health_and_ready_are_never_limited(db_settings: dict[str, Any]) -> None:
    async with running_app(_limited(db_settings)) as client:
        for _ in range(10):
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/ready")).status_code == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(db_settings: dict[str, Any]) -> None:
    async with running_app(_limited(db_settings)) as client:
        for index in range(3):
            headers = {"X-Forwarded-For": f"198.51.100.{index}"}
            assert (await client.get("/", headers=headers)).status_code == 200
        spoofed = await client.get("/", headers={"X-Forwarded-For": "198.51.100.99"})
    assert spoofed.status_code == 429


async def test_forwarded_for_is_honoured_from_trusted_proxies(db_settings: dict[str, Any]) -> None:
    settings = _limited(db_settings, trusted_proxies=f"{PROXY_PEER}/32")
    async with running_app(settings) as client:
        for _ in range(3):
            assert (
                await client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
            ).status_code == 200
        assert (
            await client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
        ).status_code == 429
        # a different client behind the same proxy has its own budget; a spoofed
        # left-most hop does not help the limited client
        assert (
            await client.get("/", headers={"X-Forwarded-For": "198.51.100.2"})
        ).status_code == 200
        chained = {"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}
        assert (await client.get("/", headers=chained)).status_code == 429


async def test_login_has_its_own_stricter_budget(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, login_rate_per_minute=2)
    async with running_app(settings) as client:
        statuses = [
            (await client.post("/ui/login", data={"secret": "wrong"})).status_code for _ in range(3)
        ]
    assert statuses[:2] == [403, 403]  # no CSRF cookie, but each attempt counts
    assert statuses[2] == 429


async def test_two_app_instances_share_one_budget_through_redis(
    db_settings: dict[str, Any], redis_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = _limited(db_settings, redis_url=redis_url, redis_key_prefix=prefix)
    async with running_app(settings) as first, running_app(settings) as second:
        statuses = []
        for client in (first, second, first, second):
            response = await client.get("/api/v1/system", headers={"X-Dispatch-Key": MASTER_KEY})
            statuses.append(response.status_code)
        info = (await second.get("/ready")).json()
    assert statuses == [200, 200, 200, 429]
    assert info["checks"]["redis"]["ok"] is True


async def test_limits_are_per_process_without_redis(db_settings: dict[str, Any]) -> None:
    settings = _limited(db_settings)
    async with running_app(settings) as first, running_app(settings) as second:
        for _ in range(3):
            await first.get("/api/v1/system", headers=admin_headers())
        response = await second.get("/api/v1/system", headers=admin_headers())
    assert response.status_code == 200


async def test_redis_outage_fails_open(db_settings: dict[str, Any]) -> None:
    settings = _limited(db_settings, redis_url="redis://127.0.0.1:1/0")
    async with running_app(settings) as client:
        response = await client.get("/api/v1/system", headers=admin_headers())
        ready = await client.get("/ready")
    assert response.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False
