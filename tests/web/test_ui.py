"""Admin UI over HTTP: login, sessions, CSRF, logout, key pages."""

from __future__ import annotations

import re

import httpx

from tests.support import ADMIN_PASSWORD, admin_headers

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def login(client: httpx.AsyncClient, secret: str, next_page: str = "/ui/") -> httpx.Response:
    form = await client.get("/ui/login")
    data = {"secret": secret, "csrf_token": csrf_from(form.text), "next": next_page}
    return await client.post("/ui/login", data=data)


async def test_pages_redirect_to_login_without_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/keys")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/keys"
    assert (await client.get("/", headers={"Accept": "text/html"})).headers["location"] == "/ui/"
    assert (await client.get("/login")).headers["location"] == "/ui/login"


async def test_password_login_sets_a_session_that_is_not_the_password(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client, ADMIN_PASSWORD, "/ui/keys")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/keys"
    cookie = response.headers["set-cookie"]
    assert "dispatch_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("samesite", "SameSite")
    assert ADMIN_PASSWORD.split()[0] not in cookie
    dashboard = await client.get("/ui/")
    assert dashboard.status_code == 200
    assert "Dashboard" in dashboard.text
    assert 'data-testid="database"' in dashboard.text


async def test_wrong_secret_is_refused(client: httpx.AsyncClient) -> None:
    response = await login(client, "not the password")
    assert response.status_code == 401
    assert "Wrong password or key" in response.text
    assert (await client.get("/ui/")).status_code == 303


async def test_open_redirects_are_refused(client: httpx.AsyncClient) -> None:
    response = await login(client, ADMIN_PASSWORD, "//evil.example/steal")
    assert response.headers["location"] == "/ui/"


async def test_login_without_csrf_pair_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/login", data={"secret": ADMIN_PASSWORD, "csrf_token": "x"})
    assert response.status_code == 403
    assert "CSRF" in response.text


async def test_state_changes_need_the_session_csrf_token(client: httpx.AsyncClient) -> None:
    await login(client, ADMIN_PASSWORD)
    page = await client.get("/ui/keys")
    token = csrf_from(page.text)

    forged = await client.post("/ui/keys", data={"name": "evil", "scopes": "admin"})
    assert forged.status_code == 403
    assert 'data-code="csrf_failed"' in forged.text
    wrong = await client.post("/ui/logout", data={"csrf_token": token[:-2] + "xx"})
    assert wrong.status_code == 403
    keys = await client.get("/api/v1/keys", headers=admin_headers())
    assert keys.json()["items"] == []

    created = await client.post(
        "/ui/keys", data={"name": "ops", "scopes": ["read", "metrics"], "csrf_token": token}
    )
    assert created.status_code == 201
    assert 'data-testid="new-key"' in created.text
    items = (await client.get("/api/v1/keys", headers=admin_headers())).json()["items"]
    assert [(item["name"], item["scopes"]) for item in items] == [("ops", ["metrics", "read"])]

    via_header = await client.post(
        f"/ui/keys/{items[0]['id']}/revoke", headers={"X-CSRF-Token": token}
    )
    assert via_header.status_code == 303
    listed = (await client.get("/api/v1/keys", headers=admin_headers())).json()["items"]
    assert listed == []


async def test_logout_ends_the_session_server_side(client: httpx.AsyncClient) -> None:
    await login(client, ADMIN_PASSWORD)
    cookie = client.cookies.get("dispatch_session")
    assert cookie
    token = csrf_from((await client.get("/ui/")).text)
    response = await client.post("/ui/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    # replaying the old cookie after logout does not work
    client.cookies.set("dispatch_session", cookie)
    assert (await client.get("/ui/")).status_code == 303


async def test_admin_key_login_dies_with_the_key(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/keys", json={"name": "ui", "scopes": ["admin"]}, headers=admin_headers()
    )
    key = created.json()["key"]
    assert (await login(client, key)).status_code == 303
    assert (await client.get("/ui/")).status_code == 200
    await client.delete(f"/api/v1/keys/{created.json()['id']}", headers=admin_headers())
    assert (await client.get("/ui/")).status_code == 303


async def test_non_admin_key_cannot_log_in(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/keys", json={"name": "r", "scopes": ["read"]}, headers=admin_headers()
    )
    response = await login(client, created.json()["key"])
    assert response.status_code == 403
    assert "admin scope" in response.text


async def test_health_partial_for_htmx(client: httpx.AsyncClient) -> None:
    await login(client, ADMIN_PASSWORD)
    partial = await client.get("/ui/partials/health", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert 'data-testid="readiness"' in partial.text
    assert "<html" not in partial.text
