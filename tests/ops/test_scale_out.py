"""Scale-out on PostgreSQL: two API processes and two worker processes sharing one database
and one Redis, as docs/operations.md deploys them.

5,000 gateway tasks are pushed through both API processes and delivered by both workers,
and a catalogue sync asked of one API process runs on a worker and is read back through the
other. Nothing is lost, no request becomes two tasks, every task ends delivered, and the
rate limits are one budget across the API processes (kept in Redis).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dispatch.db.engine import Database
from dispatch.demo.providers import FakeProviders, provider_settings
from dispatch.demo.serving import free_port
from dispatch.gateway.ingest import DELIVER_KIND
from dispatch.models import GatewayTask, Job, JobAttempt
from tests.gateway.sink import Sink
from tests.support import (
    MASTER_KEY,
    admin_headers,
    make_settings,
    start_worker,
)
from tests.support import test_redis_url as redis_url_for_tests

ADMIN = admin_headers()
V1 = "/api/v1"
TASKS = 5_000
PUSHERS = 32
CLAIMS_PER_MINUTE = 10  # a node's dispatch budget, one across the API processes (Redis)


def _payload(n: int) -> dict[str, Any]:
    return {"ref": f"order-{n}", "scope": "shop", "n": n}


def _env(fake: FakeProviders, redis_url: str) -> dict[str, str]:
    """What every process of the deployment shares (besides the database)."""
    providers = {name.upper(): str(value) for name, value in provider_settings(fake).items()}
    return {
        **providers,
        "REDIS_URL": redis_url,
        "MASTER_KEY": MASTER_KEY,
        "LOG_LEVEL": "WARNING",
        "GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "GATEWAY_INGEST_RATE_PER_MINUTE": "100000",
        "NODE_CLAIM_RATE_PER_MINUTE": str(CLAIMS_PER_MINUTE),
        "REQUEST_RATE_PER_MINUTE": "100000",
        "SYNC_SCHEDULE": "",
    }


def _api_process(
    db_settings: dict[str, Any], tmp_path: Path, port: int, env: dict[str, str]
) -> subprocess.Popen[str]:
    """``dispatch serve`` without its embedded worker: an API process only."""
    variables = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_settings["database_url"],
        "DATABASE_SCHEMA": db_settings["database_schema"],
        "WORKER_ENABLED": "false",
        **env,
    }
    argv = [sys.executable, "-m", "dispatch", "serve", "--port", str(port)]
    return subprocess.Popen(
        [*argv, "--env-file", str(tmp_path / "none")],
        cwd=tmp_path,
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def deployment_db(db_settings: dict[str, Any]) -> dict[str, Any]:
    if db_settings.get("database_schema") is None:
        pytest.skip("scale-out runs on PostgreSQL (DISPATCH_TEST_DATABASE_URL is unset)")
    if redis_url_for_tests() is None:
        pytest.skip("scale-out shares rate limits through Redis (DISPATCH_TEST_REDIS_URL is unset)")
    return db_settings


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


async def _healthy(base_url: str, process: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http, asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"{base_url} exited: {output[-2000:]}")
            try:
                if (await http.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


@pytest.mark.timeout(600)
async def test_two_api_and_two_worker_processes_lose_and_double_nothing(
    deployment_db: dict[str, Any], fake: FakeProviders, tmp_path: Path
) -> None:
    redis_url = redis_url_for_tests()
    assert redis_url is not None
    sink = await Sink().start()
    env = _env(fake, redis_url)
    ports = [free_port(), free_port()]
    processes = [_api_process(deployment_db, tmp_path, port, env) for port in ports]
    processes += [
        start_worker(
            deployment_db, tmp_path, **env, JOB_LEASE_SECONDS="30", WORKER_CONCURRENCY="16"
        )
        for _ in range(2)
    ]
    database = Database(make_settings(**deployment_db))
    apis = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=False):
            await _healthy(f"http://127.0.0.1:{port}", process)
        first, second = apis

        # The gateway is set up through one API process and used through both.
        resource = await first.post(
            f"{V1}/gateway/resources",
            json={"name": "sink", "url": sink.url("hook"), "timeout_seconds": 5},
            headers=ADMIN,
        )
        assert resource.status_code == 201, resource.text
        endpoint = await first.post(
            f"{V1}/gateway/endpoints",
            json={"path": "orders", "resource_ids": [resource.json()["id"]]},
            headers=ADMIN,
        )
        assert endpoint.status_code == 201, endpoint.text
        client = await second.post(
            f"{V1}/gateway/clients",
            json={"name": "shop", "endpoint_ids": [endpoint.json()["id"]]},
            headers=ADMIN,
        )
        assert client.status_code == 201, client.text
        token = {"X-API-Token": client.json()["token"]}

        # A catalogue sync asked of the second API process runs on a worker.
        asked = await second.post(f"{V1}/providers/complexshop/sync", headers=ADMIN)
        assert asked.status_code == 202, asked.text
        sync_job = asked.json()["job_id"]

        accepted: dict[int, int] = {}  # ref -> task id
        refs = asyncio.Queue[int]()
        for ref in range(TASKS):
            refs.put_nowait(ref)

        async def push() -> None:
            while not refs.empty():
                ref = refs.get_nowait()
                api = apis[ref % 2]
                answer = await api.post("/api/orders", json=_payload(ref), headers=token)
                assert answer.status_code == 202, answer.text
                accepted[ref] = answer.json()["task_id"]

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(push() for _ in range(PUSHERS)))
        print(f"pushed in {asyncio.get_running_loop().time() - started:.1f} s")

        assert len(set(accepted.values())) == len(accepted) == TASKS  # one task per request

        # A rescue node asking both API processes in turn has one budget of dispatches.
        node = await first.post(
            f"{V1}/rescue/nodes", json={"name": "nas", "free_space_gb": 10}, headers=ADMIN
        )
        assert node.status_code == 201, node.text
        node_token = {"X-Node-Token": node.json()["token"]}
        answers = [
            (
                await apis[n % 2].post(
                    f"{V1}/rescue/dispatch", json={"free_space_gb": 10}, headers=node_token
                )
            ).status_code
            for n in range(CLAIMS_PER_MINUTE + 6)
        ]
        assert set(answers) <= {204, 429}, answers
        assert 0 < answers.count(429) <= 6, f"per-process budgets, not one shared: {answers}"

        async with asyncio.timeout(240):
            while True:
                async with database.session(write=False) as session:
                    open_tasks = await session.scalar(
                        select(func.count())
                        .select_from(GatewayTask)
                        .where(GatewayTask.status != "success")
                    )
                if open_tasks == 0:
                    print(f"delivered after {asyncio.get_running_loop().time() - started:.1f} s")
                    break
                await asyncio.sleep(0.5)

        job = (await first.get(f"{V1}/jobs/{sync_job}", headers=ADMIN)).json()
        assert job["state"] == "succeeded", job
        products = await first.get(
            f"{V1}/products",
            params={"providers": "complexshop", "status": "all", "limit": 100},
            headers=ADMIN,
        )
        assert products.status_code == 200, products.text
        assert len(products.json()["items"]) == 2

        async with database.session(write=False) as session:
            tasks = (
                await session.execute(
                    select(GatewayTask.id, GatewayTask.message_id, GatewayTask.source_payload)
                )
            ).all()
            deliverers = {
                worker
                for (worker,) in await session.execute(
                    select(JobAttempt.worker)
                    .join(Job, Job.id == JobAttempt.job_id)
                    .where(Job.kind == DELIVER_KIND)
                )
            }
    finally:
        for api in apis:
            await api.aclose()
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
        await database.dispose()
        await sink.stop()

    assert len(tasks) == len(accepted)
    assert {row.id for row in tasks} == set(accepted.values())
    refs_of = Counter(row.source_payload["n"] for row in tasks)
    assert max(refs_of.values()) == 1, "a request became two tasks"
    message_of = {row.message_id: row.source_payload["n"] for row in tasks}
    delivered = Counter(received.headers["webhook-id"] for received in sink.at("hook"))
    assert set(delivered) == set(message_of), "a task was lost or an unknown one delivered"
    assert {received.json()["n"] for received in sink.at("hook")} == set(accepted)
    assert len(deliverers) == 2, f"both workers delivered: {deliverers}"
