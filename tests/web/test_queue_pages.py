"""Admin UI pages for jobs, workers and nodes."""

from __future__ import annotations

from typing import Any

import httpx

from dispatch.db.engine import Database
from dispatch.queue import nodes, service, workers
from dispatch.queue.policy import Decision
from dispatch.queue.service import JobSpec
from tests.support import ADMIN_PASSWORD, make_settings
from tests.web.test_ui import csrf_from, login


async def _seed(db_settings: dict[str, Any]) -> tuple[int, int]:
    database = Database(make_settings(**db_settings))
    try:
        async with database.session() as session:
            failed, waiting = await service.enqueue_many(
                session,
                [JobSpec("email.send", {"to": "ops@example.com"}), JobSpec("sync.offers")],
            )
        (claimed,) = await service.claim(database, owner="ui-worker", limit=1)
        await service.fail(database, claimed.id, claimed.lease_token, "SMTP 451", Decision(False))
        await workers.beat(database, "ui-worker", ["default"], 4, [])
    finally:
        await database.dispose()
    return failed.job_id, waiting.job_id


async def test_jobs_list_detail_and_actions(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    failed, waiting = await _seed(db_settings)
    assert (await client.get("/ui/jobs")).status_code == 303  # login first
    await login(client, ADMIN_PASSWORD)

    listing = await client.get("/ui/jobs?state=failed")
    assert listing.status_code == 200
    assert f'href="/ui/jobs/{failed}"' in listing.text
    assert f'href="/ui/jobs/{waiting}"' not in listing.text

    detail = await client.get(f"/ui/jobs/{failed}")
    assert "SMTP 451" in detail.text
    assert "ui-worker" in detail.text
    assert 'id="retry"' in detail.text

    forged = await client.post(f"/ui/jobs/{failed}/retry")
    assert forged.status_code == 403
    token = csrf_from(detail.text)
    retried = await client.post(f"/ui/jobs/{failed}/retry", data={"csrf_token": token})
    assert (retried.status_code, retried.headers["location"]) == (303, f"/ui/jobs/{failed}")
    assert 'data-testid="job-state">available' in (await client.get(f"/ui/jobs/{failed}")).text

    cancelled = await client.post(f"/ui/jobs/{waiting}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    again = await client.post(f"/ui/jobs/{waiting}/cancel", data={"csrf_token": token})
    assert again.status_code == 409
    assert "already finished" in again.text
    assert (await client.get("/ui/jobs/999999")).status_code == 404


async def test_workers_page(client: httpx.AsyncClient, db_settings: dict[str, Any]) -> None:
    await _seed(db_settings)
    await login(client, ADMIN_PASSWORD)
    page = await client.get("/ui/workers")
    assert page.status_code == 200
    assert "ui-worker" in page.text


async def test_nodes_page_shows_load_and_disables(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    database = Database(make_settings(**db_settings))
    try:
        async with database.session() as session:
            node, _ = await nodes.register(
                session, nodes.Registration("rescuer-7", capacity=100, queues=["remote"])
            )
            await service.enqueue(
                session, JobSpec("fleet.rescue", queue="remote", required_capacity=30)
            )
        await nodes.claim(database, node.id, limit=5, lease_seconds=300)
    finally:
        await database.dispose()
    assert (await client.get("/ui/nodes")).status_code == 303  # login first
    await login(client, ADMIN_PASSWORD)
    page = await client.get("/ui/nodes")
    assert page.status_code == 200
    assert "rescuer-7" in page.text
    assert "30 / 100" in page.text
    assert "1 / 4" in page.text
    action = f"/ui/nodes/{node.id}/disable"
    assert action in page.text
    assert (await client.post(action)).status_code == 403  # no CSRF token
    done = await client.post(action, data={"csrf_token": csrf_from(page.text)})
    assert (done.status_code, done.headers["location"]) == (303, "/ui/nodes")
    after = await client.get("/ui/nodes")
    assert "disabled" in after.text
    assert f"/ui/nodes/{node.id}/enable" in after.text
