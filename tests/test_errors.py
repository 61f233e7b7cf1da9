"""Every error type is rendered in the envelope and carries the request id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from dispatch.app import create_app
from dispatch.config import Settings
from tests.support import admin_headers, make_settings, running_app


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"code", "message", "status", "details", "request_id"}
    assert error["status"] == status
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


async def test_401_403_404_405_422(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/v1/keys"), 401, "unauthorized")
    read = await client.post(
        "/api/v1/keys", json={"name": "r", "scopes": ["read"]}, headers=admin_headers()
    )
    forbidden = await client.get("/api/v1/keys", headers={"X-API-Token": read.json()["key"]})
    assert_envelope(forbidden, 403, "forbidden")
    missing = assert_envelope(await client.get("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in missing["message"]
    wrong_method = await client.put("/health")
    assert_envelope(wrong_method, 405, "method_not_allowed")
    assert "GET" in wrong_method.headers["allow"]
    invalid = await client.post("/api/v1/keys", content=b"{not json", headers=admin_headers())
    error = assert_envelope(invalid, 422, "validation_error")
    assert isinstance(error["details"], list)


async def test_413_for_declared_and_streamed_bodies(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, max_request_body_bytes=2048)
    big = b'{"name": "' + b"x" * 4096 + b'"}'
    async with running_app(settings) as client:
        declared = await client.post("/api/v1/keys", content=big, headers=admin_headers())
        assert_envelope(declared, 413, "payload_too_large")

        async def chunks() -> Any:
            for _ in range(4):
                yield b"x" * 1024

        streamed = await client.post("/api/v1/keys", content=chunks(), headers=admin_headers())
        assert_envelope(streamed, 413, "payload_too_large")


async def test_429_envelope(db_settings: dict[str, Any]) -> None:
    async with running_app(make_settings(**db_settings, request_rate_per_minute=1)) as client:
        await client.get("/api/v1/system", headers=admin_headers())
        error = assert_envelope(
            await client.get("/api/v1/system", headers=admin_headers()), 429, "rate_limited"
        )
    assert error["details"]["limit"] == 1


async def test_unexpected_exception_is_an_opaque_500(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    async with running_app(settings, app) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-me-123"})
    error = assert_envelope(response, 500, "internal_error")
    assert error["request_id"] == "trace-me-123"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


# Requests tests/test_api_fuzz.py found answered 500: integers beyond the columns' range (64
# bits on SQLite, 32 for PostgreSQL's integer ids) in a path, a query and a body reached the
# database, whose driver refused them.
HUGE = 2**70
OUT_OF_RANGE = [
    ("GET", f"/api/v1/gateway/tasks/{HUGE}", None),
    ("GET", f"/api/v1/gateway/tasks?client_id={HUGE}", None),
    ("PATCH", f"/api/v1/watch-rules/{HUGE}", {"name": "renamed"}),
    ("GET", f"/api/v1/events?offset={HUGE}", None),
    ("GET", f"/api/v1/catalog/changes?after={HUGE}", None),
    ("POST", "/api/v1/gateway/tasks/batch", {"action": "delete", "task_ids": [1, HUGE]}),
    ("POST", "/api/v1/gateway/clients", {"name": "c", "endpoint_ids": [HUGE]}),
    # a JSON column
    ("POST", "/api/v1/nodes/n1/jobs/1/progress", {"lease_token": "t", "progress": {"b": HUGE}}),
]


@pytest.mark.parametrize(("method", "path", "body"), OUT_OF_RANGE)
async def test_an_integer_the_database_cannot_store_is_a_422(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, path, json=body, headers=admin_headers())
    error = assert_envelope(response, 422, "out_of_range")
    assert "too large" in error["message"]


async def test_what_only_postgresql_refuses_is_a_422(
    client: httpx.AsyncClient, postgres_url: str
) -> None:
    # Its integer ids hold 32 bits, and its text no NUL character (SQLite stores both).
    beyond_int32 = await client.get(f"/api/v1/users/{2**33}", headers=admin_headers())
    assert_envelope(beyond_int32, 422, "out_of_range")
    nul = await client.post(
        "/api/v1/rescue/nodes", json={"name": "nas\x00"}, headers=admin_headers()
    )
    assert_envelope(nul, 422, "invalid_character")


async def test_other_database_errors_stay_opaque_500s(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/broken")
    async def broken() -> None:
        raise DBAPIError("SELECT 1", None, ValueError("disk I/O error"))

    async with running_app(settings, app) as client:
        response = await client.get("/broken")
    assert_envelope(response, 500, "internal_error")
    assert "disk" not in response.text


@pytest.mark.parametrize(
    ("supplied", "kept"),
    [("abc-123.DEF:9", True), ("bad id with spaces", False), ("x" * 200, False)],
)
async def test_request_id_is_kept_only_when_well_formed(
    client: httpx.AsyncClient, supplied: str, kept: bool
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": supplied})
    assert (response.headers["X-Request-ID"] == supplied) is kept
    assert len(response.headers["X-Request-ID"]) <= 128
