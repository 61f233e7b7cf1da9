from __future__ import annotations

from typing import Any

import httpx

from dispatch.db.engine import Database
from dispatch.queue import service
from dispatch.queue.policy import Decision
from dispatch.queue.service import JobSpec
from tests.support import admin_headers, make_settings


async def _seed(settings: dict[str, Any]) -> list[int]:
    database = Database(make_settings(**settings))
    try:
        async with database.session() as session:
            results = await service.enqueue_many(
                session,
                [JobSpec("email.send", {"n": n}) for n in range(5)]
                + [JobSpec("sync.offers", queue="sync")],
            )
        (claimed,) = await service.claim(database, owner="w1", queues=["sync"])
        await service.fail(database, claimed.id, claimed.lease_token, "HTTP 503", Decision(False))
    finally:
        await database.dispose()
    return [result.job_id for result in results]


async def _key(client: httpx.AsyncClient, *scopes: str) -> dict[str, str]:
    body = {"name": "k", "scopes": list(scopes)}
    created = await client.post("/api/v1/keys", json=body, headers=admin_headers())
    return {"X-Dispatch-Key": created.json()["key"]}


async def test_list_filters_and_cursor_pages(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    ids = await _seed(db_settings)
    read = await _key(client, "read")
    page = (await client.get("/api/v1/jobs?kind=email.send&limit=2", headers=read)).json()
    seen = [item["id"] for item in page["items"]]
    while page["next_cursor"]:
        url = f"/api/v1/jobs?kind=email.send&limit=2&cursor={page['next_cursor']}"
        page = (await client.get(url, headers=read)).json()
        seen += [item["id"] for item in page["items"]]
    assert seen == sorted(ids[:5], reverse=True)

    failed = (await client.get("/api/v1/jobs?state=failed", headers=read)).json()["items"]
    assert [(job["id"], job["queue"], job["last_error"]) for job in failed] == [
        (ids[5], "sync", "HTTP 503")
    ]
    both = await client.get("/api/v1/jobs?state=failed&state=available", headers=read)
    assert len(both.json()["items"]) == 6


async def test_detail_retry_and_cancel(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    ids = await _seed(db_settings)
    read, write = await _key(client, "read"), await _key(client, "write")
    detail = (await client.get(f"/api/v1/jobs/{ids[5]}", headers=read)).json()
    assert [(a["attempt"], a["worker"], a["outcome"]) for a in detail["attempts"]] == [
        (1, "w1", "failed")
    ]
    assert (await client.post(f"/api/v1/jobs/{ids[5]}/retry", headers=read)).status_code == 403
    retried = await client.post(f"/api/v1/jobs/{ids[5]}/retry", headers=write)
    assert retried.status_code == 200
    assert retried.json()["state"] == "available"
    again = await client.post(f"/api/v1/jobs/{ids[5]}/retry", headers=write)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    cancelled = await client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=admin_headers())
    assert cancelled.json()["state"] == "cancelled"
    assert (await client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=write)).status_code == 409


async def test_bad_requests_are_enveloped(client: httpx.AsyncClient) -> None:
    headers = admin_headers()
    assert (await client.get("/api/v1/jobs")).status_code == 401
    missing = await client.get("/api/v1/jobs/424242", headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    bad_state = await client.get("/api/v1/jobs?state=exploded", headers=headers)
    assert bad_state.status_code == 422
    bad_cursor = await client.get("/api/v1/jobs?cursor=%%%", headers=headers)
    assert (bad_cursor.status_code, bad_cursor.json()["error"]["code"]) == (400, "invalid_cursor")
    too_many = await client.get("/api/v1/jobs?limit=100000", headers=headers)
    assert too_many.status_code == 422
