"""Gateway UI for admins and clients: client login, roles, tasks, batch actions, documentation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import GatewayAttempt
from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.support import ADMIN_PASSWORD, make_settings
from tests.web.test_ui import csrf_from, login

HELD = {"is_development_mode": True, "dev_hold_tasks": True}


@dataclass
class World:
    gateway: Gateway
    notify: dict[str, Any]
    alerts: dict[str, Any]
    alpha: dict[str, Any]
    beta: dict[str, Any]
    alpha_task: int
    beta_task: int


async def _send(gateway: Gateway, path: str, token: str, **payload: Any) -> int:
    response = await gateway.send(path, token, {"scope": "prod", **payload})
    assert response.status_code == 202, response.text
    task_id: int = response.json()["task_id"]
    return task_id


async def _world(http: httpx.AsyncClient) -> World:
    """Two clients on a holding endpoint, one task each (held: nothing is delivered)."""
    gateway = Gateway(http)
    notify = await gateway.endpoint("notify", [], description="Send a notification", **HELD)
    alerts = await gateway.endpoint("alerts", [], **HELD)
    alpha = await gateway.client("alpha", [notify["id"]])
    beta = await gateway.client("beta", [notify["id"], alerts["id"]])
    alpha_task = await _send(gateway, "notify", alpha["token"], ref="a-1", note="hello from alpha")
    beta_task = await _send(gateway, "notify", beta["token"], ref="b-1", note="hello from beta")
    return World(gateway, notify, alerts, alpha, beta, alpha_task, beta_task)


async def client_login(
    http: httpx.AsyncClient, token: str, path: str = "/ui/login/client", **extra: str
) -> httpx.Response:
    form = await http.get("/ui/login?tab=client")
    assert form.status_code == 200
    data = {"token": token, "csrf_token": csrf_from(form.text), **extra}
    return await http.post(path, data=data)


def _task_ids(html: str) -> set[int]:
    return {int(found) for found in re.findall(r'<tr data-task="(\d+)"', html)}


async def _status(world: World, task_id: int) -> str:
    status: str = (await world.gateway.task(task_id))["status"]
    return status


async def _deliver_jobs(http: httpx.AsyncClient) -> int:
    response = await http.get("/api/v1/jobs?kind=gateway.deliver&limit=500", headers=ADMIN)
    return len(response.json()["items"])


async def test_a_client_logs_in_with_its_token(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    wrong = await client_login(client, "dpy_not-a-token")
    assert wrong.status_code == 401
    assert "Unknown or inactive client token" in wrong.text
    assert 'id="client-login"' in wrong.text  # the client tab again
    assert (await client.get("/ui/gateway/tasks")).status_code == 303

    response = await client_login(client, world.alpha["token"])
    assert (response.status_code, response.headers["location"]) == (303, "/ui/gateway/tasks")
    cookie = response.headers["set-cookie"]
    assert "dispatch_session=" in cookie
    assert "HttpOnly" in cookie
    assert world.alpha["token"] not in cookie
    assert world.alpha["token"][4:] not in str(client.cookies.jar)

    listing = await client.get("/ui/gateway/tasks")
    assert listing.status_code == 200
    assert "Gateway · alpha" in listing.text
    assert 'href="/ui/gateway/resources"' not in listing.text  # a client's navigation
    assert 'href="/documentation"' in listing.text
    assert _task_ids(listing.text) == {world.alpha_task}


async def test_inactive_clients_and_forged_logins_are_refused(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    forged = await client.post("/ui/login/client", data={"token": world.alpha["token"]})
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    await client.patch(
        f"{V1}/clients/{world.alpha['id']}", json={"is_active": False}, headers=ADMIN
    )
    refused = await client_login(client, world.alpha["token"])
    assert refused.status_code == 401


async def test_a_client_session_ends_with_its_client(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    await client_login(client, world.alpha["token"])
    assert (await client.get("/ui/gateway")).status_code == 200
    rotated = await client.post(f"{V1}/clients/{world.alpha['id']}/rotate-token", headers=ADMIN)
    assert rotated.status_code == 200
    assert (await client.get("/ui/gateway")).status_code == 303  # the old token's session died

    assert (await client_login(client, rotated.json()["token"])).status_code == 303
    assert (await client.get("/ui/gateway")).status_code == 200
    await client.patch(
        f"{V1}/clients/{world.alpha['id']}", json={"is_active": False}, headers=ADMIN
    )
    assert (await client.get("/ui/gateway")).status_code == 303


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/keys", "/ui/jobs", "/ui/workers", "/ui/nodes", "/ui/gateway/resources"]
)
async def test_a_client_session_cannot_open_admin_pages(
    client: httpx.AsyncClient, path: str
) -> None:
    world = await _world(client)
    await client_login(client, world.alpha["token"])
    response = await client.get(path)
    assert response.status_code == 403
    assert 'data-code="admin_only"' in response.text
    assert 'href="/ui/gateway"' in response.text  # its own navigation, not the admin's


async def test_a_client_cannot_change_admin_state(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    await client_login(client, world.alpha["token"])
    token = csrf_from((await client.get("/ui/gateway")).text)
    created = await client.post(
        "/ui/keys", data={"name": "sneaky", "scopes": "admin", "csrf_token": token}
    )
    assert created.status_code == 403
    assert (await client.get("/api/v1/keys", headers=ADMIN)).json()["items"] == []


async def test_seed_login_and_logout_paths(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    assert (await client.get("/client/login")).headers["location"] == "/ui/login?tab=client"
    assert (await client.get("/client/dashboard")).headers["location"] == "/ui/gateway"

    response = await client_login(client, world.beta["token"], path="/client/login")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/gateway/tasks")
    token = csrf_from((await client.get("/ui/gateway")).text)
    assert (await client.post("/client/logout")).status_code == 403  # CSRF as everywhere
    out = await client.post("/client/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login?tab=client")
    assert (await client.get("/ui/gateway")).status_code == 303

    await login(client, ADMIN_PASSWORD)
    token = csrf_from((await client.get("/ui/gateway")).text)
    out = await client.post("/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    assert (await client.get("/ui/gateway")).status_code == 303


async def test_a_client_login_keeps_a_safe_next_page(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    kept = await client_login(client, world.alpha["token"], next="/documentation")
    assert kept.headers["location"] == "/documentation"
    admin_page = await client_login(client, world.alpha["token"], next="/ui/keys")
    assert admin_page.headers["location"] == "/ui/gateway/tasks"
    for outside in ("//evil.example/x", "/\\evil.example/x"):
        response = await client_login(client, world.alpha["token"], next=outside)
        assert response.headers["location"] == "/ui/gateway/tasks"
    admin = await login(client, ADMIN_PASSWORD, "/\\evil.example/x")
    assert admin.headers["location"] == "/ui/"


async def test_seed_task_paths_redirect(client: httpx.AsyncClient) -> None:
    listing = await client.get("/tasks?status=failed&search=abc")
    assert listing.status_code == 307
    assert listing.headers["location"] == "/ui/gateway/tasks?status=failed&search=abc"
    assert (await client.get("/task/42")).headers["location"] == "/ui/gateway/tasks/42"
    redirected = await client.get("/ui/gateway/tasks?status=failed")
    assert redirected.headers["location"] == "/ui/login?next=/ui/gateway/tasks%3Fstatus%3Dfailed"


async def test_a_client_sees_and_acts_on_its_own_tasks_only(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    await client_login(client, world.alpha["token"])

    assert (await client.get(f"/ui/gateway/tasks/{world.beta_task}")).status_code == 404
    own = await client.get(f"/ui/gateway/tasks/{world.alpha_task}")
    assert own.status_code == 200
    assert "hello from alpha" in own.text
    buttons = set(re.findall(r'<button type="submit" id="(\w+)"', own.text)) - {"logout"}
    assert buttons == {"stop", "release", "delete"}  # what a held task allows
    token = csrf_from(own.text)

    for action in ("stop", "delete", "release", "retry"):
        response = await client.post(
            f"/ui/gateway/tasks/{world.beta_task}/{action}", data={"csrf_token": token}
        )
        assert response.status_code == 404, action
    assert await _status(world, world.beta_task) == "held"

    batch = await client.post(
        "/ui/gateway/tasks/batch",
        data={
            "action": "stop",
            "task_ids": [world.alpha_task, world.beta_task],
            "csrf_token": token,
        },
    )
    assert batch.status_code == 200
    assert f'<span data-testid="batch-done">{world.alpha_task}</span>' in batch.text
    refusal = f"Task {world.beta_task}: Task {world.beta_task} not found"
    assert f'<li data-task="{world.beta_task}">{refusal}' in batch.text
    assert await _status(world, world.alpha_task) == "stopped"
    assert await _status(world, world.beta_task) == "held"

    deleted = await client.post(
        "/ui/gateway/tasks/batch",
        data={"action": "delete", "task_ids": [world.beta_task], "csrf_token": token},
    )
    assert "nothing done" in deleted.text
    assert await _status(world, world.beta_task) == "held"


async def test_admin_sees_every_task_and_refusals_are_messages(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    await login(client, ADMIN_PASSWORD)
    listing = await client.get("/ui/gateway/tasks")
    assert _task_ids(listing.text) == {world.alpha_task, world.beta_task}
    assert "<th>Client</th>" in listing.text

    page = await client.get(f"/ui/gateway/tasks/{world.beta_task}")
    assert page.status_code == 200
    assert 'id="retry"' not in page.text  # a held task cannot be retried
    token = csrf_from(page.text)
    jobs = await _deliver_jobs(client)
    refused = await client.post(
        f"/ui/gateway/tasks/{world.beta_task}/retry", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "cannot retry a held task" in refused.text
    assert await _deliver_jobs(client) == jobs  # the refused retry left no job behind

    stopped = await client.post(
        f"/ui/gateway/tasks/{world.beta_task}/stop", data={"csrf_token": token}
    )
    assert (stopped.status_code, stopped.headers["location"]) == (
        303,
        f"/ui/gateway/tasks/{world.beta_task}",
    )
    retried = await client.post(
        f"/ui/gateway/tasks/{world.beta_task}/retry", data={"csrf_token": token}
    )
    assert retried.status_code == 303
    assert await _status(world, world.beta_task) == "pending"
    assert await _deliver_jobs(client) == jobs + 1

    gone = await client.post(
        f"/ui/gateway/tasks/{world.alpha_task}/delete", data={"csrf_token": token}
    )
    assert (gone.status_code, gone.headers["location"]) == (303, "/ui/gateway/tasks")
    assert (await client.get(f"/ui/gateway/tasks/{world.alpha_task}")).status_code == 404


async def test_task_actions_need_the_csrf_token(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    await client_login(client, world.alpha["token"])
    stop = await client.post(f"/ui/gateway/tasks/{world.alpha_task}/stop")
    assert stop.status_code == 403
    assert 'data-code="csrf_failed"' in stop.text
    batch = await client.post(
        "/ui/gateway/tasks/batch",
        data={"action": "delete", "task_ids": [world.alpha_task], "csrf_token": "forged"},
    )
    assert batch.status_code == 403
    assert await _status(world, world.alpha_task) == "held"


async def test_task_search_filters_and_pages(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    beta = world.beta["token"]
    alert = await _send(world.gateway, "alerts", beta, ref="b-2", note="disk almost full")
    await login(client, ADMIN_PASSWORD)

    async def ids(query: str) -> set[int]:
        response = await client.get(f"/ui/gateway/tasks?{query}")
        assert response.status_code == 200, response.text
        return _task_ids(response.text)

    assert await ids("search=hello+from+beta") == {world.beta_task}
    assert await ids("search=DISK") == {alert}
    assert await ids(f"endpoint_id={world.alerts['id']}") == {alert}
    assert await ids(f"client_id={world.beta['id']}") == {world.beta_task, alert}
    assert await ids("status=held&endpoint_id=&client_id=") == {
        world.alpha_task,
        world.beta_task,
        alert,
    }
    assert await ids("status=dev") == {world.alpha_task, world.beta_task, alert}  # seed's name
    assert await ids("status=failed") == set()
    future = (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    past = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert await ids(f"since={future}") == set()
    assert await ids(f"since={past}&until={future}") == {world.alpha_task, world.beta_task, alert}
    assert (await client.get("/ui/gateway/tasks?since=yesterday")).status_code == 400

    first = await client.get("/ui/gateway/tasks?status=held&limit=2")
    assert _task_ids(first.text) == {alert, world.beta_task}
    older = re.search(r'href="/ui/gateway/tasks\?([^"]+)" id="older"', first.text)
    assert older, "no link to older tasks"
    second = await client.get("/ui/gateway/tasks?" + older.group(1).replace("&amp;", "&"))
    assert _task_ids(second.text) == {world.alpha_task}
    assert 'id="older"' not in second.text

    client.cookies.clear()
    await client_login(client, beta)
    assert await ids(f"client_id={world.alpha['id']}") == {world.beta_task, alert}  # ignored
    assert await ids("search=hello") == {world.beta_task}


async def test_dashboards_for_admin_and_client(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    world = await _world(client)
    resource = await world.gateway.resource("primary", "https://example.com/hook")
    now = utcnow()
    database = Database(make_settings(**db_settings))
    try:
        async with database.session() as session:
            for outcome, ago in (("success", 1), ("success", 1), ("success", 30), ("retryable", 1)):
                session.add(
                    GatewayAttempt(
                        task_id=world.alpha_task,
                        resource_id=resource["id"],
                        resource_name="primary",
                        request_method="POST",
                        request_url="https://example.com/hook",
                        outcome=outcome,
                        started_at=now - timedelta(minutes=ago),
                    )
                )
    finally:
        await database.dispose()

    await login(client, ADMIN_PASSWORD)
    admin = await client.get("/ui/gateway")
    assert admin.status_code == 200
    assert 'data-status="held">2<' in admin.text
    assert "3 in all, at most 2 in a minute" in admin.text
    assert admin.text.count("<rect ") == 60
    assert "Resource health" in admin.text
    assert "primary" in admin.text
    assert _task_ids(admin.text) == {world.alpha_task, world.beta_task}

    client.cookies.clear()
    await client_login(client, world.alpha["token"])
    own = await client.get("/ui/gateway")
    assert own.status_code == 200
    assert 'data-status="held">1<' in own.text
    assert "Resource health" not in own.text
    assert "Deliveries per minute" not in own.text
    assert _task_ids(own.text) == {world.alpha_task}
    detail = await client.get(f"/ui/gateway/tasks/{world.alpha_task}")
    assert detail.text.count("<details>") == 4  # every attempt, its request and response


async def test_the_user_openapi_document_per_role(client: httpx.AsyncClient) -> None:
    world = await _world(client)
    anonymous = await client.get("/openapi-user.json")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    page = await client.get("/documentation")
    assert (page.status_code, page.headers["location"]) == (303, "/ui/login?next=/documentation")

    await login(client, ADMIN_PASSWORD)
    admin = (await client.get("/openapi-user.json")).json()
    assert set(admin["paths"]) == {"/api/notify", "/api/alerts"}
    docs = await client.get("/documentation")
    assert 'data-testid="admin-note"' in docs.text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert 'data-spec-url="/openapi-user.json"' in docs.text

    client.cookies.clear()
    await client_login(client, world.alpha["token"])
    response = await client.get("/openapi-user.json")
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    assert set(document["paths"]) == {"/api/notify"}
    assert document["paths"]["/api/notify"]["post"]["description"] == "Send a notification"
    assert world.alpha["token"] not in response.text

    fresh = await world.gateway.endpoint("fresh", [], client_ids=[world.alpha["id"]])
    assert set((await client.get("/openapi-user.json")).json()["paths"]) == {
        "/api/notify",
        "/api/fresh",
    }
    await client.patch(f"{V1}/endpoints/{fresh['id']}", json={"is_active": False}, headers=ADMIN)
    assert set((await client.get("/openapi-user.json")).json()["paths"]) == {"/api/notify"}
    docs = await client.get("/documentation")
    assert docs.status_code == 200
    assert 'data-testid="admin-note"' not in docs.text
