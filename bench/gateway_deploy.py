"""The processes bench/gateway.py measures: fresh storage, Dispatch, the limits, the sink.

Each phase of the benchmark gets a database of its own (a SQLite file, which `dispatch serve`
migrates, or a PostgreSQL schema migrated here as `dispatch migrate` would), so tasks left by
one phase are never delivered in the next. Dispatch runs as `dispatch serve` (API, with or
without the embedded worker) and `dispatch worker`, configured through its environment and
its admin API only.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
from bench.common import REPO_ROOT, base_env
from bench.serving import (
    LOAD_CPUS,
    SERVER_CPUS,
    RunningServer,
    ServerFailed,
    ServerSpec,
    free_port,
    pin_to,
    stop,
)
from psycopg import sql

from dispatch.config import load_settings
from dispatch.db import migrations
from dispatch.db.engine import Database

StorageKind = Literal["SQLite", "PostgreSQL"]
MASTER_KEY = "dsp_bench_gateway_master_key_0123456789abcdef"
ADMIN = {"X-Dispatch-Key": MASTER_KEY}
V1 = "/api/v1/gateway"
SCHEMA_PREFIX = "bench_gateway_"
NEVER = "1000000"  # a count no run reaches
# Limits high enough never to refuse a benchmark request, and breakers that never open, so
# every failover run really tries the failing resource first.
DISPATCH_BASE_SETTINGS = {
    "MASTER_KEY": MASTER_KEY,
    "ENVIRONMENT": "development",
    "LOG_LEVEL": "WARNING",
    "REQUEST_RATE_PER_MINUTE": "100000000",
    "GATEWAY_INGEST_RATE_PER_MINUTE": "100000000",
    "GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8",
    "GATEWAY_BREAKER_FAILURES": NEVER,
    "GATEWAY_BREAKER_MIN_REQUESTS": NEVER,
}
WORKER_READY_TIMEOUT_SECONDS = 60.0


def dispatch_executable() -> Path:
    executable = Path(sys.executable).parent / "dispatch"
    if not executable.exists():
        raise SystemExit(f"{executable} not found; run this with the project's .venv/bin/python")
    return executable


@dataclass
class Storage:
    """Where one database kind's phases keep their data."""

    kind: StorageKind
    workdir: Path
    postgres_url: str
    schemas: list[str] = field(default_factory=list)

    async def fresh(self, name: str, *, migrate: bool) -> dict[str, str]:
        """Settings for a new, empty database called ``name`` (migrated for Dispatch)."""
        if self.kind == "SQLite":
            # `dispatch serve` migrates the embedded SQLite default by itself.
            return {"DATABASE_URL": f"sqlite:///{self.workdir / f'{name}.db'}"}
        schema = SCHEMA_PREFIX + name
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            identifier = sql.Identifier(schema)
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(identifier))
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(identifier))
        self.schemas.append(schema)
        settings = {"DATABASE_URL": self.postgres_url, "DATABASE_SCHEMA": schema}
        if migrate:
            await migrate_dispatch(self.postgres_url, schema)
        return settings

    def drop_all(self) -> None:
        if not self.schemas:
            return
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            for schema in self.schemas:
                identifier = sql.Identifier(schema)
                connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(identifier))
        self.schemas.clear()


def dispatch_env(database: Mapping[str, str], **settings: str) -> dict[str, str]:
    return base_env() | DISPATCH_BASE_SETTINGS | dict(database) | settings


async def migrate_dispatch(postgres_url: str, schema: str) -> None:
    """What `dispatch migrate` does, in this process (its imports are paid once)."""
    settings = load_settings(
        None, database_url=postgres_url, database_schema=schema, environment="development"
    )
    database = Database(settings)
    try:
        await migrations.upgrade(database)
    finally:
        await database.dispose()


def serve_spec(
    workdir: Path, log_name: str, env: Mapping[str, str], cpus: frozenset[int] | None = None
) -> ServerSpec:
    """``dispatch serve`` on a free port, pinned to ``cpus`` (by default the server core)."""
    port = free_port()
    argv = [str(dispatch_executable()), "serve", "--port", str(port)]
    argv += ["--env-file", str(workdir / ".env")]
    return ServerSpec(argv, env, workdir, port, workdir / log_name, cpus)


def bare_ingest_spec(workdir: Path, database: Mapping[str, str], token: str) -> ServerSpec:
    port = free_port()
    argv = [sys.executable, str(REPO_ROOT / "bench" / "bare_ingest.py"), "--port", str(port)]
    argv += ["--database-url", database["DATABASE_URL"], "--token", token]
    if "DATABASE_SCHEMA" in database:
        argv += ["--schema", database["DATABASE_SCHEMA"]]
    return ServerSpec(argv, base_env(), workdir, port, workdir / "bare-ingest.log")


def sink_spec(workdir: Path, hold_seconds: float) -> ServerSpec:
    """The sink, on the load generator's core: it is not what is measured."""
    port = free_port()
    argv = [sys.executable, str(REPO_ROOT / "bench" / "gateway_sink.py"), "--port", str(port)]
    argv += ["--hold-seconds", str(hold_seconds)]
    return ServerSpec(argv, base_env(), workdir, port, workdir / "sink.log", frozenset(LOAD_CPUS))


@contextlib.contextmanager
def dispatch_workers(
    workdir: Path, env: Mapping[str, str], count: int, cpus: frozenset[int] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` standalone ``dispatch worker`` processes on ``cpus`` (by default the server
    core), stopped on exit.

    They are not waited for: ``wait_announced`` does that, so other start-ups can overlap.
    """
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(1, count + 1):
            argv = [str(dispatch_executable()), "worker", "--env-file", str(workdir / ".env")]
            with (workdir / f"worker-{n}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        argv,
                        cwd=workdir,
                        env=dict(env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=pin_to(set(SERVER_CPUS if cpus is None else cpus)),
                    )
                )
        yield processes
    finally:
        for process in processes:
            stop(process)


def wait_announced(
    processes: Sequence[subprocess.Popen[bytes]], workdir: Path, schema: str, url: str
) -> None:
    """Until every worker's pid is in the ``workers`` table (it claims right after)."""
    query = sql.SQL("SELECT pid FROM {}.workers").format(sql.Identifier(schema))
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_SECONDS
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            for n, process in enumerate(processes, start=1):
                if process.poll() is not None:
                    log = workdir / f"worker-{n}.log"
                    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                    raise ServerFailed(f"dispatch worker exited with {process.returncode}:\n{tail}")
            announced = {row[0] for row in connection.execute(query)}
            if all(process.pid in announced for process in processes):
                return
            time.sleep(0.05)
    raise ServerFailed(f"workers not announced after {WORKER_READY_TIMEOUT_SECONDS:.0f} s")


@dataclass(frozen=True)
class Route:
    """An endpoint and the resources it fails over across, in order (name -> URL)."""

    path: str
    resources: tuple[tuple[str, str], ...]


def configure(server: RunningServer, routes: Sequence[Route], timeout_seconds: float) -> str:
    """Resources, endpoints and one client allowed on all of them, via the admin API; its token."""
    resource_ids: dict[str, int] = {}
    endpoint_ids: list[int] = []
    with httpx.Client(base_url=server.base_url, headers=ADMIN, timeout=10) as admin:
        for route in routes:
            for name, url in route.resources:
                if name not in resource_ids:
                    body = {"name": name, "url": url, "timeout_seconds": timeout_seconds}
                    resource_ids[name] = _created(admin, "/resources", body)["id"]
            ids = [resource_ids[name] for name, _ in route.resources]
            endpoint_ids.append(
                _created(admin, "/endpoints", {"path": route.path, "resource_ids": ids})["id"]
            )
        client = _created(admin, "/clients", {"name": "bench", "endpoint_ids": endpoint_ids})
    token: str = client["token"]
    return token


def _created(admin: httpx.Client, path: str, body: Mapping[str, object]) -> dict[str, Any]:
    response = admin.post(V1 + path, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST {V1 + path} answered {response.status_code}: {response.text}")
    created: dict[str, Any] = response.json()
    return created
