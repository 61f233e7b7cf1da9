"""Remote nodes over HTTP: registration, capacity-aware claims, heartbeats, outcomes, reassignment.

Everything goes through the real app (ASGI, lifespan running) against the real
database; the reaper step is the worker's own ``upkeep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, JobAttempt, Node
from dispatch.queue import service
from dispatch.queue.registry import Registry
from dispatch.queue.service import JobSpec
from dispatch.queue.worker import Worker, WorkerConfig
from tests.support import admin_headers, make_settings, running_app

REMOTE = "remote"


@pytest.fixture
async def database(db_settings: dict[str, Any]) -> AsyncIterator[Database]:
    db = Database(make_settings(**db_settings))
    yield db
    await db.dispose()


async def enqueue(database: Database, *specs: JobSpec) -> list[int]:
    async with database.session() as session:
        return [result.job_id for result in await service.enqueue_many(session, list(specs))]


def rescue(need: int, *labels: str, **extra: Any) -> JobSpec:
    return JobSpec(
        "fleet.rescue",
        {"need": need},
        queue=REMOTE,
        required_capacity=need,
        required_labels=labels,
        **extra,
    )


async def nodes_key(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"name": "volunteers", "scopes": ["nodes"]}
    created = await client.post("/api/v1/keys", json=body, headers=admin_headers())
    assert created.status_code == 201
    return {"X-Dispatch-Key": created.json()["key"]}


async def register(client: httpx.AsyncClient, **body: Any) -> tuple[str, dict[str, str]]:
    """A new node's id and the headers that act as it."""
    key = await nodes_key(client)
    payload = {"name": "n", "capacity": 100} | body
    response = await client.post("/api/v1/nodes", json=payload, headers=key)
    assert response.status_code == 201, response.text
    data = response.json()
    return data["id"], {"X-Node-Token": data["token"]}


async def claim(
    client: httpx.AsyncClient, node_id: str, headers: dict[str, str], limit: int = 10
) -> list[dict[str, Any]]:
    response = await client.post(
        f"/api/v1/nodes/{node_id}/claim", json={"limit": limit}, headers=headers
    )
    if response.status_code == 204:
        assert int(response.headers["retry-after"]) >= 1
        return []
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


async def held_by(database: Database, node_id: str) -> list[Job]:
    async with database.session(write=False) as session:
        query = select(Job).where(Job.state == "running", Job.lease_owner == f"node:{node_id}")
        return list((await session.scalars(query)).all())


async def test_registration_scopes_validation_and_listing(client: httpx.AsyncClient) -> None:
    read = await client.post(
        "/api/v1/keys", json={"name": "r", "scopes": ["read"]}, headers=admin_headers()
    )
    read_key = {"X-Dispatch-Key": read.json()["key"]}
    body = {"name": "rescuer-1", "capacity": 500_000, "labels": ["linux", "ipv6"]}
    refused = await client.post("/api/v1/nodes", json=body, headers=read_key)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (await client.post("/api/v1/nodes", json=body)).status_code == 401

    key = await nodes_key(client)
    bad = await client.post("/api/v1/nodes", json={"name": "", "capacity": -1}, headers=key)
    assert bad.status_code == 422
    assert bad.json()["error"]["request_id"]
    wrong_queue = await client.post(
        "/api/v1/nodes", json=body | {"queues": ["default"]}, headers=key
    )
    assert wrong_queue.status_code == 422
    assert wrong_queue.json()["error"]["details"]["refused"] == ["default"]

    created = await client.post("/api/v1/nodes", json=body | {"version": "2.1"}, headers=key)
    assert created.status_code == 201
    node = created.json()
    assert node["token"].startswith("dnode_")
    assert node["token_prefix"] == node["token"][:12]
    assert node["queues"] == [REMOTE]
    assert node["lease_seconds"] == 300
    assert 0 < node["heartbeat_seconds"] <= 60

    listed = (await client.get("/api/v1/nodes", headers=read_key)).json()["items"]
    assert [(n["id"], n["name"], n["status"], n["in_flight"]) for n in listed] == [
        (node["id"], "rescuer-1", "active", 0)
    ]
    assert "token" not in listed[0]
    one = await client.get(f"/api/v1/nodes/{node['id']}", headers=read_key)
    assert one.json()["labels"] == ["ipv6", "linux"]
    assert (await client.get("/api/v1/nodes/node-missing", headers=read_key)).status_code == 404


async def test_node_tokens_act_only_for_their_node(client: httpx.AsyncClient) -> None:
    first, first_headers = await register(client)
    second, _ = await register(client)
    stolen = await client.post(f"/api/v1/nodes/{second}/claim", json={}, headers=first_headers)
    assert stolen.status_code == 403
    unknown = await client.post(
        f"/api/v1/nodes/{first}/claim", json={}, headers={"X-Node-Token": "dnode_nope"}
    )
    assert unknown.status_code == 401
    assert (await client.post(f"/api/v1/nodes/{first}/claim", json={})).status_code == 401
    bearer = {"Authorization": "Bearer " + first_headers["X-Node-Token"]}
    assert (
        await client.post(f"/api/v1/nodes/{first}/claim", json={}, headers=bearer)
    ).status_code == 204
    as_admin = await client.post(f"/api/v1/nodes/{first}/claim", json={}, headers=admin_headers())
    assert as_admin.status_code == 204


async def test_claims_fit_capacity_slots_and_labels(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids = await enqueue(database, *(rescue(need) for need in (40, 50, 20, 5, 10)))
    big, big_headers = await register(client, capacity=100)
    small, small_headers = await register(client, capacity=30)

    got = await claim(client, big, big_headers)
    # Greedy first fit in queue order: 40 and 50 fit, 20 does not, 5 does.
    assert [job["id"] for job in got] == [ids[0], ids[1], ids[3]]
    assert all(job["lease_token"] and job["required_capacity"] for job in got)
    assert [job["id"] for job in await claim(client, small, small_headers)] == [ids[2], ids[4]]
    assert await claim(client, big, big_headers) == []  # 95 of 100 in use

    # One job done frees its share of the node's capacity.
    done = got[0]
    completed = await client.post(
        f"/api/v1/nodes/{big}/jobs/{done['id']}/complete",
        json={"lease_token": done["lease_token"], "result": {"bytes": 123}},
        headers=big_headers,
    )
    assert completed.json() == {"job_id": done["id"], "state": "succeeded", "run_at": None}
    listed = {
        n["id"]: n
        for n in (await client.get("/api/v1/nodes", headers=admin_headers())).json()["items"]
    }
    assert (listed[big]["in_flight"], listed[big]["capacity_used"]) == (2, 55)
    assert (listed[small]["in_flight"], listed[small]["capacity_used"]) == (2, 30)

    # Slots: max_in_flight bounds the count whatever the capacity.
    more = await enqueue(database, *(rescue(1) for _ in range(5)))
    narrow, narrow_headers = await register(client, capacity=1_000, max_in_flight=2)
    assert [job["id"] for job in await claim(client, narrow, narrow_headers)] == more[:2]
    assert await claim(client, narrow, narrow_headers) == []

    # Labels: a job needing "gpu" goes only to a node that has it.
    (gpu_job,) = await enqueue(database, rescue(0, "gpu", priority=1))
    plain, plain_headers = await register(client, capacity=10, labels=["linux"])
    assert gpu_job not in [job["id"] for job in await claim(client, plain, plain_headers, 1)]
    gpu, gpu_headers = await register(client, capacity=10, labels=["gpu", "linux"])
    assert [job["id"] for job in await claim(client, gpu, gpu_headers, 1)] == [gpu_job]


async def test_concurrent_claims_never_exceed_capacity(
    client: httpx.AsyncClient, database: Database
) -> None:
    await enqueue(database, *(rescue(7) for _ in range(40)))
    node, headers = await register(client, capacity=50, max_in_flight=100)
    batches = await asyncio.gather(*(claim(client, node, headers, 3) for _ in range(12)))
    total = sum(job["required_capacity"] for batch in batches for job in batch)
    assert total == 49  # seven jobs of 7: as many as fit, never more
    held = await held_by(database, node)
    assert sum(job.required_capacity for job in held) == 49
    # Shrinking the capacity stops new work until enough is handed back.
    response = await client.post(
        f"/api/v1/nodes/{node}/claim", json={"capacity": 20, "limit": 5}, headers=headers
    )
    assert response.status_code == 204


async def test_heartbeat_extends_every_lease_and_reports_cancelled_and_lost(
    client: httpx.AsyncClient, database: Database
) -> None:
    await enqueue(database, *(rescue(1) for _ in range(3)))
    node, headers = await register(client)
    first, second, third = await claim(client, node, headers)
    async with database.session() as session:  # leases close to running out
        await session.execute(
            update(Job).where(Job.state == "running").values(lease_expires_at=utcnow())
        )
    cancel = await client.post(f"/api/v1/jobs/{second['id']}/cancel", headers=admin_headers())
    assert cancel.json()["cancel_requested"] is True

    beat = await client.post(
        f"/api/v1/nodes/{node}/heartbeat",
        json={
            "capacity": 90,
            "running": [
                {
                    "job_id": first["id"],
                    "lease_token": first["lease_token"],
                    "progress": {"pct": 40},
                },
                {"job_id": third["id"], "lease_token": "f" * 32},
            ],
        },
        headers=headers,
    )
    assert beat.status_code == 200
    data = beat.json()
    assert data["extended"] == sorted(job["id"] for job in (first, second, third))
    assert data["cancelled"] == [second["id"]]
    assert data["lost"] == [third["id"]]  # the node reported a token that is not the lease's
    for job in await held_by(database, node):
        assert job.lease_expires_at is not None
        assert job.lease_expires_at > utcnow() + timedelta(seconds=250)
    async with database.session(write=False) as session:
        assert (await session.get(Job, first["id"])).progress == {"pct": 40}  # type: ignore[union-attr]
        assert (await session.get(Node, node)).capacity == 90  # type: ignore[union-attr]

    progress = await client.post(
        f"/api/v1/nodes/{node}/jobs/{first['id']}/progress",
        json={"lease_token": first["lease_token"], "progress": {"pct": 80}},
        headers=headers,
    )
    assert progress.json()["state"] == "running"
    stale = await client.post(
        f"/api/v1/nodes/{node}/jobs/{first['id']}/progress",
        json={"lease_token": "0" * 32, "progress": {"pct": 99}},
        headers=headers,
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "lease_lost"


async def test_a_failed_job_goes_to_another_node_never_back(
    client: httpx.AsyncClient, database: Database
) -> None:
    (job_id,) = await enqueue(database, rescue(10, max_attempts=5))
    first, first_headers = await register(client)
    (job,) = await claim(client, first, first_headers)
    failed = await client.post(
        f"/api/v1/nodes/{first}/jobs/{job_id}/fail",
        json={"lease_token": job["lease_token"], "error": "disk full", "retry_after_seconds": 0},
        headers=first_headers,
    )
    assert failed.status_code == 200
    assert failed.json()["state"] == "available"
    assert failed.json()["run_at"] is not None
    late = await client.post(
        f"/api/v1/nodes/{first}/jobs/{job_id}/complete",
        json={"lease_token": job["lease_token"]},
        headers=first_headers,
    )
    assert late.status_code == 409  # its lease ended with the failure

    assert (
        await claim(client, first, first_headers) == []
    )  # not given back to the node that failed it
    second, second_headers = await register(client)
    (again,) = await claim(client, second, second_headers)
    assert (again["id"], again["attempt"]) == (job_id, 2)
    dead = await client.post(
        f"/api/v1/nodes/{second}/jobs/{job_id}/fail",
        json={"lease_token": again["lease_token"], "error": "checksum mismatch", "permanent": True},
        headers=second_headers,
    )
    assert dead.json() == {"job_id": job_id, "state": "failed", "run_at": None}


async def test_a_silent_node_loses_its_jobs_to_others(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids = await enqueue(database, *(rescue(10, max_attempts=5) for _ in range(3)))
    silent, silent_headers = await register(client)
    taken = await claim(client, silent, silent_headers)
    assert [job["id"] for job in taken] == ids
    alive, alive_headers = await register(client)
    assert await claim(client, alive, alive_headers) == []

    # The node stops calling; three minutes later the reaper's pass finds it silent.
    async with database.session() as session:
        await session.execute(
            update(Node)
            .where(Node.id == silent)
            .values(last_seen_at=utcnow() - timedelta(minutes=4))
        )
    reaper = Worker(database, Registry(), WorkerConfig(node_silent_after=timedelta(minutes=3)))
    await reaper.upkeep()

    listed = {
        n["id"]: n
        for n in (await client.get("/api/v1/nodes", headers=admin_headers())).json()["items"]
    }
    assert listed[silent]["status"] == "offline"
    assert listed[silent]["in_flight"] == 0
    reassigned = await claim(client, alive, alive_headers)
    assert [job["id"] for job in reassigned] == ids
    async with database.session(write=False) as session:
        outcomes = (
            await session.scalars(
                select(JobAttempt.outcome).where(JobAttempt.worker == f"node:{silent}")
            )
        ).all()
    assert list(outcomes) == ["lease_expired"] * 3

    # The silent node comes back: its reports are refused and it is not given its old jobs.
    late = await client.post(
        f"/api/v1/nodes/{silent}/jobs/{ids[0]}/complete",
        json={"lease_token": taken[0]["lease_token"]},
        headers=silent_headers,
    )
    assert late.status_code == 409
    beat = await client.post(
        f"/api/v1/nodes/{silent}/heartbeat",
        json={"running": [{"job_id": j["id"], "lease_token": j["lease_token"]} for j in taken]},
        headers=silent_headers,
    )
    assert beat.json()["lost"] == ids
    assert beat.json()["extended"] == []
    listed = {
        n["id"]: n
        for n in (await client.get("/api/v1/nodes", headers=admin_headers())).json()["items"]
    }
    assert listed[silent]["status"] == "active"


async def test_release_deregister_and_disable(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids = await enqueue(database, *(rescue(1) for _ in range(3)))
    node, headers = await register(client)
    first, second, third = await claim(client, node, headers)
    released = await client.post(
        f"/api/v1/nodes/{node}/jobs/{first['id']}/release",
        json={"lease_token": first["lease_token"]},
        headers=headers,
    )
    assert released.json()["state"] == "available"
    async with database.session(write=False) as session:
        job = await session.get(Job, first["id"])
        assert job is not None
        assert (job.state, job.attempt) == ("available", 0)  # a release does not use up an attempt

    disabled = await client.patch(
        f"/api/v1/nodes/{node}", json={"enabled": False}, headers=admin_headers()
    )
    assert disabled.json()["enabled"] is False
    refused = await client.post(f"/api/v1/nodes/{node}/claim", json={}, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "node_disabled"

    gone = await client.delete(f"/api/v1/nodes/{node}", headers=headers)
    assert gone.status_code == 204
    assert await held_by(database, node) == []
    assert (await client.get(f"/api/v1/nodes/{node}", headers=admin_headers())).status_code == 404
    assert (
        await client.post(f"/api/v1/nodes/{node}/claim", json={}, headers=headers)
    ).status_code == 401
    async with database.session(write=False) as session:
        jobs = (await session.scalars(select(Job).where(Job.id.in_(ids)))).all()
        outcomes = (
            await session.scalars(
                select(JobAttempt.outcome).where(JobAttempt.job_id.in_([second["id"], third["id"]]))
            )
        ).all()
    assert sorted((job.state, job.attempt) for job in jobs) == [("available", 0)] * 3
    assert list(outcomes) == ["released", "released"]


async def test_claiming_too_often_gets_429_with_retry_after(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, node_claim_rate_per_minute=2)
    async with running_app(settings) as client:
        node, headers = await register(client)
        for _ in range(2):
            ok = await client.post(f"/api/v1/nodes/{node}/claim", json={}, headers=headers)
            assert ok.status_code == 204
        limited = await client.post(f"/api/v1/nodes/{node}/claim", json={}, headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # Heartbeats have their own budget: a throttled claimer can still keep its leases.
        beat = await client.post(f"/api/v1/nodes/{node}/heartbeat", json={}, headers=headers)
        assert beat.status_code == 200


def test_node_queues_must_not_overlap_worker_queues() -> None:
    from dispatch.config import ConfigError

    with pytest.raises(ConfigError, match="NODE_QUEUES"):
        make_settings(node_queues="default,remote")


async def test_metrics_count_nodes_and_capacity(
    client: httpx.AsyncClient, database: Database
) -> None:
    await enqueue(database, rescue(30), rescue(20))
    busy, headers = await register(client, capacity=100)
    await register(client, capacity=50)
    assert len(await claim(client, busy, headers)) == 2
    text = (await client.get("/metrics", headers=admin_headers())).text
    assert 'dispatch_queue_nodes{status="active"} 2.0' in text
    assert 'dispatch_queue_nodes{status="offline"} 0.0' in text
    assert 'dispatch_queue_node_capacity{use="offered"} 150.0' in text
    assert 'dispatch_queue_node_capacity{use="in_use"} 50.0' in text
